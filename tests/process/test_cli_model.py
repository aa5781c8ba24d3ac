"""`model` commands without the [train] extra, outputs never overwritten, and the limits --help states:
each command runs as its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from extras import without
from paths import ROOT

from fusion_pipeline.cli.model import MIN_SAMPLES


def _without_torch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return without("torch", *args, cwd=cwd)


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--samples", "100", "--epochs", "1"],
        ["eval"],
        ["export", "--model", "concat", "--out", "new.onnx"],
    ],
)
def test_a_missing_train_extra_says_what_to_install(command: list[str], tmp_path: Path) -> None:
    done = _without_torch("model", *command, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "model: error: needs torch, which is not installed: pip install 'fusion-pipeline[train]'" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_export_refuses_an_existing_out_before_any_work(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"yesterday's model")
    done = run_cli("model", "export", "--run-dir", str(tmp_path), "--out", str(out))
    assert done.returncode == 2 and f"--out {out}: exists already, not overwriting it" in done.stderr
    assert out.read_bytes() == b"yesterday's model"


def test_export_without_out_points_to_out_rather_than_the_packaged_demo_model(
    tmp_path: Path, run_cli
) -> None:
    """Its default is the demo's model, which plain `run` takes: "remove it first" sent a surround user to
    put an 11-input model in its place."""
    done = run_cli("model", "export", "--run-dir", str(tmp_path))
    assert done.returncode == 2
    assert "--out defaults to the packaged demo model" in done.stderr and "give --out NEW.onnx" in done.stderr


def test_export_of_the_best_says_when_no_strategy_passed(tmp_path: Path, run_cli) -> None:
    """It exported the best of three failures without a word."""
    pytest.importorskip("torch")
    failed = {"passes": False}
    evaluation = {"best": "concat", "acceptance": {"concat": failed, "attention": failed, "joint": failed}}
    (tmp_path / "eval.json").write_text(json.dumps(evaluation))
    done = run_cli("model", "export", "--run-dir", str(tmp_path), "--out", str(tmp_path / "m.onnx"))
    assert "no strategy passed the eval's check; exporting concat, the best of them" in done.stderr


def test_train_help_states_the_minimum_samples_and_enforces_it(run_cli) -> None:
    helped = run_cli("model", "train", "--help")
    assert f"at least {MIN_SAMPLES}" in " ".join(helped.stdout.split())  # help text is wrapped
    done = run_cli("model", "train", "--samples", str(MIN_SAMPLES - 1))
    assert done.returncode == 2
    assert f"argument --samples: {MIN_SAMPLES - 1} is less than {MIN_SAMPLES}" in done.stderr


def test_repeated_models_add_up_and_an_unknown_one_is_refused_before_any_work(
    tmp_path: Path, run_cli
) -> None:
    pytest.importorskip("torch")
    run, cache = tmp_path / "run", tmp_path / "cache"
    done = run_cli(
        "model",
        "train",
        "--models",
        "concat",
        "--models",
        "nope",
        "--run-dir",
        str(run),
        "--cache-dir",
        str(cache),
    )
    assert done.returncode == 2, done.stderr
    assert "unknown model 'nope'; expected one of" in done.stderr  # the second use reached the command
    assert not run.exists() and not cache.exists()  # refused before a dataset was rendered


def _tiny_run(run: Path) -> None:
    """A run dir with one untrained, tiny `concat` checkpoint: what eval and export read."""
    from fusion_pipeline.model.net import FusionNet, ModelConfig
    from fusion_pipeline.model.train import TrainConfig, save_checkpoint

    run.mkdir()
    tiny = {"d_model": 16, "cnn_channels": (4, 8, 8), "radar_hidden": 8, "hidden": 16, "n_layers": 1}
    meta = {"train_config": asdict(TrainConfig()), "history": [], "seconds": 0.0}
    save_checkpoint(run / "concat.npz", FusionNet(ModelConfig(fusion="concat", **tiny)), meta)


def test_export_links_a_checked_model_into_place_and_never_over_one(tmp_path: Path, run_cli) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    run, out = tmp_path / "run", tmp_path / "out" / "model.onnx"
    _tiny_run(run)
    out.parent.mkdir()
    export = [
        "model",
        "export",
        "--run-dir",
        str(run),
        "--model",
        "concat",
        "--no-fallback",
        "--out",
        str(out),
    ]
    done = run_cli(*export)
    assert done.returncode == 0, done.stderr
    assert list(out.parent.iterdir()) == [out]  # no partial file left beside it
    exported = out.read_bytes()
    again = run_cli(*export)
    assert again.returncode == 2 and "exists already, not overwriting it" in again.stderr
    assert out.read_bytes() == exported


def test_eval_writes_its_report_under_the_run_dir(tmp_path: Path) -> None:
    """Without --doc, eval leaves the working directory alone (it wrote docs/MODEL.md there)."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    _tiny_run(run)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "fusion_pipeline.cli", "model", "eval", "--run-dir", str(run)]
        + ["--test-samples", "8", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=work,
    )
    assert done.returncode == 0, done.stderr
    assert (run / "MODEL.md").is_file() and (run / "model_eval.png").is_file()
    assert list(work.iterdir()) == []


def test_eval_without_matplotlib_says_what_to_install_before_any_work(tmp_path: Path) -> None:
    """torch present, matplotlib not: said up front, not as a traceback once the evaluation is done."""
    pytest.importorskip("torch")
    run, cache = tmp_path / "run", tmp_path / "cache"
    _tiny_run(run)
    done = without(
        "matplotlib",
        *("model", "eval", "--run-dir", str(run), "--test-samples", "8", "--cache-dir", str(cache)),
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "model: error: needs matplotlib, which is not installed: pip install 'fusion-pipeline[train]'" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not cache.exists() and sorted(run.iterdir()) == [run / "concat.npz"]  # no dataset, no report


def _eval(run: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fusion_pipeline.cli", "model", "eval", "--run-dir", str(run)]
        + ["--test-samples", "8", "--cache-dir", str(tmp_path / "cache"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )


def test_eval_with_a_doc_puts_the_plot_where_the_doc_links_it(tmp_path: Path) -> None:
    """`--doc docs/MODEL.md` alone: the plot goes beside the doc, which links it by its name."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    run, docs = tmp_path / "run", tmp_path / "docs"
    _tiny_run(run)
    docs.mkdir()
    (docs / "model_eval.png").write_bytes(b"yesterday's plot")  # never written over: refused first
    refused = _eval(run, tmp_path, "--doc", "docs/MODEL.md")
    assert refused.returncode == 2 and "model_eval.png: exists already" in refused.stderr
    assert (docs / "model_eval.png").read_bytes() == b"yesterday's plot" and not (docs / "MODEL.md").exists()
    (docs / "model_eval.png").unlink()
    done = _eval(run, tmp_path, "--doc", "docs/MODEL.md")
    assert done.returncode == 0, done.stderr
    assert "](model_eval.png)" in (docs / "MODEL.md").read_text()
    assert (docs / "model_eval.png").read_bytes().startswith(b"\x89PNG")
    assert not (run / "model_eval.png").exists()
    assert "wrote docs/MODEL.md and docs/model_eval.png" in done.stdout


def test_eval_links_a_plot_elsewhere_relative_to_the_doc(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    _tiny_run(run)
    done = _eval(run, tmp_path, "--doc", "docs/MODEL.md", "--plot", "figures/eval.png")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "figures" / "eval.png").is_file()
    assert "](../figures/eval.png)" in (tmp_path / "docs" / "MODEL.md").read_text()


def test_eval_refuses_a_config_whose_sensors_sit_elsewhere_than_the_trained_ones(
    tmp_path: Path, run_cli
) -> None:
    """A camera of another field of view was evaluated without a word, its figures passing for the
    trained suite's."""
    pytest.importorskip("torch")
    from fusion_pipeline.model.net import FusionNet, ModelConfig
    from fusion_pipeline.model.train import TrainConfig, save_checkpoint

    demo = (ROOT / "configs" / "demo.toml").read_text()
    run = tmp_path / "run"
    run.mkdir()
    tiny = {"d_model": 16, "cnn_channels": (4, 8, 8), "radar_hidden": 8, "hidden": 16, "n_layers": 1}
    meta = {"train_config": asdict(TrainConfig()), "history": [], "seconds": 0.0}
    meta["config"] = {"source": "demo.toml", "text": demo}
    save_checkpoint(run / "concat.npz", FusionNet(ModelConfig(fusion="concat", **tiny)), meta)
    moved = tmp_path / "moved.toml"
    moved.write_text(demo.replace("rate_hz = 30\n", "rate_hz = 30\nsim = { fov_deg = 30 }\n", 1))
    done = run_cli("model", "eval", "--run-dir", str(run), "--config", str(moved), "--test-samples", "8")
    assert done.returncode == 2, done.stderr
    assert f"--config {moved}: its sensors sit elsewhere than those the checkpoints in {run}" in done.stderr
    assert "mounts): camera Mount(yaw_deg=0.0, fov_deg=30.0" in done.stderr
