"""Per-modality encoders: each turns one model input into a few tokens of width `d_model`.

Camera, lidar BEV and log-mel are images, so they share one small strided CNN; radar is an unordered,
padded set of detections, so it gets a PointNet-style encoder whose pooling ignores the padding. The
log-mel may instead be read as the sequence it is, by a GRU over its frames (`RecurrentEncoder`).
Every encoder starts with a fixed per-channel standardisation whose statistics are measured on the
training set (`InputNorm.fit`) and travel with the weights, so no caller has to know them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fusion_pipeline.model.errors import ModelError

__all__ = ["ConvEncoder", "InputNorm", "RadarEncoder", "RecurrentEncoder"]


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
    def fit(self, xs: Sequence[Tensor], weights: Sequence[Tensor] | None = None) -> None:
        """Measure mean/std per channel over every other axis of all of `xs` (the inputs an encoder is
        shared by); `weights` (one per x, broadcastable) skip padding."""
        dims = [d for d in range(xs[0].dim()) if d != self.channel_dim]

        def weight(i: int) -> Tensor:
            # Made when used, one input at a time: six cameras' worth of ones would take gigabytes.
            x = xs[i]
            return torch.ones_like(x) if weights is None else weights[i].expand_as(x).to(x.dtype)

        count = sum(weight(i).sum(dim=dims) for i in range(len(xs))).clamp_min(1.0)
        mean = sum((x * weight(i)).sum(dim=dims) for i, x in enumerate(xs)) / count
        var = sum(((x - self._view(mean, x.dim())) ** 2 * weight(i)).sum(dim=dims) for i, x in enumerate(xs))
        self.mean.copy_(mean)
        # A constant channel (e.g. an unused lidar layer) must not blow up into 1/0.
        self.std.copy_((var / count).sqrt().clamp_min(1e-3))


class ConvEncoder(nn.Module):
    """Strided conv stack -> feature map max-pooled to a `token_grid` -> one token per grid cell.

    Max, not average, pooling: an actor covers a few cells of a 64x64 BEV or a 96x128 image, and
    averaging over a quarter of the map washes it out (measured: the camera-only model did not learn at
    all with average pooling).

    The first layer's stride and kernel are chosen from the input's size (`FusionNet` picks them), so that a
    96x128 camera image, a 64x64 BEV and a 40x48 log-mel cost about the same; batch norm is folded into
    the convolutions by ONNX Runtime at load time.
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
        # Pool with a fixed kernel computed from the known input shape: exports as one MaxPool. A map that
        # does not divide into the grid gets a shorter last window (ceil mode).
        with torch.no_grad():
            _, _, h, w = self.convs(torch.zeros(2, *in_shape)).shape  # 2: batch norm needs two values
        kernel_hw = (math.ceil(h / token_grid[0]), math.ceil(w / token_grid[1]))
        self.pool = nn.MaxPool2d(
            kernel_hw, stride=kernel_hw, ceil_mode=bool(h % token_grid[0] or w % token_grid[1])
        )
        with torch.no_grad():
            grid = tuple(self.pool(torch.zeros(1, 1, h, w)).shape[2:])
        if grid != tuple(token_grid):
            raise ModelError(
                f"its {h}x{w} feature map does not pool into a {token_grid[0]}x{token_grid[1]} token grid "
                f"(input shape {tuple(in_shape)})"
            )
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


class RecurrentEncoder(nn.Module):
    """A GRU over the frames of a log-mel (C x mels x frames, time last), one token per part of its time
    axis: the GRU's outputs max-pooled over each of `n_tokens` equal spans of frames (the last one shorter
    where they do not divide), as the CNN's 1x2 grid pools its two halves.

    A siren's wail is a pitch sweeping over about a second: a recurrent state can follow it across the
    frames where a CNN's receptive field sees a few at a time.
    """

    def __init__(self, in_shape: tuple[int, int, int], hidden: int, n_tokens: int, d_model: int) -> None:
        super().__init__()
        channels, mels, frames = in_shape
        if frames < n_tokens:
            raise ModelError(f"{frames} frames do not make {n_tokens} tokens (input shape {tuple(in_shape)})")
        self.norm = InputNorm(channels, channel_dim=1)
        self.gru = nn.GRU(channels * mels, hidden, batch_first=True)
        span = math.ceil(frames / n_tokens)
        self.spans = [(start, min(start + span, frames)) for start in range(0, frames, span)]
        self.proj = nn.Linear(hidden, d_model)
        self.n_tokens = len(self.spans)

    def forward(self, x: Tensor) -> Tensor:
        frames = self.norm(x).flatten(1, 2).transpose(1, 2)  # [B, frames, C * mels]
        # The initial state made from the batch: traced as a Shape op, so the ONNX graph takes any batch.
        h0 = frames.new_zeros(1, frames.shape[0], self.gru.hidden_size)
        out, _ = self.gru(frames, h0)  # [B, frames, hidden]
        pooled = torch.stack([out[:, a:b].amax(dim=1) for a, b in self.spans], dim=1)
        return self.proj(pooled)  # [B, n_tokens, d_model]
