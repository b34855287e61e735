"""Grey-level mappings, 16-bit PNG/TIFF read losslessly with each mapping, and the data config."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scrd.config import Config, ConfigError, DataConfig, preset
from scrd.data import ImageDataset, ImageReadError, Sample, read_image
from scrd.data.intensity import apply_intensity, fixed, minmax, percentile, voi_window


def _png16(path, arr):
    Image.fromarray(arr.astype(np.uint16)).save(path)
    return path


def test_minmax_percentile_fixed_on_values():
    v = np.arange(101, dtype=np.float64)
    np.testing.assert_allclose(minmax(v), v / 100, atol=1e-7)
    p = percentile(v, 10, 90)
    assert p[10] == 0 and p[90] == 1 and p[0] == 0 and p[100] == 1  # clipped outside
    np.testing.assert_allclose(p[50], 0.5, atol=1e-7)
    f = fixed(v, 20, 60)
    assert (f[:21] == 0).all() and (f[60:] == 1).all() and f[40] == pytest.approx(0.5)
    assert minmax(np.full((3, 3), 7.0)).max() == 0  # flat image: zeros, not NaN
    with pytest.raises(ValueError, match="low < high"):
        fixed(v, 5, 5)


def test_none_divides_by_type_max_or_keeps_float():
    v = np.array([0, 32768, 65535], np.float32)
    np.testing.assert_array_equal(apply_intensity(v, "none", 65535.0), v / np.float32(65535))
    np.testing.assert_array_equal(apply_intensity(v, "none", None), v)
    with pytest.raises(ValueError, match="unknown intensity"):
        apply_intensity(v, "gamma")


def test_colour_uses_one_range_for_all_channels():
    rgb = np.zeros((1, 2, 3))
    rgb[0, 0] = (10, 20, 30)
    rgb[0, 1] = (50, 60, 110)
    out = minmax(rgb)
    np.testing.assert_allclose(out[0, 1], [0.4, 0.5, 1.0], atol=1e-7)
    np.testing.assert_allclose(out[0, 0], [0.0, 0.1, 0.2], atol=1e-7)


@pytest.mark.parametrize(
    "function, x, expected",
    [
        ("LINEAR", [-1000, 39.5 - 199.5, 39.5, 39.5 + 199.5, 3000], [0, 0, 0.5, 1, 1]),
        ("LINEAR_EXACT", [-160, 40, 240], [0, 0.5, 1]),
        ("SIGMOID", [40], [0.5]),
    ],
)
def test_dicom_window_functions(function, x, expected):
    np.testing.assert_allclose(voi_window(np.array(x, float), 40, 400, function), expected, atol=1e-6)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_lossless_under_each_mapping(tmp_path, suffix):
    arr = np.array([[0, 1, 2, 1000], [30000, 40000, 65534, 65535]], np.uint16)
    path = _png16(tmp_path / f"a{suffix}", arr)
    exact = read_image(path)[..., 0]
    # 'none' keeps every one of the 65536 levels distinct (no 8-bit detour).
    np.testing.assert_array_equal(exact, arr.astype(np.float32) / np.float32(65535))
    assert len(np.unique(exact)) == arr.size
    mm = read_image(path, options=DataConfig(intensity="minmax"))[..., 0]
    np.testing.assert_allclose(mm, arr / 65535.0, atol=1e-7)
    win = read_image(path, options=DataConfig(intensity="fixed", window=(0.0, 2.0)))[..., 0]
    np.testing.assert_allclose(win.ravel()[:4], [0, 0.5, 1, 1])  # 1 and 2 stay apart at 16 bits
    pct = read_image(path, options=DataConfig(intensity="percentile", percentiles=(0.0, 50.0)))[..., 0]
    assert pct.min() == 0 and pct.max() == 1 and (pct[1] == 1).all()


def test_mapping_on_8bit_png_and_dataset_passes_options(tmp_path):
    arr = np.kron(np.array([[50, 100], [150, 200]], np.uint8), np.ones((4, 4), np.uint8))  # 8x8 blocks
    Image.fromarray(arr).save(tmp_path / "g.png")
    ds = ImageDataset([Sample(tmp_path / "g.png", 0, "g")], size=8, data=DataConfig(intensity="minmax"))
    image = ds[0]["image"]
    assert image.shape == (3, 8, 8)
    np.testing.assert_allclose(image[0].numpy(), (arr - 50) / 150.0, atol=1e-6)
    with pytest.raises(ImageReadError, match="holds one image"):
        read_image(tmp_path / "g.png", frame=1)


def test_data_config_round_trip_and_validation(tmp_path):
    config = preset("official").with_overrides(
        {"data.intensity": "fixed", "data.window": [-160, 240], "data.nifti_axis": 1}
    )
    config.save(tmp_path / "c.yaml")
    loaded = Config.load(tmp_path / "c.yaml")
    assert loaded == config and loaded.data.window == (-160.0, 240.0)
    assert Config.from_dict({"model": {"arch": "resnet18"}}).data == DataConfig()  # old configs load
    for override, message in [
        ({"data.intensity": "gamma"}, "not one of"),
        ({"data.window": [5, 1]}, "low < high"),
        ({"data.percentiles": [50, 10]}, "percentiles"),
        ({"data.nifti_axis": 3}, "nifti_axis"),
        ({"data.dicom_frames": "last"}, "not one of"),
        ({"data.nifti_min_tissue": 2.0}, "nifti_min_tissue"),
        ({"data.frames": 1}, "unknown config key"),
    ]:
        with pytest.raises(ConfigError, match=message):
            preset("official").with_overrides(override)
