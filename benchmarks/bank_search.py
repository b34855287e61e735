"""Ways of searching a trained run's memory bank, on the same real patches: time and recall@1.

The run's own bank and the teacher's patches of the first ``--images`` evaluation images of its data
(normal and abnormal, as the grid evaluates them); each way's search time per image (after a warm-up,
in one process, so ratios hold while absolute times drift) and its recall@1 against the exact search,
with the mean and the 99th percentile of its relative distance error. scrd's own ivf index beside
faiss's IndexIVFFlat with the same lists and probe (faiss-cpu where installed; not a dependency of
scrd) and faiss's HNSW:

    pip install faiss-cpu==1.15.1   # optional, for the faiss rows
    python benchmarks/bank_search.py runs/default-brain/denoising_knn_cosine_4000/seed-111 \
        --data ../shared/data/brain_tumor
"""

from __future__ import annotations

import argparse
import time

import torch

from scrd.data.layouts import load_samples
from scrd.detector import Detector
from scrd.scoring.bank import nearest_distance, patch_vectors
from scrd.scoring.bank_index import IvfIndex, recall_at_1


def _timed(search, repeats: int = 2) -> tuple[torch.Tensor, float]:
    found = search()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        found = search()
    return found, (time.perf_counter() - started) / repeats


def _faiss_rows(bank: torch.Tensor, queries: torch.Tensor, lists: int, probe: int) -> dict:
    try:
        import faiss
    except ImportError:
        print("faiss not installed: its rows are skipped (pip install faiss-cpu==1.15.1)")
        return {}
    x, q = bank.numpy(), queries.numpy()
    rows = {}
    started = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(x.shape[1]), x.shape[1], lists)
    ivf.train(x)
    ivf.add(x)
    ivf.nprobe = probe
    built = time.perf_counter() - started
    found, seconds = _timed(lambda: torch.from_numpy(ivf.search(q, 1)[0][:, 0]).clamp_min(0).sqrt())
    rows[f"faiss IndexIVFFlat (lists {lists}, probe {probe})"] = (found, seconds, built)
    started = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(x.shape[1], 32)
    hnsw.add(x)
    built = time.perf_counter() - started
    found, seconds = _timed(lambda: torch.from_numpy(hnsw.search(q, 1)[0][:, 0]).clamp_min(0).sqrt())
    rows["faiss IndexHNSWFlat (M 32, efSearch 16)"] = (found, seconds, built)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a trained run with a memory bank")
    parser.add_argument("--data", required=True, help="its data folder (the evaluation split's first images)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--probe", type=int, nargs="+", default=[8, 16, 32])
    args = parser.parse_args()

    detector = Detector.load(args.run, "cpu", "fp32")
    samples = load_samples(args.data, args.split, detector.config.data)
    step = max(1, len(samples) // args.images)  # spread over the sorted split: normal and abnormal
    images = torch.stack([detector.load_image(s.path, s.frame) for s in samples[::step][: args.images]])
    scales, pool = detector.head.bank_patches
    with torch.no_grad():
        grid = patch_vectors(detector.features(images).teacher, scales, pool)
    queries = grid.permute(0, 2, 3, 1).reshape(-1, grid.shape[1]).contiguous()
    bank = detector.head.bank.float().contiguous()
    print(f"bank {tuple(bank.shape)}, {len(images)} images, {len(queries)} patches, {torch.get_num_threads()} threads")

    exact, exact_seconds = _timed(lambda: nearest_distance(queries, bank))
    rows = {"exact (the reference)": (exact, exact_seconds, 0.0)}
    index = IvfIndex(bank)
    for probe in args.probe:
        found, seconds = _timed(lambda probe=probe: index.distances(queries, probe))
        rows[f"scrd ivf (lists {index.lists}, probe {probe})"] = (found, seconds, index.build_seconds)
    rows.update(_faiss_rows(bank, queries, index.lists, 16))

    print(f"  {'search':<44}{'ms/img':>8}{'x exact':>9}{'recall@1':>10}{'err mean':>10}{'err p99':>9}{'build s':>9}")
    for name, (found, seconds, built) in rows.items():
        error = (found / exact.clamp_min(1e-12) - 1).clamp_min(0)
        print(
            f"  {name:<44}{seconds / len(images) * 1000:>8.1f}{exact_seconds / seconds:>9.1f}"
            f"{recall_at_1(found, exact):>10.4f}{float(error.mean()):>10.2e}{float(error.quantile(0.99)):>9.2e}"
            f"{built:>9.1f}"
        )


if __name__ == "__main__":
    main()
