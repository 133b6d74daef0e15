"""``build_audio_encoder``: the one way training and the pipeline get an audio encoder."""
from __future__ import annotations

import torch

from avlib.audio.beats import BEATsConfig, BEATsEncoder
from avlib.audio.cavp import CAVPEncoder
from avlib.audio.checkpoints import load_encoder
from avlib.audio.encoder import AudioEncoder
from avlib.config import ENCODERS, EncoderConfig
from avlib.errors import ConfigError


def tiny_encoder(name: str, width: int, embed_dim: int | None = None, seed: int = 0) -> AudioEncoder:
    """A small, randomly initialised encoder of the same class (tiny profile, tests).

    CAVP: channels ``width * (1, 2, ..., 32)`` (64 upstream), output ``embed_dim``
    (default ``8 * width``, as 512 = 8 * 64 upstream). BEATs: 2 layers, 4 heads, patch
    width ``2 * width``, model width ``embed_dim`` (default ``4 * width``), position
    convolution of kernel 16; front end, patching and position bias as upstream.
    The same ``seed`` gives the same weights; the global RNG is left untouched.
    """
    if name not in ENCODERS:
        raise ConfigError(f"unknown audio encoder '{name}' (choose from: {', '.join(ENCODERS)})")
    dim = embed_dim or (8 if name == "cavp" else 4) * width
    if name == "beats" and dim % 4:
        raise ConfigError(f"tiny BEATs needs an embed_dim divisible by 4 (4 heads), got {dim}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "cavp":
            return CAVPEncoder(width=width, embed_dim=dim)
        return BEATsEncoder(BEATsConfig(
            embed_dim=2 * width, encoder_layers=2, encoder_embed_dim=dim,
            encoder_ffn_embed_dim=4 * dim, encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4))


def build_audio_encoder(config: EncoderConfig, embed_dim: int | None = None,
                        seed: int = 0) -> AudioEncoder:
    """The encoder ``config`` names, frozen and in eval mode.

    * ``config.checkpoint`` set: an official CAVP / BEATs file or an avlib ``.safetensors``
      (local path or hub ``"repo_id::filename"``); ``embed_dim``, if given, must match it.
    * otherwise ``config.width`` set: :func:`tiny_encoder` with ``seed``.

    BEATs returns ``config.layers`` ("last" or "all"). Call ``.train().requires_grad_()``
    on the result to fine-tune it.
    """
    if config.checkpoint:
        encoder = load_encoder(config.checkpoint, config.name)
        if embed_dim is not None and encoder.embed_dim != embed_dim:
            raise ConfigError(f"{config.checkpoint} gives {encoder.embed_dim}-d vectors, not "
                              f"{embed_dim} (drop the embed_dim request or use another checkpoint)")
    elif config.width:
        encoder = tiny_encoder(config.name, config.width, embed_dim, seed)
    else:
        raise ConfigError(f"no weights for the {config.name} encoder: set encoder.checkpoint "
                          "(a file or repo_id::filename) or encoder.width for a tiny random one")
    if isinstance(encoder, BEATsEncoder):
        encoder.output_layers = config.layers
    return encoder.eval().requires_grad_(False)
