"""Data loading for scrd: decode images, find dataset splits, build tensors and loaders.

Images are returned in [0, 1] space; ImageNet normalisation (:func:`normalize`) is applied by the
training and inference code after anomaly noise is added.
"""

from . import dicom, nifti  # noqa: F401  (register the .dcm and .nii/.nii.gz readers)
from .dataset import (
    MIN_IMAGE_SIDE,
    UNKNOWN_LABEL,
    ImageDataset,
    SkippedImages,
    make_loader,
    seed_worker,
    unreadable_items,
)
from .intensity import apply_intensity
from .layouts import (
    DatasetError,
    Sample,
    collect_images,
    collect_samples,
    detect_layout,
    expand_frames,
    load_samples,
    samples_from_csv,
    samples_from_data_json,
    samples_from_folders,
)
from .phantom import make_phantom_dataset, phantom_slice, render_phantom
from .readers import (
    ImageReadError,
    is_image_file,
    list_frames,
    read_image,
    register_reader,
    supported_suffixes,
)
from .transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, to_model_tensor

__all__ = [
    "DatasetError", "IMAGENET_MEAN", "IMAGENET_STD", "ImageDataset", "ImageReadError", "Sample",
    "UNKNOWN_LABEL", "MIN_IMAGE_SIDE", "SkippedImages", "unreadable_items", "apply_intensity",
    "collect_images", "collect_samples", "detect_layout",
    "expand_frames", "is_image_file", "list_frames", "load_samples", "make_loader",
    "make_phantom_dataset", "normalize", "phantom_slice", "read_image", "register_reader",
    "render_phantom", "samples_from_csv", "samples_from_data_json", "samples_from_folders",
    "seed_worker", "supported_suffixes", "to_model_tensor",
]
