"""On-disk cache of clip embeddings: a frozen encoder runs once per clip, not once per epoch.

Layout: ``{root}/{key}/{clip_id}.npy`` (float32 ``(T', D)``), where ``key``
(:func:`encoder_cache_key`) hashes everything that changes the numbers: the encoder config,
the requested output width, the tiny-weights seed, the identity of a local checkpoint file
(size and modification time) and :data:`CACHE_FORMAT`, which is bumped whenever a front
end or network changes. A different key is simply a different folder, so stale entries
are never read.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from avlib.audio.embed import iter_embeddings
from avlib.audio.encoder import AudioEncoder
from avlib.config import EncoderConfig
from avlib.io import atomic_path
from avlib.named_weights import HUB_SEPARATOR

CACHE_FORMAT = 2  # 2: training caches whole clips and crops windows from them
CLIP_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")


def encoder_cache_key(config: EncoderConfig, embed_dim: int | None = None, seed: int = 0) -> str:
    """A short hash naming the encoder that :func:`~avlib.audio.build_audio_encoder` builds."""
    identity = {"format": CACHE_FORMAT, "encoder": dataclasses.asdict(config),
                "embed_dim": embed_dim, "seed": seed}
    checkpoint = config.checkpoint
    if checkpoint and HUB_SEPARATOR not in checkpoint and Path(checkpoint).is_file():
        stat = Path(checkpoint).stat()
        identity["checkpoint_file"] = [stat.st_size, stat.st_mtime_ns]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{config.name}-{digest[:16]}"


class EmbeddingCache:
    """Embeddings of one encoder, one ``.npy`` file per clip id."""

    def __init__(self, root: str | os.PathLike, key: str):
        self.folder = Path(root) / key

    def path(self, clip_id: str) -> Path:
        if not CLIP_ID.fullmatch(clip_id):
            raise ValueError(f"clip id {clip_id!r} is not a plain file name ([A-Za-z0-9_.-])")
        return self.folder / f"{clip_id}.npy"

    def __contains__(self, clip_id: str) -> bool:
        return self.path(clip_id).is_file()

    def load(self, clip_id: str) -> np.ndarray:
        return np.load(self.path(clip_id))

    def save(self, clip_id: str, embedding: np.ndarray) -> Path:
        path = self.path(clip_id)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(embedding, dtype=np.float32))
        return path

    def fill(self, encoder: AudioEncoder, clips: Mapping[str, str | os.PathLike],
             batch_size: int = 8) -> int:
        """Encode the clips not cached yet; returns how many were encoded."""
        missing = {clip_id: path for clip_id, path in clips.items() if clip_id not in self}
        for clip_id, embedding in iter_embeddings(encoder, missing, batch_size):
            self.save(clip_id, embedding)
        return len(missing)
