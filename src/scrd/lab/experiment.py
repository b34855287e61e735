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
finished run is never repeated. A row with ``student_from: <earlier row>`` trains nothing: it keeps
that row's trained students (seed by seed) and refits only what its own knn.* and scoring.* options
change (the memory bank, the statistics, the threshold; :mod:`scrd.training.refit`); a row's
``analyses: false`` spares it the grid's choice and banks analyses. A scoring
added to the grid later is scored on the trained models after every run is trained, without
retraining. ``report`` turns the summaries into markdown tables: mean ± std over
the seeds and each seed's value, AUROC, AP, the calibrated threshold's sensitivity and
specificity, α statistics, training time, every extra scoring, and the rank correlation of the
label-free criterion with the real AUROC over the checkpoints of runs that logged both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml

from ..config import Config, preset
from ..errors import ConfigError
from ..filenames import CONFIG_FILE, HOLDOUT_SAMPLES, MODEL_META, TRAIN_SAMPLES
from ..runs.sample_lists import read_sample_list
from ..storage import read_json, write_json
from ..training.data import holdout_count

SUMMARY = "experiment.json"


@dataclass
class Variant:
    name: str
    preset: str
    overrides: dict[str, Any]
    group: str = ""
    about: str = ""
    seeds: list[int] | None = None  # this variant's own seeds (e.g. one seed for a sweep); else the grid's
    # an earlier row whose trained students this row keeps, refitting only its bank and scoring
    # (training.refit): rows that differ in knn.* / scoring.* alone need no second training
    student_from: str | None = None
    # false: the grid's choice and banks analyses skip this row (a refit of a row analysed already,
    # where they would repeat that row's figures at ~20 min per run)
    analyses: bool = True


@dataclass
class Grid:
    data: str
    seeds: list[int]
    variants: list[Variant]
    base: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"
    scorings: dict[str, dict[str, Any]] = field(default_factory=dict)
    title: str = "Experiment"
    # the label-free choice of each run's image score against every candidate (lab.run_analyses)
    choice: bool = False
    # other memory banks on each run with one: {name: {sampling, fraction}} (lab.run_analyses)
    banks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # DeLong's paired test, seed by seed: [[a, b], ...] with a, b a row ("variant"), one of its candidate
    # scorings ("variant:normal_sum-pool3-mean") or one of its banks ("variant:bank=name")
    compare: list[list[str]] = field(default_factory=list)

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
    known = {"data", "seeds", "variants", "base", "eval_split", "scorings", "title", "anchors"}
    unknown = set(spec) - known - {"choice", "banks", "compare"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}")
    variants = []
    for item in spec.get("variants", []):
        extra = set(item) - {"name", "preset", "set", "group", "about", "seeds", "student_from", "analyses"}
        if extra or "name" not in item:
            raise ConfigError(
                f"{path}: a variant needs a name and may have preset, set, group, about, seeds, student_from, "
                f"analyses; got {item}"
            )
        if not isinstance(item.get("analyses", True), bool):
            raise ConfigError(f"{path}: {item['name']}: analyses must be true or false, got {item['analyses']!r}")
        variants.append(
            Variant(
                item["name"],
                item.get("preset", "official"),
                dict(item.get("set") or {}),
                item.get("group", ""),
                item.get("about", ""),
                [int(x) for x in item["seeds"]] if item.get("seeds") else None,
                item.get("student_from"),
                item.get("analyses", True),
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
        bool(spec.get("choice", False)),
        dict(spec.get("banks") or {}),
        [list(pair) for pair in spec.get("compare") or []],
    )
    names = {v.name for v in grid.variants}
    for pair in grid.compare:
        if len(pair) != 2 or any(p.partition(":")[0] not in names for p in pair):
            raise ConfigError(f"{path}: compare: {pair} must be two of the grid's rows (variant or variant:option)")
    for i, variant in enumerate(grid.variants):
        if variant.student_from is not None:
            _check_student_source(path, grid, variant, [v.name for v in grid.variants[:i]])
    from .scoring_variants import variant_scoring

    for variant in grid.variants:  # every config and every scoring on it must be valid before anything runs
        config = grid.config(variant, grid.seeds_of(variant)[0])
        for name, options in grid.scorings.items():
            try:
                variant_scoring(config.scoring, dict(options or {}))
            except ConfigError as exc:
                raise ConfigError(f"{path}: scoring {name!r} on variant {variant.name!r}: {exc}") from None
    return grid


def _check_student_source(path: str | Path, grid: Grid, variant: Variant, earlier: list[str]) -> None:
    """A row's student_from names an earlier row, trained at each of its seeds, differing only after training."""
    from ..training.refit import after_training_changes

    if variant.student_from not in earlier:
        raise ConfigError(f"{path}: {variant.name}: student_from {variant.student_from!r} must name an earlier row")
    source = next(v for v in grid.variants if v.name == variant.student_from)
    missing = sorted(set(grid.seeds_of(variant)) - set(grid.seeds_of(source)))
    if missing:
        raise ConfigError(f"{path}: {variant.name}: seeds {missing} are not trained by {source.name}")
    seed = grid.seeds_of(variant)[0]
    try:
        after_training_changes(grid.config(source, seed), grid.config(variant, seed))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {variant.name} cannot keep {source.name}'s students: {exc}") from None


def run_grid(grid: Grid, out: str | Path, only: list[str] | None = None, progress: bool = False) -> list[dict]:
    """Train, calibrate and evaluate every (variant, seed) that has no summary yet."""
    out = Path(out)
    done = []  # (variant, summary) of every run this call covers
    for variant in grid.variants:
        if only and variant.name not in only:
            continue
        for seed in grid.seeds_of(variant):
            done.append((variant, run_one(grid, variant, seed, out / variant.name / f"seed-{seed}", progress)))
    # then scorings added to the grid after a run was evaluated: scored on the trained model, no retraining
    for variant, summary in done:
        run_dir = out / summary["variant"] / f"seed-{summary['seed']}"
        finished = FinishedRun(run_dir)  # the analyses below share its model and images
        missing = {k: v for k, v in grid.scorings.items() if k not in summary["auroc_by_scoring"]}
        if missing:
            rescore(grid, finished, summary, missing)
        if "alpha_vs_size" not in summary:  # added to the runner after some runs had finished
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
        if variant.analyses:
            _run_analyses(grid, finished, summary)
    return [summary for _, summary in done]


def _run_analyses(grid: Grid, run: FinishedRun, summary: dict) -> None:
    """The choice and bank analyses the grid asks for and the run's summary lacks."""
    from .run_analyses import bank_analysis, choice_analysis

    if grid.choice and "choice" not in summary:
        summary["choice"] = choice_analysis(run, grid)
        write_json(run.run_dir / SUMMARY, summary)
    wanted = {k: v for k, v in grid.banks.items() if k not in (summary.get("banks") or {})}
    if wanted and (found := bank_analysis(run, grid, wanted)) is not None:
        summary["banks"] = {**(summary.get("banks") or {}), **found}
        write_json(run.run_dir / SUMMARY, summary)


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
    _, labels, scores, weights = score_variants(detector, samples, heads)
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
    if variant.student_from is not None:
        _refit_from(run_dir.parent.parent / variant.student_from / run_dir.name, run_dir, config, progress)
    elif (run_dir / CONFIG_FILE).is_file():
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
        "auroc_interval": metrics.get("auroc_interval"),
        "ap": metrics["ap"],
        "sensitivity": calibrated.get("sensitivity"),
        "sensitivity_interval": calibrated.get("sensitivity_interval"),
        "specificity": calibrated.get("specificity"),
        "threshold_rule": calibrated.get("rule"),
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


def _refit_from(source: Path, run_dir: Path, config: Config, progress: bool) -> None:
    """The source run's student with this row's bank and scoring (a refit stopped half-way is redone)."""
    import shutil

    from ..training.refit import refit_after_training

    if (run_dir / MODEL_META).is_file():  # refitted (here or ahead of time); stopped before its evaluation
        _check_trained_as_defined(run_dir, config)
        return
    if not (source / SUMMARY).is_file():
        raise ConfigError(f"{run_dir}: its student comes from {source}, which is not finished; run that row first")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    refit_after_training(source, run_dir, config, progress)


def _check_trained_as_defined(run_dir: Path, config: Config) -> None:
    """A finished run is reused only if it was trained with its row's config: a row edited after its
    runs finished (or a run copied from another grid under a different definition) would otherwise
    report figures under a description they do not match."""
    stored = Config.load(run_dir / CONFIG_FILE).dotted()
    defined = config.dotted()
    # options added since a run was trained, that did not change it: a minimum held-out count the run's
    # count already meets, and the scoring choice (made after training)
    if stored["train.holdout_min"] != defined["train.holdout_min"] and not defined["train.max_images"]:
        held, fit = (
            len(read_sample_list(run_dir / name)) if (run_dir / name).is_file() else 0
            for name in (HOLDOUT_SAMPLES, TRAIN_SAMPLES)
        )
        if holdout_count(held + fit, defined["train.holdout_fraction"], defined["train.holdout_min"]) == held:
            stored["train.holdout_min"] = defined["train.holdout_min"]
    stored.setdefault("scoring.choose", "fixed")
    differing = Config.differing(stored, defined)
    if differing:
        shown = ", ".join(f"{k}: trained {stored.get(k)!r}, row says {defined.get(k)!r}" for k in differing)
        raise ConfigError(
            f"{run_dir}: this finished run was trained with a different config than its row defines ({shown}); "
            "restore the row's definition, or move the run away to train it anew"
        )


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
