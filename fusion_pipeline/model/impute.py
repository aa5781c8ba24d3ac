"""Cross-modal imputation: a missing sensor input's tokens predicted from the present inputs' tokens.

The placeholder way (every fusion strategy on its own) hides a missing input and shows a learned "missing"
embedding: nothing is inferred. With `ModelConfig.missing = "impute"` the network instead predicts each
input's tokens from the others before the fusion, puts the prediction where the input is missing, and
hands the fusion a full set of tokens. A learned query per token slot attends over the tokens of the
other present inputs (never its own input's, so a present input is predicted as if it were missing),
plus one learned null key that is always visible: with no other input present the softmax row is still
finite and reads no missing input.

Training adds a feature-reconstruction loss: where an input is present, its prediction is pulled towards
the tokens its encoder made of it (detached, so the encoders learn from the task, not to be easy to
predict). Each imputed token carries a learned marker per slot, so the fusion can tell it from a real one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["CrossModalImputer"]


class CrossModalImputer(nn.Module):
    def __init__(self, n_tokens: list[int], d_model: int) -> None:
        super().__init__()
        total = sum(n_tokens)
        self.n_tokens = list(n_tokens)
        self.queries = nn.Parameter(torch.randn(1, total, d_model) * 0.02)
        # Which input (and cell) a key token came from, and the marker an imputed token carries.
        self.key_slot = nn.Parameter(torch.randn(1, total, d_model) * 0.02)
        self.imputed_slot = nn.Parameter(torch.randn(1, total, d_model) * 0.02)
        self.null = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.ln = nn.LayerNorm(
            d_model
        )  # keys of any magnitude (a missing input may hold anything) stay finite
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))
        token_input = torch.repeat_interleave(torch.arange(len(n_tokens)), torch.tensor(n_tokens))
        self.register_buffer("token_input", token_input, persistent=False)
        # 1 where a query token may read a key token: never one of its own input.
        other = (token_input[:, None] != token_input[None, :]).float()
        self.register_buffer("other_input", other, persistent=False)
        self.scale = 1.0 / math.sqrt(d_model)

    def predict(self, tokens: list[Tensor], presence: Tensor) -> tuple[Tensor, Tensor]:
        """Every token slot predicted from the other present inputs, [B, T, D], and the real tokens."""
        x = torch.cat(tokens, dim=1)  # [B, T, D]
        b, t, _ = x.shape
        keys = torch.cat([self.null.expand(b, -1, -1), self.ln(x) + self.key_slot], dim=1)
        k, v = self.kv(keys).chunk(2, dim=-1)  # [B, 1 + T, D] each
        q = self.q(self.queries)  # [1, T, D]
        visible = presence[:, self.token_input][:, None, :] * self.other_input  # [B, T, T]
        visible = torch.cat([presence.new_ones(b, t, 1), visible], dim=2)
        # 0 where visible, -1e9 where hidden: exp underflows to exactly 0, so a hidden token adds nothing.
        scores = q @ k.transpose(1, 2) * self.scale + (visible - 1.0) * 1e9
        return self.out(scores.softmax(dim=-1) @ v), x

    def forward(self, tokens: list[Tensor], presence: Tensor) -> tuple[list[Tensor], Tensor]:
        """Each input's tokens, a missing one's replaced by its prediction (plus the imputed marker), and
        the reconstruction loss: the mean squared error of the prediction over the present inputs' tokens
        (0 outside training)."""
        predicted, x = self.predict(tokens, presence)
        present = presence[:, self.token_input].unsqueeze(-1)  # [B, T, 1]
        mixed = x * present + (predicted + self.imputed_slot) * (1.0 - present)
        loss = presence.new_zeros(())
        if self.training:
            error = (predicted - x.detach()).pow(2).mean(dim=-1, keepdim=True)  # [B, T, 1]
            loss = (error * present).sum() / present.sum().clamp_min(1.0)
        return list(mixed.split(self.n_tokens, dim=1)), loss
