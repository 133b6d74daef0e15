"""The interface every audio encoder shares, so training and the pipeline need not care which.

An encoder is a front end (fixed feature extraction, no weights) followed by a network::

    features = encoder.frontend(waveform)     # (B, samples) 16 kHz -> encoder-specific
    vectors = encoder(waveform)               # (B, T', output_dim), differentiable
    vectors = encoder.encode(waveform)        # the same without autograd, any array-like input

``frame_rate`` says how many output vectors one second of audio gives, ``num_vectors``
gives the exact count for a clip length.
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn


class AudioEncoder(nn.Module, abc.ABC):
    name: ClassVar[str]   # "cavp" | "beats": the encoder.name config value
    frame_rate: float     # output vectors per second of audio
    frontend: nn.Module

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int:
        """Width of one layer's output vectors."""

    @property
    def output_dim(self) -> int:
        """Width of the vectors :meth:`encode` returns."""
        return self.embed_dim

    @property
    def vectors_per_step(self) -> int:
        """Output vectors per time step (BEATs: 8 frequency patches); a time crop of the
        vectors must start and end on a multiple of this."""
        return 1

    @abc.abstractmethod
    def architecture(self) -> dict[str, Any]:
        """JSON-able description that rebuilds this network (stored beside saved weights)."""

    @classmethod
    def from_architecture(cls, architecture: dict[str, Any]) -> "AudioEncoder":
        return cls(**architecture)

    @abc.abstractmethod
    def num_vectors(self, num_samples: int) -> int:
        """How many output vectors a clip of ``num_samples`` samples gives."""

    @abc.abstractmethod
    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The network alone: front-end features -> ``(B, T', output_dim)``."""

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.embed(self.frontend(waveform))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, waveform: Any) -> torch.Tensor:
        """``(B, samples)`` float 16 kHz mono (tensor or array) -> ``(B, T', output_dim)``."""
        waveform = torch.as_tensor(waveform, dtype=torch.float32, device=self.device)
        if waveform.ndim != 2:
            raise ValueError(f"expected a batch of waveforms (B, samples), got shape {tuple(waveform.shape)}")
        return self(waveform)
