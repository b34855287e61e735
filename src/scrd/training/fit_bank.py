"""``scrd train`` with ``model.method = knn``: fit the memory-bank reference detector.

No optimisation: the frozen teacher embeds every normal training image once, a fraction of the
patches becomes the bank, and the result is saved like a trained SCRD model (``model.pt`` holds
the teacher and the bank), so ``evaluate``, ``calibrate`` and ``predict`` use it unchanged.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..data.dataset import ImageDataset, make_loader
from ..data.transforms import normalize
from ..device import autocast, choose_device, memory_format, resolve_precision
from ..model import load_teacher_weights
from ..scoring.bank import PatchMemoryBank


def fit_memory_bank(config: Config, samples: list, progress: bool) -> tuple[PatchMemoryBank, str, torch.device]:
    """The fitted bank model, a description of its teacher weights, and the device it is on."""
    device = choose_device(config.train.device)
    precision = resolve_precision(config.train.precision, device)
    fmt = memory_format(config.train.channels_last)
    model = PatchMemoryBank(config.model.arch, config.knn.scales, config.knn.pool)
    weights_note = load_teacher_weights(model.teacher, config.model.weights)
    model.to(device).to(memory_format=fmt).eval()
    dataset = ImageDataset(samples, config.model.image_size, data=config.data)
    loader = make_loader(dataset, 32, config.train.num_workers, device.type == "cuda")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset), desc="memory bank", unit="img", dynamic_ncols=True)

    def embeddings():
        for batch in loader:
            x = normalize(batch["image"].to(device)).contiguous(memory_format=fmt)
            with torch.no_grad(), autocast(device, precision):
                yield model.embed(x).float().cpu()
            if bar is not None:
                bar.update(len(batch["image"]))

    model.fit(embeddings(), config.knn.fraction, config.knn.sampling, config.train.seed)
    if bar is not None:
        bar.close()
    model.bank = model.bank.to(device)
    return model, weights_note, device
