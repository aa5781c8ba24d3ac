"""FusionNet built from a contract: the default network unchanged, shared encoders for inputs of one modality
and shape, any contract's inputs trained and exported."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import random_data

from fusion_pipeline.contract import InputSpec, ModelContract, default_contract
from fusion_pipeline.inference import load_contract
from fusion_pipeline.model import ModelError
from fusion_pipeline.model.export import contract_for, export_onnx, presence_masks, random_inputs
from fusion_pipeline.model.fusion import FUSIONS
from fusion_pipeline.model.net import FusionNet, ModelConfig, encoder_groups
from fusion_pipeline.model.train import SUITE, TrainConfig, model_config_for, train_model
from fusion_pipeline.preprocess import CameraParams, LidarParams

TINY = ModelConfig(d_model=16, cnn_channels=(4, 8, 8), radar_hidden=8, hidden=16, n_layers=1, d_joint=16)

#: Each suite member of the default contract, measured on the network before it was built from contracts
#: (commit 2b2475b): parameter count, and the sha256 (16 hex digits) of its state_dict's [name, shape] list.
#: The shipped model and the documented training run depend on both staying as they are.
DEFAULT_NETWORKS = {
    "concat": (221849, "5c8f94619a1e11e8"),
    "attention": (174489, "e80c9f62bc291a81"),
    "joint": (168857, "3c0321de69f0474f"),
    "camera-only": (95833, "33dd08084bbff2ed"),
    "lidar-only": (95065, "5734b1bb234f3086"),
    "radar-only": (55497, "392f9cce20c56990"),
    "audio-only": (78393, "759a63308a949ef9"),
}


@pytest.mark.parametrize("name", SUITE)
def test_default_network_is_unchanged(name: str) -> None:
    model = FusionNet(model_config_for(name))
    layout = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    digest = hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:16]
    assert (sum(p.numel() for p in model.parameters()), digest) == DEFAULT_NETWORKS[name]


def _camera(name: str, size_hw: tuple[int, int]) -> InputSpec:
    params = CameraParams(size_hw=size_hw)
    return InputSpec(name, "camera", params.shape, params.to_dict())


def two_cameras_and_a_lidar() -> ModelContract:
    """Two 64x80 cameras and a 2 m lidar grid (3x32x32): shapes the default model never had."""
    lidar = LidarParams(cell_m=2.0)
    return ModelContract(
        inputs=(
            _camera("left", (64, 80)),
            InputSpec("bev", "lidar", lidar.shape, lidar.to_dict()),
            _camera("right", (64, 80)),
        ),
        outputs=default_contract().outputs,
        presence_order=("bev", "left", "right"),
    )


def test_inputs_of_one_modality_and_shape_share_an_encoder() -> None:
    contract = replace(
        two_cameras_and_a_lidar(),
        inputs=(*two_cameras_and_a_lidar().inputs, _camera("rear", (96, 128))),
        presence_order=("bev", "left", "right", "rear"),
    )
    groups = encoder_groups(contract.inputs)
    assert [(g.key, [s.name for s in g.inputs]) for g in groups] == [
        ("camera_3x64x80", ["left", "right"]),
        ("lidar", ["bev"]),
        ("camera_3x96x128", ["rear"]),
    ]
    model = FusionNet(TINY, contract)
    assert set(model.encoders) == {g.key for g in groups}
    # Only the shared encoder's inputs need telling apart: one learned embedding each.
    assert {k: tuple(v.shape) for k, v in model.input_embeddings.items()} == {"camera_3x64x80": (2, 1, 1, 16)}
    # Tokens in presence order; the presence vector has one bit per input.
    assert [s.name for s in model.inputs] == ["bev", "left", "right", "rear"]
    assert model.contract.tensors["presence"] == (4,)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_contract_of_other_inputs_trains_one_step_and_exports(fusion: str, tmp_path: Path) -> None:
    contract = two_cameras_and_a_lidar()
    torch.manual_seed(0)
    before = FusionNet(replace(TINY, fusion=fusion), contract).state_dict()
    tc = TrainConfig(epochs=1, batch_size=8, val_fraction=0.0)
    model, history = train_model(
        replace(TINY, fusion=fusion), tc, random_data(contract, 8), progress=False, contract=contract
    )
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    # One optimiser step reached both the shared camera encoder and the per-camera embeddings.
    assert any(k.startswith("encoders.camera.convs") for k in changed), changed
    assert "input_embeddings.camera" in changed

    path = tmp_path / f"{fusion}.onnx"
    worst = export_onnx(model, path)
    assert worst < 1e-3
    assert load_contract(path) == contract_for(model) == replace(contract, fusion=fusion)


def test_a_missing_input_is_ignored_per_input_not_per_modality() -> None:
    """Camera `right` missing: whatever it holds leaves the outputs alone, while `left`, which shares its
    encoder, still counts."""
    contract = two_cameras_and_a_lidar()
    torch.manual_seed(0)
    model = FusionNet(replace(TINY, fusion="attention"), contract).eval()
    presence = torch.ones(1, 3)
    presence[0, contract.presence_order.index("right")] = 0.0
    base = random_inputs(contract, presence, seed=5)

    def outputs(changed: str) -> list[torch.Tensor]:
        inputs = {**base, changed: torch.rand_like(base[changed]) * 5}
        with torch.no_grad():
            return list(model(*(inputs[name] for name in contract.tensors)))

    with torch.no_grad():
        reference = list(model(*(base[name] for name in contract.tensors)))
    for a, b in zip(reference, outputs("right"), strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(reference[0], outputs("left")[0])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_inputs_of_one_encoder_need_not_be_neighbours(fusion: str) -> None:
    """Cameras on either side of a radar (1 token) in the presence order: each input's tokens stay its own."""
    radar = default_contract().input("radar")
    contract = replace(
        two_cameras_and_a_lidar(),
        inputs=(*two_cameras_and_a_lidar().inputs, radar),
        presence_order=("left", "radar", "right", "bev"),
    )
    model = FusionNet(replace(TINY, fusion=fusion), contract).eval()
    inputs = random_inputs(contract, presence_masks(4), seed=6)
    with torch.no_grad():
        tokens = model.encode(inputs)
        outputs = model(*(inputs[name] for name in contract.tensors))
    assert [t.shape[1] for t in tokens] == [4, 1, 4, 4]
    assert all(torch.isfinite(o).all() for o in outputs)
    # `right` missing (presence row 0b1011): its input does not reach the outputs.
    row = [i for i, mask in enumerate(presence_masks(4).tolist()) if mask == [1.0, 1.0, 0.0, 1.0]]
    changed = {**inputs, "right": torch.rand_like(inputs["right"]) * 5}
    with torch.no_grad():
        again = model(*(changed[name] for name in contract.tensors))
    for a, b in zip(outputs, again, strict=True):
        torch.testing.assert_close(a[row], b[row])


def test_presence_masks_cover_every_pattern_or_the_telling_ones() -> None:
    masks = presence_masks(4)
    assert len(torch.unique(masks, dim=0)) == 16
    many = presence_masks(11, limit=64)
    rows = {tuple(int(v) for v in row) for row in many}
    assert len(many) == 64
    assert (0,) * 11 in rows and (1,) * 11 in rows
    for i in range(11):
        assert tuple(int(j == i) for j in range(11)) in rows  # input i alone
        assert tuple(int(j != i) for j in range(11)) in rows  # input i missing


def test_refuses_contracts_it_cannot_serve() -> None:
    contract = two_cameras_and_a_lidar()
    other_outputs = replace(contract, outputs=contract.outputs[:2])
    with pytest.raises(ModelError, match="FusionNet returns class_logits, position, velocity, siren_logit"):
        FusionNet(TINY, other_outputs)
    with pytest.raises(ModelError, match=r"ModelConfig.modalities \('radar',\): the contract has no input"):
        FusionNet(model_config_for("radar-only", TINY), contract)
    hwc = InputSpec("hwc", "camera", (64, 80, 3), CameraParams(size_hw=(64, 80), layout="HWC").to_dict())
    with pytest.raises(ModelError, match=r"input 'hwc' \(camera\): FusionNet takes CxHxW inputs, got shape"):
        FusionNet(TINY, replace(contract, inputs=(hwc,), presence_order=("hwc",)))
    tiny = _camera("tiny", (4, 4))
    with pytest.raises(ModelError, match=r"input 'tiny' \(camera\): its 1x1 feature map does not pool into"):
        FusionNet(TINY, replace(contract, inputs=(tiny,), presence_order=("tiny",)))
