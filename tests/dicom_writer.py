"""Write small DICOM files with pydicom for the tests (uncompressed, or with fake compressed data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom(
    path: str | Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    signed: bool = False,
    slope: float | None = None,
    intercept: float | None = None,
    center=None,
    width=None,
    voi_function: str | None = None,
    voi_lut: tuple[list[int], list[int]] | None = None,
    transfer_syntax: str | None = None,
    fragments: list[bytes] | None = None,
    patient_id: str = "anon",
) -> Path:
    """Write ``pixels`` ([H, W], [F, H, W] multi-frame, or [H, W, 3] RGB) as a DICOM file.

    ``voi_lut`` is ``(descriptor, data)``; ``fragments`` gives encapsulated (compressed) pixel
    data for ``transfer_syntax`` instead of ``pixels``' bytes.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    path = Path(path)
    pixels = np.asarray(pixels)
    rgb = photometric == "RGB"
    multi = pixels.ndim == 3 and not rgb
    rows, cols = pixels.shape[-2:] if not rgb else pixels.shape[:2]
    allocated = pixels.dtype.itemsize * 8
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id
    ds.Modality = "CT"
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored or allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if multi:
        ds.NumberOfFrames = pixels.shape[0]
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        item = Dataset()
        item.add_new("LUTDescriptor", "US", list(voi_lut[0]))
        item.add_new("LUTData", "US", list(voi_lut[1]))
        ds.VOILUTSequence = [item]
    if fragments is not None:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate(fragments)
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OW" if allocated > 8 else "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    except TypeError:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        pydicom.dcmwrite(str(path), ds, write_like_original=False)
    return path
