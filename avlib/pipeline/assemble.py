"""``assemble(config)``: the one place an experiment's pipeline is put together.

Frozen text-to-video model (``model.pretrained``, in ``model.dtype`` on ``model.device``) +
frozen audio encoder (``encoder``) + a fresh mapper (``mapper``, with its upstream checkpoint
if one is set), as training starts them. Training, notebook 02 and the toy world's check
all build through it.
"""
from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch

from avlib.config import ExperimentConfig, GenerationSettings
from avlib.mapper import build_mapper
from avlib.pipeline.audio_to_video import AudioToVideoPipeline
from avlib.pipeline.components import AudioEncoderModel
from avlib.pipeline.t2v import load_t2v


def assemble(config: ExperimentConfig, device: str | None = None,
             seed: int | None = None) -> AudioToVideoPipeline:
    """The pipeline of ``config`` with an untrained mapper in eval mode and the run's generation
    settings (``inference`` and ``data.audio_window``), on ``device``
    (default ``model.device``). ``seed``: seed Python's, NumPy's and torch's generators right before
    the mapper is built, after the frozen parts loaded (which may draw random numbers), so
    the mapper's initial weights depend on the seed alone."""
    device = device or config.model.device
    t2v = load_t2v(config.model.pretrained, dtype=config.model.dtype, device=device)
    encoder = AudioEncoderModel.build(config.encoder).requires_grad_(False).to(device)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    mapper = build_mapper(config.mapper, in_dim=encoder.output_dim).eval().to(device)  # training calls .train()
    return AudioToVideoPipeline.from_t2v(t2v, encoder, mapper, encoder_config=dataclasses.asdict(config.encoder),
                                         settings=GenerationSettings.of(config))
