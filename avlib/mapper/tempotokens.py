"""TempoTokens' audio -> token mapper (the baseline), loadable from its released weights.

Re-implements ``TempEmbedder`` of TempoTokens (guyyariv/TempoTokens@bf0b1e3) with the same
parameter names, so the released ``models/{vggsound,landscape,audioset_drum}/learned_embeds.pth``
(a plain 17-key state dict) loads strictly. For BEATs' 12-layer features ``(B, S, 9216)`` it
returns upstream's six outputs, one per placeholder word of the prompt:

    <temp>      temporal_token   (B, 24, 1024)  per frame
    <local1..4> local_window_1..4 (B, 24, 1024) per frame, windows 1, 2, 4, 8
    <class>     audio_token      (B, 1024)      shared by all frames

Deliberate differences from upstream, both documented where they act:

* Any length ``S`` works: the 24 frames are adaptive averages of consecutive rows, which is
  upstream's grouping exactly when ``S`` is a multiple of 24 (upstream raises otherwise) and
  linear interpolation when ``S < 24`` (see :func:`avlib.mapper.temporal.resample_frames`).
* Upstream's class-token attention applies dropout (p = 0.5) even at inference, making
  ``audio_token`` random. Here dropout acts only in training mode unless
  ``upstream_dropout=True`` restores upstream's always-on behaviour.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avlib.errors import CheckpointError
from avlib.mapper.base import FrameTokenMapper, MapperOutput
from avlib.mapper.temporal import local_window_means
from avlib.weights import torch_load_weights

UPSTREAM_DROPOUT_P = 0.5  # torch.nn.functional.dropout's default, which upstream relies on


class UnaryPotential(nn.Module):
    """How much each frame matters on its own: 1x1 conv, ReLU, dropout, 1x1 conv to a score."""

    def __init__(self, dim: int):
        super().__init__()
        self.embed = nn.Conv1d(dim, dim, 1)
        self.feature_reduce = nn.Conv1d(dim, 1, 1)

    def forward(self, x: torch.Tensor, dropout: bool) -> torch.Tensor:
        hidden = F.dropout(F.relu(self.embed(x)), p=UPSTREAM_DROPOUT_P, training=dropout)
        return self.feature_reduce(hidden).squeeze(1)  # (B, D, F) -> (B, F)


class SelfSimilarityPotential(nn.Module):
    """How much each frame agrees with the others: mean cosine similarity of two embeddings."""

    def __init__(self, dim: int):
        super().__init__()
        self.embed_X = nn.Conv1d(dim, dim, 1)
        self.embed_Y = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        queries = F.normalize(self.embed_X(x), dim=1)   # (B, D, F)
        keys = F.normalize(self.embed_Y(x), dim=1)      # (B, D, F)
        similarity = queries.transpose(1, 2) @ keys     # (B, F, F)
        return similarity.mean(dim=2)                   # (B, F)


class ClassTokenPooling(nn.Module):
    """Attention pooling of the frame tokens into one class token (upstream's FGA ``Atten``
    with a unary and a self-pairwise potential, combined by a bias-free 1x1 conv).

    Attribute names mirror upstream's (``un_models.0``, ``pp_models.0``,
    ``reduce_potentials.0``) so that the released state dict loads without renaming.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.un_models = nn.ModuleList([UnaryPotential(dim)])
        self.pp_models = nn.ModuleList([SelfSimilarityPotential(dim)])
        self.reduce_potentials = nn.ModuleList([nn.Conv1d(2, 1, 1, bias=False)])

    def attention_weights(self, tokens: torch.Tensor, dropout: bool = False) -> torch.Tensor:
        """``(B, F, D)`` -> softmax weights over frames ``(B, F)``."""
        x = tokens.transpose(1, 2)  # (B, D, F): the convolutions run over frames
        potentials = torch.stack([self.un_models[0](x, dropout), self.pp_models[0](x)], dim=1)
        scores = self.reduce_potentials[0](potentials).squeeze(1)  # (B, 2, F) -> (B, F)
        return scores.softmax(dim=1)

    def forward(self, tokens: torch.Tensor, dropout: bool = False) -> torch.Tensor:
        weights = self.attention_weights(tokens, dropout)
        return torch.einsum("bf,bfd->bd", weights, tokens)  # (B, D)


class TempoTokensMapper(FrameTokenMapper):
    """TempoTokens' mapper; defaults are the released sizes (9216 -> 2304 -> 1024, 24 frames)."""

    kind = "tempotokens"
    # What a wrong file is compared against in load errors.
    released_file = "TempoTokens' released learned_embeds.pth"

    def __init__(self, in_dim: int = 9216, hidden_dim: int = 2304, token_dim: int = 1024,
                 num_frames: int = 24, windows: Sequence[int] = (1, 2, 4, 8),
                 tokens_per_vector: int = 1, upstream_dropout: bool = False):
        super().__init__(in_dim, hidden_dim, token_dim, num_frames, windows, tokens_per_vector)
        self.fga = ClassTokenPooling(token_dim)
        self.upstream_dropout = upstream_dropout
        self.config["upstream_dropout"] = upstream_dropout

    @property
    def placeholder_names(self) -> list[str]:
        locals_ = [f"<local{i}>" for i in range(1, len(self.windows) + 1)]
        return ["<temp>", *locals_, "<class>"]

    @property
    def output_names(self) -> list[str]:
        """Upstream's names for its outputs, in placeholder order."""
        locals_ = [f"local_window_{i}" for i in range(1, len(self.windows) + 1)]
        return ["temporal_token", *locals_, "audio_token"]

    def forward(self, features: torch.Tensor) -> MapperOutput:
        temporal = self.frame_embeddings(features)          # (B, F, D)
        local = local_window_means(temporal, self.windows)  # (B, F, W, D)
        audio_token = self.fga(temporal, dropout=self.training or self.upstream_dropout)  # (B, D)
        shared = audio_token[:, None, None].expand(-1, temporal.shape[1], 1, -1)  # (B, F, 1, D)
        frame_tokens = torch.cat([temporal[:, :, None], local, shared], dim=2)   # (B, F, W+2, D)
        per_output = [temporal, *local.unbind(dim=2), audio_token]
        return MapperOutput(frame_tokens=frame_tokens, temporal_tokens=temporal,
                            extras=dict(zip(self.output_names, per_output)))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, num_frames: int = 24,
                        windows: Sequence[int] = (1, 2, 4, 8), **options) -> "TempoTokensMapper":
        """Build a mapper sized like the file's weights and load them (see
        :func:`read_released_state_dict`); ``options`` go to the constructor."""
        state = read_released_state_dict(path)
        sizes = {}
        if all(f"{name}.weight" in state for name in ("fc1", "fc3", "fc4")):
            sizes["hidden_dim"], sizes["in_dim"] = state["fc1.weight"].shape
            sizes["token_dim"] = state["fc4.weight"].shape[0]
            sizes["tokens_per_vector"] = max(1, state["fc3.weight"].shape[0] // sizes["token_dim"])
        mapper = cls(**sizes, num_frames=num_frames, windows=windows, **options)
        load_released_weights(mapper, state, source=path)
        return mapper.eval()


def read_released_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``learned_embeds.pth`` / ``at_embedder_{step}.pth``: a plain state dict, with the
    ``module.`` prefix of a DDP-trained file removed. Never unpickles arbitrary objects."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f"mapper weights not found: {path} (pass the local path of TempoTokens' "
            "learned_embeds.pth or the report repo's at_embedder_<step>.pth)")
    state = torch_load_weights(path, "the released learned_embeds.pth or at_embedder_<step>.pth "
                                     "(download it again if it was cut short)")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(
            f"{path} is not a plain state dict of tensors as TempoTokens and the report repo save "
            "their mapper (torch.save(model.state_dict())); pass learned_embeds.pth or "
            "at_embedder_<step>.pth")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_released_weights(mapper: TempoTokensMapper, state: dict[str, torch.Tensor],
                          source: str | os.PathLike = "state dict") -> None:
    """Strictly load upstream weights; a wrong file names its missing/unexpected keys."""
    expected = mapper.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{source} is not a {mapper.kind} mapper checkpoint: missing keys {_preview(missing)}, "
            f"unexpected keys {_preview(unexpected)}; pass {mapper.released_file} "
            "(17 keys fc1..fc4.*, fga.*)")
    mismatched = [f"{k} {tuple(state[k].shape)} (mapper: {tuple(v.shape)})"
                  for k, v in expected.items() if state[k].shape != v.shape]
    if mismatched:
        raise CheckpointError(
            f"{source} has other sizes than the mapper: {_preview(mismatched)}; set "
            "mapper.hidden_dim/token_dim/tokens_per_vector to the file's sizes (released files: "
            "2304/1024, tokens_per_vector 1 for TempoTokens, 3 for the report's mapper)")
    mapper.load_state_dict(state)


def _preview(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}{more}]"
