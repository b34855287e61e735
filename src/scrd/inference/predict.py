"""The prediction job: score image files in streamed batches, write a CSV and heat maps.

Rows are appended and flushed batch by batch, so memory stays bounded and a killed run,
started again with the same output folder, skips the images it already finished.
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..data.dataset import SkippedImages
from ..data.layouts import collect_samples, png_text_keys
from ..deploy.backends import Scorer, load_scorer
from ..detector import decision_of
from ..errors import InputError
from ..filenames import HEATMAP_DIR, OUTPUT_MARKER, OUTPUT_PNG_KEY, PANEL_DIR
from ..model.weights import sha256_of
from ..runs.normal_scores import percentile_or_none, percentile_text, stored_normal_scores
from ..runs.output import apply_job_options, check_writable, refuse_onnx
from ..runs.progress import batch_images, progress
from ..runs.rundir import prepare_process
from ..runs.runtime import DEFAULT_RUNTIME, Runtime
from ..storage import atomic_write_text, read_json, remove_stale_temporaries, write_json
from .shards import OutputNames, Shard, mark_done, merge_shards, remove_own_temporaries, shards_finished

# normal_percentile: the score's percentile among the run's held-out normal images ('' when the model
# stores none); dicom: the Secondary Capture of the heat map (--dicom-out, DICOM inputs only)
FIELDS = ["path", "score", "decision", "heatmap", "panel", "normal_percentile", "dicom"]
NOT_PIXELS = ("data.max_image_pixels", "data.on_bad_image")  # data options that leave every image as it is


def _finished_paths(csv_path: Path) -> set[str]:
    """Paths already written; a torn last line (a kill mid-write) is cut off first."""
    if not csv_path.is_file():
        return set()
    data = csv_path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(csv_path, "r+b") as f:
            f.truncate(cut)
    with open(csv_path, newline="") as f:
        return {row["path"] for row in csv.DictReader(f)}


def heatmap_name(path: str) -> str:
    """A file name unique per input path (two folders may hold the same file name).

    ``path`` may end in ``#slice=K`` / ``#frame=K`` (one image of a volume): that part is kept.
    """
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    file, _, fragment = path.partition("#")
    stem = Path(file).name.split(".")[0] if fragment else Path(file).stem
    part = "-" + fragment.replace("=", "") if fragment else ""
    return f"{stem}{part}-{digest}.png"


@dataclass
class PredictResult:
    csv: Path
    scored: int  # images scored by this call (earlier finished ones are not counted again)
    skipped: int  # unreadable images skipped so far, listed in skipped_images.csv beside the CSV
    already: int = 0  # images of the inputs an earlier call had scored into the same CSV
    dicom_written: int = 0  # heat maps written as DICOM by this call (--dicom-out)
    not_dicom: int = 0  # inputs with --dicom-out that are not DICOM (no study to join: none written)


def predict(
    model: str | Path,
    inputs: Sequence[str],
    out_dir: str | Path,
    runtime: Runtime = DEFAULT_RUNTIME,
    heatmaps: bool = True,
    panels: bool = True,
    fresh: bool = False,
    backend: str = "torch",
    shard: Shard | None = None,
    show_progress: bool = False,
    data_options: dict[str, Any] | None = None,
    dicom_out: str | Path | None = None,
) -> PredictResult:
    """Score every image of ``inputs`` (files, folders, globs or a CSV manifest).

    Volumes are scored slice by slice (rows ``vol.nii.gz#slice=K``), with the model's own
    ``data`` options, so prediction reads files exactly as training did. An output folder holds
    the results of one model: ``predict_info.json`` records which (the sha256 of its model.pt) and
    how; a folder written by another model or with other settings is refused unless ``fresh``,
    which starts it afresh. ``heatmaps`` writes plain overlays, ``panels`` the titled panels of
    :mod:`.panels` (original | heat map with colour bar | overlay).

    ``backend`` "onnxruntime" scores with a file from ``scrd export`` (``model`` is the .onnx).
    ``shard`` scores only that shard's part of the inputs into part files (see :mod:`.shards`);
    the last shard to finish merges the parts into the CSV a single process would write.

    Predict never reads what it wrote: its heat-map and panel folders (by resolved path) and every
    file it marked (:func:`~scrd.data.layouts.is_own_output`) are left out of the inputs. ``data_options`` ({"data.KEY":
    value}) override how the model reads files (e.g. a larger data.max_image_pixels);
    ``show_progress``: a bar on stderr. Interrupted (Ctrl-C), it says how far it got; the same call
    again continues.

    ``dicom_out``: a folder for the heat map of each DICOM input as a DICOM Secondary Capture in the
    source's study (:mod:`scrd.reporting.dicom_capture`); other inputs have no study to join and get
    none (counted in ``not_dicom``); inputs none of which is DICOM are refused.
    """
    from ..reporting.dicom_capture import Finding, is_dicom_input, secondary_capture, write_secondary_capture
    from ..reporting.panels import write_image_heatmaps

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --out is a file; give a folder for the predictions")
    check_writable(out_dir)
    if backend == "torch":
        refuse_onnx(model, "predict")
    prepare_process()
    detector, model_file = load_scorer(backend, model, runtime.device, runtime.precision)
    batch_size = runtime.batch_size
    apply_job_options(detector, data_options)
    if backend == "torch" and (note := detector.precision_warning()):
        warnings.warn(note, stacklevel=2)
    names = OutputNames.of(shard)
    images_out = [out_dir / HEATMAP_DIR, out_dir / PANEL_DIR]  # never inputs, even while other shards write
    samples = collect_samples(list(inputs), detector.config.data, exclude=images_out)
    samples = samples if shard is None else shard.select(samples, batch_size)
    own = {} if shard is None else {"shard": str(shard), "assigned": len(samples), "batch_size": batch_size}
    reading = {k: v for k, v in (data_options or {}).items() if k not in NOT_PIXELS}
    if reading:  # options that change the pixels the model sees are part of what wrote the folder
        own["data_options"] = reading
    not_dicom = 0 if dicom_out is None else sum(not is_dicom_input(s.key) for s in samples)
    if dicom_out is not None and samples and not_dicom == len(samples):
        raise InputError(
            f"--dicom-out {dicom_out}: none of the {len(samples)} inputs is DICOM (.dcm, .dicom); a heat map is "
            "written as DICOM only into the study of a DICOM source. Drop --dicom-out for these inputs"
        )
    model_sha256 = sha256_of(model_file)
    dicom_folder = None if dicom_out is None else str(Path(dicom_out).resolve())
    _claim_output_folder(out_dir, model_file, detector, heatmaps, panels, fresh, names, own, model_sha256, dicom_folder)
    _mark_image_folders([folder for folder, used in zip(images_out, (heatmaps, panels)) if used])
    if shard is None:
        remove_stale_temporaries(out_dir)  # left by a kill in the middle of a write; never results
    else:
        remove_own_temporaries(out_dir, names)  # the other shards may be writing now
    csv_path = out_dir / names.predictions
    done = _finished_paths(csv_path)
    already = sum(s.key in done for s in samples)
    samples = [s for s in samples if s.key not in done]
    threshold = detector.threshold
    display_range = detector.metadata.get("display_range")
    normals = stored_normal_scores(detector.metadata)
    by_key = {s.key: s for s in samples}
    written = 0

    skipped = SkippedImages(out_dir / names.skipped)
    new_file, count = not csv_path.is_file(), 0
    with open(csv_path, "a", newline="") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(FIELDS)
        if not samples:
            return _finish(out_dir, names, shard, PredictResult(csv_path, 0, skipped.count, already, 0, not_dicom))
        loader = detector.loader(samples, batch_size, runtime.num_workers, runtime.on_bad_image)
        batches = progress(detector.iterate(loader), len(samples), "predict", show_progress, weight=batch_images)
        try:
            for batch, scored in batches:
                skipped.add(batch["skipped"])
                if scored is None:
                    continue
                for i, path in enumerate(batch["path"]):
                    score = float(scored.scores[i])
                    heatmap = panel = ""
                    if heatmaps or panels:
                        heatmap, panel = write_image_heatmaps(
                            out_dir,
                            heatmap_name(path),
                            path,
                            batch["image"][i].permute(1, 2, 0).numpy(),
                            scored.maps[i].numpy(),
                            score,
                            threshold,
                            display_range,
                            overlay=heatmaps,
                            panel=panels,
                        )
                    decision = decision_of(score, threshold) or ""
                    percentile = percentile_or_none(normals, score)
                    dicom = ""
                    if dicom_out is not None and is_dicom_input(path):
                        finding = Finding(score, threshold, percentile, len(normals or []), model_sha256)
                        sample = by_key[path]
                        maps = scored.maps[i].numpy()
                        ds = secondary_capture(
                            sample.path, sample.frame, maps, display_range, finding, detector.config.data
                        )
                        dicom = str(Path(dicom_out) / (Path(heatmap_name(path)).stem + ".dcm"))
                        write_secondary_capture(dicom, ds)
                        written += 1
                    writer.writerow([path, repr(score), decision, heatmap, panel, percentile_text(percentile), dicom])
                    count += 1
                f.flush()
                os.fsync(f.fileno())
        except KeyboardInterrupt:  # the rows written so far are kept (each after its heat maps)
            raise KeyboardInterrupt(
                f"interrupted after {count} new images ({already + count} of {already + len(samples)} now in "
                f"{csv_path}); run the same command again to continue"
            ) from None
    result = PredictResult(csv_path, count, skipped.count, already, written, not_dicom)
    return _finish(out_dir, names, shard, result)


def _finish(out_dir: Path, names: OutputNames, shard: Shard | None, result: PredictResult) -> PredictResult:
    """A shard marks its part finished; the last one merges every part (``result.csv``: the merge)."""
    if shard is None:
        return result
    mark_done(out_dir, names, len(_finished_paths(result.csv)))
    if shards_finished(out_dir, shard.count):
        result.csv = merge_shards(out_dir)[0]
    return result


def _claim_output_folder(
    out_dir: Path,
    model_file: Path,
    detector: Scorer,
    heatmaps: bool,
    panels: bool,
    fresh: bool,
    names: OutputNames | None = None,
    own: dict | None = None,
    model_sha256: str | None = None,
    dicom_out: str | None = None,
) -> None:
    """Record which model and settings write ``out_dir``; refuse a folder another one wrote.
    ``own``: what only this shard records (which shard, how many images it was given)."""
    names = names or OutputNames.of(None)
    info = {
        "model": str(model_file),
        "model_sha256": model_sha256 or sha256_of(model_file),
        "columns": FIELDS,  # a folder of an older scrd has other columns: its rows cannot be continued
        "threshold": detector.threshold,
        "scoring": detector.config.to_dict()["scoring"],
        "precision": detector.precision,
        "heatmaps": heatmaps,
        "panels": panels,
        "dicom_out": dicom_out,
        **(own or {}),
    }
    path = out_dir / names.info
    previous = read_json(path) if path.is_file() else None
    results = [out_dir / names.predictions, out_dir / names.skipped, path]
    if fresh:
        # heat maps and panels are shared by the shards: only an unsharded run clears them
        if names.done is None:
            _remove_own_images(out_dir, out_dir / names.predictions)
        else:
            results.append(out_dir / names.done)
        for old in results:
            old.unlink(missing_ok=True)
    elif previous is None and (out_dir / names.predictions).is_file():
        raise InputError(
            f"{out_dir}: holds predictions of an unknown model (no {names.info}); pass --fresh to "
            "start the folder afresh, or choose another --out"
        )
    elif previous is not None and previous != info:
        what = [k for k in info if previous.get(k) != info[k]]
        raise InputError(
            f"{out_dir}: was written by {previous['model']} (sha256 {previous['model_sha256'][:12]}) "
            f"with other {', '.join(what)}; pass --fresh to start the folder afresh, or choose "
            "another --out"
        )
    write_json(path, info)


def _remove_own_images(out_dir: Path, csv_path: Path) -> None:
    """``--fresh``: delete the heat maps and panels this tool wrote (named in the CSV, or carrying its
    PNG mark); anything else in those folders stays, and so do the folders unless left empty."""
    listed: set[Path] = set()
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            listed = {out_dir / row[k] for row in csv.DictReader(f) for k in ("heatmap", "panel") if row.get(k)}
    for folder in (out_dir / HEATMAP_DIR, out_dir / PANEL_DIR):
        if not folder.is_dir():
            continue
        for file in folder.iterdir():
            png = file.suffix.lower() == ".png"
            if file.is_file() and (file in listed or (png and OUTPUT_PNG_KEY in png_text_keys(file))):
                file.unlink()
        if {entry.name for entry in folder.iterdir()} <= {OUTPUT_MARKER}:
            (folder / OUTPUT_MARKER).unlink(missing_ok=True)
            folder.rmdir()


def _mark_image_folders(folders: list[Path]) -> None:
    """The marker that keeps every file of the heat-map and panel folders out of a later predict's
    inputs, even when the folder is copied elsewhere (each PNG is marked too: ``plots.mark_png``)."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / OUTPUT_MARKER).is_file():
            atomic_write_text(
                folder / OUTPUT_MARKER,
                "Written by scrd predict: heat maps and panels. scrd never scores the files of this folder "
                "as inputs; delete this file to let it.\n",
            )
