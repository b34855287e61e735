"""The markdown report of ``scrd experiment``: every finished run of a grid, as tables.

Values are mean ± std over a row's seeds, then each seed's value; what each table shows is said above
it, and the command that made it at the top (:func:`report`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..evaluation.metrics import spearman
from ..filenames import ENV_FILE, EVAL_LOG, SELECTION_LOG
from ..storage import read_json
from .experiment import SUMMARY, Grid, Variant, _uses_alpha


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
    if len(scoring_names) < 2 or not with_criterion:
        return []  # one scoring is no choice: its "pick" would read as a label-free result
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


def _half_width(rows: list[dict]) -> str:
    """The mean half-width of the runs' 95 % AUROC intervals (the uncertainty of one run's figure)."""
    widths = [(x["auroc_interval"]["high"] - x["auroc_interval"]["low"]) / 2 for x in rows if x.get("auroc_interval")]
    return f"± {np.mean(widths):.4f}" if len(widths) == len(rows) else "–"


def _choice_tables(rows: dict[str, list[dict]]) -> list[str]:
    """The label-free choice of the image score against the configured one and the best in hindsight."""
    with_choice = {name: r for name, r in rows.items() if all(x.get("choice") for x in r)}
    if not with_choice:
        return []
    lines = [
        "## The image score chosen without labels",
        "",
        "Each run chooses among 20 scorings (mean, top 20/5/1 %, max; 3x3 or no pooling; normal_softmax or "
        "normal_sum fusion; a knn row: the reduction only) by their AUROC on its held-out normal images against "
        "altered copies of them, focal (blob, cut-paste) and diffuse (opacity, haze); no real label "
        "(`scoring.choose: label_free`). Against the configured scoring and the best of the 20 in hindsight "
        "(chosen on the evaluated labels: not a deployable figure). Paired: DeLong's test of the chosen against "
        "the configured scoring on each run's images, p per seed.",
        "",
        "| variant | label-free choice | configured | best in hindsight | chosen per seed | paired p (chosen vs "
        "configured) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in with_choice.items():
        c = [x["choice"] for x in r]
        paired = " / ".join(f"{x['paired_chosen_vs_configured']['p']:.2g}" for x in c)
        lines.append(
            f"| {name} | {_mean_std([x['auroc_chosen'] for x in c])} | {_mean_std([x['auroc_configured'] for x in c])} "
            f"| {_mean_std([x['auroc_best'] for x in c])} | {' / '.join(x['chosen'] for x in c)} | {paired} |"
        )
    candidates = list(next(iter(with_choice.values()))[0]["choice"]["auroc_by_candidate"])
    lines += ["", "Every candidate's real AUROC (mean ± std over seeds), then its label-free criterion:", ""]
    lines += ["| candidate | " + " | ".join(with_choice) + " |", "|---|" + "---|" * len(with_choice)]
    for cand in candidates:
        cells = []
        for r in with_choice.values():
            real = [x["choice"]["auroc_by_candidate"].get(cand) for x in r]
            crit = [x["choice"]["criterion_by_candidate"].get(cand) for x in r]
            cells.append(f"{_scoring_cell(real)} ({_scoring_cell(crit)})")
        lines.append(f"| {cand} | " + " | ".join(cells) + " |")
    return lines + [""]


def _bank_tables(grid: Grid, rows: dict[str, list[dict]]) -> list[str]:
    """Other memory banks against each run's own: AUROC, its change, rows and search time."""
    with_banks = {name: r for name, r in rows.items() if all(x.get("banks") for x in r)}
    if not with_banks:
        return []
    lines = [
        "## Other memory banks on the same trained models",
        "",
        "Each bank fitted on the run's training images with its teacher, scored with the run's own scoring "
        "(statistics measured anew on its held-out normals); ΔAUROC against the run's own bank (mean over "
        "seeds, and DeLong's paired p per seed); the search time per image of a batch of 16 (2 CPU cores, "
        "beside other work: ratios, not absolute times). A bank of search options only (`search: ivf`) is "
        "the run's own bank searched that way, with the run's statistics; its recall@1 is the share of "
        "those 16 images' patches whose nearest bank row it found (mean over seeds).",
        "",
        "| variant | bank | rows | AUROC | ΔAUROC vs own | paired p per seed | search ms / image | recall@1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in with_banks.items():
        for bank in ["own", *grid.banks]:
            found = [x["banks"].get(bank) for x in r]
            if any(f is None for f in found):
                continue
            deltas = [f["auroc"] - x["banks"]["own"]["auroc"] for f, x in zip(found, r)]
            paired = " / ".join(f"{f['paired_vs_own']['p']:.2g}" for f in found) if bank != "own" else "–"
            ms = np.mean([f["search_seconds_per_image"] * 1000 for f in found])
            size = int(np.mean([f["rows"] for f in found]))
            recall = [f["recall_at_1"] for f in found if "recall_at_1" in f]
            lines.append(
                f"| {name} | {bank} | {size} | {_mean_std([f['auroc'] for f in found])} "
                f"| {np.mean(deltas):+.4f} | {paired} | {ms:.1f} | {f'{np.mean(recall):.4f}' if recall else '–'} |"
            )
    return lines + [""]


def _compare_table(grid: Grid, out: Path, rows: dict[str, list[dict]]) -> list[str]:
    from .run_analyses import paired_table

    if not grid.compare:
        return []
    seeds = {name: [x["seed"] for x in r] for name, r in rows.items()}
    return [
        "## Paired comparisons (DeLong, the same images)",
        "",
        "AUROC(a) − AUROC(b) per seed, its p-value and the word the docs use: above or below only where p < 0.05, "
        "else level.",
        "",
        "| a | b | per seed |",
        "|---|---|---|",
        *paired_table(out, [tuple(p) for p in grid.compare], seeds),
        "",
    ]


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
            "| variant | n | AUROC | AUROC per seed | ± 95 % CI (DeLong) | AP | sens. / spec. at calibrated thr. "
            "| α: mean largest weight (std over images per scale) | training min | what it is |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for v in variants:
            r = rows[v.name]
            sens = _mean_std([x["sensitivity"] for x in r])
            spec = _mean_std([x["specificity"] for x in r])
            minutes = f"{np.mean([(x['train_seconds'] or 0) / 60 for x in r]):.1f}"
            aurocs = [x["auroc"] for x in r]
            lines.append(
                f"| {v.name} | {len(r)} | {_mean_std(aurocs)} | {_seeds(aurocs)} | {_half_width(r)} "
                f"| {_mean_std([x['ap'] for x in r])} "
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
    lines += _choice_tables(rows)
    lines += _bank_tables(grid, rows)
    lines += _compare_table(grid, out, rows)
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
