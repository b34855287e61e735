"""``scrd experiment``: a grid of variants × seeds from a small YAML file, resumable, one report.

A grid file names the data, the seeds, a base config and the variants (each a preset plus dotted
overrides), and optionally extra scoring options to evaluate on every trained model::

    data: ../shared/data/brain_tumor       # relative to the directory the command runs in
    eval_split: test
    seeds: [111, 112, 113]
    base: {model.arch: mobilenet_v2, train.iterations: 2000}
    variants:
      - {name: knn, preset: knn, group: baselines, about: "memory bank, no training"}
      - {name: rd4ad, preset: rd4ad, group: baselines}
    scorings:
      max: {score: max}

Each (variant, seed) trains into ``OUT/<variant>/seed-<seed>/`` (resumed when it was
interrupted), is calibrated on its held-out normal images (in-sample, labelled so, when it has
none) and evaluated on the labelled split; its summary goes to ``experiment.json`` there, so a
finished run is never repeated. A scoring added to the grid later is scored on the trained models
after every run is trained, without retraining. ``report`` turns the summaries into markdown tables: mean ± std over
the seeds and each seed's value, AUROC, AP, the calibrated threshold's sensitivity and
specificity, α statistics, training time, every extra scoring, and the rank correlation of the
label-free criterion with the real AUROC over the checkpoints of runs that logged both.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ..config import Config, preset
from ..errors import ConfigError
from ..evaluation.metrics import spearman
from ..filenames import CONFIG_FILE, ENV_FILE, EVAL_LOG, HOLDOUT_SAMPLES, MODEL_META, SELECTION_LOG
from ..storage import read_json, write_json

SUMMARY = "experiment.json"


@dataclass
class Variant:
    name: str
    preset: str
    overrides: dict[str, Any]
    group: str = ""
    about: str = ""
    seeds: list[int] | None = None  # this variant's own seeds (e.g. one seed for a sweep); else the grid's


@dataclass
class Grid:
    data: str
    seeds: list[int]
    variants: list[Variant]
    base: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"
    scorings: dict[str, dict[str, Any]] = field(default_factory=dict)
    title: str = "Experiment"

    def seeds_of(self, variant: Variant) -> list[int]:
        return variant.seeds or self.seeds

    def config(self, variant: Variant, seed: int) -> Config:
        return preset(variant.preset).with_overrides({**self.base, **variant.overrides, "train.seed": seed})


def load_grid(path: str | Path) -> Grid:
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the grid file ({exc})") from exc
    # "anchors": settings rows share through YAML anchors (&name / <<: *name); not read here
    unknown = set(spec) - {"data", "seeds", "variants", "base", "eval_split", "scorings", "title", "anchors"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}")
    variants = []
    for item in spec.get("variants", []):
        extra = set(item) - {"name", "preset", "set", "group", "about", "seeds"}
        if extra or "name" not in item:
            raise ConfigError(
                f"{path}: a variant needs a name and may have preset, set, group, about, seeds; got {item}"
            )
        variants.append(
            Variant(
                item["name"],
                item.get("preset", "official"),
                dict(item.get("set") or {}),
                item.get("group", ""),
                item.get("about", ""),
                [int(x) for x in item["seeds"]] if item.get("seeds") else None,
            )
        )
    names = [v.name for v in variants]
    if not variants or len(set(names)) != len(names):
        raise ConfigError(f"{path}: variants must be present and have distinct names")
    grid = Grid(
        str(spec["data"]),
        [int(s) for s in spec.get("seeds", [111])],
        variants,
        dict(spec.get("base") or {}),
        spec.get("eval_split", "test"),
        dict(spec.get("scorings") or {}),
        spec.get("title", "Experiment"),
    )
    from .scoring_variants import variant_scoring

    for variant in grid.variants:  # every config and every scoring on it must be valid before anything runs
        config = grid.config(variant, grid.seeds_of(variant)[0])
        for name, options in grid.scorings.items():
            try:
                variant_scoring(config.scoring, dict(options or {}))
            except ConfigError as exc:
                raise ConfigError(f"{path}: scoring {name!r} on variant {variant.name!r}: {exc}") from None
    return grid


def run_grid(grid: Grid, out: str | Path, only: list[str] | None = None, progress: bool = False) -> list[dict]:
    """Train, calibrate and evaluate every (variant, seed) that has no summary yet."""
    out = Path(out)
    summaries = []
    for variant in grid.variants:
        if only and variant.name not in only:
            continue
        for seed in grid.seeds_of(variant):
            summaries.append(run_one(grid, variant, seed, out / variant.name / f"seed-{seed}", progress))
    # then scorings added to the grid after a run was evaluated: scored on the trained model, no retraining
    for summary in summaries:
        run_dir = out / summary["variant"] / f"seed-{summary['seed']}"
        finished = FinishedRun(run_dir)  # the analyses below share its model and images
        missing = {k: v for k, v in grid.scorings.items() if k not in summary["auroc_by_scoring"]}
        if missing:
            rescore(grid, finished, summary, missing)
        if "alpha_vs_size" not in summary:  # added to the runner after some runs had finished
            variant = next(v for v in grid.variants if v.name == summary["variant"])
            summary["alpha_vs_size"] = alpha_vs_lesion_size(finished, grid.config(variant, summary["seed"]))
            write_json(run_dir / SUMMARY, summary)
        label_free = summary.get("label_free_by_scoring", {})  # None: the run held out no images
        if label_free is not None and set(grid.scorings) - set(label_free):
            summary["label_free_by_scoring"] = label_free_by_scoring(finished, grid.scorings)
            write_json(run_dir / SUMMARY, summary)
        by_scoring = summary.setdefault("alpha_vs_size_by_scoring", {})
        weighing = {k: v for k, v in grid.scorings.items() if v.get("scale_fusion") == "normal_softmax"}
        if missing := {k: v for k, v in weighing.items() if k not in by_scoring}:
            by_scoring.update(scoring_alpha_vs_lesion_size(finished, missing))
            write_json(run_dir / SUMMARY, summary)
    return summaries


class FinishedRun:
    """A finished run's model and held-out normal images, each loaded once, on first use, for the
    analyses that read them (α against lesion size, the label-free criterion of each scoring)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    @cached_property
    def detector(self):
        from ..detector import Detector

        return Detector.load(self.run_dir)

    @cached_property
    def normals(self) -> torch.Tensor | None:
        """The held-out normal images [N, 3, S, S] as the detector reads them; None if it held out none."""
        from ..data.dataset import ImageDataset
        from ..runs.sample_lists import read_sample_list

        path = self.run_dir / HOLDOUT_SAMPLES
        held = read_sample_list(path) if path.is_file() else []
        if not held:
            return None
        dataset = ImageDataset(held, self.detector.image_size, data=self.detector.config.data)
        return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def alpha_vs_lesion_size(run: FinishedRun, config: Config) -> dict | None:
    """α on synthetic lesions of several sizes in the run's held-out normals (:mod:`scrd.lab.alpha_size`);
    None when α plays no part in the run or it held out no images."""
    from .alpha_size import alpha_by_lesion_size

    if not _uses_alpha(config) or (normals := run.normals) is None:
        return None
    detector = run.detector
    if config.scoring.scale_fusion == "normal_softmax":  # the weights the scoring gives each image
        return alpha_by_lesion_size(lambda x: detector.score(x).alpha, normals, detector.config.train.seed)
    return alpha_by_lesion_size(lambda x: detector.features(x).alpha, normals, detector.config.train.seed)


def scoring_alpha_vs_lesion_size(run: FinishedRun, scorings: dict[str, dict[str, Any]]) -> dict[str, dict | None]:
    """The same α-against-lesion-size reading for scorings that weigh each image's scales themselves
    (scale_fusion normal_softmax); None for a memory bank (one map) or a run without held-out images."""
    from .alpha_size import alphas_by_lesion_size
    from .scoring_variants import fusion_weights_of, variant_heads

    detector = run.detector
    normals = None if detector.is_knn else run.normals
    if normals is None:
        return dict.fromkeys(scorings)
    heads = variant_heads(detector, run.run_dir, scorings)
    seed = detector.config.train.seed
    weights = alphas_by_lesion_size(fusion_weights_of(detector, heads), normals, seed)
    return {name: weights.get(name) for name in scorings}  # None: a scoring that weighs no scales


def label_free_by_scoring(run: FinishedRun, scorings: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """The label-free criterion (:mod:`scrd.training.selection`: the run's held-out normals against cut-paste
    and blob anomalies, no real label) of each scoring option; None when the run held out no images.
    The fused scorings' statistics come from the same normal images, as they do in training's selection."""
    from ..anomalies.label_free import validation_set
    from ..training.selection import label_free_aurocs
    from .scoring_variants import variant_heads

    if (normals := run.normals) is None:
        return None
    detector = run.detector
    heads = variant_heads(detector, run.run_dir, scorings)
    images, labels = validation_set(normals, detector.config.train.seed)
    return {name: round(value, 6) for name, value in label_free_aurocs(detector, images, labels, heads).items()}


def rescore(grid: Grid, run: FinishedRun, summary: dict, scorings: dict[str, dict[str, Any]]) -> None:
    """Add the AUROC of ``scorings`` on the grid's evaluation split (and the per-image fusion weights
    of those that set their own) to a finished run's summary; its own evaluation is left as it was."""
    from sklearn.metrics import roc_auc_score

    from ..data.layouts import load_samples
    from ..evaluation.evaluate import alpha_statistics
    from .scoring_variants import score_variants, variant_heads

    detector = run.detector
    heads = variant_heads(detector, run.run_dir, scorings)
    samples = load_samples(str(grid.data), grid.eval_split, detector.config.data)
    labels, scores, weights = score_variants(detector, samples, heads)
    summary.setdefault("auroc_by_scoring", {}).update({k: float(roc_auc_score(labels, v)) for k, v in scores.items()})
    summary.setdefault("alpha_by_scoring", {}).update({k: alpha_statistics(v) for k, v in weights.items()})
    write_json(run.run_dir / SUMMARY, summary)


def run_one(grid: Grid, variant: Variant, seed: int, run_dir: Path, progress: bool = False) -> dict:
    from ..evaluation.calibrate import calibrate
    from ..evaluation.evaluate import evaluate
    from ..training.train import resume, train

    config = grid.config(variant, seed)
    if (run_dir / SUMMARY).is_file():
        _check_trained_as_defined(run_dir, config)
        return read_json(run_dir / SUMMARY)
    started = time.perf_counter()
    eval_source = grid.data if config.train.eval_every else None
    if (run_dir / CONFIG_FILE).is_file():
        resume(run_dir, grid.data, progress=progress, eval_source=eval_source, eval_split=grid.eval_split)
    else:
        train(config, grid.data, run_dir, progress=progress, eval_source=eval_source, eval_split=grid.eval_split)
    calibrate(run_dir, None if config.train.holdout_fraction > 0 else grid.data, "train")
    metrics = evaluate(run_dir, grid.data, run_dir / "evaluation", split=grid.eval_split)
    meta = read_json(run_dir / MODEL_META)
    calibrated = metrics.get("calibrated_threshold", {})
    summary = {
        "variant": variant.name,
        "seed": seed,
        "auroc": metrics["auroc"],
        "ap": metrics["ap"],
        "sensitivity": calibrated.get("sensitivity"),
        "specificity": calibrated.get("specificity"),
        "calibration_in_sample": calibrated.get("in_sample"),
        "alpha": metrics["alpha"],
        # the own maps reduced by mean, max and top k; the grid's scorings are added by run_grid
        "auroc_by_scoring": {k: v for k, v in metrics["auroc_by_image_score"].items() if k != "note"},
        "alpha_by_scoring": {},
        "iterations": meta["iterations"],
        "train_seconds": meta.get("train_seconds"),
        "selection": meta.get("selection"),
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
        "alpha_vs_size": alpha_vs_lesion_size(FinishedRun(run_dir), config),
    }
    write_json(run_dir / SUMMARY, summary)
    return summary


def _check_trained_as_defined(run_dir: Path, config: Config) -> None:
    """A finished run is reused only if it was trained with its row's config: a row edited after its
    runs finished (or a run copied from another grid under a different definition) would otherwise
    report figures under a description they do not match."""
    stored = _by_dotted_key(Config.load(run_dir / CONFIG_FILE))
    defined = _by_dotted_key(config)
    differing = sorted(k for k in stored.keys() | defined.keys() if stored.get(k) != defined.get(k))
    if differing:
        shown = ", ".join(f"{k}: trained {stored.get(k)!r}, row says {defined.get(k)!r}" for k in differing)
        raise ConfigError(
            f"{run_dir}: this finished run was trained with a different config than its row defines ({shown}); "
            "restore the row's definition, or move the run away to train it anew"
        )


def _by_dotted_key(config: Config) -> dict[str, Any]:
    return {f"{section}.{key}": v for section, fields in config.to_dict().items() for key, v in fields.items()}


# ------------------------------------------------------------------------------------ report
def _mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def _scoring_cell(values: list[float | None]) -> str:
    """Mean ± std of a scoring's AUROC, or a dash when some seeds lack it (a scoring added to the grid
    after those runs were evaluated), so a mean never silently covers fewer seeds than its row."""
    present = sum(v is not None for v in values)
    return _mean_std(values) if present == len(values) else f"– ({present} of {len(values)} seeds)"


def _alpha_text(rows: list[dict]) -> str:
    alpha = [x["alpha"] for x in rows if x["alpha"]]
    if not alpha:
        return "–"
    spread = ", ".join(f"{s:.3f}" for s in np.mean([a["std"] for a in alpha], 0))
    return f"{np.mean([a['mean_max_weight'] for a in alpha]):.3f} ({spread})"


def _scoring_alpha_table(scoring_names: list[str], rows: dict[str, list[dict]]) -> list[str]:
    """The per-image scale weights of the scorings that set their own (scale_fusion normal_softmax)."""
    weighing = [s for s in scoring_names if any(s in x.get("alpha_by_scoring", {}) for r in rows.values() for x in r)]
    if not weighing:
        return []
    lines = [
        "## Scale weights of the scoring options that weigh each image",
        "",
        "Mean largest weight over images (1.0: one scale only; 1/3: equal weights), then the std over images "
        "of each scale's weight, averaged over seeds.",
        "",
        "| variant | " + " | ".join(weighing) + " |",
        "|---|" + "---|" * len(weighing),
    ]
    for name, r in rows.items():
        cells = []
        for s in weighing:
            found = [x["alpha_by_scoring"][s] for x in r if s in x.get("alpha_by_scoring", {})]
            cells.append(_alpha_text([{"alpha": a} for a in found]) if len(found) == len(r) else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def label_free_pick(summary: dict, scoring_names: list[str]) -> str | None:
    """The scoring with the highest label-free criterion in a run's summary (the first of equals, in the
    grid's order); None when the run has no criterion for every scoring."""
    criterion = summary.get("label_free_by_scoring") or {}
    if not scoring_names or any(name not in criterion for name in scoring_names):
        return None
    return max(scoring_names, key=lambda name: criterion[name])  # max keeps the first of equals


def _label_free_scoring_tables(scoring_names: list[str], rows: dict[str, list[dict]]) -> list[str]:
    """Choosing the scoring without labels: each run's pick, its real AUROC, and the criterion itself."""
    with_criterion = {
        name: r for name, r in rows.items() if all(label_free_pick(x, scoring_names) is not None for x in r)
    }
    if not with_criterion:
        return []
    lines = [
        "## Scoring option chosen without labels",
        "",
        "For each run, the scoring option above with the highest label-free criterion (the run's held-out "
        "normal images against cut-paste and blob copies of them, the criterion of label-free model "
        "selection; no real label), and the real AUROC of that choice. ρ: Spearman's rank correlation "
        "between the criterion and the real AUROC over the scoring options, mean over seeds.",
        "",
        "| variant | n | AUROC of the label-free choice | AUROC per seed | chosen (per seed) | ρ over scorings |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in with_criterion.items():
        picks = [label_free_pick(x, scoring_names) for x in r]
        aurocs = [x["auroc_by_scoring"].get(p) for x, p in zip(r, picks)]
        rhos = [
            spearman(
                [x["label_free_by_scoring"][s] for s in scoring_names],
                [x["auroc_by_scoring"][s] for s in scoring_names],
            )
            for x in r
            if all(s in x["auroc_by_scoring"] for s in scoring_names)
        ]
        rho = f"{np.mean(rhos):.3f}" if rhos and all(np.isfinite(rhos)) else "–"
        lines.append(
            f"| {name} | {len(r)} | {_scoring_cell(aurocs)} | {_seeds(aurocs)} | {' / '.join(picks)} | {rho} |"
        )
    lines += [
        "",
        "The label-free criterion of each scoring option (mean ± std over seeds):",
        "",
        "| variant | " + " | ".join(scoring_names) + " |",
        "|---|" + "---|" * len(scoring_names),
    ]
    for name, r in with_criterion.items():
        cells = [_mean_std([x["label_free_by_scoring"][s] for x in r]) for s in scoring_names]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _seeds(values: list[float]) -> str:
    return " / ".join("–" if v is None else f"{v:.4f}" for v in values)


def _checkpoint_pairs(run_dir: Path) -> list[tuple[int, float, float]]:
    """(iteration, label-free criterion, real AUROC) of every checkpoint that logged both."""
    if not ((run_dir / SELECTION_LOG).is_file() and (run_dir / EVAL_LOG).is_file()):
        return []
    with open(run_dir / SELECTION_LOG) as f:
        label_free = {int(r["iteration"]): float(r["label_free_auroc"]) for r in csv.DictReader(f)}
    with open(run_dir / EVAL_LOG) as f:
        real = {int(r["iteration"]): float(r["auroc"]) for r in csv.DictReader(f)}
    return [(i, label_free[i], real[i]) for i in sorted(set(label_free) & set(real))]


def _machines(out: Path, grid: Grid, rows: dict[str, list[dict]]) -> list[str]:
    """Where the runs ran (device, CPU, threads, torch) and at which scrd commits, from environment.json."""
    machines: dict[str, int] = {}
    commits: list[str] = []
    for v in grid.variants:
        for seed in grid.seeds_of(v) if v.name in rows else []:
            path = out / v.name / f"seed-{seed}" / ENV_FILE
            if path.is_file():
                e = read_json(path)
                machine = f"{e.get('device')}, {e.get('cpu')} ({e.get('cpu_threads')} threads), torch {e.get('torch')}"
                machines[machine] = machines.get(machine, 0) + 1
                commit = f"{e.get('scrd')} at {e.get('scrd_commit')}"
                commits += [] if commit in commits else [commit]
    if not machines:
        return []
    lines = [f"Ran on: {m} ({n} runs)." for m, n in machines.items()]
    return lines + [f'scrd versions ("+changes": uncommitted edits at run time): {"; ".join(commits)}.', ""]


def _alpha_size_table(rows: dict[str, list[dict]]) -> list[str]:
    """α against the radius of synthetic lesions, for the variants where α acts: one line per variant
    (and per scoring that weighs the scales itself), averaged over its seeds."""
    found: list[tuple[str, list[dict]]] = []
    for name, r in rows.items():
        own = [x["alpha_vs_size"] for x in r if x.get("alpha_vs_size")]
        found += [(name, own)] if own else []
        scorings = dict.fromkeys(k for x in r for k, a in x.get("alpha_vs_size_by_scoring", {}).items() if a)
        for scoring in scorings:
            per_seed = [a for x in r if (a := x.get("alpha_vs_size_by_scoring", {}).get(scoring))]
            found.append((f"{name}, scoring {scoring}", per_seed))
    if not found:
        return []
    radii = found[0][1][0]["radius_fraction"]

    def rho(per_seed: list[dict], k: int) -> str:
        values = [a["spearman"][k] for a in per_seed if a["spearman"][k] is not None]
        return f"{np.mean(values):.3f}" if values else "–"

    def alphas(per_seed: list[dict], i: int) -> str:
        return "(" + ", ".join(f"{v:.3f}" for v in np.mean([a["mean_alpha"][i] for a in per_seed], 0)) + ")"

    lines = [
        "## Scale weights α on synthetic lesions of growing size",
        "",
        "Each held-out normal image gets one smooth intensity blob at each radius "
        f"({', '.join(f'{r:g}' for r in radii)} of the side; same centre and contrast across radii). "
        "ρ_k is Spearman's correlation between the radius and α_k over all these images (ρ_k > 0: scale k, "
        "1 = finest, gains weight as the lesion grows). Means over the seeds (n) of each row; a mean α "
        "over seeds whose α collapsed onto different scales spreads over those scales.",
        "",
        f"| variant | n | ρ_1 / ρ_2 / ρ_3 | mean α at radius {radii[0]:g} | mean α at radius {radii[-1]:g} |",
        "|---|---|---|---|---|",
    ]
    for label, per_seed in found:
        rhos = " / ".join(rho(per_seed, k) for k in range(len(per_seed[0]["spearman"])))
        lines.append(f"| {label} | {len(per_seed)} | {rhos} | {alphas(per_seed, 0)} | {alphas(per_seed, -1)} |")
    return lines + [""]


def _uses_alpha(config: Config) -> bool:
    """Whether α affects the variant's training or its maps (otherwise the scale head is untrained noise),
    or its scoring weighs each image's scales itself (scale_fusion normal_softmax)."""
    loss, scoring = config.loss, config.scoring
    return (
        loss.alpha_placement == "outside"
        or loss.alpha_objective == "separation"
        or scoring.alpha_weighting in ("weighted", "inside_cosine")
        or scoring.scale_fusion == "normal_softmax"
    ) and config.model.method == "scrd"


def report(grid: Grid, out: str | Path, command: str) -> str:
    """Markdown tables of every finished run of the grid."""
    out = Path(out)
    rows: dict[str, list[dict]] = {}
    for variant in grid.variants:
        found = [
            read_json(p)
            for seed in grid.seeds_of(variant)
            if (p := out / variant.name / f"seed-{seed}" / SUMMARY).is_file()
        ]
        if found:
            rows[variant.name] = found
    lines = [
        f"# {grid.title}",
        "",
        "Produced by the experiment runner; every figure below was printed by:",
        "",
        f"    {command}",
        "",
        f"Data: `{grid.data}`, evaluated on its `{grid.eval_split}` split; seeds {grid.seeds} unless a row "
        "gives its own (column n: how many). Values are mean ± std over a row's seeds, then each seed's value. "
        "Thresholds are calibrated on normal images only "
        "(95 % target specificity); no run is selected on the labels of the evaluated split.",
        "",
    ]
    lines += _machines(out, grid, rows)
    unfinished = [
        f"{v.name} ({len(rows.get(v.name, []))} of {len(grid.seeds_of(v))} seeds)"
        for v in grid.variants
        if len(rows.get(v.name, [])) < len(grid.seeds_of(v))
    ]
    if unfinished:  # the same command resumes them
        lines += [f"Not finished yet (rerun the command to resume): {', '.join(unfinished)}.", ""]
    groups: dict[str, list[Variant]] = {}
    for variant in grid.variants:
        if variant.name in rows:
            groups.setdefault(variant.group or "Results", []).append(variant)
    for group, variants in groups.items():
        lines += [
            f"## {group}",
            "",
            "| variant | n | AUROC | AUROC per seed | AP | sens. / spec. at calibrated thr. "
            "| α: mean largest weight (std over images per scale) | training min | what it is |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for v in variants:
            r = rows[v.name]
            sens = _mean_std([x["sensitivity"] for x in r])
            spec = _mean_std([x["specificity"] for x in r])
            minutes = f"{np.mean([(x['train_seconds'] or 0) / 60 for x in r]):.1f}"
            aurocs = [x["auroc"] for x in r]
            lines.append(
                f"| {v.name} | {len(r)} | {_mean_std(aurocs)} | {_seeds(aurocs)} | {_mean_std([x['ap'] for x in r])} "
                f"| {sens} / {spec} | {_alpha_text(r) if _uses_alpha(grid.config(v, r[0]['seed'])) else '–'} "
                f"| {minutes} | {v.about} |"
            )
        lines.append("")
    # the grid's own scorings, in its order (a run's built-in mean/max/top_k use its own options)
    scoring_names = list(grid.scorings)
    if scoring_names:
        lines += [
            "## AUROC of each scoring option on the same trained models",
            "",
            "| variant | " + " | ".join(scoring_names) + " |",
            "|---|" + "---|" * len(scoring_names),
        ]
        for name, r in rows.items():
            cells = [_scoring_cell([x["auroc_by_scoring"].get(s) for x in r]) for s in scoring_names]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _label_free_scoring_tables(scoring_names, rows)
    lines += _scoring_alpha_table(scoring_names, rows)
    lines += _alpha_size_table(rows)
    pairs = {
        f"{v.name}/seed-{s}": _checkpoint_pairs(out / v.name / f"seed-{s}")
        for v in grid.variants
        if v.name in rows
        for s in grid.seeds_of(v)
    }
    pairs = {k: p for k, p in pairs.items() if len(p) >= 3}
    if pairs:
        pooled = [q for p in pairs.values() for q in p]
        lines += [
            "## Label-free selection criterion against the real AUROC",
            "",
            "Over the checkpoints of runs that logged both (the criterion never sees a real label; the real "
            "AUROC is logged only to measure it):",
            "",
            "| run | checkpoints | Spearman ρ |",
            "|---|---|---|",
        ]
        for key, p in pairs.items():
            lines.append(f"| {key} | {len(p)} | {spearman([q[1] for q in p], [q[2] for q in p]):.3f} |")
        lines += [
            f"| all, pooled | {len(pooled)} | {spearman([q[1] for q in pooled], [q[2] for q in pooled]):.3f} |",
            "",
        ]
    return "\n".join(lines)
