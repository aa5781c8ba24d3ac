"""`model eval` reads the suites of a run dir alike: baselines may come from a run with other fused-only
options (they ignore them), anything else that differs is refused."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

pytest.importorskip("torch")

from fusion_pipeline.cli.model import _load_runs  # noqa: E402
from fusion_pipeline.model.errors import ModelError  # noqa: E402
from fusion_pipeline.model.net import FusionNet, ModelConfig  # noqa: E402
from fusion_pipeline.model.train import TrainConfig, save_checkpoint  # noqa: E402

TINY = {"d_model": 16, "cnn_channels": (4, 8, 8), "radar_hidden": 8, "hidden": 16, "n_layers": 1}


def _save(folder: Path, name: str, run_config: dict | None = None, **train: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = (
        ModelConfig(fusion="concat", modalities=(name.removesuffix("-only"),), **TINY)
        if name.endswith("-only")
        else ModelConfig(fusion=name, **TINY)
    )
    meta = {"train_config": asdict(TrainConfig(**train)), "history": [], "seconds": 0.0}
    if run_config is not None:  # what `train --config` keeps of the config
        meta["config"] = run_config
    save_checkpoint(folder / f"{name}.npz", FusionNet(config), meta)


@pytest.mark.parametrize("config", [None, {"path": "configs/demo.toml", "text": "..."}])
def test_baselines_trained_without_the_fused_only_options_are_taken(
    tmp_path: Path, config: dict | None
) -> None:
    for seed in (0, 1):
        _save(tmp_path / f"seed{seed}", "concat", config, seed=seed, p_single=0.3, distill_weight=1.0)
        _save(tmp_path / f"seed{seed}", "camera-only", config, seed=seed)  # a plain run's baseline
    runs, metas = _load_runs(tmp_path)
    assert [sorted(r) for r in runs] == [["camera-only", "concat"]] * 2 and len(metas) == 4


@pytest.mark.parametrize(
    ("fused", "baseline"),
    [
        ({"epochs": 3}, {}),  # a baseline trained otherwise than the fused model
        ({"p_single": 0.3}, {"p_single": 0.3}),  # the second seed's fused model with other fused options
    ],
)
def test_other_settings_are_refused(tmp_path: Path, fused: dict, baseline: dict) -> None:
    _save(tmp_path / "seed0", "concat", seed=0, **fused)
    _save(tmp_path / "seed0", "camera-only", seed=0, **fused)
    _save(tmp_path / "seed1", "concat", seed=1, **({} if baseline else fused))
    _save(tmp_path / "seed1", "camera-only", seed=1, **baseline)
    with pytest.raises(ModelError, match="different settings"):
        _load_runs(tmp_path)
