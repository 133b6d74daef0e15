"""Load the frozen text-to-video model: zeroscope_v2_576w, or its tiny twin, by one code path.

``load_t2v("cerspense/zeroscope_v2_576w")`` resolves the hub id through huggingface_hub's
cache (honouring ``HF_HUB_OFFLINE``), ``load_t2v("/some/folder")`` reads a local diffusers
folder, ``load_t2v("tiny")`` builds the tiny twin once into avlib's cache folder, and
``load_t2v("toyworld")`` reads the shipped toy-world model; :mod:`avlib.named_weights` says
where each name lives. All of them then go through the same ``from_pretrained`` calls, with
every weight frozen.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from diffusers.utils import CONFIG_NAME
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPTextModel, CLIPTokenizer
from transformers.utils import logging as transformers_logging

from avlib.errors import CheckpointError
from avlib.io import read_json
from avlib.named_weights import TINY, t2v_folder, tiny_t2v_folder
from avlib.pipeline.tiny import build_tiny_t2v
from avlib.weights import folder_problem, quiet_unpickler

ZEROSCOPE_ID = "cerspense/zeroscope_v2_576w"

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class T2VComponents:
    """The frozen parts of a text-to-video diffusion model, as diffusers names them."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    source: str


def vae_scale(block_out_channels) -> int:
    """The VAE's downsampling factor: frame sizes must be multiples of it."""
    return 2 ** (len(block_out_channels) - 1)


def pretrained_vae_scale(pretrained: str) -> int:
    """:func:`vae_scale` of a model read from its config alone (no weights loaded)."""
    config = read_json(resolve_pretrained(pretrained) / "vae" / CONFIG_NAME, "VAE config")
    return vae_scale(config.get("block_out_channels", [64]))  # diffusers default: one block


def resolve_pretrained(pretrained: str) -> Path:
    """A local diffusers folder for ``pretrained`` (:func:`avlib.named_weights.t2v_folder`),
    building the tiny twin first when ``pretrained`` is "tiny" and it is not cached yet."""
    if pretrained == TINY:
        ensure_tiny_t2v()
    return t2v_folder(pretrained)


def ensure_tiny_t2v(seed: int = 0) -> Path:
    """Build the tiny twin into the cache on first use (deterministic for a seed)."""
    target = tiny_t2v_folder(seed)
    if not (target / "unet").is_dir():
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        build_tiny_t2v(staging, seed=seed)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: theirs is identical
            shutil.rmtree(staging, ignore_errors=True)
    return target


@contextlib.contextmanager
def quiet_weight_loading():
    """Quiet loading of files already on disk: transformers' and diffusers' progress bars off,
    and diffusers' log silenced.

    transformers 5 draws a "Loading weights 36/36" bar for every model it loads: in a notebook
    each is an output (and a Log Console entry) for a step that takes milliseconds. Downloads
    happen before, in :func:`resolve_pretrained`, and keep huggingface_hub's bars. A folder
    without safetensors makes diffusers log an "error" and "Defaulting to unsafe
    serialization", yet it falls back to the .bin file read with ``weights_only=True``; a real
    failure still raises (and is reported once, by us).
    """
    modules = (diffusers_logging, transformers_logging)
    before = [module.is_progress_bar_enabled() for module in modules]
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    for module in modules:
        module.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
        for module, enabled in zip(modules, before):
            if enabled:
                module.enable_progress_bar()


def load_t2v(pretrained: str = ZEROSCOPE_ID, dtype: str = "float32", device: str = "cpu") -> T2VComponents:
    """Load UNet3D, VAE, CLIP text encoder, tokenizer and scheduler, frozen, in ``dtype``."""
    folder = resolve_pretrained(pretrained)
    if device == "cpu":
        dtype = "float32"  # half precision on CPU is slow and inaccurate
    torch_dtype = DTYPES[dtype]
    try:
        with quiet_weight_loading(), quiet_unpickler():
            unet = UNet3DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=torch_dtype)
            vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch_dtype)
            text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=torch_dtype)
            tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
            scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    except Exception as exc:  # diffusers/transformers raise OSError, ValueError, UnpicklingError...
        raise CheckpointError(f"cannot load the text-to-video model from {folder}: "
                              f"{folder_problem(folder, exc)} (download it again or pass another "
                              "diffusers folder)") from exc
    for model in (unet, vae, text_encoder):
        model.requires_grad_(False).eval().to(device)
    return T2VComponents(unet, vae, text_encoder, tokenizer, scheduler, source=str(pretrained))
