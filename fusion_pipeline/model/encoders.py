"""Per-modality encoders: each turns one model input into a few tokens of width `d_model`.

Camera, lidar BEV and log-mel are images, so they share one small strided CNN; radar is an unordered,
padded set of detections, so it gets a PointNet-style encoder whose pooling ignores the padding.
Every encoder starts with a fixed per-channel standardisation whose statistics are measured on the
training set (`InputNorm.fit`) and travel with the weights, so no caller has to know them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusion_pipeline.model.errors import ModelError

__all__ = ["ConvEncoder", "InputNorm", "RadarEncoder"]


class InputNorm(nn.Module):
    """(x - mean) / std per channel; `channel_dim` says which axis holds the channels."""

    def __init__(self, channels: int, channel_dim: int) -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))

    def _view(self, t: Tensor, ndim: int) -> Tensor:
        shape = [1] * ndim
        shape[self.channel_dim] = -1
        return t.view(shape)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self._view(self.mean, x.dim())) / self._view(self.std, x.dim())

    @torch.no_grad()
    def fit(self, x: Tensor, weight: Tensor | None = None) -> None:
        """Measure mean/std per channel over every other axis; `weight` (broadcastable) skips padding."""
        dims = [d for d in range(x.dim()) if d != self.channel_dim]
        w = torch.ones_like(x) if weight is None else weight.expand_as(x).to(x.dtype)
        count = w.sum(dim=dims).clamp_min(1.0)
        mean = (x * w).sum(dim=dims) / count
        var = ((x - self._view(mean, x.dim())) ** 2 * w).sum(dim=dims) / count
        self.mean.copy_(mean)
        # A constant channel (e.g. an unused lidar layer) must not blow up into 1/0.
        self.std.copy_(var.sqrt().clamp_min(1e-3))


class ConvEncoder(nn.Module):
    """Strided conv stack -> feature map max-pooled to a `token_grid` -> one token per grid cell.

    Max, not average, pooling: an actor covers a few cells of a 64x64 BEV or a 96x128 image, and
    averaging over a quarter of the map washes it out (measured: the camera-only model did not learn at
    all with average pooling).

    The first layer's stride and kernel are chosen per modality so that a 96x128 camera image, a 64x64
    BEV and a 40x48 log-mel cost about the same; batch norm is folded into the convolutions by ONNX
    Runtime at load time.
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        channels: tuple[int, ...],
        first_stride: int,
        first_kernel: int,
        token_grid: tuple[int, int],
        d_model: int,
    ) -> None:
        super().__init__()
        self.norm = InputNorm(in_shape[0], channel_dim=1)
        layers: list[nn.Module] = []
        c_in = in_shape[0]
        for i, c_out in enumerate(channels):
            stride, kernel = (first_stride, first_kernel) if i == 0 else (2, 3)
            layers += [
                nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        # Pool with a fixed kernel computed from the known input shape: exports as one MaxPool.
        with torch.no_grad():
            _, _, h, w = self.convs(torch.zeros(1, *in_shape)).shape
        if h % token_grid[0] or w % token_grid[1]:
            raise ModelError(f"feature map {h}x{w} does not divide into token grid {token_grid}")
        kernel_hw = (h // token_grid[0], w // token_grid[1])
        self.pool = nn.MaxPool2d(kernel_hw, stride=kernel_hw)
        self.proj = nn.Linear(c_in, d_model)
        self.n_tokens = token_grid[0] * token_grid[1]

    def forward(self, x: Tensor) -> Tensor:
        f = self.pool(self.convs(self.norm(x)))  # [B, C, gh, gw]
        return self.proj(f.flatten(2).transpose(1, 2))  # [B, gh*gw, d_model]


class RadarEncoder(nn.Module):
    """PointNet over the detections: shared per-point MLP, then masked max and masked mean pooling.

    Features after ReLU are >= 0, so zeroing the padded points makes them neutral for the max; the mean
    divides by the number of real points clamped to 1, so a radar frame with no detections gives zeros,
    never NaN.
    """

    def __init__(self, n_features: int, hidden: int, d_model: int) -> None:
        super().__init__()
        self.norm = InputNorm(n_features, channel_dim=2)
        self.point_mlp = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.proj = nn.Linear(2 * hidden + 1, d_model)
        self.n_tokens = 1

    def forward(self, points: Tensor, point_mask: Tensor) -> Tensor:
        m = point_mask.unsqueeze(-1)  # [B, N, 1]
        f = self.point_mlp(self.norm(points)) * m  # [B, N, H]
        count = m.sum(dim=1)  # [B, 1]
        pooled_max = f.max(dim=1).values
        pooled_mean = f.sum(dim=1) / count.clamp_min(1.0)
        # The detection count itself is informative (a big truck returns many points).
        density = count / points.shape[1]
        return self.proj(torch.cat([pooled_max, pooled_mean, density], dim=1)).unsqueeze(1)
