"""Data loading for scrd: decode images, find dataset splits, build tensors and loaders.

Images are returned in [0, 1] space; ImageNet normalisation (:func:`normalize`) is applied by the
training and inference code after anomaly noise is added. Names are imported lazily from their
modules, so ``import scrd.data.layouts`` (or the CLI) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "dataset": (
        "MIN_IMAGE_SIDE",
        "UNKNOWN_LABEL",
        "ImageDataset",
        "SkippedImages",
        "make_loader",
        "seed_worker",
        "unreadable_items",
    ),
    "intensity": ("apply_intensity",),
    "layouts": (
        "Sample",
        "collect_images",
        "collect_samples",
        "detect_layout",
        "expand_frames",
        "load_samples",
        "samples_from_csv",
        "samples_from_data_json",
        "samples_from_folders",
    ),
    "phantom": ("make_phantom_dataset", "phantom_slice", "render_phantom"),
    "readers": ("is_image_file", "list_frames", "read_image", "register_reader", "supported_suffixes"),
    "transforms": ("IMAGENET_MEAN", "IMAGENET_STD", "normalize", "to_model_tensor"),
}
_ERRORS = ("DatasetError", "ImageReadError")
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted([*_WHERE, *_ERRORS])


def __getattr__(name: str) -> Any:
    if name in _ERRORS:
        return getattr(importlib.import_module("scrd.errors"), name)
    if name in _WHERE:
        return getattr(importlib.import_module(f"scrd.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'scrd.data' has no attribute {name!r}")
