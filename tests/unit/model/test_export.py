"""Exported ONNX models against torch: parity under every presence mask, finiteness, the contract (v2);
export_model on a user's own module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny_model import TINY, export_tiny

from fusion_pipeline.cli import main
from fusion_pipeline.contract import (
    CONTRACT_KEY,
    CONTRACT_VERSION,
    MODALITIES,
    InputSpec,
    ModelContract,
    OutputSpec,
)
from fusion_pipeline.errors import ContractError
from fusion_pipeline.inference import load_contract
from fusion_pipeline.model import ModelError, export_model
from fusion_pipeline.model.export import contract_for, export_onnx, presence_masks, random_inputs
from fusion_pipeline.model.fusion import FUSIONS
from fusion_pipeline.model.net import OUTPUT_NAMES, FusionNet, ModelConfig
from fusion_pipeline.preprocess import CameraParams, LidarParams


@pytest.fixture(scope="module", params=FUSIONS)
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FusionNet, Path]:
    return export_tiny(request.param, tmp_path_factory.mktemp("onnx"))


def _torch(model: FusionNet, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    contract = contract_for(model)
    with torch.no_grad():
        return [t.numpy() for t in model(*(inputs[name] for name in contract.tensors))]


def _ort(path: Path, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(list(OUTPUT_NAMES), {k: v.numpy() for k, v in inputs.items()})


def test_parity_under_every_presence_mask(exported: tuple[FusionNet, Path]) -> None:
    model, path = exported
    masks = presence_masks(len(MODALITIES))
    assert len(masks) == 16 and len(torch.unique(masks, dim=0)) == 16
    # Two random draws per mask, so each mask sees more than one input.
    inputs = random_inputs(contract_for(model), torch.cat([masks, masks]), seed=3)
    for name, expected, got in zip(OUTPUT_NAMES, _torch(model, inputs), _ort(path, inputs), strict=True):
        assert got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("fill", ["zeros", "huge", "no_radar_points"])
def test_outputs_finite_under_every_mask(exported: tuple[FusionNet, Path], fill: str) -> None:
    model, path = exported
    inputs = random_inputs(contract_for(model), presence_masks(len(MODALITIES)), seed=4)
    for name in ("camera", "lidar", "radar", "audio"):
        if fill == "zeros":
            inputs[name].zero_()
        elif fill == "huge":
            inputs[name].mul_(1e4)
    if fill != "huge":
        inputs["radar_mask"].zero_()
    for outputs in (_torch(model, inputs), _ort(path, inputs)):
        for name, out in zip(OUTPUT_NAMES, outputs, strict=True):
            assert np.isfinite(out).all(), f"{name} not finite with {fill} inputs"


def test_missing_modality_input_is_ignored(exported: tuple[FusionNet, Path]) -> None:
    """Whatever a missing sensor's input holds must not change the outputs; a present one must."""
    model, _ = exported
    for i, modality in enumerate(MODALITIES):
        presence = torch.ones(2, len(MODALITIES))
        presence[0, i] = 0.0  # row 0: this modality missing, row 1: present
        a = random_inputs(contract_for(model), presence, seed=5)
        b = {k: v.clone() for k, v in a.items()}
        names = ("radar", "radar_mask") if modality == "radar" else (modality,)
        for name in names:
            b[name] = torch.rand_like(b[name]) * 5
        out_a, out_b = _torch(model, a), _torch(model, b)
        for oa, ob in zip(out_a, out_b, strict=True):
            np.testing.assert_allclose(
                oa[0], ob[0], rtol=1e-5, atol=1e-5, err_msg=f"missing {modality} leaked into the outputs"
            )
        assert not np.allclose(out_a[0][1], out_b[0][1]), f"present {modality} had no effect"


def test_dynamic_batch(exported: tuple[FusionNet, Path]) -> None:
    model, path = exported
    for batch in (1, 7):
        inputs = random_inputs(contract_for(model), torch.ones(batch, len(MODALITIES)), seed=batch)
        outputs = _ort(path, inputs)
        assert [o.shape[0] for o in outputs] == [batch] * len(OUTPUT_NAMES)


def test_contract_round_trip_through_export_and_info(
    exported: tuple[FusionNet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, path = exported
    expected = contract_for(model)
    assert load_contract(path) == expected
    assert load_contract(path).fusion == model.config.fusion

    assert main(["model", "info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(expected.to_json())

    assert main(["model", "info", str(path)]) == 0
    text = capsys.readouterr().out
    for spec in (*expected.inputs, *expected.outputs):
        assert spec.name in text


def test_info_rejects_models_without_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnx

    bare = tmp_path / "bare.onnx"
    model = FusionNet(ModelConfig(fusion="concat", **TINY))
    export_onnx(model, bare)
    proto = onnx.load(str(bare))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    with pytest.raises(ContractError, match=CONTRACT_KEY):
        load_contract(bare)
    assert main(["model", "info", str(bare)]) == 2
    assert CONTRACT_KEY in capsys.readouterr().err

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ContractError, match="not a loadable ONNX model"):
        load_contract(garbage)
    with pytest.raises(ContractError, match="no such model file"):
        load_contract(tmp_path / "absent.onnx")


def test_exported_metadata_is_contract_v2(exported: tuple[FusionNet, Path]) -> None:
    import onnx

    model, path = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    raw = json.loads(props[CONTRACT_KEY])
    assert raw["version"] == CONTRACT_VERSION == 2
    assert ModelContract.from_json(props[CONTRACT_KEY]) == contract_for(model)
    assert raw["presence_order"] == list(MODALITIES)


# ---- export_model: a user's own torch module ---------------------------------------------------------


def _byo_contract() -> ModelContract:
    """Two 64x80 cameras and a lidar; a 3-class head and an opaque embedding: not FusionNet's outputs."""
    camera, lidar = CameraParams(size_hw=(64, 80)), LidarParams()
    return ModelContract(
        inputs=(
            InputSpec("left", "camera", camera.shape, camera.to_dict()),
            InputSpec("right", "camera", camera.shape, camera.to_dict()),
            InputSpec("bev", "lidar", lidar.shape, lidar.to_dict()),
        ),
        outputs=(
            OutputSpec("kind", (3,), "class_logits", classes=("road", "car", "person")),
            OutputSpec("embedding", (8,), "opaque"),
        ),
        presence_order=("left", "right", "bev"),
    )


class _UserModel(torch.nn.Module):
    """Plain torch, written against the contract: pooled features of each input; ignores the presence."""

    def __init__(self, n_outputs: int = 2, embedding: int = 8, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.dtype = dtype
        self.head = torch.nn.Linear(9, 3)
        self.embed = torch.nn.Linear(9, embedding)

    def forward(
        self, left: torch.Tensor, right: torch.Tensor, bev: torch.Tensor, presence: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        features = torch.cat([x.mean(dim=(2, 3)) for x in (left, right, bev)], dim=1)
        return (self.head(features), self.embed(features).to(self.dtype))[: self.n_outputs]


def test_export_model_exports_a_plain_torch_module(tmp_path: Path) -> None:
    contract = _byo_contract()
    torch.manual_seed(0)
    module = _UserModel()
    path = tmp_path / "mine.onnx"
    assert export_model(module, contract, path) == contract
    assert load_contract(path) == contract
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # `presence` is never read, and still a graph input: the pipeline feeds every tensor of the contract.
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        (name, ["batch", *shape]) for name, shape in contract.tensors.items()
    ]
    inputs = random_inputs(contract, torch.ones(5, 3), seed=1)
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        expected = module(*(inputs[name] for name in contract.tensors))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e.numpy(), rtol=1e-4, atol=1e-5)
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (
            _UserModel(n_outputs=1),
            r"the module returns 1 outputs, the contract declares 2 \(\['kind', 'embedding'\]\)",
        ),
        (
            _UserModel(embedding=4),
            r"output 1 \('embedding'\): the module returns shape \(2, 4\) for a batch of 2, the contract "
            r"declares \(2, 8\)",
        ),
        (  # exported, then refused by every pipeline command
            _UserModel(dtype=torch.float64),
            r"output 1 \('embedding'\): the module returns torch.float64; the pipeline's outputs are float32",
        ),
    ],
)
def test_export_model_refuses_outputs_unlike_the_contract(
    module: torch.nn.Module, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "mine.onnx"
    with pytest.raises(ModelError, match=message):
        export_model(module, _byo_contract(), path)
    assert list(tmp_path.iterdir()) == []  # nothing written, no partial file left


def test_export_model_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "mine.onnx"
    path.write_bytes(b"yesterday's model")
    with pytest.raises(ModelError, match="exists already, not overwriting it"):
        export_model(_UserModel(), _byo_contract(), path)
    assert path.read_bytes() == b"yesterday's model"


def test_info_takes_a_shipped_model_by_its_package_name(capsys: pytest.CaptureFixture[str]) -> None:
    """Configs name shipped models `package:NAME`; `model info` took only a file path."""
    assert main(["model", "info", "package:surround.onnx", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["presence_order"][0] == "camera_front"
    assert main(["model", "info", "package:nope.onnx"]) == 2
    said = "package:nope.onnx: no model of that name ships with the package (shipped: package:default.onnx"
    assert said in capsys.readouterr().err
