"""On-disk cache of audio embeddings: a frozen encoder runs once per distinct audio, not once
per epoch or per run.

An entry is named by :func:`avlib.cache.cache_key` from the audio's samples, the encoder's
weights, its settings (front end, output width) and dtype, so clips that share an id but
not their sound never share an entry, and a changed checkpoint is a different entry.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import torch

from avlib.audio.encoder import AudioEncoder
from avlib.cache import CachedModel
from avlib.media import load_audio


class EmbeddingCache(CachedModel):
    """Embeddings ``(T', D)`` float32 of one encoder, keyed by the 16 kHz samples they come from."""

    def __init__(self, encoder: AudioEncoder, settings: Mapping[str, Any],
                 root: str | os.PathLike | None = None):
        super().__init__("audio", encoder, settings, root)

    def key(self, waveform) -> tuple[str, str]:
        # float32 samples whatever they came as (numpy from a file, a tensor from a dataset)
        return super().key(torch.as_tensor(np.asarray(waveform, dtype=np.float32)))

    def fill(self, encoder: AudioEncoder, clips: Mapping[str, str | os.PathLike]) -> int:
        """Encode the audio files whose samples are not cached yet; returns how many were encoded.

        Each clip is encoded alone, as training encodes it: PyTorch's CPU convolutions round
        a batch of one differently in the last bits, and an entry must hold what training
        would compute."""
        def encode_alone(waveform: torch.Tensor) -> np.ndarray:
            return encoder.encode(waveform[None])[0].float().cpu().numpy()    # (T', D)

        encoded = 0
        for path in clips.values():
            _, hit = self.get(torch.as_tensor(load_audio(path)), encode_alone)
            encoded += not hit
        return encoded
