"""Property-based fuzzing of the image decoding path (bounded in time): whatever bytes a file
holds, ``read_image`` either returns a finite float32 [H, W, 1|3] array or raises
``ImageReadError`` naming the file — never another exception, never a silent half image."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from scrd.data import ImageReadError, read_image, to_model_tensor

MODES = ["L", "RGB", "RGBA", "LA", "P", "1", "CMYK", "I;16", "I", "F"]
FORMATS = {"png": "PNG", "tif": "TIFF", "jpg": "JPEG", "bmp": "BMP"}
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _encode(mode: str, fmt: str, w: int, h: int, seed: int) -> bytes | None:
    rng = np.random.default_rng(seed)
    if mode in ("I;16", "I"):
        image = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
        image = image if mode == "I;16" else image.convert("I")
    elif mode == "F":
        image = Image.fromarray(rng.random((h, w), dtype=np.float32))
    else:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=FORMATS[fmt])
    except (OSError, ValueError, KeyError):
        return None  # this format cannot store this mode; nothing to test
    return buffer.getvalue()


def _check(path) -> None:
    try:
        array = read_image(path)
    except ImageReadError as exc:
        assert str(path) in str(exc)
        return
    assert array.dtype == np.float32 and array.ndim == 3 and array.shape[2] in (1, 3)
    assert np.isfinite(array).all()
    tensor = to_model_tensor(array, 64)
    assert tensor.shape == (3, 64, 64) and bool(tensor.isfinite().all())


@FUZZ
@given(
    mode=st.sampled_from(MODES),
    ext=st.sampled_from(sorted(FORMATS)),
    w=st.integers(1, 40),
    h=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=4),
)
def test_valid_truncated_or_corrupted_images_decode_or_fail_cleanly(
    tmp_path_factory, mode, ext, w, h, seed, cut, flips
):
    data = _encode(mode, ext, w, h, seed)
    if data is None:
        return
    buf = bytearray(data)
    for where, value in flips:
        buf[int(where * (len(buf) - 1))] = value
    buf = buf[: max(1, int(len(buf) * cut))] if cut < 0.98 else buf
    path = tmp_path_factory.mktemp("fuzz") / f"image.{ext}"
    path.write_bytes(bytes(buf))
    _check(path)


@FUZZ
@given(payload=st.binary(min_size=0, max_size=256), ext=st.sampled_from(sorted(FORMATS)))
def test_arbitrary_bytes_never_crash_the_reader(tmp_path_factory, payload, ext):
    path = tmp_path_factory.mktemp("bytes") / f"junk.{ext}"
    path.write_bytes(payload)
    _check(path)
