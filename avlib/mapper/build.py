"""Build a mapper from an experiment config, and save/load one as safetensors + JSON.

A saved mapper is a folder with ``mapper.safetensors`` (weights) and ``mapper_config.json``
(``{"kind": ..., <constructor arguments>}``); ``AudioToVideoPipeline.save_pretrained`` and
``from_pretrained`` use it for their mapper component.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avlib.config import MapperConfig
from avlib.errors import CheckpointError, ConfigError
from avlib.io import atomic_path, write_json
from avlib.mapper.audiovisgen import AudioVisGenMapper
from avlib.mapper.base import FrameTokenMapper
from avlib.mapper.tempotokens import (TempoTokensMapper, load_released_weights,
                                      read_released_state_dict)

MAPPERS: dict[str, type[FrameTokenMapper]] = {
    AudioVisGenMapper.kind: AudioVisGenMapper,
    TempoTokensMapper.kind: TempoTokensMapper,
}
# Token rows fc3 emits per audio vector, when mapper.tokens_per_vector is unset.
DEFAULT_TOKENS_PER_VECTOR = {AudioVisGenMapper.kind: 3, TempoTokensMapper.kind: 1}
WEIGHTS_NAME = "mapper.safetensors"
CONFIG_NAME = "mapper_config.json"


def build_mapper(config: MapperConfig, in_dim: int) -> FrameTokenMapper:
    """A fresh mapper for features with ``in_dim`` channels; with ``config.checkpoint`` set,
    upstream weights are loaded strictly (TempoTokens' ``learned_embeds.pth``, the report
    repo's ``at_embedder_{step}.pth``)."""
    if config.kind not in MAPPERS:
        raise ConfigError(f"mapper.kind='{config.kind}' is not one of: {', '.join(MAPPERS)}")
    cls = MAPPERS[config.kind]
    sizes = dict(in_dim=in_dim, hidden_dim=config.hidden_dim, token_dim=config.token_dim,
                 num_frames=config.num_frames, windows=config.windows,
                 tokens_per_vector=config.tokens_per_vector or DEFAULT_TOKENS_PER_VECTOR[config.kind],
                 upstream_dropout=config.upstream_dropout)
    if cls is AudioVisGenMapper:
        sizes.update(frame_attention=config.frame_attention, attention_heads=config.attention_heads)
    mapper = cls(**sizes)
    if config.checkpoint:
        load_released_weights(mapper, read_released_state_dict(config.checkpoint),
                              source=config.checkpoint)
    return mapper


def save_mapper(mapper: FrameTokenMapper, directory: str | os.PathLike) -> Path:
    """Write the mapper's weights and constructor config into ``directory`` (atomically)."""
    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in mapper.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    write_json(directory / CONFIG_NAME, {"kind": mapper.kind, **mapper.config})
    return directory


def load_mapper(directory: str | os.PathLike) -> FrameTokenMapper:
    """Rebuild a mapper written by :func:`save_mapper` (in eval mode)."""
    directory = Path(directory)
    weights, config_file = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    for path in (weights, config_file):
        if not path.is_file():
            raise CheckpointError(f"{path} not found: pass a folder written by save_mapper "
                                  "(a training run's mapper/ folder)")
    try:
        config = json.loads(config_file.read_text())
        kind = config.pop("kind")
        state = load_file(str(weights))
    except (ValueError, KeyError, SafetensorError) as exc:
        raise CheckpointError(f"{directory} holds a damaged mapper ({type(exc).__name__}: "
                              f"{exc}); save it again or re-run training") from exc
    if kind not in MAPPERS:
        raise CheckpointError(f"{config_file} names mapper kind '{kind}', expected one of: "
                              f"{', '.join(MAPPERS)}; was it written by a newer avlib?")
    try:
        mapper = MAPPERS[kind](**config)
        mapper.load_state_dict(state)
    except (TypeError, RuntimeError) as exc:  # unknown config keys; missing or mis-sized weights
        reason = " ".join(str(exc).split())
        raise CheckpointError(f"{weights} does not match {config_file} ({reason}); "
                              "save the mapper again") from exc
    return mapper.eval()
