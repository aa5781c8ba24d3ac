"""The evaluation report: acceptance arithmetic, choice of the shipped strategy, and the doc rewrite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fusion_pipeline.contract import MODALITIES
from fusion_pipeline.model.evaluate import BEGIN, END, PATTERNS, acceptance, pick_best, write_report
from fusion_pipeline.model.fusion import FUSIONS

SETUP = {
    "train_world_seed": 1,
    "train_samples": 100,
    "val_fraction": 0.1,
    "seed": 0,
    "epochs": 2,
    "test_world_seed": 1000,
    "test_samples": 50,
}


def _row(model: str, pattern: str, accuracy: float) -> dict[str, Any]:
    return {
        "model": model,
        "pattern": pattern,
        "accuracy": accuracy,
        "macro_f1": accuracy,
        "position_mae_m": 1.0,
        "velocity_mae_mps": 0.5,
        "siren_auc": 0.9,
    }


def _rows(all_present: dict[str, float], worst_missing: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for strategy in FUSIONS:
        for pattern in PATTERNS:
            acc = all_present[strategy] if pattern == "all" else 0.5
            if pattern == "no radar":
                acc = worst_missing[strategy]
            elif pattern.startswith("no "):
                acc = all_present[strategy] - 0.01
            rows.append(_row(strategy, pattern, acc))
    singles = {"camera": 0.6, "lidar": 0.7, "radar": 0.75, "audio": 0.5}
    rows += [_row(f"{m}-only", "all", singles[m]) for m in MODALITIES]
    return rows


def test_acceptance_figures_and_best_choice() -> None:
    # attention is most accurate but loses 0.12 without radar; joint passes both criteria.
    rows = _rows(
        {"concat": 0.84, "attention": 0.95, "joint": 0.90}, {"concat": 0.8, "attention": 0.83, "joint": 0.85}
    )
    joint = acceptance(rows, "joint")
    assert joint["best_single_accuracy"] == 0.75
    assert joint["single_accuracy"] == {
        "camera-only": 0.6,
        "lidar-only": 0.7,
        "radar-only": 0.75,
        "audio-only": 0.5,
    }
    assert joint["fusion_gain"] == pytest.approx(0.15)
    assert joint["worst_missing_drop"] == pytest.approx(0.05)
    assert joint["passes"]
    assert not acceptance(rows, "attention")["passes"]  # drop 0.12 > 0.08
    assert not acceptance(rows, "concat")["passes"]  # gain 0.09 < 0.10
    assert pick_best(rows) == "joint"
    # With nothing passing, the most accurate strategy is shipped.
    rows = _rows({"concat": 0.84, "attention": 0.95, "joint": 0.90}, {s: 0.7 for s in FUSIONS})
    assert pick_best(rows) == "attention"


def test_report_replaces_only_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "MODEL.md"
    doc.write_text(f"# Model\n\nprose before\n\n{BEGIN}\nold table\n{END}\n\nprose after\n")
    rows = _rows(
        {"concat": 0.84, "attention": 0.95, "joint": 0.90}, {"concat": 0.8, "attention": 0.83, "joint": 0.85}
    )
    summary = write_report(rows, SETUP, doc, tmp_path / "plot.png")
    text = doc.read_text()
    assert summary["best"] == "joint"
    assert "prose before" in text and "prose after" in text and "old table" not in text
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "world seed 1000" in text and "**joint**" in text
    # One table row per strategy x pattern plus one per baseline.
    assert sum(line.startswith("| joint | ") for line in text.splitlines()) == len(PATTERNS) + 1
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
