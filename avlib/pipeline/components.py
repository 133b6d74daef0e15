"""The audio encoder and the mapper as diffusers pipeline components.

diffusers saves and loads a pipeline component only if its class derives from one of its
loadable bases (``ModelMixin`` here), and looks that base up by name in the module that
defines the component's class. The audio encoders and mappers are plain ``nn.Module``s in
the layers below (which do not import diffusers); these two thin wrappers give them
``save_pretrained`` / ``from_pretrained`` in avlib's own formats:

* :class:`MapperModel`: ``mapper.safetensors`` + ``mapper_config.json``
  (:func:`avlib.mapper.save_mapper`), the format run folders have always used.
* :class:`AudioEncoderModel`: ``encoder.safetensors`` with the architecture as metadata
  (:func:`avlib.audio.checkpoints.save_encoder`) + ``encoder_config.json`` (the
  ``encoder`` config section it was built from).

Everything else the callers use (``encode``, ``output_dim``, ``num_frames``,
``placeholder_names``...) is read through to the wrapped module.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from diffusers import ModelMixin

from avlib.audio import build_audio_encoder
from avlib.audio.checkpoints import load_saved_encoder, save_encoder
from avlib.config import EncoderConfig
from avlib.io import read_json, write_json
from avlib.mapper import load_mapper, save_mapper

ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_CONFIG = "encoder_config.json"


class _Wrapper(ModelMixin):
    """A ModelMixin holding one module; unknown attributes are read from that module."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules", {})
            if "module" not in modules:
                raise
            return getattr(modules["module"], name)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @classmethod
    def wrap(cls, module: torch.nn.Module | None):
        """``module`` as a component (``None`` and components pass through)."""
        return module if module is None or isinstance(module, cls) else cls(module)


class MapperModel(_Wrapper):
    """A mapper (:class:`avlib.mapper.base.FrameTokenMapper`) as a pipeline component."""

    def save_pretrained(self, save_directory: str | os.PathLike, **_diffusers_options) -> None:
        save_mapper(self.module, save_directory)  # safetensors whatever diffusers asks

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                        **_diffusers_options) -> "MapperModel":
        mapper = load_mapper(directory)
        return cls(mapper.to(torch_dtype) if torch_dtype is not None else mapper)


class AudioEncoderModel(_Wrapper):
    """A frozen audio encoder (:class:`avlib.audio.encoder.AudioEncoder`) as a pipeline
    component; ``config`` is the ``encoder`` config section it was built from (a dict)."""

    def __init__(self, module: torch.nn.Module, config: dict | None = None):
        super().__init__(module)
        self.encoder_config = dict(config or {})

    @classmethod
    def build(cls, config) -> "AudioEncoderModel":
        """Build from an ``EncoderConfig`` (or its dict): its checkpoint, or the tiny random one."""
        config = config if isinstance(config, EncoderConfig) else EncoderConfig(**config)
        return cls(build_audio_encoder(config).eval(), dataclasses.asdict(config))

    def save_pretrained(self, save_directory: str | os.PathLike, **_diffusers_options) -> None:
        save_encoder(self.module, Path(save_directory) / ENCODER_WEIGHTS)
        write_json(Path(save_directory) / ENCODER_CONFIG, self.encoder_config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                        **_diffusers_options) -> "AudioEncoderModel":
        directory = Path(directory)
        config = read_json(directory / ENCODER_CONFIG, "audio encoder config")
        encoder = load_saved_encoder(directory / ENCODER_WEIGHTS)
        if hasattr(encoder, "output_layers"):  # BEATs: which layers it returns is a setting, not a weight
            encoder.output_layers = config.get("layers", encoder.output_layers)
        encoder = encoder.eval().requires_grad_(False)
        return cls(encoder.to(torch_dtype) if torch_dtype is not None else encoder, config)
