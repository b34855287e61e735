"""``scrd benchmark --deploy``: the default detector's scoring speed against the released code's, in one process.

On the same image files and architecture (random weights unless installed ones are asked for), one
process measures, in this order:

1. the **reference**: the ``official`` preset (the released code's computation) in strict fp32 at batch
   1, contiguous tensors and the default allocator, scoring the files as the evaluation loop does;
2. then, with the allocator tuned as every scrd job tunes it, ``scrd predict``'s path for the default
   preset (reading the files, scoring in batches, writing predictions.csv; heat-map images off, as
   their drawing is not scoring), in fp32 (``--precision auto``) and with the networks in bf16
   (``--precision bf16``; the bank search and the maps stay float32);
3. the default detector's student alone, and 4. its memory-bank search alone, on batches in memory;
5. ONNX Runtime on the exported graph of the default detector (the bank inside it).

The bank has the size the default preset fits on ``train_images`` normal images (its rows are drawn
from the scored images' patches: speed and memory, not accuracy, are measured) and its normal
statistics come from the images scored.
Each figure is images/s and its ratio to the reference; absolute figures drift between runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import preset
from ..data.layouts import collect_samples
from ..data.phantom import make_phantom_dataset
from ..detector import Detector
from ..filenames import MODEL_FILE
from ..model import SCRD, load_teacher_weights
from ..runs.runtime import Runtime
from ..scoring.bank import patch_vectors
from ..scoring.head import BankSearch


def _seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def _network(arch: str, weights: str) -> SCRD:
    torch.manual_seed(0)
    model = SCRD(arch).eval()
    load_teacher_weights(model.teacher, weights)
    return model


def default_detector(
    arch: str,
    image_size: int,
    weights: str,
    train_images: int,
    files: list[str],
    bank_fraction: float | None = None,
    bank_search: str = "exact",
) -> Detector:
    """The default preset on ``arch`` with a bank of the size it fits on ``train_images`` images (at
    ``bank_fraction`` of the patches instead of the preset's ``knn.fraction`` if given: a coreset of
    that fraction has that size): rows drawn from the patch vectors of ``files`` (with a little noise,
    so no two are equal), at the scale real patches have, which the map's numerics depend on."""
    from ..data.transforms import normalize

    overrides = {"model.arch": arch, "model.image_size": image_size, "model.weights": weights, "train.device": "cpu"}
    if bank_fraction is not None:
        overrides["knn.fraction"] = bank_fraction
    overrides["knn.search"] = bank_search
    config = preset("denoising_knn").with_overrides(overrides)
    network = _network(arch, weights)
    images = torch.stack([Detector.from_network(network, config, torch.device("cpu")).load_image(f) for f in files])
    with torch.no_grad():
        grid = patch_vectors(network.teacher(normalize(images[:16])), config.knn.scales, config.knn.pool)
    vectors = grid.permute(0, 2, 3, 1).reshape(-1, grid.shape[1])
    rows = max(1, round(train_images * grid.shape[2] * grid.shape[3] * config.knn.fraction))
    generator = torch.Generator().manual_seed(0)
    picked = vectors[torch.randint(len(vectors), (rows,), generator=generator)]
    bank = picked + 0.1 * vectors.std(0) * torch.randn(picked.shape, generator=generator)
    detector = Detector.from_network(network, config, torch.device("cpu"), {}, bank=bank)
    detector.fit_statistics(iter([images[:16]]))
    return detector


def run_deploy_benchmark(
    arch: str = "wide_resnet50_2",
    image_size: int = 256,
    images: int = 32,
    batch_size: int = 16,
    train_images: int = 1000,
    weights: str = "none",
    repeats: int = 2,
    onnx: bool = True,
    bank_fraction: float | None = None,
    bank_search: str = "exact",
) -> dict[str, Any]:
    """Measure the five paths and print them; returns every figure."""
    from ..allocator import tune_malloc
    from ..evaluation.scored_set import score_samples
    from ..inference.predict import predict

    work = Path(tempfile.mkdtemp(prefix="scrd-deploy-bench-"))
    data = make_phantom_dataset(work / "data", n_train=0, n_test_normal=2 * images, n_test_abnormal=0, size=image_size)
    every = sorted(str(p) for p in (data / "images").glob("*.png"))
    files = every[:images]
    rows: dict[str, dict[str, Any]] = {}

    official = preset("official").with_overrides(
        {"model.arch": arch, "model.image_size": image_size, "model.weights": weights}
    )
    reference = Detector.from_network(_network(arch, weights), official, torch.device("cpu"), {}, "fp32", False)
    samples = collect_samples(files, official.data)
    seconds = _seconds(lambda: score_samples(reference, samples, Runtime(batch_size=1, device="cpu")), 1)
    rows["reference"] = {"what": "official preset, fp32, batch 1, NCHW, default allocator", "s": seconds / len(files)}

    tune_malloc()
    detector = default_detector(arch, image_size, weights, train_images, files, bank_fraction, bank_search)
    run = work / "model"
    detector.save(run)
    rows["bank"] = {"rows": int(detector.head.bank.shape[0]), "dims": int(detector.head.bank.shape[1])}
    model_mb = (run / MODEL_FILE).stat().st_size / 2**20

    def predict_seconds(inputs: list[str], precision: str) -> float:
        started = time.perf_counter()
        out = work / f"pred-{time.perf_counter_ns()}"
        runtime = Runtime(batch_size=batch_size, device="cpu", precision=precision)
        predict(run, inputs, out, runtime, heatmaps=False, panels=False)
        return time.perf_counter() - started

    for precision in ("auto", "bf16"):
        predict_seconds(files[:batch_size], precision)  # warm-up
        # the steady rate: the time 2N images take over the time N take, so the start-up (loading and
        # hashing the model file) is left out of the rate and reported apart
        once, twice = predict_seconds(files, precision), predict_seconds(every, precision)
        # (on a loaded machine the difference can vanish: then the whole run's rate, start-up included)
        per_image = (twice - once) / len(files) if twice > once else twice / len(every)
        rows["predict" if precision == "auto" else "predict_bf16"] = {
            "what": f"scrd predict, default preset (--precision {precision}), batch {batch_size}, steady rate",
            "s": per_image,
        }
        if precision == "auto":
            rows["predict_startup_seconds"] = round(once - per_image * len(files), 2)
    loaded = Detector.load(run, "cpu")
    batch = torch.stack([loaded.load_image(f) for f in files[:batch_size]])
    student = loaded.head.with_options(memory_bank_weight=0.0).copy_statistics_from(loaded.head)
    features = loaded.features(batch)
    rows["student"] = {
        "what": "the student alone (network pass + maps), batch " + str(batch_size),
        "s": _seconds(lambda: loaded.score_heads(batch, {"s": student}), repeats) / len(batch),
    }
    search = loaded.head.bank_search
    rows["bank_search"] = {
        "what": f"the memory-bank search alone ({search.kind}), batch {batch_size}",
        "s": _seconds(lambda: loaded.head.unsmoothed_bank_map(features.teacher), repeats) / len(batch),
    }
    if search.kind != "exact":
        exact = loaded.head.with_bank_search(BankSearch("exact"))
        rows["exact_bank_search"] = {
            "what": f"the exact search of the same bank, batch {batch_size}",
            "s": _seconds(lambda: exact.unsmoothed_bank_map(features.teacher), repeats) / len(batch),
        }
        rows["recall_at_1"] = loaded.head.recall_against_exact(features.teacher)
        rows["index_build_seconds"] = round(loaded.head.bank_index().build_seconds, 1)
    rows["default_in_memory"] = {
        "what": "the default detector on a batch in memory (student + bank)",
        "s": _seconds(lambda: loaded.score(batch), repeats) / len(batch),
    }
    if onnx:
        from ..deploy.onnx_export import export_onnx
        from ..deploy.ort_detector import OrtDetector

        started = time.perf_counter()
        export_onnx(run, work / "model.onnx")
        rows["export_seconds"] = round(time.perf_counter() - started, 1)
        ort = OrtDetector.load(work / "model.onnx", "cpu")
        rows["onnxruntime"] = {
            "what": "ONNX Runtime, the exported default detector, batch " + str(batch_size),
            "s": _seconds(lambda: ort.score(batch), repeats) / len(batch),
        }
    reference_rate = 1 / rows["reference"]["s"]
    print(
        f"{arch}, {image_size} px, {len(files)} images, {torch.get_num_threads()} threads; default bank "
        f"{rows['bank']['rows']} x {rows['bank']['dims']} (fitted on {train_images} images would be this size), "
        f"model.pt {model_mb:.1f} MiB"
    )
    print(f"  {'path':<72}{'img/s':>8}{'x ref':>8}")
    for row in rows.values():
        if isinstance(row, dict) and "s" in row:
            rate = 1 / row["s"]
            row["images_per_s"], row["x_reference"] = rate, rate / reference_rate
            print(f"  {row['what']:<72}{rate:>8.2f}{rate / reference_rate:>8.2f}")
    ratio = rows["bank_search"]["s"] / rows["student"]["s"]
    print(
        f"  bank search / student pass: {ratio:.2f}; "
        f"predict's start-up (load, hash) {rows['predict_startup_seconds']} s"
    )
    if "recall_at_1" in rows:
        print(
            f"  {search.kind} search (lists {loaded.head.bank_index().lists}, probe {search.probe}): "
            f"recall@1 {rows['recall_at_1']:.4f} against the exact search, index built in "
            f"{rows['index_build_seconds']} s at load"
        )
    return {**rows, "model_pt_mib": model_mb, "bank_over_student": ratio}
