"""Single-sensor fallback: the fused network, except for the sets where one modality alone is present,
which that modality's own model answers.

Why: a fused network trained on every subset of sensors is much weaker with one sensor left than a network
trained on that sensor alone (the camera: 0.51 against 0.71 in docs/MODEL.md), and no training recipe tried
closed that gap without costing accuracy with every sensor present. The presence mask, which the contract
already carries, says which case a set is, so routing by it gives each single-sensor set its specialist and
leaves every other set to the fused network, output for output.

In torch both are computed for every row and one is picked per row (`torch.where`). The exported graph
(model/export.py) adds a branch on `condition()`: a batch with no single-modality row, the common case,
runs the fused network alone, so the fallback costs nothing until a sensor suite is down to one modality
(docs/BENCHMARKS.md, Inference).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import Tensor, nn

from fusion_pipeline.contract import ModelContract
from fusion_pipeline.model.errors import ModelError
from fusion_pipeline.model.net import FusionNet

__all__ = ["AnyLone", "LoneModality", "SingleSensorFallback"]


def _interface(contract: ModelContract) -> tuple[object, ...]:
    """What two models must share to be swapped for each other: graph inputs, presence bits, outputs."""
    return (tuple(contract.tensors.items()), contract.presence, contract.presence_order, contract.outputs)


class LoneModality(nn.Module):
    """[B, M] from the contract's graph inputs: whether each row's present inputs are all of modality m,
    for the M modalities whose presence bits are the rows of `own_bits` [M, presence bits]."""

    def __init__(self, own_bits: Tensor, presence_column: int) -> None:
        super().__init__()
        self.register_buffer("own_bits", own_bits, persistent=False)
        self.presence_column = presence_column

    def forward(self, *tensors: Tensor) -> Tensor:
        present = (tensors[self.presence_column] > 0.5).float()
        own = present @ self.own_bits.T
        return (own > 0) & (own == present.sum(1, keepdim=True))


class AnyLone(nn.Module):
    """Whether any row of the batch has one modality alone: the exported graph's branch condition."""

    def __init__(self, lone: LoneModality) -> None:
        super().__init__()
        self.lone = lone

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.lone(*tensors).any()


class SingleSensorFallback(nn.Module):
    """`fused`, with each set whose present inputs are all of one modality answered by `baselines[that
    modality]` (a FusionNet of that modality alone, `train.model_config_for("<modality>-only")`)."""

    def __init__(self, fused: FusionNet, baselines: Mapping[str, FusionNet]) -> None:
        super().__init__()
        if len(fused.config.modalities) < 2:
            raise ModelError(f"the fused model reads one modality only ({fused.config.modalities[0]})")
        for modality, baseline in baselines.items():
            if baseline.config.modalities != (modality,):
                raise ModelError(
                    f"the fallback for {modality} reads {', '.join(baseline.config.modalities)}, not "
                    f"{modality} alone"
                )
            if _interface(baseline.contract) != _interface(fused.contract):
                raise ModelError(
                    f"the {modality} model was built for another contract than the fused one (inputs "
                    f"{list(baseline.contract.tensors)} against {list(fused.contract.tensors)})"
                )
        unknown = sorted(set(baselines) - set(fused.config.modalities))
        if unknown or not baselines:
            raise ModelError(
                f"fallback models for {unknown or 'no modality'}: the fused model reads "
                f"{', '.join(fused.config.modalities)}"
            )
        self.fused = fused
        self.baselines = nn.ModuleDict(dict(baselines))
        contract = fused.contract
        # Row k: the presence bits of modality k's inputs.
        own = [
            [float(contract.input(n).modality == m) for n in contract.presence_order] for m in self.baselines
        ]
        self.lone = LoneModality(torch.tensor(own), list(contract.tensors).index(contract.presence))
        self.contract = replace(
            fused.contract,
            fusion=f"{fused.config.fusion} + single-sensor fallback ({', '.join(self.baselines)})",
        )

    def condition(self) -> AnyLone:
        """The module that says whether a batch needs any fallback at all."""
        return AnyLone(self.lone)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        outputs = self.fused(*tensors)
        lone = self.lone(*tensors)
        for k, baseline in enumerate(self.baselines.values()):
            rows = lone[:, k]
            outputs = tuple(
                torch.where(rows.reshape(-1, *[1] * (fused.dim() - 1)), own, fused)
                for fused, own in zip(outputs, baseline(*tensors), strict=True)
            )
        return outputs
