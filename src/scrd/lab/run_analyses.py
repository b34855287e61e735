"""Analyses of a finished run for the experiment tables: the label-free choice of its image score
against every fixed choice, and other memory banks (sizes, coreset) against its own.

Each writes the per-image scores it measured into the run directory (``*.npz``: paths, labels and one
score array per option), so that any two options, or two runs on the same images, can be compared
with DeLong's paired test afterwards (:func:`paired_table`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..data.layouts import load_samples
from ..evaluation.intervals import paired_delong, verdict
from ..evaluation.normal_reference import measure_on_normals, reference_samples
from ..filenames import TRAIN_SAMPLES
from ..runs.output import SEARCH_OPTIONS as JOB_SEARCH_OPTIONS
from ..runs.sample_lists import read_sample_list
from .scoring_variants import score_variants

CHOICE_SCORES = "scoring_candidates.npz"  # the candidates' scores on the evaluated images
BANK_SCORES = "bank_variants.npz"


def _save_scores(path: Path, paths: list[str], labels: np.ndarray, scores: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, paths=np.array(paths), labels=labels, **{f"s_{k}": v for k, v in scores.items()})


def _with_earlier(path: Path, paths: list[str], scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``scores`` plus the options an earlier analysis saved at ``path`` on the same images: a bank
    added to a grid later is analysed alone, and must not drop the scores of the banks before it
    (the paired tests read them)."""
    if not path.is_file():
        return scores
    earlier_paths, _, earlier = load_scores(path)
    if earlier_paths != paths:
        return scores
    return {**earlier, **scores}


def load_scores(path: Path) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    data = np.load(path)
    return list(data["paths"]), data["labels"], {k[2:]: data[k] for k in data.files if k.startswith("s_")}


def _eval_samples(run, grid) -> list:
    return load_samples(str(grid.data), grid.eval_split, run.detector.config.data)


def choice_analysis(run, grid) -> dict[str, Any] | None:
    """The label-free choice among the candidate scorings (:mod:`scrd.training.scoring_choice`) on the
    run's held-out normals, and the real AUROC of every candidate on the grid's evaluation split."""
    from ..training.scoring_choice import candidates, choose_scoring

    normals = run.normals
    if normals is None or len(normals) < 4:
        return None
    detector = run.detector
    _, record = choose_scoring(detector, normals, detector.config.train.seed)
    options = candidates(detector.config.scoring, detector.head.has_student)
    heads = {name: detector.head.variant(scoring) for name, scoring in options.items()}
    measure_on_normals(detector, reference_samples(run.run_dir), list(heads.values()))
    samples = _eval_samples(run, grid)
    paths, labels, scores, _ = score_variants(detector, samples, heads)
    _save_scores(run.run_dir / CHOICE_SCORES, paths, labels, scores)
    real = {name: float(roc_auc_score(labels, values)) for name, values in scores.items()}
    best = max(real, key=real.get)
    return {
        "chosen": record["chosen"],
        "configured": record["configured"],
        "auroc_chosen": real[record["chosen"]],
        "auroc_configured": real[record["configured"]],
        "best_in_hindsight": best,
        "auroc_best": real[best],
        "auroc_by_candidate": real,
        "criterion_by_candidate": {name: row["auroc"] for name, row in record["candidates"].items()},
        "paired_chosen_vs_configured": paired_delong(labels, scores[record["chosen"]], scores[record["configured"]]),
    }


# how a bank is searched, not which rows it holds: the knn options that --set may change on a trained model
SEARCH_OPTIONS = {key.removeprefix("knn.") for key in JOB_SEARCH_OPTIONS}


def bank_analysis(run, grid, banks: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """For a run with a memory bank (or the knn method): each bank variant (``{sampling, fraction}``)
    fitted on the run's training images with its teacher, scored with the run's own scoring (statistics
    measured anew on the held-out normals), against the run's own bank: AUROC, rows, search time.
    A variant of search options only (``{search: ivf, ivf_probe: 16}``) searches the run's own bank
    that way, with the run's own statistics, and records its recall@1 against the exact search."""
    from ..training.fit_bank import fit_memory_bank

    detector = run.detector
    if not detector.head.has_bank:
        return None
    trained_on = read_sample_list(run.run_dir / TRAIN_SAMPLES)
    samples = _eval_samples(run, grid)
    heads = {"own": detector.head}
    fitted: dict[str, Any] = {"own": {"rows": int(detector.head.bank.shape[0]), "fit_seconds": None}}
    searched_only = set()
    for name, options in banks.items():
        config = detector.config.with_overrides({f"knn.{k}": v for k, v in options.items()})
        if set(options) <= SEARCH_OPTIONS:
            heads[name] = detector.head.with_search_of(config.knn)
            fitted[name] = {"rows": int(detector.head.bank.shape[0]), "fit_seconds": None}
            searched_only.add(name)
            continue
        started = time.perf_counter()
        bank = fit_memory_bank(config, trained_on, progress=False)[1].to(detector.device)
        head = detector.head.variant(detector.config.scoring)
        head.bank, head.bank_patches = bank, (tuple(config.knn.scales), int(config.knn.pool))
        heads[name] = head
        fitted[name] = {"rows": int(bank.shape[0]), "fit_seconds": round(time.perf_counter() - started, 1)}
    refitted = [h for n, h in heads.items() if n != "own" and n not in searched_only]
    if refitted:
        measure_on_normals(detector, reference_samples(run.run_dir), refitted)
    paths, labels, scores, _ = score_variants(detector, samples, heads)
    _save_scores(run.run_dir / BANK_SCORES, paths, labels, _with_earlier(run.run_dir / BANK_SCORES, paths, scores))
    images = torch.stack([detector.load_image(s.path, s.frame) for s in samples[:16]])
    teacher = detector.features(images).teacher
    for name, head in heads.items():
        head.unsmoothed_bank_map(teacher)  # warm-up
        started = time.perf_counter()
        head.unsmoothed_bank_map(teacher)
        fitted[name]["search_seconds_per_image"] = (time.perf_counter() - started) / len(images)
        fitted[name]["auroc"] = float(roc_auc_score(labels, scores[name]))
        if name in searched_only:
            fitted[name]["recall_at_1"] = head.recall_against_exact(teacher)  # on these 16 images' patches
        if name != "own":
            fitted[name]["paired_vs_own"] = paired_delong(labels, scores[name], scores["own"])
    return fitted


def paired_table(out: Path, pairs: list[tuple[str, str]], seeds_of: dict[str, list[int]]) -> list[str]:
    """Markdown rows of DeLong's paired test for each (a, b) pair of rows, seed by seed, on the images
    both runs scored. A row name ``variant`` compares its own scores; ``variant:candidate`` one of its
    candidate scorings (the choice analysis)."""
    lines = []
    for a, b in pairs:
        cells = []
        for seed in sorted(set(seeds_of.get(a.split(":")[0], [])) & set(seeds_of.get(b.split(":")[0], []))):
            first, second = _scores_of(out, a, seed), _scores_of(out, b, seed)
            if first is None or second is None:
                cells.append(f"{seed}: –")
                continue
            shared = sorted(set(first[0]) & set(second[0]))
            ia, ib = ({p: i for i, p in enumerate(s[0])} for s in (first, second))
            labels = np.array([first[1][ia[p]] for p in shared])
            test = paired_delong(labels, first[2][[ia[p] for p in shared]], second[2][[ib[p] for p in shared]])
            cells.append(f"{seed}: {test['difference']:+.4f} (p {test['p']:.2g}, {verdict(test)})")
        lines.append(f"| {a} | {b} | " + "; ".join(cells) + " |")
    return lines


def _scores_of(out: Path, name: str, seed: int) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    variant, _, option = name.partition(":")
    run_dir = out / variant / f"seed-{seed}"
    if not option:  # the run's own scores, as its evaluation wrote them
        from ..filenames import SCORES_FILE
        from ..runs.run_logs import read_scores

        path = run_dir / "evaluation" / SCORES_FILE
        if not path.is_file():
            return None
        own = read_scores(path)
        return own.paths, own.labels, own.scores
    path = run_dir / (BANK_SCORES if option.startswith("bank=") else CHOICE_SCORES)
    if not path.is_file():
        return None
    paths, labels, scores = load_scores(path)
    key = option.removeprefix("bank=")
    return (paths, labels, scores[key]) if key in scores else None
