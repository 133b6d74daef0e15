"""What both mappers share: the output type and the audio -> per-frame token MLP."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avlib.errors import ConfigError
from avlib.mapper.temporal import resample_frames


@dataclass
class MapperOutput:
    """Pseudo text tokens for every video frame.

    ``frame_tokens[:, f, k]`` replaces the ``k``-th of the mapper's ``placeholder_names`` in
    frame ``f``'s prompt; ``temporal_tokens`` feed the training regulariser
    (``temporal_reg * mean|temporal_tokens|``); ``extras`` holds mapper-specific outputs.
    """

    frame_tokens: torch.Tensor       # (B, F, L, D), L = len(placeholder_names)
    temporal_tokens: torch.Tensor    # (B, F, D)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class FrameTokenMapper(nn.Module):
    """Audio features ``(B, S, in_dim)`` -> one token per video frame ``(B, F, token_dim)``.

    fc1-fc3 (with GELUs) embed every audio vector into ``tokens_per_vector`` rows of
    ``token_dim``; the ``S * tokens_per_vector`` rows are resampled to ``F`` frames, then GELU
    and fc4. The layer names are TempoTokens' (``TempEmbedder``) so released weights load as
    they are. TempoTokens emits one row per BEATs vector; the report's mapper three per CAVP
    vector (fc3 2304 -> 3 x 1024), so 2 s of CAVP (8 vectors) give exactly 24 frames.
    """

    kind: str  # the registry name, written into saved configs

    def __init__(self, in_dim: int, hidden_dim: int, token_dim: int, num_frames: int,
                 windows: Sequence[int], tokens_per_vector: int = 1):
        super().__init__()
        windows = [int(w) for w in windows]
        if not windows or min(windows) < 1 or len(set(windows)) != len(windows):
            raise ConfigError(f"mapper windows must be distinct positive integers, got {windows} "
                              "(e.g. mapper.windows=[1,2,4,8])")
        if num_frames < 1:
            raise ConfigError(f"mapper num_frames must be positive, got {num_frames}")
        if tokens_per_vector < 1:
            raise ConfigError(f"mapper tokens_per_vector must be positive, got {tokens_per_vector}")
        self.in_dim, self.num_frames, self.windows = in_dim, num_frames, windows
        self.token_dim, self.tokens_per_vector = token_dim, tokens_per_vector
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.fc3 = nn.Linear(hidden_dim, token_dim * tokens_per_vector)
        self.fc4 = nn.Linear(token_dim, token_dim)
        # Constructor arguments, saved beside the weights so load_mapper can rebuild the module.
        self.config = {"in_dim": in_dim, "hidden_dim": hidden_dim, "token_dim": token_dim,
                       "num_frames": num_frames, "windows": windows,
                       "tokens_per_vector": tokens_per_vector}

    @property
    def placeholder_names(self) -> list[str]:
        raise NotImplementedError

    def frame_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, S, in_dim)`` -> ``(B, F, token_dim)``."""
        if features.ndim != 3 or features.shape[-1] != self.in_dim or features.shape[1] == 0:
            raise ConfigError(
                f"audio features of shape {tuple(features.shape)} do not fit this mapper, which "
                f"expects (batch, time, {self.in_dim}): use the encoder the mapper was built for")
        batch = features.shape[0]
        x = self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(features)))))  # (B, S, k*D)
        # Upstream's view(B, F, -1, D): each vector's k consecutive D-chunks are k time rows.
        x = x.reshape(batch, -1, self.token_dim)                      # (B, S*k, D)
        x = resample_frames(x, self.num_frames)                       # (B, F, D)
        return self.fc4(F.gelu(x))
