"""The report's mapper: CAVP features -> per-frame pseudo text tokens.

Report section 4.2: MLP layers, moving averages over windows 1/2/4/8 across frames "to
maintain continuity", and a self-attention layer "to further intermix frame information"
(the report's addition; its repository lacked it). Per frame ``f`` the tokens are::

    <frame>  the frame's own token
    <wK>     the mean of its local window of size K (TempoTokens' window definition)

then, with ``attention`` on, every token sequence (one per placeholder) attends across the
frames. Audio of any length is resampled in time to ``num_frames`` (4 CAVP vectors per second:
1 s -> 4 vectors stretched to 24 frames), never zero-padded like the report's code did.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from avlib.errors import ConfigError
from avlib.mapper.base import FrameTokenMapper, MapperOutput
from avlib.mapper.temporal import local_window_means


class FrameSelfAttention(nn.Module):
    """Pre-norm residual self-attention over the frames of each token sequence.

    No positional embedding: frame order already shapes the tokens through the windows, and
    the residual keeps each frame's own content, so attention only adds context.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)  # (N, F, D)
        return x + self.attn(h, h, h, need_weights=False)[0]


class AudioVisGenMapper(FrameTokenMapper):
    """CAVP features ``(B, T, in_dim)`` -> ``MapperOutput`` with ``L = 1 + len(windows)`` tokens
    per frame."""

    kind = "audiovisgen"

    def __init__(self, in_dim: int = 512, hidden_dim: int = 1024, token_dim: int = 1024,
                 num_frames: int = 24, windows: Sequence[int] = (1, 2, 4, 8),
                 attention: bool = True, attention_heads: int = 8):
        super().__init__(in_dim, hidden_dim, token_dim, num_frames, windows)
        if attention and token_dim % attention_heads:
            raise ConfigError(f"mapper.token_dim ({token_dim}) must be divisible by "
                              f"mapper.attention_heads ({attention_heads}): change either")
        self.frame_attention = FrameSelfAttention(token_dim, attention_heads) if attention else None
        self.config.update(attention=attention, attention_heads=attention_heads)

    @property
    def placeholder_names(self) -> list[str]:
        return ["<frame>", *[f"<w{w}>" for w in self.windows]]

    def forward(self, features: torch.Tensor) -> MapperOutput:
        frames = self.frame_embeddings(features)  # (B, F, D)
        tokens = torch.cat([frames[:, :, None], local_window_means(frames, self.windows)],
                           dim=2)                  # (B, F, L, D)
        if self.frame_attention is not None:
            batch, num_frames, length, dim = tokens.shape
            sequences = tokens.transpose(1, 2).reshape(batch * length, num_frames, dim)
            tokens = self.frame_attention(sequences).reshape(batch, length, num_frames, dim)
            tokens = tokens.transpose(1, 2)        # (B, F, L, D)
        return MapperOutput(frame_tokens=tokens, temporal_tokens=tokens[:, :, 0])
