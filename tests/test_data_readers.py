"""Image decoding (scrd.data.readers) and tensor conversion (scrd.data.transforms)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from scrd.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageReadError,
    normalize,
    read_image,
    register_reader,
    supported_suffixes,
    to_model_tensor,
)


def _png16(path, arr: np.ndarray, color_type: int) -> None:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit colour)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def gray8():
    return np.arange(6 * 7, dtype=np.uint8).reshape(6, 7) * 6


# --- 8-bit ---------------------------------------------------------------------------------------


def test_gray_png_is_one_channel_divided_by_255(tmp_path, gray8):
    Image.fromarray(gray8).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.dtype == np.float32 and out.shape == (6, 7, 1)
    np.testing.assert_array_equal(out[..., 0], gray8.astype(np.float32) / 255)


def test_rgb_png_keeps_three_channels_in_order(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 51, 0
    Image.fromarray(rgb).save(tmp_path / "c.png")
    out = read_image(tmp_path / "c.png")
    assert out.shape == (4, 5, 3)
    np.testing.assert_allclose(out[0, 0], [1.0, 0.2, 0.0], atol=1e-7)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_gray_and_rgb(tmp_path, mode):
    arr = np.full((16, 16, 3) if mode == "RGB" else (16, 16), 128, np.uint8)
    Image.fromarray(arr).save(tmp_path / "x.jpg", quality=95)
    out = read_image(tmp_path / "x.jpg")
    assert out.shape == (16, 16, 3 if mode == "RGB" else 1)
    np.testing.assert_allclose(out, 128 / 255, atol=2 / 255)


def test_uppercase_suffix_is_accepted(tmp_path, gray8):
    Image.fromarray(gray8).save(tmp_path / "G.PNG", format="PNG")
    assert read_image(tmp_path / "G.PNG").shape == (6, 7, 1)


# --- 16-bit and float ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_is_lossless(tmp_path, suffix):
    arr = np.array([[0, 1, 255, 256], [40000, 40001, 65534, 65535]], np.uint16)
    Image.fromarray(arr).save(tmp_path / f"g16{suffix}")
    out = read_image(tmp_path / f"g16{suffix}")
    assert out.shape == (2, 4, 1)
    np.testing.assert_array_equal(out[..., 0], arr.astype(np.float32) / 65535)
    assert out[1, 0, 0] == np.float32(40000 / 65535)  # not 40000 >> 8 quantised
    assert out[1, 0, 0] != out[1, 1, 0]


def test_16bit_big_endian_tiff(tmp_path):
    im = Image.new("I;16B", (3, 2), 40000)
    im.save(tmp_path / "b.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "b.tif"), np.float32(40000 / 65535))


def test_float_tiff_kept_as_is_even_outside_unit_range(tmp_path):
    arr = np.array([[-0.5, 0.25], [1.0, 3.75]], np.float32)
    Image.fromarray(arr).save(tmp_path / "f.tif")
    out = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(out[..., 0], arr)


def test_float_tiff_with_nan_is_an_error(tmp_path):
    arr = np.array([[0.1, np.nan]], np.float32)
    Image.fromarray(arr).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match=r"nan\.tif.*NaN"):
        read_image(tmp_path / "nan.tif")


def test_16bit_colour_png_is_refused_not_truncated(tmp_path):
    arr = np.zeros((2, 3, 3), np.uint16)
    arr[..., 0] = 40000
    _png16(tmp_path / "rgb16.png", arr, color_type=2)
    with pytest.raises(ImageReadError, match=r"rgb16\.png.*16-bit colour"):
        read_image(tmp_path / "rgb16.png")


# --- other modes ---------------------------------------------------------------------------------


def test_palette_becomes_rgb(tmp_path):
    im = Image.new("P", (4, 3))
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[1, 1], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(out[0, 0], [0.0, 0.0, 0.0])


def test_cmyk_becomes_rgb(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.tif")  # pure red in CMYK
    out = read_image(tmp_path / "c.tif")
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(out[0, 0], [1.0, 0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("mode,value,channels", [("RGBA", (10, 20, 30, 7), 3), ("LA", (200, 9), 1)])
def test_alpha_is_dropped(tmp_path, mode, value, channels):
    Image.new(mode, (3, 3), value).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (3, 3, channels)
    np.testing.assert_allclose(out[0, 0], np.array(value[:channels]) / 255)


def test_one_bit_is_zero_or_one(tmp_path):
    im = Image.new("1", (4, 2), 0)
    im.putpixel((2, 1), 1)
    im.save(tmp_path / "b.png")
    out = read_image(tmp_path / "b.png")
    assert out.shape == (2, 4, 1)
    assert set(np.unique(out).tolist()) == {0.0, 1.0} and out[1, 2, 0] == 1.0


# --- failures ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png.*no such file"):
        read_image(tmp_path / "nope.png")


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png.*empty"):
        read_image(tmp_path / "empty.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path, suffix):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(tmp_path / f"full{suffix}")
    data = (tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=rf"cut\{suffix}"):
        read_image(tmp_path / f"cut{suffix}")


def test_text_file_named_png(tmp_path):
    (tmp_path / "fake.png").write_text("definitely not an image\n")
    with pytest.raises(ImageReadError, match=r"fake\.png.*cannot decode"):
        read_image(tmp_path / "fake.png")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "scan.xyz").write_bytes(b"\x00" * 10)
    with pytest.raises(ImageReadError, match=r"scan\.xyz.*unsupported"):
        read_image(tmp_path / "scan.xyz")


def test_error_is_a_value_error_and_survives_worker_reraise(tmp_path):
    with pytest.raises(ValueError) as info:
        read_image(tmp_path / "gone.png")
    # DataLoader workers re-create exceptions as exc_type(message=...): the type must survive.
    again = type(info.value)(message=str(info.value))
    assert isinstance(again, ImageReadError) and "gone.png" in str(again)


def test_registry_accepts_new_readers(tmp_path):
    register_reader([".fake3d"], lambda p: np.full((2, 2, 1), 0.5, np.float32))
    try:
        (tmp_path / "a.fake3d").write_bytes(b"x")
        assert ".fake3d" in supported_suffixes()
        np.testing.assert_array_equal(read_image(tmp_path / "a.fake3d"), 0.5)
    finally:
        from scrd.data import registry

        registry._READERS.pop(".fake3d", None)


# --- transforms ----------------------------------------------------------------------------------


def test_to_model_tensor_shape_and_gray_replication():
    img = np.random.default_rng(0).random((30, 50, 1), dtype=np.float32)
    x = to_model_tensor(img, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert to_model_tensor(img, 16, channels=1).shape == (1, 16, 16)


def test_to_model_tensor_rgb_to_one_channel_is_luma():
    img = np.zeros((4, 4, 3), np.float32)
    img[..., 1] = 1.0
    x = to_model_tensor(img, 4, channels=1)
    torch.testing.assert_close(x, torch.full((1, 4, 4), 0.587))


def test_to_model_tensor_matches_half_pixel_bilinear():
    # 2x downscale with half-pixel centres and no antialias samples between pixel pairs.
    img = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    x = to_model_tensor(img, 2, channels=1)[0]
    expected = torch.tensor([[2.5, 4.5], [10.5, 12.5]])
    torch.testing.assert_close(x, expected)


def test_to_model_tensor_does_not_clip():
    img = np.full((8, 8, 3), 1.7, np.float32)
    img[0, 0] = -0.3
    x = to_model_tensor(img, 8)
    assert x.max().item() == pytest.approx(1.7) and x.min().item() == pytest.approx(-0.3)


def test_normalize_batch_and_channel_check():
    x = torch.ones(2, 3, 4, 4)
    y = normalize(x)
    for c in range(3):
        assert torch.allclose(y[:, c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
    with pytest.raises(ValueError, match="channels"):
        normalize(torch.ones(2, 1, 4, 4))


def test_exif_orientation_is_applied_like_cv2(tmp_path):
    arr = np.zeros((2, 6), np.uint8)
    arr[:, :3] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(tmp_path / "o.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "o.jpg")
    assert out.shape == (6, 2, 1)
    assert out[0].mean() > 0.8 and out[-1].mean() < 0.2
