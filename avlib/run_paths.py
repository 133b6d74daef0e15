"""Self-contained run folders: every path a run depends on is resolved when the run is created.

A run folder's ``config.json`` is read again by ``avlib sample --run``, ``avlib evaluate --run``,
``avlib generate --mapper`` and ``avlib train --resume``, from whatever folder they are started
in. So when a run is created each local path in its config becomes absolute (and a checkpoint
file is checked to exist, before any model loads); hub ids stay hub ids (``model.pretrained``
a model id, ``encoder.checkpoint`` ``"repo_id::filename"``), as do the names avlib resolves
itself (``tiny``, ``toyworld``). What lives inside the run folder (``pipeline/``,
``checkpoints/``, ``samples/``) is addressed relative to the folder, so a moved run folder
works as long as the files it depends on stay where they were.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from avlib.audio.checkpoints import HUB_SEPARATOR, TOYWORLD, resolve_checkpoint
from avlib.config import ExperimentConfig
from avlib.errors import CheckpointError

BUILT_IN_MODELS = ("tiny", "toyworld")   # model.pretrained names that are not paths


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def resolve_run_paths(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with every local path absolute; a missing checkpoint file fails here."""
    pretrained = config.model.pretrained
    if pretrained not in BUILT_IN_MODELS and Path(pretrained).expanduser().is_dir():
        pretrained = _absolute(pretrained)  # otherwise a hub id
    encoder_checkpoint = config.encoder.checkpoint
    if encoder_checkpoint not in (None, TOYWORLD) and HUB_SEPARATOR not in encoder_checkpoint:
        encoder_checkpoint = str(resolve_checkpoint(encoder_checkpoint).resolve())
    mapper_checkpoint = _absolute(config.mapper.checkpoint)
    if mapper_checkpoint is not None and not Path(mapper_checkpoint).is_file():
        raise CheckpointError(f"mapper weights not found: {config.mapper.checkpoint} (looked for "
                              f"{mapper_checkpoint}; pass the path of learned_embeds.pth or "
                              "at_embedder_<step>.pth with --set mapper.checkpoint=PATH)")
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, pretrained=pretrained),
        encoder=dataclasses.replace(config.encoder, checkpoint=encoder_checkpoint),
        mapper=dataclasses.replace(config.mapper, checkpoint=mapper_checkpoint),
        data=dataclasses.replace(config.data, root=_absolute(config.data.root),
                                 manifest=_absolute(config.data.manifest)),
    )
