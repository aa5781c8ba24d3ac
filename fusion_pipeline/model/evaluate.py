"""Evaluation: every suite model under every presence pattern of interest, on a world seed never trained on.

Writes `eval.json` next to the checkpoints, and the table plus a plot into docs/MODEL.md (between a
suite's markers, so the prose around it is kept). Metrics are computed in numpy so they are easy to check.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from fusion_pipeline.contract import MODALITIES, InputSpec, ModelContract, default_contract
from fusion_pipeline.model.errors import ModelError
from fusion_pipeline.model.fusion import FUSIONS
from fusion_pipeline.model.net import OUTPUT_NAMES, FusionNet
from fusion_pipeline.model.train import SUITE, input_tensors

__all__ = [
    "DEFAULT_CRITERIA",
    "MAX_MISSING_DROP",
    "MAX_REDUNDANT_DROP",
    "MIN_FUSION_GAIN",
    "PATTERNS",
    "Criteria",
    "Metrics",
    "criteria_for",
    "evaluate_suite",
    "macro_f1",
    "markers",
    "patterns_for",
    "pick_best",
    "pyplot",
    "roc_auc",
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


def _metrics(outputs: dict[str, np.ndarray], labels: dict[str, np.ndarray], n_classes: int) -> Metrics:
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
            metrics = _metrics(outputs, labels, n_classes)
            rows.append({"model": name, "pattern": pattern, **metrics.__dict__})
            log.info("%-12s %-11s acc %.3f", name, pattern, metrics.accuracy)
    return rows


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
        lines.append(
            f"| {r['model']} | {sensors} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
            f"{r['position_mae_m']:.2f} | {r['velocity_mae_mps']:.2f} | {r['siren_auc']:.3f} |"
        )
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
    fig.savefig(path, dpi=110)
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
    figures, plot link and the strategy to ship (as `shipped_as`, where the config names a model file)."""
    best = pick_best(rows, criteria)
    checks = {s: acceptance(rows, s, criteria) for s in FUSIONS if any(r["model"] == s for r in rows)}
    _plot(rows, plot)
    begin, end = markers(section)
    missing = (
        "worst one-missing drop"
        if criteria == DEFAULT_CRITERIA
        else "worst drop, one sensor of several missing"
    )
    lines = [
        begin,
        *([f"Sensors: {setup['sensors']} (`{setup['config']}`)."] if setup.get("config") else []),
        f"Training: world seed {setup['train_world_seed']}, {setup['train_samples']} samples "
        f"(last {setup['val_fraction']:.0%} held out for per-epoch validation), torch seed {setup['seed']}, "
        f"{setup['epochs']} epochs. "
        f"Evaluation: world seed {setup['test_world_seed']} "
        "(never used in training), "
        f"{setup['test_samples']} samples.",
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
    doc.write_text(text[:start] + "\n".join(lines) + text[stop:])
    return {"best": best, "acceptance": checks}


def save_rows(path: Path, rows: list[dict[str, Any]], summary: dict[str, Any], setup: dict[str, Any]) -> None:
    path.write_text(json.dumps({"setup": setup, "rows": rows, **summary}, indent=1))
