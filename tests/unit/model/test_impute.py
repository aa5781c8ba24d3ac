"""The network options of issue 17: cross-modal imputation and the recurrent audio encoder. Each exports
under the default contract, matches torch in ONNX Runtime under every presence mask, stays finite, and
reads nothing of a missing input; the imputer predicts an input only from the others."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny_model import TINY, export_tiny

from fusion_pipeline.contract import MODALITIES, default_contract
from fusion_pipeline.inference import load_contract
from fusion_pipeline.model import ModelError
from fusion_pipeline.model.encoders import RecurrentEncoder
from fusion_pipeline.model.export import contract_for, presence_masks, random_inputs
from fusion_pipeline.model.fusion import FUSIONS
from fusion_pipeline.model.impute import CrossModalImputer
from fusion_pipeline.model.net import OUTPUT_NAMES, FusionNet, ModelConfig
from fusion_pipeline.model.train import model_config_for

OPTIONS = [
    *({"fusion": fusion, "missing": "impute"} for fusion in FUSIONS),
    {"fusion": "attention", "audio_encoder": "gru"},
    {"fusion": "attention", "missing": "impute", "audio_encoder": "gru"},
]


@pytest.fixture(scope="module", params=OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FusionNet, Path]:
    options = dict(request.param)
    return export_tiny(options.pop("fusion"), tmp_path_factory.mktemp("onnx"), **options)


def _torch(model: FusionNet, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.numpy() for t in model(*(inputs[name] for name in contract_for(model).tensors))]


def _ort(path: Path, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(list(OUTPUT_NAMES), {k: v.numpy() for k, v in inputs.items()})


def test_the_contract_is_the_default_one(exported: tuple[FusionNet, Path]) -> None:
    model, path = exported
    assert load_contract(path) == default_contract(model.config.fusion)


@pytest.mark.parametrize("fill", ["random", "zeros", "huge"])
def test_parity_and_finite_under_all_16_masks(exported: tuple[FusionNet, Path], fill: str) -> None:
    model, path = exported
    masks = presence_masks(len(MODALITIES))
    assert len(torch.unique(masks, dim=0)) == 2 ** len(MODALITIES)
    inputs = random_inputs(contract_for(model), torch.cat([masks, masks]), seed=3)
    for name in MODALITIES:
        if fill == "zeros":
            inputs[name].zero_()
        elif fill == "huge":
            inputs[name].mul_(1e4)
    expected, got = _torch(model, inputs), _ort(path, inputs)
    for name, e, g in zip(OUTPUT_NAMES, expected, got, strict=True):
        assert np.isfinite(e).all() and np.isfinite(g).all(), f"{name} not finite with {fill} inputs"
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4, err_msg=name)


def test_a_missing_input_is_not_read_and_a_present_one_is(exported: tuple[FusionNet, Path]) -> None:
    model, _ = exported
    for i, modality in enumerate(MODALITIES):
        presence = torch.ones(2, len(MODALITIES))
        presence[0, i] = 0.0  # row 0: this input missing (imputed), row 1: present
        a = random_inputs(contract_for(model), presence, seed=5)
        b = {k: v.clone() for k, v in a.items()}
        for name in ("radar", "radar_mask") if modality == "radar" else (modality,):
            b[name] = torch.rand_like(b[name]) * 5
        out_a, out_b = _torch(model, a), _torch(model, b)
        for oa, ob in zip(out_a, out_b, strict=True):
            np.testing.assert_allclose(oa[0], ob[0], rtol=1e-5, atol=1e-5, err_msg=f"missing {modality} read")
        assert not np.allclose(out_a[0][1], out_b[0][1]), f"present {modality} had no effect"


def test_any_batch_size(exported: tuple[FusionNet, Path]) -> None:
    model, path = exported
    for batch in (1, 7):
        inputs = random_inputs(contract_for(model), torch.ones(batch, len(MODALITIES)), seed=batch)
        for name, e, g in zip(OUTPUT_NAMES, _torch(model, inputs), _ort(path, inputs), strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4, err_msg=f"{name}, batch {batch}")


def _imputer_and_tokens() -> tuple[CrossModalImputer, list[torch.Tensor]]:
    torch.manual_seed(0)
    imputer = CrossModalImputer([4, 4, 1, 2], d_model=8)
    return imputer, [torch.randn(3, n, 8) for n in (4, 4, 1, 2)]


def test_an_input_is_predicted_from_the_other_present_inputs_only() -> None:
    imputer, tokens = _imputer_and_tokens()
    presence = torch.tensor([[1.0, 1.0, 0.0, 1.0]]).expand(3, -1)
    predicted, _ = imputer.predict(tokens, presence)
    changed = [t.clone() for t in tokens]
    changed[0] = torch.randn_like(changed[0]) * 10  # input 0 present: only the others' predictions move
    changed[2] = torch.randn_like(changed[2]) * 10  # input 2 missing: nothing moves
    again, _ = imputer.predict(changed, presence)
    torch.testing.assert_close(again[:, :4], predicted[:, :4])  # input 0 never reads itself
    assert not torch.allclose(again[:, 4:8], predicted[:, 4:8])  # input 1 reads input 0
    # With nothing else present, the prediction is the learned null key's: finite, the same for every row.
    alone, _ = imputer.predict(changed, torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(3, -1))
    assert torch.isfinite(alone).all()
    torch.testing.assert_close(alone[0, :4], alone[1, :4])


def test_the_reconstruction_loss_is_the_mse_over_present_inputs_in_training_only() -> None:
    imputer, tokens = _imputer_and_tokens()
    presence = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    imputer.train()
    mixed, loss = imputer(tokens, presence)
    predicted, x = imputer.predict(tokens, presence)
    present = presence[:, imputer.token_input]  # [B, T]
    expected = ((predicted - x) ** 2).mean(dim=-1)[present > 0].mean()
    torch.testing.assert_close(loss, expected)
    # Present tokens pass unchanged; missing ones are the prediction plus the imputed marker.
    torch.testing.assert_close(mixed[0][[0, 2]], tokens[0][[0, 2]])
    torch.testing.assert_close(mixed[1][0], predicted[0, 4:8] + imputer.imputed_slot[0, 4:8])
    # The target is detached: the loss does not train the tokens it is measured against.
    leaf = [t.clone().requires_grad_() for t in tokens]
    _, loss = imputer([leaf[0], *tokens[1:]], torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(3, -1))
    loss.backward()
    assert leaf[0].grad is not None and leaf[0].grad.abs().sum() == 0
    imputer.eval()
    assert imputer(tokens, presence)[1] == 0


def test_the_default_network_has_neither_option_and_baselines_keep_the_placeholder() -> None:
    assert FusionNet(ModelConfig(**TINY)).imputer is None
    base = ModelConfig(missing="impute", audio_encoder="gru")
    assert model_config_for("audio-only", base).missing == "placeholder"
    assert model_config_for("audio-only", base).audio_encoder == "gru"  # evaluated beside the CNN
    assert model_config_for("attention", base).missing == "impute"
    for key, value in (("missing", "guess"), ("audio_encoder", "lstm")):
        with pytest.raises(ModelError, match=f"ModelConfig.{key}: '{value}' is not one of"):
            ModelConfig(**{key: value})


def test_the_recurrent_encoder_pools_its_time_spans() -> None:
    encoder = RecurrentEncoder((1, 40, 48), hidden=8, n_tokens=2, d_model=16)
    assert encoder.spans == [(0, 24), (24, 48)] and encoder.n_tokens == 2
    x = torch.randn(3, 1, 40, 48)
    tokens = encoder(x)
    assert tokens.shape == (3, 2, 16)
    later = x.clone()
    later[..., 30:] = torch.randn_like(later[..., 30:])  # a GRU runs forward: the first span cannot see it
    torch.testing.assert_close(encoder(later)[:, 0], tokens[:, 0])
    assert not torch.allclose(encoder(later)[:, 1], tokens[:, 1])
    odd = RecurrentEncoder((1, 40, 5), hidden=8, n_tokens=2, d_model=16)
    assert odd.spans == [(0, 3), (3, 5)]
    with pytest.raises(ModelError, match="1 frames do not make 2 tokens"):
        RecurrentEncoder((1, 40, 1), hidden=8, n_tokens=2, d_model=16)


def test_a_gru_model_trains_its_gru(tmp_path: Path) -> None:
    """One optimiser step reaches the GRU's weights through the fusion (the option is wired in)."""
    model = FusionNet(replace(ModelConfig(**TINY), audio_encoder="gru"))
    assert isinstance(model.encoders["audio"], RecurrentEncoder)
    inputs = random_inputs(contract_for(model), torch.ones(4, len(MODALITIES)), seed=0)
    outputs, aux = model.forward_with_aux(inputs)
    (outputs[0].sum() + aux).backward()
    assert model.encoders["audio"].gru.weight_ih_l0.grad.abs().sum() > 0
