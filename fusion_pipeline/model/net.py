"""The fused network: encoders -> fusion strategy -> heads, configured by one dataclass.

The forward signature is the model contract's input list, in order, so the ONNX graph's inputs are
exactly the contract's. A single-modality baseline is the same network with `modalities` cut to one
entry: the other inputs are accepted and ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fusion_pipeline.contract import MODALITIES, ModelContract, default_contract
from fusion_pipeline.model.encoders import ConvEncoder, RadarEncoder
from fusion_pipeline.model.errors import ModelError
from fusion_pipeline.model.fusion import FUSIONS, AttentionFusion, ConcatFusion, Fusion, JointFusion

__all__ = ["FusionNet", "ModelConfig", "OUTPUT_NAMES"]

#: Order of the tensors returned by FusionNet.forward; the same names as the contract's outputs.
OUTPUT_NAMES: tuple[str, ...] = tuple(s.name for s in default_contract().outputs)

#: (first-layer stride, first-layer kernel, token grid) of the CNN encoders; the inputs are 96x128 (camera),
#: 64x64 (lidar BEV) and 40x48 (log-mel), so these keep their costs alike and their tokens few.
_CONV_LAYOUT: dict[str, tuple[int, int, tuple[int, int]]] = {
    "camera": (4, 5, (2, 2)),
    "lidar": (2, 3, (2, 2)),
    "audio": (2, 3, (1, 2)),
}


@dataclass
class ModelConfig:
    """Architecture; the defaults are the shipped model's. Stored in every checkpoint as JSON."""

    fusion: str = "attention"  # one of fusion.FUSIONS
    modalities: tuple[str, ...] = MODALITIES  # a subset, in contract order; one entry = a baseline
    d_model: int = 64  # token width
    cnn_channels: tuple[int, ...] = (16, 32, 64)
    radar_hidden: int = 64
    hidden: int = 128  # concat MLP width, head trunk width
    n_heads: int = 4  # attention
    n_layers: int = 2  # attention
    d_joint: int = 64  # joint
    align_weight: float = 0.1  # joint: weight of the alignment loss (0 = off)

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.cnn_channels = tuple(self.cnn_channels)
        if self.fusion not in FUSIONS:
            raise ModelError(f"ModelConfig.fusion: {self.fusion!r} is not one of {FUSIONS}")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ModelError(
                f"ModelConfig.modalities: {self.modalities!r} must be a non-empty subset of {MODALITIES}"
            )
        self.modalities = tuple(m for m in MODALITIES if m in self.modalities)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        try:
            return cls(**raw)
        except TypeError as exc:  # an unknown or missing key, e.g. a checkpoint from another version
            raise ModelError(f"model config {raw!r} does not fit ModelConfig: {exc}") from exc


class Heads(nn.Module):
    """A shared trunk, then one linear layer per output.

    Regression outputs come out in metres and m/s: the targets' mean/std (fitted on the training set)
    are buffers, so the layers themselves learn unit-scale values.
    """

    def __init__(self, d_in: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True))
        self.cls = nn.Linear(hidden, n_classes)
        self.pos = nn.Linear(hidden, 2)
        self.vel = nn.Linear(hidden, 1)
        self.siren = nn.Linear(hidden, 1)
        for name, n in (("pos", 2), ("vel", 1)):
            self.register_buffer(f"{name}_mean", torch.zeros(n))
            self.register_buffer(f"{name}_std", torch.ones(n))

    def forward(self, fused: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h = self.trunk(fused)
        return (
            self.cls(h),
            self.pos(h) * self.pos_std + self.pos_mean,
            self.vel(h) * self.vel_std + self.vel_mean,
            self.siren(h),
        )


class FusionNet(nn.Module):
    def __init__(self, config: ModelConfig, contract: ModelContract | None = None) -> None:
        super().__init__()
        self.config = config
        contract = contract or default_contract(config.fusion)
        shapes = {m: contract.input(m).shape for m in MODALITIES}

        def encoder(m: str) -> nn.Module:
            if m == "radar":
                return RadarEncoder(shapes["radar"][-1], config.radar_hidden, d_model=config.d_model)
            stride, kernel, grid = _CONV_LAYOUT[m]
            return ConvEncoder(shapes[m], config.cnn_channels, stride, kernel, grid, config.d_model)

        self.encoders = nn.ModuleDict({m: encoder(m) for m in config.modalities})
        # Column of each used modality in the full [B, 4] presence mask.
        self.register_buffer(
            "presence_index", torch.tensor([MODALITIES.index(m) for m in config.modalities]), persistent=False
        )
        n_tokens = [self.encoders[m].n_tokens for m in config.modalities]
        self.fusion = self._make_fusion(config, n_tokens)
        self.heads = Heads(self.fusion.d_out, config.hidden, len(contract.classes))

    @staticmethod
    def _make_fusion(cfg: ModelConfig, n_tokens: list[int]) -> Fusion:
        if cfg.fusion == "concat":
            return ConcatFusion(n_tokens, cfg.d_model, cfg.hidden)
        if cfg.fusion == "attention":
            return AttentionFusion(n_tokens, cfg.d_model, cfg.n_heads, cfg.n_layers)
        return JointFusion(n_tokens, cfg.d_model, cfg.d_joint, cfg.align_weight)

    def encode(self, inputs: dict[str, Tensor]) -> list[Tensor]:
        tokens = []
        for m in self.config.modalities:
            enc = self.encoders[m]
            tokens.append(enc(inputs["radar"], inputs["radar_mask"]) if m == "radar" else enc(inputs[m]))
        return tokens

    def forward_with_aux(self, inputs: dict[str, Tensor]) -> tuple[tuple[Tensor, ...], Tensor]:
        """Outputs in OUTPUT_NAMES order, plus the fusion's auxiliary loss (0 unless training `joint`)."""
        presence = inputs["presence"][:, self.presence_index]
        fused, aux = self.fusion(self.encode(inputs), presence)
        return self.heads(fused), aux

    def forward(
        self,
        camera: Tensor,
        lidar: Tensor,
        radar: Tensor,
        radar_mask: Tensor,
        audio: Tensor,
        presence: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        inputs = {
            "camera": camera,
            "lidar": lidar,
            "radar": radar,
            "radar_mask": radar_mask,
            "audio": audio,
            "presence": presence,
        }
        outputs, _ = self.forward_with_aux(inputs)
        return outputs

    @torch.no_grad()
    def fit_normalisation(self, inputs: dict[str, Tensor], position: Tensor, velocity: Tensor) -> None:
        """Set input and target standardisation from (a sample of) the training set."""
        for m, enc in self.encoders.items():
            if m == "radar":
                enc.norm.fit(inputs["radar"], weight=inputs["radar_mask"].unsqueeze(-1))
            else:
                enc.norm.fit(inputs[m])
        for name, target in (("pos", position), ("vel", velocity)):
            if len(target) < 2:  # no actors to measure: keep the identity transform
                continue
            getattr(self.heads, f"{name}_mean").copy_(target.mean(dim=0))
            getattr(self.heads, f"{name}_std").copy_(target.std(dim=0).clamp_min(1e-3))
