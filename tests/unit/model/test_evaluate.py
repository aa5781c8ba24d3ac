"""The evaluation report: acceptance arithmetic, choice of the shipped strategy, and the doc rewrite."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_model import TINY, random_data

from fusion_pipeline.contract import MODALITIES, default_contract
from fusion_pipeline.model import ModelError
from fusion_pipeline.model.evaluate import (
    BEGIN,
    END,
    PATTERNS,
    _acc,
    _table,
    acceptance,
    aggregate_rows,
    corruption_summary,
    criteria_for,
    evaluate_corruptions,
    pick_best,
    write_corruption_report,
    write_report,
)
from fusion_pipeline.model.fusion import FUSIONS
from fusion_pipeline.model.net import FusionNet, ModelConfig
from fusion_pipeline.model.train import model_config_for

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


def test_a_suite_of_one_sensor_per_modality_reports_its_drop_per_modality(tmp_path: Path) -> None:
    """A config's suite with one camera, lidar, radar (no audio) was reported as "one sensor of several
    missing"; its criteria are whole modalities missing, as the default's."""
    contract = default_contract()
    three = replace(contract, inputs=contract.inputs[:3], presence_order=contract.presence_order[:3])
    criteria = criteria_for(three)
    assert criteria.one_missing == ("no camera", "no lidar", "no radar") and criteria != criteria_for(
        contract
    )
    rows = _rows({"concat": 0.84, "attention": 0.95, "joint": 0.90}, {s: 0.8 for s in FUSIONS})
    doc = tmp_path / "MODEL.md"
    write_report(rows, SETUP, doc, tmp_path / "plot.png", criteria=criteria, shipped_as=None)
    text = doc.read_text()
    assert "worst one-missing drop" in text and "one sensor of several" not in text


def test_aggregate_rows_gives_the_mean_and_range_of_each_figure() -> None:
    runs = [
        [_row("attention", "all", 0.90), _row("attention", "no radar", 0.80)],
        [_row("attention", "all", 0.96), _row("attention", "no radar", 0.86)],
        [_row("attention", "all", 0.93), _row("attention", "no radar", 0.77)],
    ]
    runs[1][0]["position_mae_m"] = 2.5
    rows = aggregate_rows(runs)
    assert [(r["model"], r["pattern"], r["runs"]) for r in rows] == [
        ("attention", "all", 3),
        ("attention", "no radar", 3),
    ]
    assert rows[0]["accuracy"] == pytest.approx(0.93)
    assert rows[0]["range"]["accuracy"] == [0.90, 0.96]
    assert rows[1]["accuracy"] == pytest.approx((0.80 + 0.86 + 0.77) / 3)
    assert rows[1]["range"]["macro_f1"] == [0.77, 0.86]
    assert rows[0]["position_mae_m"] == pytest.approx(1.5) and rows[0]["range"]["position_mae_m"] == [
        1.0,
        2.5,
    ]
    # The acceptance arithmetic reads the means; the table shows mean (min-max).
    assert _acc(rows, "attention", "all") - _acc(rows, "attention", "no radar") == pytest.approx(0.93 - 0.81)
    assert (
        "| attention | no radar | 0.810 (0.770-0.860) | 0.810 (0.770-0.860) | 1.00 (1.00-1.00) |"
        in _table(rows)
    )
    with pytest.raises(ModelError, match="did not evaluate the same"):
        aggregate_rows([runs[0], runs[1][::-1]])


def test_corruption_rows_drop_against_clean_and_the_report_is_new_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    contract = default_contract()
    models = {
        "concat": FusionNet(ModelConfig(fusion="concat", **TINY)).eval(),
        "camera-only": FusionNet(model_config_for("camera-only", ModelConfig(**TINY))).eval(),
    }
    clean = random_data(contract, 40)
    noisy = {**clean, "radar": clean["radar"] + 3 * torch.randn_like(clean["radar"])}
    (rows,) = evaluate_corruptions(
        [models], clean, [(("radar_ghosts", 2), noisy), (("radar_ghosts", 3), clean)]
    )
    # The camera model reads no radar: only its clean row.
    assert [(r["model"], r["corruption"], r["severity"]) for r in rows] == [
        ("concat", "clean", 0),
        ("concat", "radar_ghosts", 2),
        ("concat", "radar_ghosts", 3),
        ("camera-only", "clean", 0),
    ]
    assert rows[1]["accuracy_drop"] == pytest.approx(rows[0]["accuracy"] - rows[1]["accuracy"])
    assert rows[2]["accuracy_drop"] == 0 and rows[2]["accuracy"] == rows[0]["accuracy"]
    assert corruption_summary(rows) == {"concat": {2: rows[1]["accuracy_drop"], 3: 0.0}}

    doc, plot = tmp_path / "corruptions.md", tmp_path / "corruptions.png"
    write_corruption_report(rows, SETUP, doc, plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = doc.read_text()
    assert "| concat | radar_ghosts | 2 |" in text and "(corruptions.png)" in text
    before = doc.read_bytes()
    with pytest.raises(ModelError, match="exists already, not overwriting it"):
        write_corruption_report(rows, SETUP, doc, tmp_path / "other.png")
    assert doc.read_bytes() == before and not (tmp_path / "other.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corruptions.md", "corruptions.png"]  # no partials
    # Several seeds: cells read mean (min to max) for the signed drop; the plot draws their range.
    write_corruption_report(
        aggregate_rows([rows, rows]), SETUP, tmp_path / "seeds.md", tmp_path / "seeds.png"
    )
    assert "| +0.000 (+0.000 to +0.000) |" in (tmp_path / "seeds.md").read_text()
