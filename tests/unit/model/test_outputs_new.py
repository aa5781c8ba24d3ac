"""`model train` and `model eval` never write over an output and refuse an option no model of the run
reads: all refused before any work (no dataset rendered), so no training here."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from tiny_model import TINY

from fusion_pipeline.cli import main
from fusion_pipeline.cli.model import _refuse_unused_options
from fusion_pipeline.contract import default_contract
from fusion_pipeline.model import ModelError
from fusion_pipeline.model.evaluate import save_rows, write_report
from fusion_pipeline.model.net import FusionNet, ModelConfig
from fusion_pipeline.model.train import TrainConfig, model_config_for, save_checkpoint


def _train(tmp_path: Path, *args: str) -> int:
    common = ["--samples", "71", "--epochs", "1", "--run-dir", str(tmp_path / "run")]
    return main(["model", "train", *common, "--cache-dir", str(tmp_path / "cache"), *args])


@pytest.mark.parametrize(
    ("option", "value", "models", "readers"),
    [
        ("--missing", "impute", "camera-only", "fused models"),
        ("--p-single", "0.5", "camera-only,radar-only", "fused models"),
        ("--distill-weight", "0", "audio-only", "fused models"),  # given, even as its default
        ("--audio-encoder", "gru", "camera-only", "models that read audio"),
    ],
)
def test_train_refuses_an_option_no_model_of_the_run_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, models: str, readers: str
) -> None:
    assert _train(tmp_path, "--models", models, option, value) == 2
    assert f"{option}: only {readers} use it, and this run trains none" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_an_option_some_model_reads_is_taken() -> None:
    """The documented GRU run: `--models attention,audio-only --audio-encoder gru`; audio-only alone too."""
    base = ModelConfig(audio_encoder="gru")
    for names in (("attention", "audio-only"), ("audio-only",)):
        configs = {name: model_config_for(name, base) for name in names}
        args = argparse.Namespace(missing=None, p_single=None, distill_weight=None, audio_encoder="gru")
        _refuse_unused_options(args, configs, default_contract())


@pytest.mark.parametrize("seeds", [(), ("--seeds", "0,2")])
def test_train_refuses_an_existing_checkpoint_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seeds: tuple[str, ...]
) -> None:
    folder = tmp_path / "run" / ("seed2" if seeds else "")
    folder.mkdir(parents=True)
    (folder / "radar-only.npz").write_bytes(b"yesterday's model")
    assert _train(tmp_path, "--models", "camera-only,radar-only", *seeds) == 2
    assert f"{folder / 'radar-only.npz'}: exist already, not overwriting them" in capsys.readouterr().err
    assert (folder / "radar-only.npz").read_bytes() == b"yesterday's model"
    assert not (tmp_path / "cache").exists()


def _tiny_checkpoint(path: Path) -> FusionNet:
    model = FusionNet(ModelConfig(fusion="concat", **TINY))
    save_checkpoint(path, model, {"train_config": asdict(TrainConfig()), "history": [], "seconds": 0.0})
    return model


def test_a_checkpoint_is_a_new_file_never_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "concat.npz"
    model = _tiny_checkpoint(path)
    before = path.read_bytes()
    with pytest.raises(ModelError, match="exists already, not overwriting it"):
        save_checkpoint(path, model, {})
    assert path.read_bytes() == before

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(ModelError, match=r"joint.npz: cannot be written \(No space left on device\)"):
        save_checkpoint(tmp_path / "joint.npz", model, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["concat.npz"]  # no partial file left


@pytest.mark.parametrize(
    ("existing", "option"), [("eval.json", "--run-dir (its eval.json)"), ("model_eval.png", "--plot")]
)
def test_eval_refuses_an_existing_plot_or_rows_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], existing: str, option: str
) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    run.mkdir()
    _tiny_checkpoint(run / "concat.npz")
    (run / "MODEL.md").write_text("# yesterday's report\n")  # a doc is updated in place: not refused
    (run / existing).write_bytes(b"yesterday's")
    args = ["model", "eval", "--run-dir", str(run), "--cache-dir", str(cache), "--test-samples", "8"]
    assert main(args) == 2
    assert f"{option} {run / existing}: exists already, not overwriting it" in capsys.readouterr().err
    assert (run / existing).read_bytes() == b"yesterday's"
    assert (run / "MODEL.md").read_text() == "# yesterday's report\n"
    assert not cache.exists()


def test_eval_says_a_mistaken_input_before_an_existing_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --test-seed that is the training's own and an existing plot: the seed is said (fixing it moves
    nothing), not the plot first and the seed on the next try."""
    run = tmp_path / "run"
    run.mkdir()
    _tiny_checkpoint(run / "concat.npz")
    (run / "model_eval.png").write_bytes(b"yesterday's")
    world_seed = str(TrainConfig().world_seed)
    assert main(["model", "eval", "--run-dir", str(run), "--test-seed", world_seed]) == 2
    assert "is the training world seed" in capsys.readouterr().err


def test_report_plot_and_rows_are_never_written_over(tmp_path: Path) -> None:
    """write_report and save_rows as a library: an existing plot or rows file is a ModelError, the doc is
    left as it was, and nothing half written stays behind."""
    doc, plot, saved = tmp_path / "MODEL.md", tmp_path / "plot.png", tmp_path / "eval.json"
    doc.write_text("# prose\n")
    plot.write_bytes(b"yesterday's plot")
    saved.write_text("{}")
    rows = [
        {"model": "concat", "pattern": p, "accuracy": 0.5, "macro_f1": 0.5, "position_mae_m": 1.0}
        | {"velocity_mae_mps": 1.0, "siren_auc": 0.5}
        for p in ("all", "no camera", "no lidar", "no radar", "no audio")
    ]
    setup = {"train_world_seed": 1, "train_samples": 100, "val_fraction": 0.1, "seed": 0, "epochs": 1}
    setup |= {"test_world_seed": 1000, "test_samples": 8}
    with pytest.raises(ModelError, match="exists already"):
        write_report(rows, setup, doc, plot)
    with pytest.raises(ModelError, match="exists already"):
        save_rows(saved, rows, {}, setup)
    assert doc.read_text() == "# prose\n" and plot.read_bytes() == b"yesterday's plot"
    assert saved.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MODEL.md", "eval.json", "plot.png"]
