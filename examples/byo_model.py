"""Bring your own model (docs/MODEL.md): a plain torch network for two cameras and a lidar, its contract
written by hand, exported for the pipeline with `export_model`.

    python examples/byo_model.py byo.onnx
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from fusion_pipeline.contract import InputSpec, ModelContract, OutputSpec
from fusion_pipeline.errors import FusionError
from fusion_pipeline.model import export_model
from fusion_pipeline.preprocess import CameraParams, LidarParams

# The front ends the pipeline applies before the model sees anything: ingest runs these parameters.
CAMERA = CameraParams(size_hw=(224, 224))  # 3x224x224, area resize, ImageNet mean/std (the defaults)
BEV = LidarParams(  # 2x64x64: 32 m ahead, 16 m to each side, 0.5 m cells
    x_range_m=(0.0, 32.0),
    y_range_m=(-16.0, 16.0),
    cell_m=0.5,
    channels=("occupancy", "max_height"),
)
FEATURES = 8  # per sensor

CONTRACT = ModelContract(
    inputs=(
        InputSpec("front", "camera", CAMERA.shape, CAMERA.to_dict(), meaning="normalised RGB, CHW"),
        InputSpec("rear", "camera", CAMERA.shape, CAMERA.to_dict(), meaning="normalised RGB, CHW"),
        InputSpec("bev", "lidar", BEV.shape, BEV.to_dict(), meaning="BEV: occupancy, max height"),
    ),
    outputs=(
        OutputSpec("heading", (1,), "regression", units="rad", meaning="heading of the free path"),
        OutputSpec("obstacle_logit", (1,), "logit", meaning="logit that an obstacle is ahead"),
        OutputSpec("embedding", (FEATURES,), "opaque", meaning="scene embedding for a planner"),
    ),
    presence_order=("front", "rear", "bev"),  # one presence bit per sensor input
    fusion="concat",  # a label that `model info` and the inference node's log show
)


def encoder(channels: int, stride: int) -> nn.Module:
    """A strided convolution pooled to FEATURES numbers."""
    return nn.Sequential(
        nn.Conv2d(channels, FEATURES, stride, stride=stride),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


class ByoNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.camera = encoder(3, stride=8)  # shared by both cameras
        self.lidar = encoder(2, stride=4)
        self.head = nn.Linear(3 * FEATURES, 2 + FEATURES)

    def forward(
        self, front: torch.Tensor, rear: torch.Tensor, bev: torch.Tensor, presence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The contract's graph inputs in order (contract.tensors), batch first; its outputs in order."""
        features = torch.stack([self.camera(front), self.camera(rear), self.lidar(bev)], dim=1)
        # An absent sensor's input holds zeros or anything: its presence bit drops its features.
        out = self.head((features * presence[:, :, None]).flatten(1))
        return torch.pi * torch.tanh(out[:, :1]), out[:, 1:2], out[:, 2:]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python examples/byo_model.py OUT.onnx", file=sys.stderr)
        return 2
    torch.manual_seed(0)  # untrained weights, the same on every run; yours: net.load_state_dict(...)
    try:
        export_model(ByoNet(), CONTRACT, argv[0])
    except FusionError as exc:  # an existing file (never overwritten), a graph unlike its contract
        print(f"byo_model.py: {exc}", file=sys.stderr)
        return 2
    print(f"exported {argv[0]}: inputs {', '.join(CONTRACT.tensors)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
