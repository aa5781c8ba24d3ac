"""The fused network, built from a model contract: encoders -> fusion strategy -> heads.

Each sensor input of the contract gets an encoder chosen by its modality and sized from its shape. Inputs
of one modality and shape share one encoder (six cameras train one camera encoder on six times the
images), and a learned embedding per input, added to its tokens, says which sensor they came from. The
fusion strategy sees one group of tokens per sensor input, in the contract's presence order. With one input
per modality (the default contract) this is the network the shipped model was trained as, parameter for
parameter.

Two options change the network and are off by default (the shipped model has neither):
`ModelConfig.missing = "impute"` puts a `CrossModalImputer` (model/impute.py) between the encoders and the
fusion, which predicts a missing input's tokens from the present ones; `ModelConfig.audio_encoder =
"gru"` reads each log-mel with a GRU over its frames (`RecurrentEncoder`) instead of the CNN.

forward() takes the contract's graph inputs (`contract.tensors`) positionally, in that order, so the ONNX
graph's inputs are exactly the contract's. A single-modality baseline is the same network with
`ModelConfig.modalities` cut to one modality, all of whose inputs it uses; the other inputs are accepted
and ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fusion_pipeline.contract import MODALITIES, InputSpec, ModelContract, default_contract
from fusion_pipeline.model.encoders import ConvEncoder, RadarEncoder, RecurrentEncoder
from fusion_pipeline.model.errors import ModelError
from fusion_pipeline.model.fusion import FUSIONS, AttentionFusion, ConcatFusion, Fusion, JointFusion
from fusion_pipeline.model.impute import CrossModalImputer

__all__ = ["AUDIO_ENCODERS", "MISSING", "OUTPUT_NAMES", "EncoderGroup", "FusionNet", "ModelConfig"]

#: What a missing input becomes: the fusion's own learned placeholder, or a prediction from the others.
MISSING: tuple[str, ...] = ("placeholder", "impute")
#: How a log-mel is encoded: the strided CNN, or a GRU over its frames.
AUDIO_ENCODERS: tuple[str, ...] = ("cnn", "gru")

#: The outputs FusionNet's heads return, in order: the default contract's.
OUTPUT_NAMES: tuple[str, ...] = tuple(s.name for s in default_contract().outputs)


@dataclass
class ModelConfig:
    """Architecture; the defaults are the shipped model's. Stored in every checkpoint as JSON."""

    fusion: str = "attention"  # one of fusion.FUSIONS
    modalities: tuple[str, ...] = MODALITIES  # the inputs of these modalities are read; one = a baseline
    d_model: int = 64  # token width
    cnn_channels: tuple[int, ...] = (16, 32, 64)
    radar_hidden: int = 64
    hidden: int = 128  # concat MLP width, head trunk width
    n_heads: int = 4  # attention
    n_layers: int = 2  # attention
    d_joint: int = 64  # joint
    align_weight: float = 0.1  # joint: weight of the alignment loss (0 = off)
    missing: str = "placeholder"  # one of MISSING
    impute_weight: float = 1.0  # impute: weight of the feature-reconstruction loss
    audio_encoder: str = "cnn"  # one of AUDIO_ENCODERS
    gru_hidden: int = 64  # audio_encoder "gru": its state width

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.cnn_channels = tuple(self.cnn_channels)
        for key, value, allowed in (
            ("fusion", self.fusion, FUSIONS),
            ("missing", self.missing, MISSING),
            ("audio_encoder", self.audio_encoder, AUDIO_ENCODERS),
        ):
            if value not in allowed:
                raise ModelError(f"ModelConfig.{key}: {value!r} is not one of {allowed}")
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


@dataclass(frozen=True)
class EncoderGroup:
    """Sensor inputs of one modality and shape, encoded by one shared encoder (`FusionNet.encoders[key]`)."""

    key: str
    modality: str
    inputs: tuple[InputSpec, ...]


def encoder_groups(inputs: tuple[InputSpec, ...]) -> list[EncoderGroup]:
    """Group `inputs` by (modality, shape), in order of first appearance. A group is keyed by its modality,
    or by modality and shape (`camera_3x224x224`) where one modality comes in several shapes."""
    by_kind: dict[tuple[str, tuple[int, ...]], list[InputSpec]] = {}
    for spec in inputs:
        by_kind.setdefault((spec.modality, tuple(spec.shape)), []).append(spec)
    shapes_of = [modality for modality, _ in by_kind]
    return [
        EncoderGroup(
            modality if shapes_of.count(modality) == 1 else f"{modality}_{'x'.join(map(str, shape))}",
            modality,
            tuple(specs),
        )
        for (modality, shape), specs in by_kind.items()
    ]


def _encoder(group: EncoderGroup, config: ModelConfig) -> nn.Module:
    """The encoder of `group`'s modality, sized from its shape."""
    spec = group.inputs[0]
    if group.modality == "radar":
        return RadarEncoder(spec.shape[-1], config.radar_hidden, d_model=config.d_model)
    if len(spec.shape) != 3 or spec.preprocess.get("layout", "CHW") != "CHW":
        raise ModelError(
            f"input {spec.name!r} ({group.modality}): FusionNet takes CxHxW inputs, got shape {spec.shape}"
        )
    # A first stride of 4 for images of 96 pixels or more (the 96x128 camera), else 2 (the 64x64 BEV, the
    # 40x48 log-mel): the first feature maps, and so the costs, stay alike. The log-mel gets one token per
    # half of its time axis, an image or a BEV one per quadrant.
    stride = 4 if min(spec.shape[1:]) >= 96 else 2
    grid = (1, 2) if group.modality == "audio" else (2, 2)
    try:
        if group.modality == "audio" and config.audio_encoder == "gru":
            return RecurrentEncoder(spec.shape, config.gru_hidden, grid[1], config.d_model)
        return ConvEncoder(spec.shape, config.cnn_channels, stride, stride + 1, grid, config.d_model)
    except ModelError as exc:
        raise ModelError(f"input {spec.name!r} ({group.modality}): {exc}") from exc


def _check_outputs(contract: ModelContract) -> int:
    """The number of classes, once the contract's outputs are the ones FusionNet's heads return."""
    fixed = {s.name: s.shape for s in default_contract().outputs if s.name != "class_logits"}
    outputs = [(s.name, s.shape) for s in contract.outputs]
    if [name for name, _ in outputs] != list(OUTPUT_NAMES) or any(
        fixed.get(name, shape) != shape for name, shape in outputs
    ):
        raise ModelError(
            f"FusionNet returns {', '.join(OUTPUT_NAMES)} (class logits, a 2-vector, two scalars); the "
            f"contract's outputs are {outputs}"
        )
    return contract.outputs[0].shape[0]


class FusionNet(nn.Module):
    def __init__(self, config: ModelConfig, contract: ModelContract | None = None) -> None:
        super().__init__()
        self.config = config
        self.contract = contract or default_contract(config.fusion)
        n_classes = _check_outputs(self.contract)
        #: The sensor inputs the network reads, in presence order.
        self.inputs = tuple(
            spec
            for spec in map(self.contract.input, self.contract.presence_order)
            if spec.modality in config.modalities
        )
        if not self.inputs:
            raise ModelError(
                f"ModelConfig.modalities {config.modalities}: the contract has no input of them (inputs: "
                f"{[(s.name, s.modality) for s in self.contract.inputs]})"
            )
        #: The modalities it reads: its config's that its contract has inputs of (a config's suite
        #: may lack one of the four).
        self.modalities = tuple(m for m in config.modalities if any(s.modality == m for s in self.inputs))
        self.groups = encoder_groups(self.inputs)
        self.encoders = nn.ModuleDict({g.key: _encoder(g, config) for g in self.groups})
        self.input_embeddings = nn.ParameterDict(
            {
                g.key: nn.Parameter(torch.randn(len(g.inputs), 1, 1, config.d_model) * 0.02)
                for g in self.groups
                if len(g.inputs) > 1
            }
        )
        # Column of each input read in the contract's presence vector.
        self.register_buffer(
            "presence_index",
            torch.tensor([self.contract.presence_order.index(s.name) for s in self.inputs]),
            persistent=False,
        )
        key_of = {spec.name: g.key for g in self.groups for spec in g.inputs}
        n_tokens = [self.encoders[key_of[spec.name]].n_tokens for spec in self.inputs]
        self.fusion = self._make_fusion(config, n_tokens)
        self.heads = Heads(self.fusion.d_out, config.hidden, n_classes)
        # Made last, so that without it every other parameter is initialised as before it existed.
        self.imputer = CrossModalImputer(n_tokens, config.d_model) if config.missing == "impute" else None

    @staticmethod
    def _make_fusion(cfg: ModelConfig, n_tokens: list[int]) -> Fusion:
        if cfg.fusion == "concat":
            return ConcatFusion(n_tokens, cfg.d_model, cfg.hidden)
        if cfg.fusion == "attention":
            return AttentionFusion(n_tokens, cfg.d_model, cfg.n_heads, cfg.n_layers)
        return JointFusion(n_tokens, cfg.d_model, cfg.d_joint, cfg.align_weight)

    def encode(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """Each input's tokens [B, T, d_model], in `self.inputs` order."""
        tokens = {}
        for group in self.groups:
            tokens.update(zip((s.name for s in group.inputs), self._encode_group(group, inputs), strict=True))
        return [tokens[s.name] for s in self.inputs]

    def _encode_group(self, group: EncoderGroup, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        encoder = self.encoders[group.key]
        if len(group.inputs) == 1:
            return [encoder(*(inputs[name] for name in group.inputs[0].tensors))]
        # One encoder call on the inputs stacked along the batch, then each input's embedding added.
        args = zip(*([inputs[name] for name in spec.tensors] for spec in group.inputs), strict=True)
        out = encoder(*(torch.cat(arg) for arg in args))
        stacked = out.reshape(len(group.inputs), -1, *out.shape[1:]) + self.input_embeddings[group.key]
        return list(stacked.unbind(0))

    def presence_of(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The presence bits of `self.inputs`, [B, len(self.inputs)], from the contract's presence vector."""
        return inputs[self.contract.presence][:, self.presence_index]

    def fuse(self, tokens: list[Tensor], presence: Tensor) -> tuple[Tensor, Tensor]:
        """The fused vector of `tokens` (from `encode`) under `presence` (`presence_of`), and the auxiliary
        loss (0 outside training): the joint fusion's alignment, the imputer's reconstruction. With the
        imputer, a missing input's tokens are predicted, and the fusion sees every input."""
        if self.imputer is None:
            return self.fusion(tokens, presence)
        tokens, reconstruction = self.imputer(tokens, presence)
        fused, aux = self.fusion(tokens, torch.ones_like(presence))
        return fused, aux + self.config.impute_weight * reconstruction

    def forward_with_aux(self, inputs: Mapping[str, Tensor]) -> tuple[tuple[Tensor, ...], Tensor]:
        """Outputs in OUTPUT_NAMES order, plus the auxiliary loss (`fuse`)."""
        fused, aux = self.fuse(self.encode(inputs), self.presence_of(inputs))
        return self.heads(fused), aux

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """The contract's graph inputs, in `contract.tensors` order -> the outputs, in contract order."""
        names = list(self.contract.tensors)
        if len(tensors) != len(names):
            raise ModelError(f"FusionNet takes {len(names)} tensors ({', '.join(names)}), got {len(tensors)}")
        outputs, _ = self.forward_with_aux(dict(zip(names, tensors, strict=True)))
        return outputs

    @torch.no_grad()
    def fit_normalisation(self, inputs: Mapping[str, Tensor], position: Tensor, velocity: Tensor) -> None:
        """Set input and target standardisation from (a sample of) the training set; a shared encoder's
        over all of its inputs."""
        for group in self.groups:
            xs = [inputs[s.name] for s in group.inputs]
            # A radar encoder's statistics skip the padding slots.
            weights = (
                [inputs[s.mask].unsqueeze(-1) for s in group.inputs] if group.modality == "radar" else None
            )
            self.encoders[group.key].norm.fit(xs, weights)
        for name, target in (("pos", position), ("vel", velocity)):
            if len(target) < 2:  # no actors to measure: keep the identity transform
                continue
            getattr(self.heads, f"{name}_mean").copy_(target.mean(dim=0))
            getattr(self.heads, f"{name}_std").copy_(target.std(dim=0).clamp_min(1e-3))
