"""Training on world data learns; checkpoints round-trip without pickle; the evaluation metrics are right."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_pipeline.contract import MODALITIES
from fusion_pipeline.model import ModelError
from fusion_pipeline.model.evaluate import PATTERNS, evaluate_suite, macro_f1, roc_auc
from fusion_pipeline.model.net import FusionNet, ModelConfig
from fusion_pipeline.model.train import (
    SUITE,
    TrainConfig,
    load_checkpoint,
    load_dataset,
    model_config_for,
    save_checkpoint,
    to_tensors,
    train_model,
)

SMALL = ModelConfig(d_model=32, cnn_channels=(8, 16, 16), radar_hidden=16, hidden=64, n_layers=1, d_joint=32)


def test_roc_auc_equals_pairwise_probability() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(200) < 0.3
    score = np.round(rng.normal(size=200) + y, 1)  # rounding makes ties
    pos, neg = score[y], score[~y]
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)])
    assert roc_auc(y.astype(float), score) == pytest.approx(pairwise)
    assert roc_auc(np.array([0.0, 1.0]), np.array([0.2, 0.9])) == 1.0
    assert np.isnan(roc_auc(np.zeros(4), np.arange(4.0)))


def test_macro_f1_known_answer() -> None:
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    # class 0: P 1/2 R 1/2 -> 0.5; class 1: P 2/3 R 1 -> 0.8; class 2: 0; classes 3, 4 absent.
    assert macro_f1(y_true, y_pred, n_classes=5) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_patterns_cover_all_alone_and_one_missing() -> None:
    masks = {tuple(m) for m in PATTERNS.values()}
    assert len(masks) == len(PATTERNS) == 1 + 2 * len(MODALITIES)
    assert sorted(sum(m) for m in masks) == [1] * 4 + [3] * 4 + [4]


def test_suite_names_and_bad_config() -> None:
    assert model_config_for("radar-only").modalities == ("radar",)
    assert model_config_for("joint").modalities == MODALITIES
    assert set(SUITE) >= {"concat", "attention", "joint", "audio-only"}
    with pytest.raises(ModelError, match="unknown model"):
        model_config_for("sonar-only")
    with pytest.raises(ModelError, match="fusion"):
        ModelConfig(fusion="sum")


def test_checkpoint_round_trip_without_pickle(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FusionNet(replace(SMALL, fusion="attention")).eval()
    model.heads.pos_mean.fill_(3.0)  # a buffer, so buffers are saved too
    path = tmp_path / "m.npz"
    save_checkpoint(path, model, {"history": [{"epoch": 1}]})
    with np.load(path, allow_pickle=False) as f:  # raises if anything needed pickle
        assert all(f[k].dtype != object for k in f.files)
    loaded, meta = load_checkpoint(path)
    assert meta["history"] == [{"epoch": 1}]
    assert loaded.config == model.config
    inputs = [torch.randn(2, *s) for s in ((3, 96, 128), (3, 64, 64), (64, 5))]
    args = (*inputs, torch.ones(2, 64), torch.randn(2, 1, 40, 48), torch.ones(2, 4))
    with torch.no_grad():
        for a, b in zip(model(*args), loaded(*args), strict=True):
            torch.testing.assert_close(a, b)
    # The checkpoints there are named: a model name trained under another name, or not at all.
    with pytest.raises(ModelError, match=rf"absent.npz: no such checkpoint; {tmp_path} holds m$"):
        load_checkpoint(tmp_path / "absent.npz")
    with pytest.raises(ModelError, match=r"holds none \(run `fusion-pipeline model train` first\)"):
        load_checkpoint(tmp_path / "none" / "absent.npz")


@pytest.fixture(scope="module")
def world_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    cache = tmp_path_factory.mktemp("datasets")
    return to_tensors(load_dataset(world_seed=7, n_samples=400, cache_dir=cache))


def test_short_training_run_learns(world_data: dict[str, torch.Tensor]) -> None:
    """Eight short epochs on 320 world samples: the loss falls and accuracy on the 80 held-out samples
    clearly beats always answering the majority class (measured: ~0.57 against ~0.24, loss -35 %)."""
    tc = TrainConfig(epochs=8, batch_size=32, lr=3e-3, val_fraction=0.2)
    model, history = train_model(replace(SMALL, fusion="concat"), tc, world_data, progress=False)
    assert history[-1]["loss"] < 0.85 * history[0]["loss"], history
    n_val = int(len(world_data["class"]) * tc.val_fraction)
    val = {k: v[-n_val:] for k, v in world_data.items()}
    majority = float(torch.bincount(val["class"]).max()) / n_val
    rows = evaluate_suite({"concat": model}, val)
    accuracy = next(r["accuracy"] for r in rows if r["pattern"] == "all")
    assert accuracy > majority + 0.15, (accuracy, majority)
    assert all(np.isfinite(r["position_mae_m"]) for r in rows)
