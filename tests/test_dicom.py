"""DICOM grey levels: modality LUT, VOI (LUT and window), MONOCHROME1, bits stored, frames, errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dicom_writer import write_dicom  # noqa: E402

from scrd.config import DataConfig  # noqa: E402
from scrd.data import ImageDataset, ImageReadError, collect_samples, load_samples, read_image  # noqa: E402

RNG = np.random.default_rng(0)
BUNDLED = Path(pydicom.__file__).parent / "data" / "test_files"


def _bundled(name: str) -> Path:
    path = BUNDLED / name
    if not path.is_file():
        pytest.skip(f"pydicom does not ship {name}")
    return path


def _pydicom_window01(ds) -> np.ndarray:
    """pydicom's own modality LUT and VOI windowing (an oracle independent of scrd), scaled from
    pydicom's output range to [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    out = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    bits = int(ds.BitsStored)
    lo, hi = (0, 2**bits - 1) if ds.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
    lo, hi = lo * slope + intercept, hi * slope + intercept
    return (out - lo) / (hi - lo)


@pytest.mark.parametrize("dtype, bits, divisor", [(np.uint8, 8, 255), (np.uint16, 12, 4095), (np.uint16, 16, 65535)])
def test_bits_stored_sets_the_range(tmp_path, dtype, bits, divisor):
    arr = RNG.integers(0, 2**bits, size=(6, 5)).astype(dtype)
    arr[0, 0], arr[0, 1] = 0, 2**bits - 1
    out = read_image(write_dicom(tmp_path / "a.dcm", arr, bits_stored=bits))
    assert out.shape == (6, 5, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], arr / divisor, atol=1e-6)


def test_monochrome1_is_inverted(tmp_path):
    arr = np.array([[0, 1000, 4095]], np.uint16)
    m2 = read_image(write_dicom(tmp_path / "m2.dcm", arr, bits_stored=12))
    m1 = read_image(write_dicom(tmp_path / "m1.dcm", arr, bits_stored=12, photometric="MONOCHROME1"))
    np.testing.assert_allclose(m1, 1 - m2, atol=1e-7)
    assert m1[0, 0, 0] == 1 and m1[0, 2, 0] == 0  # low stored value = white in MONOCHROME1


def test_slope_intercept_without_window_use_the_stored_range(tmp_path):
    arr = np.array([[-2000, 0, 1500, 3071]], np.int16)
    out = read_image(write_dicom(tmp_path / "ct.dcm", arr, signed=True, slope=2.0, intercept=-1024))
    hu = arr * 2.0 - 1024
    lo, hi = -32768 * 2.0 - 1024, 32767 * 2.0 - 1024
    np.testing.assert_allclose(out[..., 0], (hu - lo) / (hi - lo), atol=1e-6)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_window_applies_to_rescaled_values(tmp_path, photometric):
    arr = RNG.integers(0, 4096, size=(8, 8)).astype(np.uint16)
    path = write_dicom(
        tmp_path / "w.dcm",
        arr,
        bits_stored=12,
        slope=1.0,
        intercept=-1024,
        center=40,
        width=400,
        photometric=photometric,
    )
    out = read_image(path)[..., 0]
    expected = _pydicom_window01(pydicom.dcmread(path))
    assert expected.min() == 0 and expected.max() == 1  # the window clips at both ends here
    np.testing.assert_allclose(out, expected if photometric == "MONOCHROME2" else 1 - expected, atol=1e-6)


def test_multi_valued_window_takes_the_first_and_exact_function(tmp_path):
    arr = np.array([[0, 100, 200, 300]], np.uint16)
    out = read_image(
        write_dicom(tmp_path / "w.dcm", arr, center=[100, 500], width=[200, 1000], voi_function="LINEAR_EXACT")
    )
    np.testing.assert_allclose(out.ravel(), [0, 0.5, 1, 1])


def test_voi_lut_sequence_wins_over_window(tmp_path):
    arr = np.array([[0, 1, 2, 3, 9]], np.uint16)
    out = read_image(
        write_dicom(tmp_path / "l.dcm", arr, center=1000, width=10, voi_lut=([4, 0, 8], [0, 50, 100, 255]))
    )
    np.testing.assert_allclose(out.ravel() * 255, [0, 50, 100, 255, 255], atol=1e-4)


def test_explicit_mapping_wins_over_the_files_window(tmp_path):
    arr = np.array([[0, 1024, 2048]], np.uint16)
    path = write_dicom(tmp_path / "w.dcm", arr, intercept=-1024, center=40, width=400)
    out = read_image(path, options=DataConfig(intensity="fixed", window=(-1024.0, 1024.0)))
    np.testing.assert_allclose(out.ravel(), [0, 0.5, 1])
    out = read_image(path, options=DataConfig(intensity="minmax"))
    np.testing.assert_allclose(out.ravel(), [0, 0.5, 1])


def test_multi_frame_reject_first_middle_all(tmp_path):
    frames = (np.arange(3)[:, None, None] * 1000 + np.zeros((3, 8, 8))).astype(np.uint16)
    folder = tmp_path / "data" / "test" / "normal"
    path = write_dicom(folder / "cine.dcm", frames)
    with pytest.raises(ImageReadError, match=r"cine\.dcm: multi-frame DICOM \(3 frames\).*data\.dicom_frames"):
        read_image(path)
    assert read_image(path, options=DataConfig(dicom_frames="first")).max() == 0
    assert read_image(path, options=DataConfig(dicom_frames="middle")).max() == pytest.approx(1000 / 65535)
    assert read_image(path, frame=2).max() == pytest.approx(2000 / 65535)
    with pytest.raises(ImageReadError, match="frame 3 requested but the file has 3"):
        read_image(path, frame=3)
    every = DataConfig(dicom_frames="all")
    samples = load_samples(tmp_path / "data", "test", every)
    assert [(s.id, s.frame) for s in samples] == [(f"test/normal/cine.dcm#frame={k}", k) for k in range(3)]
    ds = ImageDataset(samples, size=4, data=every)
    assert [float(ds[k]["image"].max()) for k in range(3)] == pytest.approx([0, 1000 / 65535, 2000 / 65535])
    assert ds[1]["path"] == f"{path}#frame=1"
    assert len(load_samples(tmp_path / "data", "test")) == 1  # default: one sample, rejected at read
    assert [s.frame for s in collect_samples([str(path)], every)] == [0, 1, 2]


def test_compressed_without_decoder_names_file_and_extra(tmp_path):
    from pydicom.uid import JPEGLSLossless

    path = write_dicom(
        tmp_path / "jls.dcm",
        np.zeros((4, 4), np.uint16),
        transfer_syntax=JPEGLSLossless,
        fragments=[b"\xff\xd8\xff\xf7 not a real codestream \xff\xd9"],
    )
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    message = str(info.value)
    assert "jls.dcm" in message and "JPEG-LS" in message
    assert "pip install 'scrd[dicom-codecs]'" in message  # either "no decoder" or the hint after a failure


def test_no_pixel_data_and_not_dicom(tmp_path):
    arr = np.zeros((2, 2), np.uint16)
    path = write_dicom(tmp_path / "a.dcm", arr)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(ImageReadError, match="nopix.dcm: DICOM file has no pixel data"):
        read_image(tmp_path / "nopix.dcm")
    (tmp_path / "text.dcm").write_text("not dicom at all")
    with pytest.raises(ImageReadError, match="text.dcm: cannot decode"):
        read_image(tmp_path / "text.dcm")


def test_missing_pydicom_names_file_and_extra(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((2, 2), np.uint16))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImageReadError, match=r"a\.dcm: reading DICOM needs pydicom.*pip install 'scrd\[dicom\]'"):
        read_image(path)


def test_rgb_dicom(tmp_path):
    rgb = RNG.integers(0, 256, size=(3, 4, 3)).astype(np.uint8)
    out = read_image(write_dicom(tmp_path / "c.dcm", rgb, photometric="RGB"))
    np.testing.assert_allclose(out, rgb / 255.0, atol=1e-6)


# ------------------------------------------------------------ pydicom's own bundled test files


def test_bundled_mr_small_window_and_encodings_agree():
    mr = _bundled("MR_small.dcm")
    ds = pydicom.dcmread(mr)
    out = read_image(mr)[..., 0]
    np.testing.assert_allclose(out, _pydicom_window01(ds), atol=1e-6)
    for other in ("MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm"):
        if (BUNDLED / other).is_file():
            np.testing.assert_array_equal(read_image(BUNDLED / other), read_image(mr), err_msg=other)


def test_bundled_ct_small_uses_rescale_and_signed_range():
    ct = _bundled("CT_small.dcm")
    ds = pydicom.dcmread(ct)
    assert "WindowCenter" not in ds
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    bits = int(ds.BitsStored)
    lo = -(2 ** (bits - 1)) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    hi = (2 ** (bits - 1) - 1) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(read_image(ct)[..., 0], (hu - lo) / (hi - lo), atol=1e-6)
    windowed = read_image(ct, options=DataConfig(intensity="fixed", window=(-160.0, 240.0)))
    np.testing.assert_allclose(windowed[..., 0], np.clip((hu + 160) / 400, 0, 1), atol=1e-6)


def test_bundled_multi_frame_and_rgb():
    dose = _bundled("rtdose.dcm")
    with pytest.raises(ImageReadError, match="multi-frame"):
        read_image(dose)
    ds = pydicom.dcmread(dose)
    mid = read_image(dose, options=DataConfig(dicom_frames="middle"))
    assert mid.shape == (ds.Rows, ds.Columns, 1) and 0 <= mid.min() and mid.max() <= 1
    rgb = _bundled("SC_rgb_small_odd.dcm")
    np.testing.assert_allclose(read_image(rgb), pydicom.dcmread(rgb).pixel_array / 255.0, atol=1e-6)


def test_bundled_jpeg_ls_without_decoder():
    path = _bundled("JPEGLSNearLossless_16.dcm")
    try:
        from pydicom.pixels import get_decoder

        available = get_decoder(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID).is_available
    except ImportError:
        available = None
    if available:
        assert read_image(path).ndim == 3
        return
    with pytest.raises(ImageReadError, match=r"JPEGLSNearLossless_16\.dcm.*scrd\[dicom-codecs\]"):
        read_image(path)
