"""Fitting a memory bank of normal teacher patches: the knn method's "training", and the bank that
``model.memory_bank`` fits beside a trained student.

No optimisation: the frozen teacher embeds every normal training image once and a fraction of the
patches becomes the bank (:func:`scrd.scoring.bank.fit_bank`).
"""

from __future__ import annotations

import torch

from ..config import Config
from ..data.dataset import ImageDataset, make_loader
from ..data.transforms import normalize
from ..device import autocast, choose_device, memory_format, resolve_precision
from ..model import TeacherOnly, load_teacher_weights
from ..scoring.bank import fit_bank, patch_vectors


def fit_memory_bank(
    config: Config, samples: list, progress: bool
) -> tuple[TeacherOnly, torch.Tensor, str, torch.device]:
    """(the teacher, the bank [N, C] on the device, a description of the teacher weights, the device)."""
    device = choose_device(config.train.device)
    precision = resolve_precision(config.train.precision, device)
    fmt = memory_format(config.train.channels_last)
    network = TeacherOnly(config.model.arch)
    weights_note = load_teacher_weights(network.teacher, config.model.weights)
    network.to(device).to(memory_format=fmt).eval()
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
                yield patch_vectors(network(x), config.knn.scales, config.knn.pool).float().cpu()
            if bar is not None:
                bar.update(len(batch["image"]))

    bank = fit_bank(embeddings(), config.knn.fraction, config.knn.sampling, config.train.seed)
    if bar is not None:
        bar.close()
    return network, bank.to(device), weights_note, device
