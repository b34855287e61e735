"""The HTML of ``scrd report``: one file, every image a base64 data URI, no network access.

A few lines of JavaScript check on load that every image decoded and that no script error
happened, and record it on ``<body>`` (``data-check="ok"``): the browser test reads that back.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
from typing import Any, Iterable

from ..filenames import ALPHA_FILE, HISTOGRAM_FILE, ROC_FILE, TRAIN_LOG
from ..runs.normal_scores import normal_percentile, stored_normal_scores
from ..version import __version__
from .report_data import FUSION_WEIGHTS, HEAD_ALPHA, GalleryItem, ReportData

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.25em 0.8em; text-align: left;
  border-bottom: 1px solid #eee; vertical-align: top; } th { background: #f4f4f4; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; } .card { border: 1px solid #ccc; border-radius: 6px;
  padding: 0.6em 1em; min-width: 10em; } .card b { display: block; font-size: 1.6em; }
.oracle { background: #fff4e0; } .calibrated { background: #e8f4ea; } .warn { color: #a33; font-weight: bold; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; } .muted { color: #666; } pre { background: #f7f7f7; padding: 1em; }
"""

# Registered first, so an error anywhere later on the page is counted.
ERROR_HOOK = """window.scrdErrors = [];
window.addEventListener('error', function (e) { window.scrdErrors.push(String(e.message || e)); });"""

CHECK = """(function () {
  function check() {
    var images = document.images, failed = 0;
    for (var i = 0; i < images.length; i++) {
      if (!(images[i].complete && images[i].naturalWidth > 0)) failed++;
    }
    var body = document.body;
    body.setAttribute('data-images', String(images.length));
    body.setAttribute('data-images-failed', String(failed));
    body.setAttribute('data-errors', String(window.scrdErrors.length));
    body.setAttribute('data-check', failed === 0 && window.scrdErrors.length === 0 ? 'ok' : 'failed');
  }
  if (document.readyState === 'complete') { check(); } else { window.addEventListener('load', check); }
})();"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def table(rows: Iterable[tuple[str, Any]], cls: str = "") -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _model_section(data: ReportData) -> str:
    from ..config import Config

    meta = data.metadata
    config = Config.from_dict(meta["config"])
    train, trained_on = config.train, meta.get("data", {})
    calibration = meta.get("calibration")
    prov = meta.get("provenance", {})
    rows = [
        ("method", esc(config.model.method)),
        ("backbone (teacher)", esc(config.model.arch)),
        ("teacher weights", esc(meta.get("teacher_weights", config.model.weights))),
        ("image size", f"{config.model.image_size} px"),
        ("iterations trained", esc(meta.get("iterations", "n/a"))),
        ("batch size", esc(train.batch_size)),
        ("training time", f"{esc(meta.get('train_seconds', 'n/a'))} s"),
        ("checkpoint", esc(meta.get("selection", "unknown"))),
        (
            "training data",
            f"{esc(trained_on.get('source', 'n/a'))} ({esc(trained_on.get('n_train', '?'))} images, "
            f"{esc(trained_on.get('n_holdout', 0))} normal images held out)",
        ),
        ("loss", esc(f"{config.loss.form}, scale-head α placement {config.loss.alpha_placement}")),
        ("noise", esc(f"{config.noise.kind}, strength {config.noise.strength}")),
        ("image score", esc(f"{config.scoring.score} of the map (σ {config.scoring.sigma})")),
        (
            "stored calibration",
            "none (run scrd calibrate)"
            if calibration is None
            else esc(
                f"threshold {calibration['threshold']:.6g} at specificity {calibration['target_specificity']} "
                f"on {calibration['n_images']} normal images ({calibration['source']})"
            )
            + _in_sample_mark(calibration),
        ),
        (
            "trained with",
            esc(
                f"scrd {prov.get('scrd', '?')} (commit {str(prov.get('scrd_commit', '?'))[:12]}), torch "
                f"{prov.get('torch', '?')}, {prov.get('device', '?')}"
            ),
        ),
    ]
    yaml = f"<details><summary>full config</summary><pre>{esc(config.to_yaml())}</pre></details>"
    return f"<h2>Model and training</h2>{table(rows)}{yaml}"


def _in_sample_mark(calibration: dict[str, Any]) -> str:
    """The warning beside a threshold calibrated on its own training images."""
    if not calibration.get("in_sample"):
        return ""
    return (
        ' <span class="warn">(IN-SAMPLE: calibrated on the training images themselves, so specificity on '
        "new normal images will be lower than the target)</span>"
    )


def _summary(data: ReportData) -> str:
    if data.metrics is None:
        return ""
    m = data.metrics
    cards = [("AUROC", num(m["auroc"])), ("AP", num(m["ap"]))]
    c = m.get("calibrated_threshold")
    if c is not None:
        cards += [
            ("sensitivity (calibrated)", num(c["sensitivity"], 3)),
            ("specificity (calibrated)", num(c["specificity"], 3)),
        ]
    body = "".join(f'<div class="card">{esc(k)}<b>{v}</b></div>' for k, v in cards)
    return f'<div class="cards">{body}</div>'


def _threshold_noise(noise: dict | None) -> str:
    """How far the sensitivity moves with the calibration normals drawn (evaluate's threshold_noise)."""
    if not noise:
        return ""
    rows = [
        (
            f"calibrated on {n['calibration_size']} normals",
            f"sensitivity {n['sensitivity']['mean']:.3f} ± {n['sensitivity']['std']:.3f} "
            f"(5–95 %: {n['sensitivity']['p5']:.3f}–{n['sensitivity']['p95']:.3f}); "
            f"specificity {n['specificity']['mean']:.3f} ± {n['specificity']['std']:.3f}",
        )
        for n in noise["by_size"]
    ]
    return f"<h3>How much the threshold moves with its calibration normals</h3><p>{esc(noise['note'])}.</p>" + table(
        rows, "threshold-noise"
    )


def _metrics_section(data: ReportData) -> str:
    m = data.metrics
    if m is None:
        return ""
    o, c = m["oracle_threshold"], m.get("calibrated_threshold")
    parts = [
        f"<h2>Metrics</h2><p>{esc(m['data'])}, split <b>{esc(m['split'])}</b>: {m['n_normal']} normal and "
        f"{m['n_abnormal']} abnormal images (evaluation folder {esc(data.eval_dir)}).</p>",
        "<h3>Without a threshold</h3>",
        table(
            [("AUROC", num(m["auroc"]) + _interval(m.get("auroc_interval"))), ("AP (average precision)", num(m["ap"]))]
        ),
    ]
    parts.append("<h3>Calibrated threshold: from normal images only, what a deployment can use</h3>")
    if c is None:
        parts.append('<p class="warn">no calibrated threshold: run scrd calibrate, or evaluate with --calibration</p>')
    else:
        rows = [
            ("threshold", f"{c['threshold']:.6g}{_in_sample_mark(c)}"),
            ("calibrated on", esc(f"{c.get('n_images', '?')} normal images of {c.get('source', '?')}")),
            ("target specificity", esc(c.get("target_specificity", "?"))),
            ("threshold among normal images", _threshold_percentile(c["threshold"], data.metadata)),
            ("sensitivity", num(c["sensitivity"]) + _interval(c.get("sensitivity_interval"))),
            (
                "specificity reached on this set's normals",
                num(c["specificity"]) + _interval(c.get("specificity_interval")),
            ),
            (
                "what the threshold promises",
                esc(c.get("guarantee", "(calibrated by an earlier scrd: no stated guarantee)")),
            ),
            ("F1", num(c["f1"])),
            ("accuracy", num(c["acc"])),
        ]
        parts.append(table(rows, "calibrated"))
        parts.append(_threshold_noise(m.get("threshold_noise")))
    parts.append(
        "<h3>ORACLE threshold: best F1 chosen on this evaluated set itself (as the paper reports); "
        "optimistic, not usable for deployment</h3>"
    )
    rows = [("threshold", f"{o['threshold']:.6g}"), ("F1 (oracle)", num(o["f1"])), ("accuracy (oracle)", num(o["acc"]))]
    parts.append(table(rows, "oracle"))
    if o.get("labels_almost_everything_abnormal"):
        parts.append(
            f'<p class="warn">the oracle threshold calls {o["flagged_fraction"]:.0%} of the images abnormal; '
            f"calling every image abnormal gives F1 {o['all_abnormal_f1']:.4f}</p>"
        )
    skipped = m.get("skipped_images")
    if skipped:
        parts.append(
            f'<p class="warn">{esc(skipped["count"])} unreadable images were skipped and left out of every '
            f"metric on this page (--on-bad-image skip); the list, with each reason: {esc(skipped['list'])}</p>"
        )
    if "SELECTED ON TEST LABELS" in str(m.get("checkpoint_selection", "")):
        parts.append(f'<p class="warn">this checkpoint was {esc(m["checkpoint_selection"])}</p>')
    by = {k: v for k, v in m.get("auroc_by_image_score", {}).items() if k != "note"}
    if by:
        parts.append("<h3>AUROC by image score</h3>" + table((k, num(v)) for k, v in by.items()))
    where = m.get("localisation")
    if where:
        parts.append(
            "<h3>Where the heat maps point (lesion masks)</h3>"
            + table(
                [
                    ("pixel AUROC", num(where["pixel_auroc"])),
                    ("hottest 1 % of an abnormal image inside its lesion (mean)", num(where["top1_in_lesion"])),
                    ("images with a mask / normal images", f"{where['images_with_masks']} / {where['normal_images']}"),
                ]
            )
        )
    return "".join(parts)


def _interval(found: dict[str, Any] | None) -> str:
    """' (95 % CI low–high)' of an interval record, or nothing."""
    if not found:
        return ""
    return f" (95 % CI {found['low']:.4f}–{found['high']:.4f})"


def _threshold_percentile(threshold: float, metadata: dict[str, Any]) -> str:
    """Where the threshold falls among the held-out normal scores stored at training (the reference of
    every score's ``normal_percentile`` in scrd predict and scrd serve)."""
    normals = stored_normal_scores(metadata)
    if normals is None:
        return "n/a: the model stores no held-out normal scores (trained without held-out images, or by an older scrd)"
    return esc(
        f"{normal_percentile(normals, threshold):.1f}th percentile of the {len(normals)} held-out normal scores "
        "stored with the model (scrd predict and scrd serve give each score's percentile among them)"
    )


CAPTIONS = {
    ROC_FILE: "ROC curve of the image scores; the dot is the calibrated threshold's operating point.",
    HISTOGRAM_FILE: "Image scores of normal and abnormal images (the paper's Fig. 2), with the thresholds.",
    ALPHA_FILE: "{what}, per scale and image over the evaluated set (boxes: quartiles; whiskers: 1.5 IQR).",
}
WEIGHTS_ABOUT = {
    HEAD_ALPHA: "the learned scale head's output (paper Eq. 3), one weight per scale from the bottleneck",
    FUSION_WEIGHTS: "softmax of each scale's image score in units of its spread over normal images "
    "(scoring.scale_fusion = normal_softmax); nothing learned, unrelated to the scale head's α",
}


def _caption(name: str, data: ReportData) -> str:
    if name != ALPHA_FILE:
        return CAPTIONS.get(name, name)
    what = str((data.metrics or {}).get("alpha_label") or "scale weights")
    about = WEIGHTS_ABOUT.get(what.split(";")[0])
    return CAPTIONS[name].format(what=what[:1].upper() + what[1:]) + (f" These are {about}." if about else "")


def _figures_section(data: ReportData) -> str:
    items = [(_caption(name, data), png, name) for name, png in data.figures.items()]
    if data.training_png is not None:
        items.append((f"Training curves from the run's {TRAIN_LOG}.", data.training_png, "training curves"))
    if not items:
        return ""
    body = "".join(
        f"<figure>{img(png, alt)}<figcaption>{esc(caption)}</figcaption></figure>" for caption, png, alt in items
    )
    return f'<h2>Figures</h2><div class="figures">{body}</div>'


def _gallery(title: str, about: str, items: list[GalleryItem]) -> str:
    if not items:
        return ""
    body = []
    for item in items:
        what = f"{item.path}: score {item.score:.6g} ({'abnormal' if item.label else 'normal'} image)"
        if item.png is None:
            body.append(f'<p class="muted">{esc(what)}: could not be read again for its panel</p>')
        else:
            body.append(f"<figure>{img(item.png, what)}<figcaption>{esc(what)}</figcaption></figure>")
    return f"<h3>{esc(title)}</h3><p class='muted'>{esc(about)}</p>{''.join(body)}"


def _gallery_section(data: ReportData) -> str:
    if data.metrics is None:
        return ""
    return (
        "<h2>Gallery</h2><p>Heat maps on the run's fixed colour scale, measured on normal training images.</p>"
        + _gallery(
            "Highest-scoring normal images",
            "false-positive suspects: normal images the model finds most anomalous",
            data.false_positive_suspects,
        )
        + _gallery(
            "Lowest-scoring abnormal images", "misses: abnormal images the model finds least anomalous", data.misses
        )
    )


def render(data: ReportData) -> str:
    """The whole page as a string."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes = "".join(f"<li>{esc(n)}</li>" for n in data.notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>scrd report: {esc(data.run)}</title><style>{STYLE}</style><script>{ERROR_HOOK}</script></head>"
        '<body data-check="pending">'
        f"<h1>scrd report</h1><p class='muted'>run {esc(data.run)}; written {now} by scrd {esc(__version__)}</p>"
        + _summary(data)
        + _metrics_section(data)
        + _figures_section(data)
        + _gallery_section(data)
        + _model_section(data)
        + (f"<h2>Not shown</h2><ul>{notes}</ul>" if notes else "")
        + f"<script>{CHECK}</script></body></html>\n"
    )
