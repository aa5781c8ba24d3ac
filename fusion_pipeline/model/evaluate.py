"""Evaluation: every suite model under every presence pattern of interest, on a world seed never trained on.

Writes `eval.json` next to the checkpoints, and the table plus a plot into docs/MODEL.md (between a
suite's markers, so the prose around it is kept). The plot and `eval.json` are new files, never written
over; only the doc's section is updated in place. Metrics are computed in numpy so they are easy to check.

Several training seeds of one suite (`model train --seeds`) are evaluated each and `aggregate_rows` makes
one row per (model, pattern) of their mean, with each figure's range: the table's cells read
`mean (min-max)`. Degraded sensors (`evaluate_corruptions`, `model eval --corruptions`) are evaluated with
every sensor present on corrupted copies of the test seed, each against the clean seed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from fusion_pipeline.contract import MODALITIES, InputSpec, ModelContract, default_contract
from fusion_pipeline.files import write_new, write_new_text
from fusion_pipeline.model.errors import ModelError
from fusion_pipeline.model.fusion import FUSIONS
from fusion_pipeline.model.net import OUTPUT_NAMES, FusionNet
from fusion_pipeline.model.train import SUITE, input_tensors
from fusion_pipeline.sim.corruptions import Corruption

__all__ = [
    "CORRUPTION_KEYS",
    "DEFAULT_CRITERIA",
    "MAX_MISSING_DROP",
    "MAX_REDUNDANT_DROP",
    "MIN_FUSION_GAIN",
    "PATTERNS",
    "Criteria",
    "Metrics",
    "aggregate_rows",
    "corruption_summary",
    "criteria_for",
    "evaluate_corruptions",
    "evaluate_suite",
    "macro_f1",
    "metrics_of",
    "markers",
    "patterns_for",
    "pick_best",
    "pyplot",
    "roc_auc",
    "write_corruption_report",
    "write_report",
]

log = logging.getLogger(__name__)


def patterns_for(contract: ModelContract) -> dict[str, tuple[float, ...]]:
    """Presence patterns of the table, bits in presence order: all present, each modality alone, each
    modality missing (all of its inputs), and each input missing of a modality that has several (one
    camera of six)."""
    order = contract.presence_order

    def present(keep: Callable[[InputSpec], bool]) -> tuple[float, ...]:
        return tuple(float(keep(contract.input(name))) for name in order)

    modalities = [m for m in MODALITIES if contract.inputs_for(m)]
    patterns = {
        "all": present(lambda s: True),
        **{f"{m} only": present(lambda s, m=m: s.modality == m) for m in modalities},
        **{f"no {m}": present(lambda s, m=m: s.modality != m) for m in modalities},
    }
    for spec in contract.inputs:
        if len(contract.inputs_for(spec.modality)) > 1:
            if f"no {spec.name}" in patterns:
                raise ModelError(
                    f"input {spec.name!r} is named like a modality: its pattern would be ambiguous"
                )
            patterns[f"no {spec.name}"] = present(lambda s, name=spec.name: s.name != name)
    return patterns


#: The default contract's patterns: all present, each sensor alone, each sensor missing.
PATTERNS: dict[str, tuple[float, ...]] = patterns_for(default_contract())
#: Acceptance: fused accuracy gain over the best single-modality model, and the worst allowed drop when
#: one sensor is missing (both in accuracy points, i.e. fractions here): any one sensor of the default
#: suite, one of several of a modality (a camera of six) in a suite that has them.
MIN_FUSION_GAIN = 0.10
MAX_MISSING_DROP = 0.08
MAX_REDUNDANT_DROP = 0.03


@dataclass(frozen=True)
class Criteria:
    """What a fusion strategy must reach: `min_gain` over the best single-modality model, and at most
    `max_drop` from all present under each of the `one_missing` patterns."""

    one_missing: tuple[str, ...]
    max_drop: float
    min_gain: float = MIN_FUSION_GAIN


def criteria_for(contract: ModelContract) -> Criteria:
    """One sensor of several missing (a suite with redundant sensors), else each one missing."""
    redundant = [s.name for s in contract.inputs if len(contract.inputs_for(s.modality)) > 1]
    if redundant:
        return Criteria(tuple(f"no {name}" for name in redundant), MAX_REDUNDANT_DROP)
    return Criteria(tuple(f"no {s.modality}" for s in contract.inputs), MAX_MISSING_DROP)


DEFAULT_CRITERIA = criteria_for(default_contract())


def markers(section: str) -> tuple[str, str]:
    """The comments around a report section: `model-eval` is the default suite's."""
    return f"<!-- {section}:begin -->", f"<!-- {section}:end -->"


BEGIN, END = markers("model-eval")


@dataclass
class Metrics:
    accuracy: float
    macro_f1: float
    position_mae_m: float  # mean Euclidean error, over samples that have an actor
    velocity_mae_mps: float  # mean absolute error, over samples that have an actor
    siren_auc: float


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in `y_true`."""
    scores = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fn == 0:
            continue
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(scores)) if scores else float("nan")


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half)."""
    pos, neg = score[y_true > 0.5], score[y_true <= 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    # Average ranks over ties.
    _, first, counts = np.unique(values, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def metrics_of(outputs: dict[str, np.ndarray], labels: dict[str, np.ndarray], n_classes: int) -> Metrics:
    """The Metrics of one model's `outputs` (by output name) against the `labels` of the same samples."""
    y = labels["class"]
    pred = outputs["class_logits"].argmax(1)
    actor = y != 0
    pos_err = np.linalg.norm(outputs["position"] - labels["position"], axis=1)[actor]
    vel_err = np.abs(outputs["velocity"] - labels["velocity"]).reshape(-1)[actor]
    return Metrics(
        accuracy=float(np.mean(pred == y)),
        macro_f1=macro_f1(y, pred, n_classes),
        position_mae_m=float(pos_err.mean()) if actor.any() else float("nan"),
        velocity_mae_mps=float(vel_err.mean()) if actor.any() else float("nan"),
        siren_auc=roc_auc(labels["siren"].reshape(-1), outputs["siren_logit"].reshape(-1)),
    )


@torch.no_grad()
def _run_patterns(
    model: FusionNet, data: dict[str, torch.Tensor], patterns: dict[str, tuple[float, ...]], batch_size: int
) -> dict[str, dict[str, np.ndarray]]:
    """Outputs of `model` under each presence pattern; the encoders run once per batch, not per pattern."""
    model.eval()
    chunks: dict[str, dict[str, list[np.ndarray]]] = {p: {k: [] for k in OUTPUT_NAMES} for p in patterns}
    n = len(data["class"])
    for i in range(0, n, batch_size):
        inputs = {k: data[k][i : i + batch_size] for k in input_tensors(model.contract)}
        tokens = model.encode(inputs)
        for pattern, mask in patterns.items():
            presence = torch.tensor(mask).expand(len(tokens[0]), -1)[:, model.presence_index]
            fused, _ = model.fuse(tokens, presence)
            for k, v in zip(OUTPUT_NAMES, model.heads(fused), strict=True):
                chunks[pattern][k].append(v.numpy())
    return {p: {k: np.concatenate(v) for k, v in out.items()} for p, out in chunks.items()}


def evaluate_suite(
    models: dict[str, FusionNet], data: dict[str, torch.Tensor], batch_size: int = 256
) -> list[dict[str, Any]]:
    """One row per (model, pattern): fused models under `patterns_for` their contract, baselines with all
    of their own sensors."""
    labels = {k: data[k].numpy() for k in ("class", "position", "velocity", "siren")}
    rows: list[dict[str, Any]] = []
    for name, model in models.items():
        n_classes = model.heads.cls.out_features
        patterns = patterns_for(model.contract)
        if name not in FUSIONS:
            patterns = {"all": patterns["all"]}
        for pattern, outputs in _run_patterns(model, data, patterns, batch_size).items():
            metrics = metrics_of(outputs, labels, n_classes)
            rows.append({"model": name, "pattern": pattern, **metrics.__dict__})
            log.info("%-12s %-11s acc %.3f", name, pattern, metrics.accuracy)
    return rows


#: The fields that say what a row measured (the rest are figures): a suite's rows have the first two, a
#: corruption evaluation's all four.
ROW_KEYS: tuple[str, ...] = ("model", "pattern", "corruption", "severity")
CORRUPTION_KEYS: tuple[str, ...] = ("model", "corruption", "severity")


def aggregate_rows(runs: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of several runs of one evaluation (one per training seed) as one: each figure the mean
    over the runs, its (min, max) under "range", and "runs", the count. Every run must have the same rows
    in the same order."""
    if not runs:
        raise ModelError("aggregate_rows: no runs")
    keys = [[tuple(r.get(k) for k in ROW_KEYS) for r in rows] for rows in runs]
    if any(k != keys[0] for k in keys):
        raise ModelError("aggregate_rows: the runs did not evaluate the same (model, pattern) rows")
    out = []
    for group in zip(*runs, strict=True):
        figures = [k for k in group[0] if k not in ROW_KEYS]
        values = {k: np.array([r[k] for r in group], dtype=float) for k in figures}
        out.append(
            {
                **{k: group[0][k] for k in ROW_KEYS if k in group[0]},
                **{k: float(v.mean()) for k, v in values.items()},
                "range": {k: [float(v.min()), float(v.max())] for k, v in values.items()},
                "runs": len(group),
            }
        )
    return out


def _cell(row: Mapping[str, Any], key: str, digits: int, sign: bool = False) -> str:
    """A figure as the table shows it: `0.948`, or `0.948 (0.940-0.951)` for the mean of several runs."""
    fmt = f"{{:{'+' if sign else ''}.{digits}f}}"
    text = fmt.format(row[key])
    if "range" in row:
        low, high = row["range"][key]
        text += f" ({fmt.format(low)}{' to ' if sign else '-'}{fmt.format(high)})"  # "-0.01-+0.02" misreads
    return text


def _figures(row: Mapping[str, Any]) -> str:
    """The table cells of a row's Metrics: accuracy, macro-F1, position and velocity error, siren AUC."""
    digits = {"accuracy": 3, "macro_f1": 3, "position_mae_m": 2, "velocity_mae_mps": 2, "siren_auc": 3}
    return " | ".join(_cell(row, key, n) for key, n in digits.items())


def _acc(rows: list[dict[str, Any]], model: str, pattern: str) -> float:
    return next(r["accuracy"] for r in rows if r["model"] == model and r["pattern"] == pattern)


def acceptance(
    rows: list[dict[str, Any]], strategy: str, criteria: Criteria = DEFAULT_CRITERIA
) -> dict[str, Any]:
    """The issue's acceptance figures for one fusion strategy."""
    present = {r["model"] for r in rows}
    baselines = {m: _acc(rows, m, "all") for m in SUITE if m.endswith("-only") and m in present}
    best_single = max(baselines.values()) if baselines else float("nan")
    all_acc = _acc(rows, strategy, "all")
    drops = {p: all_acc - _acc(rows, strategy, p) for p in criteria.one_missing}
    worst = max(drops, key=drops.__getitem__)
    return {
        "strategy": strategy,
        "all_present_accuracy": all_acc,
        "best_single_accuracy": best_single,
        "single_accuracy": baselines,
        "fusion_gain": all_acc - best_single,
        "worst_missing_drop": drops[worst],
        "worst_missing": worst,
        "passes": bool(all_acc - best_single >= criteria.min_gain and drops[worst] <= criteria.max_drop),
    }


def pick_best(rows: list[dict[str, Any]], criteria: Criteria = DEFAULT_CRITERIA) -> str:
    """The strategy to ship: passing acceptance first, then the highest all-present accuracy."""
    strategies = [s for s in FUSIONS if any(r["model"] == s for r in rows)]
    return max(strategies, key=lambda s: (acceptance(rows, s, criteria)["passes"], _acc(rows, s, "all")))


def _table(rows: list[dict[str, Any]]) -> str:
    head = "| model | sensors | class acc | macro-F1 | position MAE m | velocity MAE m/s | siren AUC |"
    lines = [head, "|" + "---|" * 7]
    for r in rows:
        sensors = (
            r["pattern"] if r["model"] in FUSIONS else r["model"].removesuffix("-only") + " (trained alone)"
        )
        lines.append(f"| {r['model']} | {sensors} | {_figures(r)} |")
    return "\n".join(lines)


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the file-only Agg backend. Imported late, so the metrics above load without
    matplotlib; `model eval` calls this before its work, so a missing one is said up front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    patterns = list(dict.fromkeys(r["pattern"] for r in rows if r["model"] in FUSIONS))
    strategies = [s for s in FUSIONS if any(r["model"] == s for r in rows)]
    fig, ax = plt.subplots(figsize=(max(10, 0.6 * len(patterns)), 4.6))
    width = 0.8 / max(len(strategies), 1)
    x = np.arange(len(patterns))
    for k, s in enumerate(strategies):
        ax.bar(x + k * width, [_acc(rows, s, p) for p in patterns], width, label=s)
    # Each single-sensor model as a black bar across its "<sensor> only" group: the fused network with
    # one sensor left against a network trained on that sensor alone.
    for i, pattern in enumerate(patterns):
        name = pattern.removesuffix(" only") + "-only"
        if pattern.endswith(" only") and any(r["model"] == name for r in rows):
            acc = _acc(rows, name, "all")
            ax.hlines(acc, i - width / 2, i + width * (len(strategies) - 0.5), colors="black", lw=2)
    ax.plot([], [], color="black", lw=2, label="trained on that sensor alone")
    ax.set_xticks(x + width * (len(strategies) - 1) / 2, patterns, rotation=30, ha="right")
    ax.set_ylabel("class accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Class accuracy by fusion strategy and sensors present (unseen world seed)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # `path` is write_new's partial file: say the format
    plt.close(fig)


def _link(target: Path, doc: Path) -> str:
    """`target` as a Markdown link in `doc`: relative to the doc's folder, where a viewer resolves it."""
    return Path(os.path.relpath(target.resolve(), doc.resolve().parent)).as_posix()


def write_report(
    rows: list[dict[str, Any]],
    setup: dict[str, Any],
    doc: Path,
    plot: Path,
    *,
    criteria: Criteria = DEFAULT_CRITERIA,
    section: str = "model-eval",
    shipped_as: str | None = "fusion_pipeline/models/default.onnx",
) -> dict[str, Any]:
    """Replace `section` of `doc` (between its `markers`; appended if missing) with the table, acceptance
    figures, plot link and the strategy to ship (as `shipped_as`, where the config names a model file).
    The plot is a new PNG `plot`: it may not exist (ModelError)."""
    best = pick_best(rows, criteria)
    checks = {s: acceptance(rows, s, criteria) for s in FUSIONS if any(r["model"] == s for r in rows)}
    begin, end = markers(section)
    # Whole modalities missing ("no radar"), or one sensor of several of a modality ("no cam_back").
    by_modality = all(pattern.removeprefix("no ") in MODALITIES for pattern in criteria.one_missing)
    missing = "worst one-missing drop" if by_modality else "worst drop, one sensor of several missing"
    lines = [
        begin,
        *([f"Sensors: {setup['sensors']} (`{setup['config']}`)."] if setup.get("config") else []),
        _setup_text(setup),
        "",
        _table(rows),
        "",
        f"![class accuracy by strategy and presence pattern]({_link(plot, doc)})",
        "",
        f"| strategy | all present | best single modality | gain (>= +{criteria.min_gain:.2f}) "
        f"| {missing} (<= {criteria.max_drop:.2f}) | passes |",
        "|---|---|---|---|---|---|",
        *(
            f"| {s} | {c['all_present_accuracy']:.3f} | {c['best_single_accuracy']:.3f} | "
            f"{c['fusion_gain']:+.3f} | {c['worst_missing_drop']:.3f} ({c['worst_missing']}) | "
            f"{'yes' if c['passes'] else 'no'} |"
            for s, c in checks.items()
        ),
        "",
        f"Shipped as `{shipped_as}`: **{best}**." if shipped_as else f"Best strategy: **{best}**.",
        end,
    ]
    text = doc.read_text() if doc.is_file() else "# The fused model\n"
    if begin not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n## Evaluation\n\n{begin}\n{end}\n"
    start, stop = text.index(begin), text.index(end) + len(end)
    # The doc is updated in place (the prose around the section is the user's); the plot is new.
    _write_with_plot(
        plot,
        lambda path: _plot(rows, path),
        lambda: doc.write_text(text[:start] + "\n".join(lines) + text[stop:]),
    )
    return {"best": best, "acceptance": checks}


def _write_with_plot(plot: Path, draw: Callable[[Path], None], write_doc: Callable[[], object]) -> None:
    """A new PNG `plot` (`draw` it into a path), then the doc that links it: a doc that fails takes the
    plot back, the two belong together."""
    write_new(plot, draw, ModelError)
    try:
        write_doc()
    except BaseException:
        plot.unlink(missing_ok=True)
        raise


def _setup_text(setup: Mapping[str, Any]) -> str:
    """What was trained and evaluated on, one sentence each; several seeds say how the cells read."""
    seeds = setup["seed"]
    torch_seed = (
        f"torch seeds {', '.join(map(str, seeds))} (each cell the mean over them, (min-max) their range)"
        if isinstance(seeds, list)
        else f"torch seed {seeds}"
    )
    options = f" Options: {setup['options']}." if setup.get("options") else ""
    return (
        f"Training: world seed {setup['train_world_seed']}, {setup['train_samples']} samples "
        f"(last {setup['val_fraction']:.0%} held out for per-epoch validation), {torch_seed}, "
        f"{setup['epochs']} epochs.{options} Evaluation: world seed {setup['test_world_seed']} "
        f"(never used in training), {setup['test_samples']} samples."
    )


def save_rows(path: Path, rows: list[dict[str, Any]], summary: dict[str, Any], setup: dict[str, Any]) -> None:
    """The rows with their setup and `summary` as JSON, a new file `path`: never written over (ModelError)."""
    write_new_text(path, json.dumps({"setup": setup, "rows": rows, **summary}, indent=1), ModelError)


# ---- degraded sensors ----------------------------------------------------------------------------------


def evaluate_corruptions(
    runs: Sequence[Mapping[str, FusionNet]],
    clean: dict[str, torch.Tensor],
    corrupted: Iterable[tuple[tuple[str, int], dict[str, torch.Tensor]]],
    batch_size: int = 256,
) -> list[list[dict[str, Any]]]:
    """Rows per run (`runs`: one suite of models per training seed), one per (model, corruption): every
    model with all of its sensors present on the clean test set (corruption "clean", severity 0) and on
    each corrupted copy of it (`corrupted`: ((kind, severity), data) pairs, the same samples with one
    modality degraded, taken one at a time so only one is in memory), with `accuracy_drop`, the clean
    accuracy minus this one; a model runs only on the corruptions of a modality it reads (a radar-only
    model not on blurred cameras). Rows are ordered by model, clean first."""
    labels = {k: clean[k].numpy() for k in ("class", "position", "velocity", "siren")}

    def measure(model: FusionNet, data: dict[str, torch.Tensor]) -> Metrics:
        everything = {"all": patterns_for(model.contract)["all"]}
        outputs = _run_patterns(model, data, everything, batch_size)["all"]
        return metrics_of(outputs, labels, model.heads.cls.out_features)

    cells: list[dict[tuple[str, str, int], dict[str, Any]]] = [{} for _ in runs]
    baseline = [{name: measure(model, clean) for name, model in models.items()} for models in runs]
    order = [("clean", 0)]
    for (kind, severity), data in corrupted:
        order.append((kind, severity))
        modality = Corruption(kind, severity).modality
        for run, models in enumerate(runs):
            for name, model in models.items():
                if modality not in model.config.modalities:
                    continue
                metrics = measure(model, data)
                drop = baseline[run][name].accuracy - metrics.accuracy
                cells[run][name, kind, severity] = {**metrics.__dict__, "accuracy_drop": drop}
                log.info("%-12s %-18s %d acc %.3f", name, kind, severity, metrics.accuracy)
    for run in range(len(runs)):
        for name, metrics in baseline[run].items():
            cells[run][name, "clean", 0] = {**metrics.__dict__, "accuracy_drop": 0.0}
    return [
        [
            {"model": name, "corruption": kind, "severity": severity, **cells[run][name, kind, severity]}
            for name in models
            for kind, severity in order
            if (name, kind, severity) in cells[run]
        ]
        for run, models in enumerate(runs)
    ]


def corruption_summary(rows: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """Per model, per severity: the accuracy drop averaged over the corruption kinds it was run on."""
    drops: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        if r["corruption"] != "clean":
            drops.setdefault(r["model"], {}).setdefault(r["severity"], []).append(r["accuracy_drop"])
    return {m: {s: float(np.mean(d)) for s, d in sorted(by.items())} for m, by in drops.items()}


def _corruption_plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    kinds = list(dict.fromkeys(r["corruption"] for r in rows if r["corruption"] != "clean"))
    severities = sorted({r["severity"] for r in rows if r["corruption"] != "clean"})
    fig, axes = plt.subplots(
        len(models), 1, figsize=(max(10, 0.9 * len(kinds)), 2.6 * len(models)), squeeze=False
    )
    width = 0.8 / max(len(severities), 1)
    x = np.arange(len(kinds))
    by_key = {(r["model"], r["corruption"], r["severity"]): r for r in rows}
    for ax, model in zip(axes[:, 0], models, strict=True):
        for k, severity in enumerate(severities):
            # A model not run on a kind (it does not read that modality) gets no bar there.
            cells = [by_key.get((model, kind, severity)) for kind in kinds]
            drops = np.array([c["accuracy_drop"] if c else np.nan for c in cells])
            spread = None
            if "range" in rows[0]:  # several seeds: their range as error bars
                ranges = np.array([c["range"]["accuracy_drop"] if c else [np.nan] * 2 for c in cells])
                spread = np.abs(ranges.T - drops)
            ax.bar(x + k * width, drops, width, yerr=spread, capsize=2, label=f"severity {severity}")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_ylabel("accuracy drop")
        ax.set_title(model, fontsize=9, loc="left")
        ax.set_xticks(
            x + width * (len(severities) - 1) / 2, kinds if ax is axes[-1, 0] else [""] * len(kinds)
        )
    axes[-1, 0].tick_params(axis="x", labelrotation=30)
    axes[0, 0].legend(fontsize=8, ncol=len(severities), frameon=False)
    fig.suptitle("Class accuracy lost to a degraded sensor, all sensors present (unseen world seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write_corruption_report(
    rows: list[dict[str, Any]], setup: Mapping[str, Any], doc: Path, plot: Path
) -> dict[str, dict[int, float]]:
    """A new Markdown file `doc`: the table (per model, corruption kind and severity: the suite's figures
    and the accuracy drop against clean), the mean drop per severity, and the plot, a new PNG `plot`.
    Neither file may exist; returns `corruption_summary`."""
    summary = corruption_summary(rows)
    lines = [
        "# Degraded sensors",
        "",
        *([f"Sensors: {setup['sensors']} (`{setup['config']}`)."] if setup.get("config") else []),
        _setup_text(setup),
        "Every sensor present; one modality's sensors corrupted before their front end "
        "(fusion_pipeline/sim/corruptions.py).",
        "",
        "| model | corruption | severity | class acc | macro-F1 | position MAE m | velocity MAE m/s "
        "| siren AUC | accuracy drop |",
        "|" + "---|" * 9,
        *(
            f"| {r['model']} | {r['corruption']} | {r['severity'] or '-'} | {_figures(r)} | "
            f"{_cell(r, 'accuracy_drop', 3, sign=True)} |"
            for r in rows
        ),
        "",
        "Accuracy drop averaged over the corruption kinds:",
        "",
        "| model | " + " | ".join(f"severity {s}" for s in next(iter(summary.values()), {})) + " |",
        "|" + "---|" * (1 + len(next(iter(summary.values()), {}))),
        *(f"| {m} | " + " | ".join(f"{d:+.3f}" for d in by.values()) + " |" for m, by in summary.items()),
        "",
        f"![accuracy drop by corruption and severity]({_link(plot, doc)})",
        "",
    ]
    _write_with_plot(
        plot,
        lambda path: _corruption_plot(rows, path),
        lambda: write_new_text(doc, "\n".join(lines), ModelError),
    )
    return summary
