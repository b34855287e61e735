"""``scrd benchmark``: training and inference throughput, and the share of noise synthesis and map
smoothing in a step. Figures are measured in one process, so their ratios are comparable."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch


def _timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def measure(
    arch: str,
    image_size: int = 256,
    batch_size: int = 16,
    steps: int = 5,
    device: str = "auto",
    weights: str = "none",
    noise_field: str = "fixed",
) -> dict[str, float]:
    from ..config import preset
    from ..data.transforms import normalize
    from ..device import choose_device
    from ..method.anomaly_map import anomaly_map, gaussian_smooth, image_score
    from ..method.loss_step import scrd_loss
    from ..method.synthesis import AnomalySynthesizer
    from ..model import build_model

    dev = choose_device(device)
    model, _ = build_model(arch, weights)
    model.to(dev)
    config = preset("official").with_overrides({"noise.field": noise_field})
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=config.train.lr, betas=config.train.betas)
    synth = AnomalySynthesizer(config.noise, seed=config.train.seed)
    images = torch.rand(batch_size, 3, image_size, image_size, device=dev)

    def train_step() -> None:
        noisy = normalize(synth(images)[0])
        terms, _ = scrd_loss(model, normalize(images), noisy, config.loss, noisy_branch=config.train.noisy_branch)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        optimizer.step()

    model.train()
    t_train = _timed(train_step, dev, steps)
    t_noise = _timed(lambda: synth(images), dev, steps)

    model.eval()
    with torch.no_grad():
        out = model(normalize(images))
        raw = anomaly_map(out.teacher, out.student, image_size, sigma=0.0)

        def infer() -> None:
            o = model(normalize(images))
            image_score(anomaly_map(o.teacher, o.student, image_size, sigma=4.0), "mean")

        t_infer = _timed(infer, dev, steps)
        t_smooth = _timed(lambda: gaussian_smooth(raw, 4.0), dev, steps)
    return {
        "train_images_per_s": batch_size / t_train,
        "infer_images_per_s": batch_size / t_infer,
        "train_step_s": t_train,
        "noise_s": t_noise,
        "noise_share_of_train_step": t_noise / t_train,
        "infer_batch_s": t_infer,
        "smooth_s": t_smooth,
        "smooth_share_of_infer_batch": t_smooth / t_infer,
        "noise_plus_smooth_share_of_train_step": (t_noise + t_smooth) / t_train,
    }


def run_throughput(
    archs: Sequence[str],
    image_size: int = 256,
    batch_size: int = 16,
    steps: int = 5,
    device: str = "auto",
    weights: str = "none",
) -> list[dict[str, float]]:
    rows = []
    print(
        f"batch {batch_size}, {image_size} px, median of {steps} steps after a warm-up; "
        f"threads {torch.get_num_threads()}"
    )
    print(f"{'arch (noise)':<26}{'train img/s':>12}{'infer img/s':>12}{'noise/train':>13}{'smooth/infer':>14}")
    for arch in archs:
        for field in ("fixed", "fresh"):
            r = measure(arch, image_size, batch_size, steps, device, weights, field)
            r.update(arch=arch, noise_field=field)
            rows.append(r)
            print(
                f"{arch + ' (' + field + ')':<26}{r['train_images_per_s']:>12.2f}{r['infer_images_per_s']:>12.2f}"
                f"{r['noise_share_of_train_step']:>12.1%}{r['smooth_share_of_infer_batch']:>14.1%}"
            )
    return rows
