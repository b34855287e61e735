"""The ``scrd`` command line: a thin layer over the Python functions.

Only argparse and the torch-free registries (architectures, presets, datasets) are imported at
start-up; torch and the jobs are imported inside each command, so ``scrd --help`` answers at once.
Errors a user can fix (:class:`~scrd.errors.ScrdError`) print one line and exit with status 2;
anything else is a bug and keeps its traceback. ``--debug`` shows the traceback of every error.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
import warnings
from typing import Any, Sequence

from .config import ARCHITECTURES, DEFAULT_PRESET, PRESET_NAMES
from .data.prepare import DATASETS
from .errors import ConfigError, ScrdError
from .filenames import (
    CONFIG_FILE,
    HEATMAP_DIR,
    HISTOGRAM_FILE,
    METRICS_FILE,
    MODEL_FILE,
    MODEL_META,
    PANEL_DIR,
    REPORT_FILE,
    ROC_FILE,
    SCORES_FILE,
    SKIPPED_FILE,
)
from .version import __version__

# Flags that set config values: (flag, attribute, config key); None: handled apart.
CONFIG_FLAGS = (
    ("--arch", "arch", "model.arch"),
    ("--weights", "weights", "model.weights"),
    ("--image-size", "image_size", "model.image_size"),
    ("--iterations", "iterations", "train.iterations"),
    ("--batch-size", "batch_size", "train.batch_size"),
    ("--seed", "seed", "train.seed"),
    ("--device", "device", "train.device"),
    ("--num-workers", "num_workers", "train.num_workers"),
    ("--on-bad-image", "on_bad_image", "data.on_bad_image"),
    ("--deterministic", "deterministic", "train.deterministic"),
    ("--precision", "precision", "train.precision"),
    ("--preset", "preset", None),
    ("--config", "config", None),
    ("--set", "set", None),
)


def config_from_args(args: argparse.Namespace):
    """The config the flags describe: ``--config`` or ``--preset`` as the base, then the flags."""
    from .config import Config, preset

    if args.config and args.preset:
        raise ConfigError("--config and --preset both given: put `preset: NAME` in the config file instead")
    config = Config.load(args.config) if args.config else preset(args.preset or DEFAULT_PRESET)
    overrides: dict[str, Any] = {}
    for _, attr, key in CONFIG_FLAGS:
        value = getattr(args, attr, None)
        if key is not None and value not in (None, False):
            overrides[key] = value
    overrides.update(_set_items(args.set))
    return config.with_overrides(overrides)


def _set_items(items: Sequence[str] | None) -> dict[str, Any]:
    """--set KEY=VALUE items as {key: value}, each value read as YAML (numbers, lists, null)."""
    import yaml

    overrides: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def data_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """--set of evaluate, calibrate and predict: data.* options (how this job reads files) and how the
    memory bank is searched (knn.search, knn.ivf_lists, knn.ivf_probe)."""
    from .runs.output import SEARCH_OPTIONS

    options = _set_items(args.set)
    other = [key for key in options if not key.startswith("data.") and key not in SEARCH_OPTIONS]
    if other:
        raise ConfigError(
            f"--set {other[0]}: scrd {args.command} takes only data.* options (how images are read) and "
            f"{', '.join(SEARCH_OPTIONS)} (how the memory bank is searched); the model's other options were "
            "fixed when it was trained"
        )
    return options


def _flags_given(args: argparse.Namespace, allowed: set[str]) -> list[str]:
    return [
        flag
        for flag, attr, _ in CONFIG_FLAGS
        if flag not in allowed and getattr(args, attr, None) not in (None, False, [])
    ]


def runtime_from_args(args: argparse.Namespace, device: str | None = None):
    """How the job runs the model on this machine, from the flags evaluate, calibrate and predict share."""
    from .runs.runtime import Runtime

    return Runtime(args.batch_size, device or args.device, args.precision, args.num_workers, args.on_bad_image)


# ------------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from .training.train import calibration_request, resume, train

    asked = (
        {"source": args.calibration, "split": args.calibration_split, "specificity": args.specificity}
        if args.calibration
        else None
    )
    if asked is None and not args.resume and not args.no_calibration:
        # a run that holds out normal images calibrates on them unless told not to: a threshold from
        # images it was not trained on, what the defaults hold out for
        if config_from_args(args).train.holdout_fraction > 0:
            asked = {"source": "holdout", "split": "train", "specificity": args.specificity}
    if args.resume:
        extra = _flags_given(args, allowed={"--iterations"})
        if extra:
            raise ConfigError(
                f"--resume continues the run with the config in {args.out}/config.yaml; "
                f"drop {', '.join(extra)} (only --iterations may extend a run)"
            )
        result = resume(
            args.out,
            args.data,
            iterations=args.iterations,
            progress=not args.no_progress,
            eval_source=args.eval_data,
            eval_split=args.eval_split,
            calibration_request=asked,
        )
        request = calibration_request(args.out)  # asked now, or when the run was started
        if result.started_at >= result.iterations:
            if request is None or _calibrated_as_asked(args.out, request):
                done = "" if request is None else " and calibrated as asked"
                print(f"{args.out}: already trained for {result.iterations} iterations{done}; nothing to do")
                return 0
            print(f"{args.out}: already trained for {result.iterations} iterations; calibrating as asked")
    else:
        request = asked
        result = train(
            config_from_args(args),
            args.data,
            args.out,
            progress=not args.no_progress,
            eval_source=args.eval_data,
            eval_split=args.eval_split,
            calibration_request=asked,
        )
    if not (args.resume and result.started_at >= result.iterations):
        print(
            f"model: {result.run_dir / MODEL_FILE} ({result.iterations} iterations, "
            f"final loss {result.final_loss:.4f}, {result.images_per_s:.1f} images/s)"
        )
    if result.skipped_images:
        print(
            f"skipped {result.skipped_images} unreadable images, listed with the reason in "
            f"{result.run_dir / SKIPPED_FILE}"
        )
    if request and os.environ.get("RANK", "0") == "0":  # under torchrun, one process calibrates
        from .evaluation.calibrate import calibrate

        info = calibrate(
            args.out, request["source"], request["split"], request["specificity"], show_progress=not args.no_progress
        )
        _print_calibration(info)
    return 0


def _calibrated_as_asked(run: str, request: dict[str, Any]) -> bool:
    """Whether the run's model holds the calibration ``request`` asks for."""
    from .storage import read_json

    stored = read_json(f"{run}/{MODEL_META}").get("calibration") or {}
    asked = {"source": request["source"], "split": request["split"]}
    return stored.get("requested") == asked and stored.get("target_specificity") == request["specificity"]


def _print_calibration(info: dict[str, Any]) -> None:
    print(
        f"calibrated threshold {info['threshold']:.6g} at specificity {info['target_specificity']} "
        f"on {info['n_images']} normal images ({info['source']}); {info['note']}"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate

    r = evaluate(
        args.model,
        args.data,
        args.out,
        split=args.split,
        calibration_source=args.calibration,
        calibration_split=args.calibration_split,
        target_specificity=args.specificity,
        runtime=runtime_from_args(args),
        report=not args.no_report,
        show_progress=not args.no_progress,
        data_options=data_options_from_args(args),
    )
    o = r["oracle_threshold"]
    print(
        f"AUROC {r['auroc']:.4f}  AP {r['ap']:.4f}  "
        f"F1 {o['f1']:.4f} / ACC {o['acc']:.4f} at the ORACLE threshold (best F1 on this set)"
    )
    if o["labels_almost_everything_abnormal"]:
        print(
            f"  that threshold calls {o['flagged_fraction']:.0%} of the images abnormal: labelling every image "
            f"abnormal gives F1 {o['all_abnormal_f1']:.4f}, so this F1 says little about the detector"
        )
    if "calibrated_threshold" in r:
        c = r["calibrated_threshold"]
        label = " (IN-SAMPLE calibration)" if c.get("in_sample") else ""
        if "reused" in c:
            label += ", the model's stored calibration of these images" if c["reused"] else ", stored in model.json"
        print(
            f"calibrated threshold {c['threshold']:.6g}{label}: sensitivity {c['sensitivity']:.4f}, "
            f"specificity {c['specificity']:.4f}, F1 {c['f1']:.4f}, ACC {c['acc']:.4f}"
        )
    if "SELECTED ON TEST LABELS" in r["checkpoint_selection"]:
        print(f"WARNING: this checkpoint was {r['checkpoint_selection']}")
    if "skipped_images" in r:
        s = r["skipped_images"]
        print(f"skipped {s['count']} unreadable images, left out of every metric above; listed with why in {s['list']}")
    print(f"results in {args.out}/ ({METRICS_FILE}, {SCORES_FILE}, {ROC_FILE}, {HISTOGRAM_FILE})")
    if not args.no_report:
        print(f"report: {args.out}/{REPORT_FILE}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .inference.predict import predict
    from .inference.shards import device_for_rank

    shard = _predict_shard(args)
    if args.merge:
        return _merge_predictions(args)
    r = predict(
        args.model,
        args.inputs,
        args.out,
        runtime=runtime_from_args(args, device=device_for_rank(args.device)),
        heatmaps=not args.no_heatmaps,
        panels=not (args.no_heatmaps or args.no_panels),
        fresh=args.fresh,
        backend=args.backend,
        shard=shard,
        show_progress=not args.no_progress,
        data_options=data_options_from_args(args),
        dicom_out=args.dicom_out,
    )
    heatmaps = "" if args.no_heatmaps else f"; heat maps in {args.out}/{HEATMAP_DIR}/"
    heatmaps += "" if args.no_heatmaps or args.no_panels else f", panels in {args.out}/{PANEL_DIR}/"
    earlier = f" ({r.already} already scored by an earlier run, kept)" if r.already else ""
    print(f"scored {r.scored} new images{earlier}: {r.csv}{heatmaps}")
    if args.dicom_out:
        print(f"wrote {r.dicom_written} DICOM heat maps (Secondary Capture, new series) to {args.dicom_out}")
    if r.not_dicom:
        print(f"--dicom-out: {r.not_dicom} inputs are not DICOM: no DICOM heat map for them (no study to join)")
    if r.skipped:
        print(f"skipped {r.skipped} unreadable images, listed with the reason in {r.csv.parent / SKIPPED_FILE}")
    return 0


def _predict_shard(args: argparse.Namespace):
    """--shard I/N, or torchrun's RANK/WORLD_SIZE; checks the inputs --merge does without."""
    from .inference.shards import resolve_shard

    if args.merge:
        if args.inputs or args.model or args.shard:
            raise ConfigError(
                "--merge takes only --out (the folder the shards wrote); drop the inputs, --model, --shard"
            )
        return None
    if not args.inputs or not args.model:
        raise ConfigError("predict needs the images to score and --model (or --merge --out FOLDER)")
    return resolve_shard(args.shard)


def _merge_predictions(args: argparse.Namespace) -> int:
    from .inference.shards import merge_shards

    path, rows = merge_shards(args.out)
    print(f"merged {rows} rows: {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve.run import serve
    from .serve.service import ServeSettings

    settings = ServeSettings(
        args.batch_size or 0, args.max_wait_ms, args.queue, args.max_bytes, args.max_files, args.max_connections
    )
    serve(args.model, args.host, args.port, args.device, args.precision, settings)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .deploy.onnx_export import export_onnx

    r = export_onnx(args.model, args.out, opset=args.opset, exporter=args.exporter)
    print(f"exported {r.onnx} with its contract {r.sidecar}")
    diffs = f"maps {r.max_map_diff:.2e} absolute, scores {r.max_score_rel_diff:.2e} relative"
    print(f"self-check, ONNX Runtime vs PyTorch on random images: {diffs}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .evaluation.calibrate import calibrate

    info = calibrate(
        args.model,
        args.data,
        args.split,
        args.specificity,
        runtime=runtime_from_args(args),
        show_progress=not args.no_progress,
        data_options=data_options_from_args(args),
    )
    _print_calibration(info)
    print(f"stored in {args.model}")
    return 0


def cmd_refit(args: argparse.Namespace) -> int:
    from .config import Config
    from .detector import resolve_model_path
    from .evaluation.calibrate import calibrate
    from .training.refit import refit_after_training

    source = resolve_model_path(args.model).parent
    config = Config.load(source / CONFIG_FILE).with_overrides(_set_items(args.set))
    changed = refit_after_training(source, args.out, config, progress=not args.no_progress)
    options = config.dotted()
    shown = ", ".join(f"{key}={options[key]}" for key in changed) or "nothing changed"
    print(f"{args.out}: the student of {source}, its bank and scoring fitted anew ({shown})")
    if config.train.holdout_fraction > 0:  # as train does: a threshold from the held-out normals
        info = calibrate(args.out, "holdout", "train", args.specificity, show_progress=not args.no_progress)
        _print_calibration(info)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, iterations=args.iterations, arch=args.arch, n_train=args.n_train, n_test=args.n_test)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .reporting.report import write_report

    path = write_report(args.run, args.eval, args.out, gallery_size=args.gallery, device=args.device)
    print(f"report: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .evaluation.compare import compare_evaluations, summary_lines
    from .storage import write_json

    result = compare_evaluations(args.a, args.b)
    print("\n".join(summary_lines(result)))
    if args.json:
        write_json(args.json, result)
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from .model import SCRD, parameter_counts

    counts = parameter_counts(SCRD(args.arch))
    width = max(len(k) for k in counts)
    print(f"parameters of SCRD with a {args.arch} teacher")
    for name, n in counts.items():
        print(f"  {name:<{width}}  {n:>12,d}  ({n / 1e6:7.2f} M, {n * 4 / 2**20:7.1f} MiB float32)")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from .model import BACKBONES, find_imagenet_weights, install_weight_file

    if args.action == "install":
        if not args.arch or not args.file:
            raise ConfigError("usage: scrd weights install ARCH FILE")
        target = install_weight_file(args.arch, args.file)
        print(f"verified and installed {args.file} -> {target}")
        return 0
    for arch in BACKBONES:
        found = find_imagenet_weights(arch)
        print(f"{arch:<16} {'ready: ' + str(found) if found else 'not installed'}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from .config import preset

    if args.reference:
        from .config.reference import reference_tables

        print(reference_tables(), end="")
        return 0
    print(preset(args.preset).to_yaml(), end="")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    if args.deploy:
        from .lab.deploy_benchmark import run_deploy_benchmark
        from .storage import write_json

        figures = [
            run_deploy_benchmark(
                arch,
                image_size=args.image_size,
                images=args.images,
                batch_size=args.batch_size,
                train_images=args.train_images,
                weights=args.weights,
                onnx=not args.no_onnx,
                bank_fraction=args.bank_fraction,
                bank_search=args.bank_search,
            )
            for arch in args.arch
        ]
        if args.json:
            write_json(args.json, dict(zip(args.arch, figures)))
        return 0
    from .lab.benchmark import run_benchmark

    run_benchmark(
        args.arch,
        image_size=args.image_size,
        batch_size=args.batch_size,
        steps=args.steps,
        device=args.device,
        weights=args.weights,
        quick=args.quick,
        json_out=args.json,
    )
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .lab.experiment import load_grid, run_grid
    from .lab.experiment_report import report

    grid = load_grid(args.grid)
    if args.experiment_command == "run":
        summaries = run_grid(grid, args.out, only=args.only, progress=not args.no_progress)
        for s in summaries:
            print(f"{s['variant']} seed {s['seed']}: AUROC {s['auroc']:.4f}  AP {s['ap']:.4f}")
    if args.report:
        command = f"scrd experiment run {args.grid} --out {args.out} --report {args.report}"
        Path(args.report).write_text(report(grid, args.out, command) + "\n")
        print(f"report: {args.report}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .lab.reproduce import reproduce

    given = dict(item.split("=", 1) for item in args.data or [] if "=" in item)
    if len(given) != len(args.data or []):
        raise ConfigError("--data takes NAME=DIR, e.g. --data rsna=data/RSNA")
    report = Path(args.report or Path(args.out) / f"{args.table}{'-smoke' if args.smoke else ''}.md")
    command = " ".join(
        ["scrd reproduce", args.table, "--out", str(args.out), "--report", str(report)]
        + [f"--data {d}" for d in args.data or []]
        + ([] if args.data_root == "data" else ["--data-root", str(args.data_root)])
        + (["--smoke"] if args.smoke else [])
    )
    text = reproduce(args.table, args.out, given, args.data_root, args.smoke, not args.no_progress, command)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text + "\n")
    print(f"table: {report}")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import REPORT_FILE, prepare

    options: dict[str, Any] = {"workers": args.workers}
    if args.dataset == "isic2018":
        options["protocol"] = args.protocol
    else:
        options["unlabeled"] = args.with_unlabeled
    report = prepare(args.dataset, args.raw, args.out, **options)
    print(report.summary())
    print(f"data.json and {REPORT_FILE} written to {args.out}/")
    if args.strict and not report.complete:
        print(f"scrd data prepare: error: {report.missing_total} listed file(s) missing (--strict)", file=sys.stderr)
        return 2
    return 0


# -------------------------------------------------------------------------------- parsers
EXAMPLES = {
    "train": "scrd train --data DATA --out runs/r1 --arch mobilenet_v2 --calibration\n"
    "  scrd train --data DATA --out runs/r1 --resume --iterations 8000",
    "evaluate": "scrd evaluate --model runs/r1 --data DATA --out runs/r1/eval",
    "report": "scrd report runs/r1 --eval runs/r1/eval      # writes runs/r1/eval/report.html",
    "compare": "scrd compare runs/a/eval runs/b/eval            # same images: is a above, below or level with b?",
    "predict": "scrd predict scans/ more/*.dcm --model runs/r1 --out runs/r1/predictions",
    "serve": "scrd serve runs/r1 --port 8000    # then: curl -F file=@scan.dcm 'http://127.0.0.1:8000/score'",
    "export": "scrd export runs/r1 --format onnx --out deploy/r1.onnx",
    "calibrate": "scrd calibrate --model runs/r1              # on the run's held-out normals\n"
    "  scrd calibrate --model runs/r1 --data NORMALS --specificity 0.98",
    "refit": "scrd refit --model runs/r1 --out runs/r1-ivf --set knn.search=ivf",
    "demo": "scrd demo --out scrd-demo",
    "params": "scrd params --arch wide_resnet50_2",
    "weights": "scrd weights install wide_resnet50_2 ~/Downloads/wide_resnet50_2-95faca4d.pth\n  scrd weights status",
    "config": "scrd config --preset paper > my.yaml        # edit it, then: scrd train --config my.yaml ...",
    "benchmark": "scrd benchmark --arch mobilenet_v2 resnet18 --quick",
    "experiment": "scrd experiment run docs/experiments/default_brain.yaml --out runs/default-brain "
    "--report docs/studies/default_brain.md",
    "reproduce": "scrd reproduce table2 --out runs/reproduce        # a GPU: the paper's settings\n"
    "  scrd reproduce table2 --out runs/smoke --smoke    # seconds on a CPU, tiny settings",
    "data": "scrd data prepare brain-tumor --raw ~/kaggle/brain-tumor --out data/brain_tumor",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown beside each flag (not for flags whose default is the preset's); examples kept
    as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        key = getattr(action, "preset_key", None)
        if key is not None:  # a flag whose default is the preset's: show the presets' values
            return f"{action.help} (from the preset: {_preset_values(key)})"
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


@functools.lru_cache(maxsize=None)
def _preset_values(key: str) -> str:
    """What each preset sets the dotted ``key`` to, e.g. 'mobilenet_v2 in denoising_knn (the
    default), denoising; wide_resnet50_2 in official, paper, rd4ad, knn'."""
    from .config import preset

    section, leaf = key.split(".")
    by_value: dict[str, list[str]] = {}
    for name in PRESET_NAMES:
        value = str(preset(name).to_dict()[section][leaf])
        by_value.setdefault(value, []).append(f"{name} (the default)" if name == DEFAULT_PRESET else name)
    if len(by_value) == 1:
        return f"{next(iter(by_value))} in every preset"
    return "; ".join(f"{value} in {', '.join(names)}" for value, names in by_value.items())


def _example(command: str) -> str:
    return "example:\n  " + EXAMPLES[command]


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """Flags that set config values; without them the preset's (or --config's) values hold."""
    p.add_argument(
        "--preset", choices=PRESET_NAMES, help=f"named set of options (default: {DEFAULT_PRESET}); see `scrd config`"
    )
    p.add_argument("--config", help="YAML config file (instead of --preset; it may name its base with `preset:`)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override any option, e.g. --set loss.eps=1e-6 (repeatable)"
    )
    p.add_argument("--arch", choices=ARCHITECTURES, help="teacher architecture").preset_key = "model.arch"
    p.add_argument("--weights", help="teacher weights: imagenet, none or a file path").preset_key = "model.weights"
    size = p.add_argument("--image-size", type=int, help="images are resized to this square size")
    size.preset_key = "model.image_size"
    iterations = p.add_argument("--iterations", type=int, help="training iterations (with --resume: extend the run)")
    iterations.preset_key = "train.iterations"
    p.add_argument("--batch-size", type=int, help="images per iteration").preset_key = "train.batch_size"
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 …")
    p.add_argument("--num-workers", type=int, help="processes decoding images")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (exact resume)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="auto (default): bf16 autocast where the hardware has it natively; fp32: the strict mode",
    )
    _add_bad_image_flag(p, default=None)


def _add_bad_image_flag(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument(
        "--on-bad-image",
        choices=("error", "skip"),
        default=default,
        help="unreadable image: stop with an error naming it (default) or skip it, "
        "listing it with the reason in the output folder",
    )


def _add_scoring_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto: bf16 autocast where the hardware has it natively (maps stay fp32); fp32: strict",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per batch")
    p.add_argument("--num-workers", type=int, default=0, help="processes decoding images")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    _add_bad_image_flag(p)
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="read images with this data option instead of the model's, e.g. --set data.max_image_pixels=300000000, "
        "or search the memory bank another way, e.g. --set knn.search=ivf (repeatable; data.* and knn.search, "
        "knn.ivf_lists, knn.ivf_probe only)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_calibration_flags(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument(
        flag,
        nargs="?",
        const="holdout",
        metavar="DATA",
        help="normal images to calibrate a decision threshold on; without DATA (or 'holdout'): "
        "the run's held-out training images (train.holdout_fraction)",
    )
    p.add_argument(f"{flag}-split", default="train", dest="calibration_split", help="split of those images")
    p.add_argument("--specificity", type=float, default=0.95, help="target specificity of the threshold")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", formatter_class=HelpFormatter, epilog=_example("train"), help="train on normal images")
    p.add_argument("--data", required=True, help="dataset folder (data.json or train/normal layout) or CSV")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    _add_calibration_flags(p, "--calibration")
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="no threshold (by default a run that holds out normal images calibrates on them, --specificity)",
    )
    p.add_argument("--eval-data", help="labelled set scored every train.eval_every iterations")
    p.add_argument("--eval-split", default="test", help="split of --eval-data")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)


def _evaluate_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=HelpFormatter, epilog=_example("evaluate"), help="metrics on a labelled set"
    )
    p.add_argument("--model", required=True, help="run directory or model.pt")
    p.add_argument("--data", required=True, help="labelled dataset")
    p.add_argument("--split", default="test", help="labelled split to evaluate")
    p.add_argument("--out", required=True, help="output folder")
    _add_calibration_flags(p, "--calibration")
    p.add_argument("--no-report", action="store_true", help=f"do not write {REPORT_FILE} (the HTML report)")
    _add_scoring_flags(p)
    p.set_defaults(func=cmd_evaluate)


def _report_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        formatter_class=HelpFormatter,
        epilog=_example("report"),
        help="one self-contained HTML page of a run: config, metrics, figures, heat-map gallery",
        description="Write one HTML file (images embedded, opens from disk without network) with the run's\n"
        "config and teacher weights, the metrics of an evaluation (oracle and calibrated thresholds apart),\n"
        "its figures, the training curves and heat-map panels of the highest-scoring normal and the\n"
        "lowest-scoring abnormal images. scrd evaluate writes it too, unless --no-report.",
    )
    p.add_argument("run", help="run directory or model.pt")
    p.add_argument("--eval", help="the --out folder of scrd evaluate on this run (metrics, figures, gallery)")
    p.add_argument("--out", help=f"HTML file to write (default: EVAL/{REPORT_FILE}, else RUN/{REPORT_FILE})")
    p.add_argument("--gallery", type=int, default=4, help="images in each gallery row")
    p.add_argument("--device", default="auto", help="device for the gallery's heat maps")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare",
        formatter_class=HelpFormatter,
        epilog=_example("compare"),
        help="are two evaluations' AUROCs different? DeLong's paired test on the same images",
        description="Pair the images two `scrd evaluate` runs scored (same images, same labels) and test\n"
        "AUROC(a) = AUROC(b) with DeLong's paired test: each AUROC with its 95 % interval, the difference\n"
        "with its interval and p-value, and 'above', 'below' (p < 0.05) or 'level'.",
    )
    p.add_argument("a", help="an evaluation folder (scrd evaluate --out) or its scores.csv")
    p.add_argument("b", help="another evaluation of the same images")
    p.add_argument("--json", help="also write the result to this JSON file")
    p.set_defaults(func=cmd_compare)


def _predict_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        formatter_class=HelpFormatter,
        epilog=_example("predict"),
        help="score images and write heat maps",
        usage="%(prog)s INPUT [INPUT ...] --model MODEL --out OUT [options]\n       %(prog)s --merge --out OUT",
    )
    p.add_argument("inputs", nargs="*", help="image files, folders, glob patterns or a CSV manifest")
    p.add_argument(
        "--model",
        help="required (except with --merge): run directory or model.pt (an .onnx file with --backend onnxruntime)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-heatmaps", action="store_true", help="write scores only")
    p.add_argument(
        "--no-panels", action="store_true", help="plain overlays only, no titled panels (original | map | overlay)"
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start the output folder afresh (needed when another model or other settings wrote it)",
    )
    p.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="also write each DICOM input's heat map as a DICOM Secondary Capture (new series, same study) "
        "into DIR; other inputs get none",
    )
    _add_scoring_flags(p)
    _add_scale_out_flags(p)
    p.set_defaults(func=cmd_predict)


def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        formatter_class=HelpFormatter,
        epilog=_example("serve"),
        help="score images over HTTP: POST /score, a page at /, micro-batching",
        description="Load the model once and answer HTTP requests (pip install 'scrd[serve]'): POST /score\n"
        "(multipart files: PNG, JPEG, TIFF, BMP, DICOM; ?heatmap=1, ?dicom=1), GET / (a page to drop an image\n"
        "on), GET /health, GET /model. See docs/deploy.md.",
    )
    p.add_argument("model", help="run directory or model.pt")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port, printed)")
    p.add_argument("--batch-size", type=int, help="images per model pass at most (default: the model's batch size)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="how long an image waits for others to batch with")
    p.add_argument("--queue", type=int, default=64, help="images waiting at most; beyond it: HTTP 503")
    p.add_argument("--max-bytes", type=int, default=64 * 1024 * 1024, help="largest uploaded file (bytes)")
    p.add_argument("--max-files", type=int, default=16, help="files per request at most")
    p.add_argument("--max-connections", type=int, default=64, help="requests open at once; beyond: HTTP 503")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto: bf16 autocast where the hardware has it natively (as scrd predict); fp32: strict",
    )
    p.set_defaults(func=cmd_serve)


def _add_scale_out_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch", help="what scores the images")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="score only part I of N (I from 0) into part files; default under torchrun: RANK/WORLD_SIZE",
    )
    p.add_argument("--merge", action="store_true", help="merge the shards' part files of --out into one CSV")


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export", formatter_class=HelpFormatter, epilog=_example("export"), help="export a model for deployment"
    )
    p.add_argument("model", help="run directory or model.pt")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="file format")
    p.add_argument(
        "--out", required=True, help="the .onnx file to write (its contract goes to FILE.onnx.json beside it)"
    )
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version")
    p.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        default="torchscript",
        help="torch.onnx's tracer (fast) or its torch.export-based exporter; both give the same graph",
    )
    p.set_defaults(func=cmd_export)


def _calibrate_parser(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        formatter_class=HelpFormatter,
        epilog=_example("calibrate"),
        help="store a decision threshold from normal images",
    )
    p.add_argument("--model", required=True, help="run directory or model.pt")
    p.add_argument("--data", help="normal images (default: the run's held-out training images)")
    p.add_argument("--split", default="train", help="split of --data")
    p.add_argument("--specificity", type=float, default=0.95, help="target specificity of the threshold")
    _add_scoring_flags(p)
    p.set_defaults(func=cmd_calibrate)


def _small_parsers(sub) -> None:
    p = sub.add_parser(
        "demo",
        formatter_class=HelpFormatter,
        epilog=_example("demo"),
        help="train and evaluate on a generated phantom dataset (offline)",
    )
    p.add_argument("--out", default="scrd-demo", help="output folder")
    p.add_argument("--iterations", type=int, default=150, help="training iterations")
    p.add_argument("--arch", choices=ARCHITECTURES, default="mobilenet_v2", help="teacher architecture")
    p.add_argument("--n-train", type=int, default=160, help="phantom training images")
    p.add_argument("--n-test", type=int, default=40, help="phantom test images per class")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "params", formatter_class=HelpFormatter, epilog=_example("params"), help="parameter counts by part"
    )
    p.add_argument("--arch", choices=ARCHITECTURES, default="wide_resnet50_2", help="teacher architecture")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser(
        "weights", formatter_class=HelpFormatter, epilog=_example("weights"), help="offline ImageNet weight files"
    )
    p.add_argument(
        "action", choices=("install", "status"), help="install: verify and copy a file; status: what is installed"
    )
    p.add_argument("arch", nargs="?", choices=ARCHITECTURES, help="install: the architecture the file is for")
    p.add_argument("file", nargs="?", help="install: the downloaded torchvision .pth file")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser(
        "config", formatter_class=HelpFormatter, epilog=_example("config"), help="print a preset as YAML"
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default=DEFAULT_PRESET, help="preset to print")
    p.add_argument(
        "--reference", action="store_true", help="print every option (default, what it does, presets) as markdown"
    )
    p.set_defaults(func=cmd_config)

    p = sub.add_parser(
        "benchmark",
        formatter_class=HelpFormatter,
        epilog=_example("benchmark"),
        help="training and inference throughput (images/s)",
    )
    p.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        nargs="+",
        default=["mobilenet_v2", "resnet18"],
        help="architectures to measure",
    )
    p.add_argument("--image-size", type=int, default=256, help="image side in pixels")
    p.add_argument("--batch-size", type=int, default=16, help="images per step")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median), after a warm-up")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 …")
    p.add_argument("--weights", default="none", help="teacher weights (speed does not depend on them)")
    p.add_argument("--quick", action="store_true", help="fewer training configurations")
    p.add_argument("--json", help="also write every figure to this JSON file")
    deploy = p.add_argument_group("--deploy: the default detector's scoring against the released code's, one process")
    deploy.add_argument(
        "--deploy",
        action="store_true",
        help="measure the reference (official, fp32, batch 1), scrd predict with the default preset, its student "
        "alone, its bank search alone and ONNX Runtime on the same images",
    )
    deploy.add_argument("--images", type=int, default=32, help="image files scored by each path")
    deploy.add_argument("--train-images", type=int, default=1000, help="the bank's size is what this many would fit")
    deploy.add_argument("--no-onnx", action="store_true", help="skip the export and ONNX Runtime")
    deploy.add_argument(
        "--bank-fraction",
        type=float,
        help="the bank's size as this fraction of the patches (default: the preset's knn.fraction; "
        "0.01 is the size of a 1 %% coreset)",
    )
    deploy.add_argument(
        "--bank-search",
        choices=["exact", "ivf"],
        default="exact",
        help="how the default preset searches its bank (knn.search); ivf also times the exact search and "
        "prints the index's recall@1",
    )
    p.set_defaults(func=cmd_benchmark)


def _refit_parser(sub) -> None:
    p = sub.add_parser(
        "refit",
        formatter_class=HelpFormatter,
        epilog=_example("refit"),
        help="a new run with a trained run's student and another memory bank or scoring, without training",
        description="Keep a trained run's student and fit anew what is fitted after training, as the --set "
        "options say: the memory bank (knn.*: sampling, fraction, search) and the scoring (scoring.*), with "
        "their normal statistics and the threshold, on the run's own training and held-out images.",
    )
    p.add_argument("--model", required=True, help="the trained run (directory or model.pt)")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="a knn.* or scoring.* option to change (repeatable)"
    )
    p.add_argument("--specificity", type=float, default=0.95, help="target specificity of the threshold")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_refit)


def _experiment_parser(sub) -> None:
    p = sub.add_parser(
        "experiment",
        formatter_class=HelpFormatter,
        epilog=_example("experiment"),
        help="a grid of variants x seeds from a YAML file, and its report",
    )
    ex_sub = p.add_subparsers(dest="experiment_command", required=True)
    for name, about in (
        ("run", "train, calibrate and evaluate every run not yet done (resumable)"),
        ("report", "write the markdown report of the finished runs"),
    ):
        q = ex_sub.add_parser(name, help=about, description=about, formatter_class=HelpFormatter)
        q.add_argument("grid", help="grid YAML file (see scrd.lab.experiment)")
        q.add_argument("--out", required=True, help="folder of the runs")
        q.add_argument("--report", help="markdown file to write the tables to")
        if name == "run":
            q.add_argument("--only", nargs="+", help="run these variants only")
            q.add_argument("--no-progress", action="store_true", help="no progress bars")
        q.set_defaults(func=cmd_experiment)


def _reproduce_parser(sub) -> None:
    from .lab.reproduce_settings import TABLES

    p = sub.add_parser(
        "reproduce",
        formatter_class=HelpFormatter,
        epilog=_example("reproduce") + "\n\ntables:\n" + "\n".join(f"  {k:8s}{v}" for k, v in TABLES.items()),
        help="one of the paper's tables as a command (full runs: a GPU; --smoke: seconds on a CPU)",
        description="Train, calibrate and evaluate every row of one of the paper's tables with its settings "
        "(wide_resnet50_2, 256 px, 4000 iterations, batch 16: runs for a GPU, far too slow for a CPU) on the "
        "datasets prepared with `scrd data prepare`, resumably, and write a markdown table with the paper's "
        "figures beside ours (oracle and calibrated thresholds). --smoke runs the same rows on tiny settings "
        "and generated images to check the command, not the method.",
    )
    p.add_argument("table", choices=tuple(TABLES), help="the paper's table to reproduce (listed below)")
    p.add_argument("--out", required=True, help="folder of the runs (shared by the tables: common rows are reused)")
    p.add_argument("--report", help="markdown file to write (default: OUT/TABLE.md, OUT/TABLE-smoke.md)")
    p.add_argument(
        "--data", action="append", metavar="NAME=DIR", help="a prepared dataset folder, e.g. rsna=data/RSNA (repeat)"
    )
    p.add_argument(
        "--data-root",
        default="data",
        help="where the other datasets are looked for: DATA_ROOT/RSNA, DATA_ROOT/BrainTumor, DATA_ROOT/ISIC2018",
    )
    p.add_argument("--smoke", action="store_true", help="tiny settings on generated phantom images (CI)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_reproduce)


def _data_parser(sub) -> None:
    p = sub.add_parser(
        "data",
        formatter_class=HelpFormatter,
        epilog=_example("data"),
        help="dataset tools (prepare the paper's datasets)",
    )
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser(
        "prepare",
        formatter_class=HelpFormatter,
        help="raw public download -> images/ + data.json with the paper's split",
        description="Prepare RSNA (stage_2_train_images/ DICOMs), Brain Tumor (Kaggle Training/ and "
        "Testing/ folders) or ISIC 2018 (Task 3 inputs and ground-truth CSVs). Writes "
        "OUT/images/, OUT/data.json and OUT/prepare_report.json; reports missing and "
        "extra files and compares counts with the paper's.",
    )
    p.add_argument("dataset", choices=tuple(DATASETS))
    p.add_argument("--raw", required=True, help="folder of the unpacked public download")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument(
        "--protocol",
        choices=("test", "validation"),
        default="test",
        help="isic2018 test set: the official Test set (1512 images, MedIAnomaly) or "
        "the Validation set (193 images, ReContrast)",
    )
    p.add_argument(
        "--with-unlabeled",
        action="store_true",
        help="rsna, brain-tumor: also prepare the split's train.unlabeled images",
    )
    p.add_argument("--strict", action="store_true", help="fail (exit 2) when listed files are missing")
    p.add_argument("--workers", type=int, default=1, help="processes for the conversion")
    p.set_defaults(func=cmd_data_prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        formatter_class=HelpFormatter,
        epilog="examples:\n  scrd demo                  # the whole workflow on generated data, offline\n"
        "  scrd train --data DATA --out runs/r1 --calibration\n"
        "  scrd predict scans/ --model runs/r1 --out predictions",
        prog="scrd",
        description="Scale-aware Contrastive Reverse Distillation: unsupervised anomaly "
        "detection for medical images (train on normal images only).",
    )
    parser.add_argument("--version", action="version", version=f"scrd {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _train_parser,
        _evaluate_parser,
        _report_parser,
        _predict_parser,
        _serve_parser,
        _export_parser,
        _calibrate_parser,
        _refit_parser,
        _small_parsers,
        _experiment_parser,
        _reproduce_parser,
        _data_parser,
    ):
        add(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"scrd: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(
        c for c in (args.command, getattr(args, "data_command", None), getattr(args, "experiment_command", None)) if c
    )
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:  # training and predict say how far they got and how to go on
        print(f"scrd {command}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return 130
    except ScrdError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"scrd {command}: error: {_as_flags(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # the output folder cannot be written (read-only, full, a file in the path)
        folder = _output_folder_of(args, exc)
        if folder is None:
            raise
        if args.debug:
            traceback.print_exc()
        from .runs.output import output_error

        print(f"scrd {command}: error: {output_error(folder, exc)}", file=sys.stderr)
        return 2


# Messages of the Python API that name an argument; on the command line the flag is what to type.
API_TO_FLAGS = (("weights='none'", "--weights none"),)


def _as_flags(message: str) -> str:
    for api, flag in API_TO_FLAGS:
        message = message.replace(api, flag)
    return message


def _output_folder_of(args: argparse.Namespace, exc: OSError) -> str | None:
    """The command's --out when the failed file operation was on it or inside it, else None."""
    from .runs.output import is_within

    out = getattr(args, "out", None)
    names = [name for name in (exc.filename, exc.filename2) if isinstance(name, (str, bytes, os.PathLike))]
    if not out or not names:
        return None
    return out if any(is_within(os.fsdecode(name), out) for name in names) else None


if __name__ == "__main__":
    sys.exit(main())
