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

from avlib.audio.embed import iter_embeddings
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

    def fill(self, encoder: AudioEncoder, clips: Mapping[str, str | os.PathLike],
             batch_size: int = 8) -> int:
        """Encode the audio files whose samples are not cached yet; returns how many were encoded."""
        keys = {clip_id: self.key(load_audio(path)) for clip_id, path in clips.items()}
        missing = {clip_id: clips[clip_id] for clip_id, (key, content) in keys.items()
                   if self.entries.load(key, content) is None}
        for clip_id, embedding in iter_embeddings(encoder, missing, batch_size):
            self.entries.save(*keys[clip_id], embedding.astype(np.float32))
        return len(missing)
