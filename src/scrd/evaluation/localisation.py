"""Where the heat map points, on data with lesion masks: pixel AUROC and how much of each abnormal
image's hottest 1 % lies in its lesion.

A mask is found beside an abnormal image: ``masks/<file name>`` in the folder next to the image's own
folder (the phantom generator writes them; a MedIAnomaly folder with ``images/`` and ``masks/`` works
the same), non-zero inside the lesion, resized to the map (nearest). Normal images add negatives only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score

from ..detector import Detector
from ..filenames import MASKS_DIR

PIXEL_STRIDE = 4  # every 4th pixel of each map enters the pixel AUROC (a map is smooth at that scale)
TOP_SHARE = 0.01  # the hottest 1 % of an image's pixels


def mask_path(image: str | Path) -> Path:
    image = Path(image)
    return image.parent.parent / MASKS_DIR / image.name


def localisation(
    detector: Detector,
    samples: list,
    batch_size: int = 16,
    max_normals: int = 64,
    on_bad_image: str | None = None,
) -> dict[str, Any] | None:
    """Pixel AUROC and the hottest 1 %'s share inside the lesion (mean over the abnormal images with a
    mask); None when no abnormal image has one."""
    masked = [s for s in samples if s.label == 1 and s.frame is None and mask_path(s.path).is_file()]
    if not masked:
        return None
    normals = [s for s in samples if s.label == 0][:max_normals]
    by_path = {str(s.path): s for s in masked}
    values, truth, shares = [], [], []
    for batch in detector.loader(masked + normals, batch_size, on_bad_image=on_bad_image):
        if not len(batch["image"]):  # every image of the batch was unreadable (and skipped)
            continue
        maps = detector.score(batch["image"]).maps
        for amap, path, label in zip(maps, batch["path"], batch["label"].tolist()):
            if label == 1:
                mask = _mask(by_path[path].path, amap.shape)
                hottest = amap.flatten().topk(max(1, int(amap.numel() * TOP_SHARE))).indices
                shares.append(float(mask.flatten()[hottest].float().mean()))
            else:
                mask = torch.zeros(amap.shape, dtype=torch.bool)
            values.append(amap[::PIXEL_STRIDE, ::PIXEL_STRIDE].flatten().numpy())
            truth.append(mask[::PIXEL_STRIDE, ::PIXEL_STRIDE].flatten().numpy())
    truth_all = np.concatenate(truth)
    return {
        "images_with_masks": len(shares),
        "normal_images": len(values) - len(shares),
        "pixel_auroc": float(roc_auc_score(truth_all, np.concatenate(values))) if truth_all.any() else None,
        "top1_in_lesion": float(np.mean(shares)),
        "note": f"pixel AUROC over every {PIXEL_STRIDE}th pixel; top1_in_lesion: the share of each abnormal "
        "image's hottest 1 % of pixels inside its lesion mask, mean over the images",
    }


def _mask(path: Path, shape: tuple[int, int]) -> torch.Tensor:
    mask = torch.from_numpy(np.asarray(Image.open(mask_path(path)).convert("L")) > 0)
    return F.interpolate(mask[None, None].float(), size=tuple(shape), mode="nearest")[0, 0] > 0.5
