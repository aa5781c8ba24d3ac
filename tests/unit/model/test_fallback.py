"""The single-sensor fallback: each set with one modality left is that modality's model's, output for
output, every other set the fused model's; in torch and exported; refusals; `model export --fallback`."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_model import TINY, tiny_suite

from fusion_pipeline.cli import main
from fusion_pipeline.contract import MODALITIES, default_contract
from fusion_pipeline.inference import load_contract
from fusion_pipeline.model import ModelError
from fusion_pipeline.model.export import contract_for, export_onnx, presence_masks, random_inputs
from fusion_pipeline.model.fallback import SingleSensorFallback
from fusion_pipeline.model.net import OUTPUT_NAMES, FusionNet, ModelConfig
from fusion_pipeline.model.train import TrainConfig, model_config_for, save_checkpoint


@pytest.fixture(scope="module")
def nets() -> dict[str, FusionNet]:
    return tiny_suite()


def _fallback(nets: dict[str, FusionNet]) -> SingleSensorFallback:
    return SingleSensorFallback(nets["attention"], {m: nets[f"{m}-only"] for m in MODALITIES})


def _run(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(model(*(inputs[name] for name in default_contract().tensors)))


def test_one_modality_left_is_its_own_models_and_every_other_set_the_fused_ones(nets) -> None:
    masks = presence_masks(len(MODALITIES))  # all 16 patterns, presence order camera, lidar, radar, audio
    inputs = random_inputs(contract_for(nets["attention"]), masks, seed=3)
    got = _run(_fallback(nets), inputs)
    fused = _run(nets["attention"], inputs)
    own = {m: _run(nets[f"{m}-only"], inputs) for m in MODALITIES}
    for row, mask in enumerate(masks.tolist()):
        present = [m for m, bit in zip(MODALITIES, mask, strict=True) if bit]
        expected = own[present[0]] if len(present) == 1 else fused
        for name, g, e in zip(OUTPUT_NAMES, got, expected, strict=True):
            assert torch.equal(g[row], e[row]), (present, name)
    # The routing is real: a lone camera's answer differs from the fused network's.
    camera_row = masks.tolist().index([1.0, 0.0, 0.0, 0.0])
    assert not torch.equal(got[0][camera_row], fused[0][camera_row])


def test_exported_under_the_same_contract_and_equal_to_torch(nets, tmp_path: Path) -> None:
    model = _fallback(nets)
    path = tmp_path / "fallback.onnx"
    export_onnx(model, path)  # itself checks ONNX Runtime against torch under every mask
    # One branch on whether any row has one modality alone: a batch with none runs the fused graph only.
    assert [node.op_type for node in onnx.load(str(path)).graph.node].count("If") == 1
    contract = load_contract(path)
    assert replace(contract, fusion="") == replace(contract_for(nets["attention"]), fusion="")
    assert contract.fusion == "attention + single-sensor fallback (camera, lidar, radar, audio)"
    inputs = random_inputs(contract, torch.eye(len(MODALITIES)), seed=4)  # each modality alone
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {k: v.numpy() for k, v in inputs.items()})
    for row, modality in enumerate(MODALITIES):
        own = _run(nets[f"{modality}-only"], inputs)
        for name, g, e in zip(OUTPUT_NAMES, got, own, strict=True):
            np.testing.assert_allclose(
                g[row], e[row].numpy(), rtol=1e-4, atol=1e-5, err_msg=f"{modality} {name}"
            )


def test_a_fallback_that_does_not_fit_is_refused(nets) -> None:
    fused, camera = nets["attention"], nets["camera-only"]
    with pytest.raises(ModelError, match="the fallback for lidar reads camera, not lidar alone"):
        SingleSensorFallback(fused, {"lidar": camera})
    with pytest.raises(ModelError, match="the fused model reads one modality only"):
        SingleSensorFallback(camera, {"camera": camera})
    pair = FusionNet(ModelConfig(**{**TINY, "modalities": ("camera", "lidar")}))
    with pytest.raises(
        ModelError, match=r"fallback models for \['radar'\]: the fused model reads camera, lidar"
    ):
        SingleSensorFallback(pair, {"radar": nets["radar-only"]})
    other = replace(default_contract(), presence_order=("lidar", "camera", "radar", "audio"))
    moved = FusionNet(model_config_for("camera-only", ModelConfig(**TINY)), other)
    with pytest.raises(ModelError, match="the camera model was built for another contract"):
        SingleSensorFallback(fused, {"camera": moved})


def _save(run: Path, nets: dict[str, FusionNet], names: list[str]) -> None:
    run.mkdir(exist_ok=True)
    meta = {"train_config": asdict(TrainConfig()), "history": [], "seconds": 0.0}
    for name in names:
        save_checkpoint(run / f"{name}.npz", nets[name], meta)


def test_export_adds_the_fallback_to_a_fused_model_or_says_what_is_missing(
    nets, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    _save(run, nets, ["attention", "camera-only", "lidar-only"])
    export = ["model", "export", "--run-dir", str(run), "--model"]
    assert main([*export, "attention", "--out", str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert f"{run / 'radar-only.npz'}, {run / 'audio-only.npz'} missing" in err and "--no-fallback" in err
    assert not (tmp_path / "a.onnx").exists()

    assert main([*export, "attention", "--no-fallback", "--out", str(tmp_path / "a.onnx")]) == 0
    assert load_contract(tmp_path / "a.onnx").fusion == "attention"

    with pytest.raises(SystemExit):  # argparse's usage error: exit 2, before any work
        main([*export, "attention", "--fallback", "--no-fallback", "--out", str(tmp_path / "b.onnx")])
    assert (
        "argument --fallback/--no-fallback: given twice (True and then --no-fallback)"
        in capsys.readouterr().err
    )

    assert main([*export, "camera-only", "--fallback", "--out", str(tmp_path / "c.onnx")]) == 2
    assert "--fallback: camera-only reads one modality only" in capsys.readouterr().err

    _save(run, nets, ["radar-only", "audio-only"])
    assert main([*export, "attention", "--out", str(tmp_path / "f.onnx")]) == 0
    assert "with the single-sensor fallback (camera, lidar, radar, audio)" in capsys.readouterr().out
    assert load_contract(tmp_path / "f.onnx").fusion.endswith(
        "single-sensor fallback (camera, lidar, radar, audio)"
    )
