"""The heat map of a DICOM image as DICOM: a Secondary Capture a PACS files beside its source.

The object is the overlay of :mod:`.plots` (the map in the run's fixed colour scale, blended over the
image) at the **source's own size** (the map is resized back from the model's square), RGB, 8 bits,
uncompressed. It keeps the source's patient and study (Patient Name/ID/Birth Date/Sex, Study Instance
UID, date, accession number ... copied), starts a **new series** (``scrd anomaly heat map``) and
refers to the source image three ways: Source Image Sequence (purpose: source image for image
processing), Referenced Image Sequence and the Common Instance Reference Module (the source series
and instance). The score, decision, threshold and percentile among normal images are written in
Image Comments; no text is burnt into the pixels (Burned In Annotation NO).

The new Series Instance UID is derived from the source series and the model's sha256, so the heat
maps one model makes of one series land in one series, whichever run or request made them; every
object gets a new SOP Instance UID. Only DICOM sources have a study to join: callers skip other
inputs. A Parametric Map (the raw map values, not a rendering) would need the source geometry
(frame of reference, plane position) that many projection images lack; it is not written.
"""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.readers import optional_module, read_image
from ..data.registry import file_suffix
from ..storage import atomic_write
from ..version import __version__
from .colour_scale import colour_scale
from .panels import decision_text
from .plots import overlay_array

if TYPE_CHECKING:
    from ..config import DataConfig

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
SERIES_DESCRIPTION = "scrd anomaly heat map"
SERIES_NUMBER = 9900  # a number a viewer lists after the acquired series
DICOM_SUFFIXES = (".dcm", ".dicom")
INSTALL_HINT = "pip install 'scrd[dicom]'"
# Copied from the source when present (type 2 attributes are written empty otherwise).
PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)
TYPE_2 = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime"}
TYPE_2 |= {"StudyID", "AccessionNumber", "ReferringPhysicianName"}


def is_dicom_input(path: str | Path) -> bool:
    """Whether predict reads ``path`` (a sample key: ``file.dcm#frame=K`` counts) as DICOM."""
    return file_suffix(str(path).partition("#")[0]) in DICOM_SUFFIXES


@dataclass(frozen=True)
class Finding:
    """What Image Comments says of the image."""

    score: float
    threshold: float | None
    percentile: float | None  # among the run's held-out normal images; None without stored scores
    normal_count: int  # how many normal scores the percentile compares with
    model_sha256: str

    def text(self) -> str:
        where = (
            "no percentile (the model stores no held-out normal scores)"
            if self.percentile is None
            else f"{self.percentile:.2f}th percentile of {self.normal_count} held-out normal images"
        )
        return (
            f"scrd anomaly score {self.score:.6g}; {decision_text(self.score, self.threshold)}; {where}; "
            f"model sha256 {self.model_sha256[:16]}. The heat map shows where the image differs from the "
            "normal images the model was trained on (research software; not a diagnosis)."
        )


def _pydicom(path: Path):
    return optional_module("pydicom", path, "DICOM", INSTALL_HINT)


def _frame_used(source: Any, frame: int | None, options: "DataConfig | None") -> int | None:
    """The 0-based frame of a multi-frame source that was scored (as the DICOM reader picks it)."""
    try:
        frames = max(1, int(source.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        frames = 1
    if frames == 1:
        return None
    if frame is not None:
        return frame
    return frames // 2 if options is not None and options.dicom_frames == "middle" else 0


def _resize(amap: np.ndarray, height: int, width: int) -> np.ndarray:
    """The model-size map back to the source's size (bilinear, the inverse of the input stretch)."""
    import torch
    import torch.nn.functional as F

    if amap.shape == (height, width):
        return amap.astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(amap, dtype=np.float32))[None, None]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()


def _item(pydicom, **values: Any):
    item = pydicom.Dataset()
    for key, value in values.items():
        setattr(item, key, value)
    return item


def secondary_capture(
    source_path: str | Path,
    frame: int | None,
    amap: np.ndarray,
    display_range: list[float] | None,
    finding: Finding,
    options: "DataConfig | None" = None,
):
    """The Secondary Capture (a pydicom Dataset) of ``amap`` ([S, S], the model's map) over the image
    of ``source_path`` (its ``frame``), read with the model's ``data`` options as it was scored."""
    source_path = Path(source_path)
    pydicom = _pydicom(source_path)
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    source = pydicom.dcmread(str(source_path), stop_before_pixels=True)
    image01 = read_image(source_path, frame, options)
    height, width = image01.shape[:2]
    scale = colour_scale(display_range, finding.threshold, amap)
    rgb = overlay_array(image01, _resize(amap, height, width), scale.low, scale.high)

    meta = getattr(source, "file_meta", None)
    source_class = source.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta else None)
    source_instance = source.get("SOPInstanceUID") or (meta.get("MediaStorageSOPInstanceUID") if meta else None)
    source_series = source.get("SeriesInstanceUID")
    used = _frame_used(source, frame, options)
    now = _dt.datetime.now()

    ds = pydicom.Dataset()
    if "SpecificCharacterSet" in source:
        ds.SpecificCharacterSet = source.SpecificCharacterSet
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    for key in PATIENT_STUDY:
        if key in source and source.get(key) not in (None, ""):
            setattr(ds, key, source.get(key))
        elif key in TYPE_2:
            setattr(ds, key, "")
    if not ds.get("StudyInstanceUID"):  # not a valid source, but an object without a study is worse
        ds.StudyInstanceUID = generate_uid()
    # series: new, one per (source series, model)
    ds.Modality = "OT"
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(source_series or source_instance), finding.model_sha256])
    ds.SeriesNumber = SERIES_NUMBER
    ds.SeriesDescription = SERIES_DESCRIPTION
    ds.Laterality = source.get("Laterality", "")  # type 2C: for paired body parts; a validator cannot tell
    if source.get("BodyPartExamined"):
        ds.BodyPartExamined = source.BodyPartExamined
    # equipment
    ds.Manufacturer = "scrd"
    ds.SoftwareVersions = __version__
    ds.ConversionType = "WSD"
    ds.SecondaryCaptureDeviceManufacturer = "scrd"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    # image
    ds.InstanceNumber = source.get("InstanceNumber") or 1
    ds.PatientOrientation = source.get("PatientOrientation", "")
    ds.ContentDate, ds.ContentTime = ds.InstanceCreationDate, ds.InstanceCreationTime
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = (
        f"scrd anomaly map (model sha256 {finding.model_sha256[:16]}), jet colours on a fixed scale from normal "
        "images, blended 50 % over the source image"
    )[:1024]
    ds.ImageComments = finding.text()
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "01" if str(source.get("LossyImageCompression", "")) == "01" else "00"
    if "PixelSpacing" in source:  # same geometry as the source
        ds.PixelSpacing = source.PixelSpacing
    reference = {"ReferencedSOPClassUID": source_class, "ReferencedSOPInstanceUID": source_instance}
    if used is not None:
        reference["ReferencedFrameNumber"] = used + 1
    if source_class and source_instance:
        purpose = _item(
            pydicom,
            CodeValue="121322",
            CodingSchemeDesignator="DCM",
            CodeMeaning="Source image for image processing operation",
        )
        ds.SourceImageSequence = [_item(pydicom, **reference, PurposeOfReferenceCodeSequence=[purpose])]
        ds.ReferencedImageSequence = [_item(pydicom, **reference)]
        if source_series:
            instance = _item(pydicom, ReferencedSOPClassUID=source_class, ReferencedSOPInstanceUID=source_instance)
            ds.ReferencedSeriesSequence = [
                _item(pydicom, SeriesInstanceUID=source_series, ReferencedInstanceSequence=[instance])
            ]
    # pixels: RGB, 8 bits, interleaved
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(height), int(width)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixels = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    ds.PixelData = pixels + (b"\0" if len(pixels) % 2 else b"")
    ds["PixelData"].VR = "OB"

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationVersionName = f"SCRD_{__version__}"[:16]
    return ds


def dicom_bytes(ds) -> bytes:
    """A Dataset as a DICOM file (preamble, file meta, explicit VR little endian)."""
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except TypeError:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(buffer, write_like_original=False)
    return buffer.getvalue()


def write_secondary_capture(path: str | Path, ds) -> None:
    """Write atomically (a killed run never leaves half a DICOM file)."""
    data = dicom_bytes(ds)
    atomic_write(path, lambda tmp: tmp.write_bytes(data), durable=False)


__all__ = ["Finding", "dicom_bytes", "is_dicom_input", "secondary_capture", "write_secondary_capture"]
