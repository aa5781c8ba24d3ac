"""`model train` with issue 17's options and several seeds, `model eval` of the seeds as mean (min-max) and
with --corruptions: one tiny training step per model on the world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusion_pipeline.cli import main
from fusion_pipeline.cli import model as model_cli
from fusion_pipeline.model import net
from fusion_pipeline.model.train import load_checkpoint


def test_the_choices_stated_for_help_are_the_network_s() -> None:
    assert model_cli.MISSING == net.MISSING
    assert model_cli.AUDIO_ENCODERS == net.AUDIO_ENCODERS


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The suite's radar baseline and concat model, imputing, with a GRU audio encoder, trained for
    torch seeds 3 and 5."""
    tmp = tmp_path_factory.mktemp("seeds")
    run, cache = tmp / "run", tmp / "cache"
    assert (
        main(
            [
                *("model", "train", "--samples", "71", "--epochs", "1", "--models", "concat,radar-only"),
                *("--seeds", "3,5", "--missing", "impute", "--audio-encoder", "gru", "--p-single", "0.5"),
                *("--run-dir", str(run), "--cache-dir", str(cache)),
            ]
        )
        == 0
    )
    return run, cache


def test_seeds_train_one_suite_each_with_the_options(seeded_run: tuple[Path, Path]) -> None:
    run, _ = seeded_run
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*.npz")) == [
        "seed3/concat.npz",
        "seed3/radar-only.npz",
        "seed5/concat.npz",
        "seed5/radar-only.npz",
    ]
    concat, meta = load_checkpoint(run / "seed5" / "concat.npz")
    assert (concat.config.missing, concat.config.audio_encoder) == ("impute", "gru")
    assert meta["train_config"]["seed"] == 5 and meta["train_config"]["p_single"] == 0.5
    baseline, _ = load_checkpoint(run / "seed3" / "radar-only.npz")
    assert baseline.config.missing == "placeholder"


def test_eval_of_seeds_reports_mean_and_range(seeded_run: tuple[Path, Path]) -> None:
    run, cache = seeded_run
    assert (
        main(["model", "eval", "--run-dir", str(run), "--cache-dir", str(cache), "--test-samples", "8"]) == 0
    )
    saved = json.loads((run / "eval.json").read_text())
    assert saved["setup"]["seed"] == [3, 5]
    assert saved["setup"]["options"] == "missing inputs imputed, audio encoder gru, p_single 0.5"
    assert all(row["runs"] == 2 for row in saved["rows"])
    report = (run / "MODEL.md").read_text()
    assert "torch seeds 3, 5 (each cell the mean over them" in report
    row = next(r for r in saved["rows"] if r["model"] == "concat" and r["pattern"] == "no lidar")
    low, high = row["range"]["accuracy"]
    assert f"| concat | no lidar | {row['accuracy']:.3f} ({low:.3f}-{high:.3f}) |" in report


def test_eval_corruptions_writes_new_files_only(
    seeded_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run, cache = seeded_run
    common = ["model", "eval", "--run-dir", str(run), "--cache-dir", str(cache), "--test-samples", "8"]
    assert main([*common, "--corruptions", "radar_misses", "--severities", "1,3"]) == 0
    saved = json.loads((run / "corruptions.json").read_text())
    keys = [(r["model"], r["corruption"], r["severity"]) for r in saved["rows"]]
    assert keys == [
        (model, kind, severity)
        for model in ("concat", "radar-only")
        for kind, severity in (("clean", 0), ("radar_misses", 1), ("radar_misses", 3))
    ]
    assert set(saved["mean_accuracy_drop"]["concat"]) == {"1", "3"}
    assert "| radar-only | radar_misses | 3 |" in (run / "corruptions.md").read_text()
    assert (run / "model_corruptions.png").is_file()
    capsys.readouterr()

    before = (run / "corruptions.md").read_bytes()
    assert main([*common, "--corruptions", "radar_misses"]) == 2
    assert "exists already, not overwriting it" in capsys.readouterr().err
    assert (run / "corruptions.md").read_bytes() == before
    for args, message in (
        (["--corruptions", "radar_fog"], "'radar_fog' is not one of"),
        (["--corruptions", "radar_misses", "--severities", "4"], "severity must be 1, 2 or 3"),
        (["--severities", "2"], "--severities: only with --corruptions"),
    ):
        assert main([*common, "--doc", str(run / "other.md"), *args]) == 2
        assert message in capsys.readouterr().err


def test_distillation_needs_the_teachers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--samples", "71", "--epochs", "1", "--run-dir", str(tmp_path / "run")]
    common += ["--cache-dir", str(tmp_path / "cache")]
    assert main(["model", "train", *common, "--models", "concat", "--distill-weight", "1"]) == 2
    assert "the fused models need the teacher camera-only" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # refused before any work
    assert main(["model", "train", *common, "--seed", "1", "--seeds", "2"]) == 2
    assert "--seed and --seeds: give one of them" in capsys.readouterr().err
    assert (
        main(["model", "train", *common, "--train-corruptions", "radar_fog:2", "--corruption-share", "1"])
        == 2
    )
    assert "'radar_fog' is not one of" in capsys.readouterr().err
    assert main(["model", "train", *common, "--train-corruptions", "radar_ghosts:2"]) == 2
    assert "--train-corruptions/--corruption-share: a corruption mix's share must be in (0, 1], got 0.0" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):  # a usage error: a share is at most all of the samples
        main(["model", "train", *common, "--models", "concat", "--p-single", "1.5"])
    assert "argument --p-single: 1.5 is more than 1" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_training_on_a_corruption_mix(tmp_path: Path) -> None:
    common = ["--samples", "71", "--epochs", "1", "--run-dir", str(tmp_path / "run")]
    common += ["--cache-dir", str(tmp_path / "cache"), "--models", "radar-only"]
    mix = ["--train-corruptions", "radar_ghosts:2,radar_misses:1", "--corruption-share", "0.5"]
    assert main(["model", "train", *common, *mix]) == 0
    _, meta = load_checkpoint(tmp_path / "run" / "radar-only.npz")
    assert meta["train_config"]["corruptions"] == ["radar_ghosts:2", "radar_misses:1"]
    assert meta["train_config"]["corruption_share"] == 0.5


def test_distillation_from_teachers_trained_before(tmp_path: Path) -> None:
    common = ["--samples", "71", "--epochs", "1", "--run-dir", str(tmp_path / "run")]
    common += ["--cache-dir", str(tmp_path / "cache")]
    baselines = "camera-only,lidar-only,radar-only,audio-only"
    assert main(["model", "train", *common, "--models", baselines]) == 0
    assert main(["model", "train", *common, "--models", "joint", "--distill-weight", "0.5"]) == 0
    _, meta = load_checkpoint(tmp_path / "run" / "joint.npz")
    assert meta["train_config"]["distill_weight"] == 0.5


def test_an_interrupted_train_names_the_checkpoints_it_kept_and_those_it_did_not(
    seeded_run: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C in the second model of a suite: the first's checkpoint is kept whole, and a rerun refuses
    it as existing, so the interruption says which are kept and which are not trained. (The Ctrl-C is
    raised where the second model's training starts: a real SIGINT's instant cannot be chosen.)"""
    from fusion_pipeline.model import train

    real, calls = train.train_model, []

    def interrupted_second(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "train_model", interrupted_second)
    run = tmp_path / "run"
    argv = [*("model", "train", "--samples", "71", "--epochs", "1", "--models", "radar-only,camera-only")]
    argv += ["--run-dir", str(run), "--cache-dir", str(seeded_run[1])]
    assert main(argv) == 130
    err = capsys.readouterr().err
    kept, lost = run / "radar-only.npz", run / "camera-only.npz"
    assert f"complete checkpoints kept: {kept}; not trained: {lost}" in err
    load_checkpoint(kept)  # whole
    assert not lost.exists() and [p.name for p in run.iterdir()] == ["radar-only.npz"]
    monkeypatch.setattr(train, "train_model", real)
    assert main(argv) == 2
    assert f"{kept}: exist already" in capsys.readouterr().err


def test_eval_of_checkpoints_trained_alike_in_groups_names_the_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two trainings into one run dir with other settings: eval said "trained with different settings",
    naming neither the files nor which agree."""
    run = tmp_path / "run"
    common = ["--samples", "71", "--epochs", "1", "--run-dir", str(run), "--cache-dir", str(tmp_path / "c")]
    assert main(["model", "train", *common, "--models", "radar-only", "--world-seed", "1"]) == 0
    assert main(["model", "train", *common, "--models", "audio-only", "--world-seed", "2"]) == 0
    capsys.readouterr()
    assert main(["model", "eval", "--run-dir", str(run), "--test-samples", "20"]) == 2
    err = capsys.readouterr().err
    assert "trained with different settings (alike: radar-only.npz; audio-only.npz)" in err
