"""NIfTI input (``.nii``, ``.nii.gz``) through nibabel, installed with ``pip install 'scrd[nifti]'``.

A volume is a stack of 2-D images. The detector sees slices, so every volume is cut along one axis
of the RAS+ frame (``data.nifti_axis``: 0 sagittal, 1 coronal, 2 axial), whatever the voxel
order on disk, and each kept slice is a sample with the id ``file.nii.gz#slice=K``
(K counts from the patient's left, posterior or inferior end: RAS+ order), so scores trace back.

Grey levels: with ``data.intensity = none`` the volume's robust range, its
``data.nifti_percentiles`` (default 0.5 and 99.5 over all voxels), maps to [0, 1] with clipping;
one range per volume keeps slices of a volume comparable. Other ``data.intensity`` mappings work
per slice on the scaled voxel values (``scl_slope``/``scl_inter`` applied).

Slices without tissue are skipped by an explicit rule: a voxel is tissue when its
volume-normalised value exceeds ``data.nifti_tissue_level``; a slice is kept when at least
``data.nifti_min_tissue`` of its voxels are tissue (0 keeps every slice). The rule uses the
volume range whatever the intensity mapping, so changing the mapping never changes which slices
exist. Slices are shown with the superior (or anterior) side up and the patient's left on the
image's left.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ImageReadError
from .intensity import apply_intensity
from .registry import optional_module, register_reader

if TYPE_CHECKING:
    from ..config import DataConfig

INSTALL_HINT = "pip install 'scrd[nifti]'"
SUFFIXES = (".nii", ".nii.gz")
_VOLUME_CACHE_SIZE = 2  # whole compressed volumes kept per process (a .nii.gz cannot be sliced cheaply)


@dataclass(frozen=True)
class VolumeInfo:
    """What slicing needs from a whole volume: its robust range and the slices kept."""

    low: float
    high: float
    n_slices: int
    kept: tuple[int, ...]


def _nibabel(path: Path) -> Any:
    return optional_module("nibabel", path, "NIfTI", INSTALL_HINT)


def _open(path: Path) -> Any:
    img = _nibabel(path).load(str(path))
    shape = tuple(img.shape)
    if len(shape) > 3 and any(n != 1 for n in shape[3:]):
        raise ImageReadError(
            f"{path}: {len(shape)}-D NIfTI of shape {shape}; only 3-D volumes "
            "(or 2-D images) are supported, extract one volume first",
            path,
        )
    if len(shape) < 2:
        raise ImageReadError(f"{path}: NIfTI of shape {shape} is not an image", path)
    return img


def _as_3d(data: np.ndarray) -> np.ndarray:
    data = data.reshape(data.shape[:3]) if data.ndim > 3 else data
    return data[:, :, None] if data.ndim == 2 else data


def _orientation(img: Any, axis: int) -> tuple[int, bool, list[tuple[int, bool]]]:
    """Voxel axis of RAS axis ``axis``, whether it runs backwards, and the other two (in RAS order)."""
    import nibabel

    ornt = nibabel.io_orientation(img.affine)  # row = voxel axis: (RAS axis, +1/-1)
    by_ras = {int(ras): (voxel, flip < 0) for voxel, (ras, flip) in enumerate(ornt)}
    voxel, flipped = by_ras[axis]
    others = [by_ras[a] for a in range(3) if a != axis]
    return voxel, flipped, others


_volumes: "OrderedDict[tuple, np.ndarray]" = OrderedDict()


def _volume(path: Path, img: Any) -> np.ndarray:
    """The scaled voxel array; compressed volumes are cached (slicing them re-decompresses)."""
    key = (str(path), path.stat().st_mtime_ns, path.stat().st_size)
    if key in _volumes:
        _volumes.move_to_end(key)
        return _volumes[key]
    data = _as_3d(np.asarray(img.dataobj, dtype=np.float32))
    if path.name.lower().endswith(".gz"):
        _volumes[key] = data
        while len(_volumes) > _VOLUME_CACHE_SIZE:
            _volumes.popitem(last=False)
    return data


def _tissue_fractions(data: np.ndarray, voxel_axis: int, low: float, high: float, level: float) -> np.ndarray:
    if not high > low:
        return np.zeros(data.shape[voxel_axis])
    norm = np.clip((np.nan_to_num(data, nan=low) - low) / (high - low), 0.0, 1.0)
    other = tuple(a for a in range(3) if a != voxel_axis)
    return (norm > level).mean(axis=other)


@lru_cache(maxsize=4096)
def _info(
    path_str: str,
    mtime_ns: int,
    size: int,
    axis: int,
    percentiles: tuple[float, float],
    level: float,
    min_tissue: float,
) -> VolumeInfo:
    path = Path(path_str)
    img = _open(path)
    data = _volume(path, img)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise ImageReadError(f"{path}: volume has no finite voxel values", path)
    low, high = (float(v) for v in np.percentile(finite, percentiles))
    voxel, flipped, _ = _orientation(img, axis)
    fractions = _tissue_fractions(data, voxel, low, high, level)
    if flipped:
        fractions = fractions[::-1]
    kept = tuple(int(k) for k in np.flatnonzero(fractions >= min_tissue))
    return VolumeInfo(low, high, int(data.shape[voxel]), kept)


def volume_info(path: str | Path, options: "DataConfig") -> VolumeInfo:
    """Robust range and kept slices of a volume (cached per file version and options)."""
    path = Path(path)
    st = path.stat()
    return _info(
        str(path),
        st.st_mtime_ns,
        st.st_size,
        int(options.nifti_axis),
        tuple(float(p) for p in options.nifti_percentiles),
        float(options.nifti_tissue_level),
        float(options.nifti_min_tissue),
    )


def _slice(path: Path, img: Any, axis: int, index: int) -> np.ndarray:
    """Slice ``index`` (RAS+ order) as a 2-D display array: rows top = superior/anterior."""
    voxel, flipped, others = _orientation(img, axis)
    n = _as_3d_shape(img.shape)[voxel]
    k = n - 1 - index if flipped else index
    if len(img.shape) == 3 and not path.name.lower().endswith(".gz"):
        slicer = [slice(None)] * 3
        slicer[voxel] = k
        plane = np.asarray(img.dataobj[tuple(slicer)], dtype=np.float32)  # reads one slice only
    else:
        plane = np.take(_volume(path, img), k, axis=voxel)
    # ``plane`` keeps the other two voxel axes in voxel order; put them in RAS order and direction.
    (va, fa), (vb, fb) = others
    if va > vb:
        plane = plane.T
    if fa:
        plane = plane[::-1, :]
    if fb:
        plane = plane[:, ::-1]
    return np.ascontiguousarray(np.flipud(plane.T))


def _as_3d_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(shape[:3])
    return (shape[0], shape[1], 1) if len(shape) == 2 else shape  # type: ignore[return-value]


def read_nifti(path: Path, frame: int | None = None, options: "DataConfig | None" = None) -> np.ndarray:
    """Slice ``frame`` of a volume (RAS+ order along ``data.nifti_axis``) as float32 ``[H, W, 1]``.

    Without ``frame`` the volume must hold a single slice along that axis (a 2-D image).
    """
    if options is None:
        from ..config import DataConfig

        options = DataConfig()
    info = volume_info(path, options)
    if frame is None:
        if info.n_slices != 1:
            raise ImageReadError(
                f"{path}: NIfTI volume with {info.n_slices} slices; read it through "
                "a dataset folder or scrd predict, which expand it into slices, "
                "or pass a slice index",
                path,
            )
        frame = 0
    if not 0 <= frame < info.n_slices:
        raise ImageReadError(
            f"{path}: slice {frame} requested but the volume has {info.n_slices} along axis {options.nifti_axis}", path
        )
    img = _open(path)
    plane = _slice(path, img, int(options.nifti_axis), frame).astype(np.float64)
    plane = np.nan_to_num(plane, nan=info.low, posinf=info.high, neginf=info.low)
    if options.intensity == "none":
        out = (
            apply_intensity(plane, "fixed", window=(info.low, info.high))
            if info.high > info.low
            else np.zeros_like(plane, dtype=np.float32)
        )
    else:
        out = apply_intensity(plane, options.intensity, None, options.percentiles, options.window)
    return np.ascontiguousarray(out[:, :, None], dtype=np.float32)


def nifti_slices(path: Path, options: "DataConfig") -> list[int]:
    """Indices of the slices kept by the tissue rule; a volume with none kept is an error."""
    info = volume_info(path, options)
    if not info.kept:
        raise ImageReadError(
            f"{path}: no slice along axis {options.nifti_axis} has at least "
            f"{options.nifti_min_tissue:g} of its voxels above {options.nifti_tissue_level:g} "
            f"(volume range {info.low:g}..{info.high:g}); lower data.nifti_min_tissue "
            "(0 keeps every slice)",
            path,
        )
    return list(info.kept)


register_reader(SUFFIXES, read_nifti, configurable=True, frames=nifti_slices, frame_word="slice")
