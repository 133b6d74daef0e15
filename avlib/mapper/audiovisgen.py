"""The report's mapper: CAVP features -> per-frame pseudo text tokens and a ``<class>`` token.

As the report's repository builds it (Vyaas99/Audio2Video@1687bea,
``modules/temp_tokens/embedder.py`` ``TempEmbedder()``): TempoTokens' mapper with CAVP input.
fc1 512 -> 2304, fc2 2304 -> 2304, fc3 2304 -> 3 x 1024 (three token rows per CAVP vector),
the rows averaged into 24 frames, GELU, fc4; local windows 1/2/4/8; and the ``<class>`` token
by FGA attention pooling over the frames -- the report's "self-attention layer ... extraction
of crucial 'class' information". Prompt: ``<temp> <local1> <local2> <local3> <local4> <class>``.
The students' checkpoints (``at_embedder_{step}.pth``) load strictly through
:meth:`from_checkpoint`.

Upstream's ``view(B, 24, -1, 1024)`` needs ``3 S`` to be a multiple of 24 (S a multiple of 8:
2 s, 4 s, 10 s of CAVP). Other lengths are resampled to the frames by the rule of
:func:`avlib.mapper.temporal.resample_frames` (adaptive averages when longer, linear
interpolation when shorter), which equals upstream's grouping whenever upstream runs.

``frame_attention=True`` adds what the report's *text* describes instead: a residual
multi-head self-attention across the frames of the per-frame tokens (``<temp>``,
``<local*>``), so a notebook can compare the report's text with the report's code.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from avlib.errors import ConfigError
from avlib.mapper.base import MapperOutput
from avlib.mapper.tempotokens import TempoTokensMapper


class FrameSelfAttention(nn.Module):
    """Pre-norm residual self-attention over the frames of each token sequence.

    No positional embedding: frame order already shapes the tokens through the windows, and
    the residual keeps each frame's own content, so attention only adds context.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, frames, length, dim = tokens.shape                     # (B, F, L, D)
        x = tokens.transpose(1, 2).reshape(batch * length, frames, dim)  # (B*L, F, D)
        h = self.norm(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x.reshape(batch, length, frames, dim).transpose(1, 2)  # (B, F, L, D)


class AudioVisGenMapper(TempoTokensMapper):
    """The report repository's mapper; defaults are its sizes (512 -> 2304 -> 3 x 1024, 24 frames)."""

    kind = "audiovisgen"
    released_file = "the report repo's at_embedder_<step>.pth"

    def __init__(self, in_dim: int = 512, hidden_dim: int = 2304, token_dim: int = 1024,
                 num_frames: int = 24, windows: Sequence[int] = (1, 2, 4, 8),
                 tokens_per_vector: int = 3, upstream_dropout: bool = False,
                 frame_attention: bool = False, attention_heads: int = 8):
        super().__init__(in_dim, hidden_dim, token_dim, num_frames, windows, tokens_per_vector,
                         upstream_dropout)
        if frame_attention and token_dim % attention_heads:
            raise ConfigError(f"mapper.token_dim ({token_dim}) must be divisible by "
                              f"mapper.attention_heads ({attention_heads}): change either")
        self.frame_attention = FrameSelfAttention(token_dim, attention_heads) if frame_attention else None
        self.config.update(frame_attention=frame_attention, attention_heads=attention_heads)

    def forward(self, features: torch.Tensor) -> MapperOutput:
        out = super().forward(features)
        if self.frame_attention is None:
            return out
        # The class token stays upstream's pooling of the unmixed frames; the rest are mixed.
        mixed = self.frame_attention(out.frame_tokens[:, :, :-1])     # (B, F, W+1, D)
        frame_tokens = torch.cat([mixed, out.frame_tokens[:, :, -1:]], dim=2)  # (B, F, W+2, D)
        per_output = [*mixed.unbind(dim=2), out.extras["audio_token"]]
        return MapperOutput(frame_tokens=frame_tokens, temporal_tokens=mixed[:, :, 0],
                            extras=dict(zip(self.output_names, per_output)))
