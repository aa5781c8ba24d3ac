"""A tiny FusionNet of each fusion exported to ONNX, with batch norms as a trained model has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fusion_pipeline.contract import MODALITIES, ModelContract
from fusion_pipeline.model.export import export_onnx, random_inputs
from fusion_pipeline.model.net import FusionNet, ModelConfig
from fusion_pipeline.model.train import model_config_for

TINY = {
    "d_model": 16,
    "cnn_channels": (4, 8, 8),
    "radar_hidden": 8,
    "hidden": 16,
    "n_layers": 1,
    "d_joint": 16,
}


def _randomise_norms(model: FusionNet, seed: int) -> None:
    """Give batch-norm statistics and biases non-trivial values, as a trained model would have."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)


def export_tiny(fusion: str, folder: Path, **options: Any) -> tuple[FusionNet, Path]:
    """The tiny model of `fusion` (seeded: the same weights each time) with further ModelConfig `options`
    (missing="impute", ...), and its ONNX file in `folder`."""
    torch.manual_seed(0)
    model = FusionNet(ModelConfig(fusion=fusion, **TINY, **options)).eval()
    _randomise_norms(model, seed=1)
    path = folder / ("-".join([fusion, *(f"{k}={v}" for k, v in options.items())]) + ".onnx")
    export_onnx(model, path)
    return model, path


def tiny_suite() -> dict[str, FusionNet]:
    """A tiny `attention` model and a tiny `<modality>-only` baseline per modality, by suite name, each with
    weights of its own (torch seeds 0, 1, ... in that order): what the single-sensor fallback composes."""
    names = ["attention", *(f"{m}-only" for m in MODALITIES)]
    nets = {}
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        nets[name] = FusionNet(model_config_for(name, ModelConfig(**TINY))).eval()
    return nets


def random_data(contract: ModelContract, n: int) -> dict[str, torch.Tensor]:
    """`n` random samples of `contract`'s inputs with random labels, as `train.to_tensors` gives them."""
    data = random_inputs(contract, torch.ones(n, len(contract.presence_order)), seed=2)
    del data[contract.presence]
    gen = torch.Generator().manual_seed(3)
    return {
        **data,
        "class": torch.randint(0, 5, (n,), generator=gen),
        "position": torch.randn(n, 2, generator=gen) * 10,
        "velocity": torch.randn(n, 1, generator=gen),
        "siren": (torch.rand(n, 1, generator=gen) < 0.2).float(),
    }
