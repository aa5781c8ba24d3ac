"""Fusion strategies: combine the per-modality tokens into one vector, honouring the presence mask.

Each strategy takes `tokens`, a list with one [B, T_m, D] tensor per modality of the model, and
`presence`, a [B, M] float mask in the same order, and returns `(fused [B, d_out], aux_loss scalar)`.
A missing modality's tokens are whatever its encoder made of the (zero or stale) input, so every strategy
must make its output independent of them; the parity and mask tests check exactly that.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["FUSIONS", "AttentionFusion", "ConcatFusion", "Fusion", "JointFusion"]


class Fusion(nn.Module):
    """Base: `d_out` is the width of the fused vector handed to the heads."""

    d_out: int

    def forward(self, tokens: list[Tensor], presence: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class ConcatFusion(Fusion):
    """Zero the tokens of missing modalities, concatenate everything plus the mask, then an MLP."""

    def __init__(self, n_tokens: list[int], d_model: int, hidden: int) -> None:
        super().__init__()
        d_in = sum(n_tokens) * d_model + len(n_tokens)
        self.mlp = nn.Sequential(
            nn.Linear(d_in, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.d_out = hidden

    def forward(self, tokens: list[Tensor], presence: Tensor) -> tuple[Tensor, Tensor]:
        parts = [t.flatten(1) * presence[:, i : i + 1] for i, t in enumerate(tokens)]
        return self.mlp(torch.cat([*parts, presence], dim=1)), presence.new_zeros(())


class _Block(nn.Module):
    """Pre-norm transformer block with an additive key mask; written out so it exports to plain ops."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))

    def forward(self, x: Tensor, key_bias: Tensor) -> Tensor:
        b, t, d = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(d // h)) + key_bias  # [B, h, T, T]
        y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.out(y)
        return x + self.mlp(self.ln2(x))


class AttentionFusion(Fusion):
    """Self-attention over [global token, every modality's tokens, one 'missing' token per modality].

    A modality's own tokens are visible only when it is present, its learned missing-embedding only when
    it is absent, so the model knows WHICH sensor is gone. The global token is always visible, so no
    softmax row is ever fully masked: with one modality, or none, the output stays finite.
    """

    def __init__(self, n_tokens: list[int], d_model: int, n_heads: int, n_layers: int) -> None:
        super().__init__()
        n_mod = len(n_tokens)
        self.global_token = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.missing = nn.Parameter(torch.randn(1, n_mod, d_model) * 0.02)
        # One learned embedding per token slot says which modality (and which cell) a token came from.
        self.slot = nn.Parameter(torch.randn(1, sum(n_tokens), d_model) * 0.02)
        self.register_buffer(
            "token_modality", torch.repeat_interleave(torch.arange(n_mod), torch.tensor(n_tokens))
        )
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.d_out = d_model

    def forward(self, tokens: list[Tensor], presence: Tensor) -> tuple[Tensor, Tensor]:
        b = presence.shape[0]
        x = torch.cat(
            [
                self.global_token.expand(b, -1, -1),
                torch.cat(tokens, dim=1) + self.slot,
                self.missing.expand(b, -1, -1),
            ],
            dim=1,
        )
        visible = torch.cat(
            [presence.new_ones(b, 1), presence[:, self.token_modality], 1.0 - presence], dim=1
        )
        # 0 where visible, -1e9 where hidden: a large finite number keeps softmax NaN-free.
        key_bias = ((visible - 1.0) * 1e9)[:, None, None, :]
        for block in self.blocks:
            x = block(x, key_bias)
        return self.ln_f(x[:, 0]), presence.new_zeros(())


class JointFusion(Fusion):
    """Project each modality into one shared space, L2-normalise, average over the present ones.

    The optional alignment loss pulls every present modality's embedding towards the sample's fused
    embedding, so that any subset of sensors lands near the same point and a missing sensor moves the
    average little.
    """

    def __init__(self, n_tokens: list[int], d_model: int, d_joint: int, align_weight: float) -> None:
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Linear(n * d_model, d_joint), nn.ReLU(inplace=True), nn.Linear(d_joint, d_joint))
            for n in n_tokens
        )
        self.align_weight = align_weight
        self.scale = math.sqrt(d_joint)  # unit vectors -> entries of order 1 for the heads
        self.d_out = d_joint + len(n_tokens)

    def forward(self, tokens: list[Tensor], presence: Tensor) -> tuple[Tensor, Tensor]:
        z = torch.stack(
            [F.normalize(p(t.flatten(1)), dim=-1, eps=1e-6) for p, t in zip(self.proj, tokens, strict=True)],
            dim=1,
        )  # [B, M, d_joint]
        w = presence.unsqueeze(-1)
        fused = (z * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)
        aux = presence.new_zeros(())
        if self.training and self.align_weight > 0:
            target = F.normalize(fused, dim=-1, eps=1e-6).unsqueeze(1)
            cos = (z * target).sum(dim=-1)  # [B, M]
            aux = self.align_weight * ((1.0 - cos) * presence).sum() / presence.sum().clamp_min(1.0)
        # The mask goes along so the heads can calibrate for how many sensors voted.
        return torch.cat([fused * self.scale, presence], dim=1), aux


FUSIONS: tuple[str, ...] = ("concat", "attention", "joint")
