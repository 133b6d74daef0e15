"""Audio files in, embeddings out: one file, or a dataset in batches."""
from __future__ import annotations

import itertools
import os
from collections import defaultdict
from typing import Iterator, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from avlib.audio.encoder import AudioEncoder
from avlib.media import load_audio


@torch.no_grad()
def embed_waveform(model: nn.Module, waveform: np.ndarray) -> np.ndarray:
    """One 16 kHz mono waveform ``(samples,)`` through ``model`` -> float32, no batch axis.

    ``model`` is an encoder (CAVP ``(T', 512)``, BEATs ``(N, D)``) or just its front end
    (CAVP mel ``(128, T)``, BEATs fbank ``(T, 128)``).
    """
    weight = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = weight.device if weight is not None else torch.device("cpu")
    batch = torch.as_tensor(waveform, dtype=torch.float32, device=device)[None]  # (1, samples)
    return model(batch)[0].float().cpu().numpy()


def embed_file(model: nn.Module, path: str | os.PathLike) -> np.ndarray:
    """:func:`embed_waveform` on any file :func:`avlib.media.load_audio` reads."""
    return embed_waveform(model, load_audio(path))


@torch.no_grad()
def iter_embeddings(encoder: AudioEncoder, clips: Mapping[str, str | os.PathLike],
                    batch_size: int = 8) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(clip_id, (T', D) float32)`` for each clip, encoding ``batch_size`` at a time.

    Clips of equal length share a batch; a batch of mixed lengths is split by length
    rather than padded, so padding never changes an embedding (the batch itself may round its
    last bits differently from a clip alone: :meth:`EmbeddingCache.fill` encodes each alone).
    """
    ids = list(clips)
    with tqdm(total=len(ids), desc=f"{encoder.name} embeddings", unit="clip") as progress:
        for start in range(0, len(ids), batch_size):
            by_length: dict[int, list[tuple[str, np.ndarray]]] = defaultdict(list)
            for clip_id in ids[start:start + batch_size]:
                waveform = load_audio(clips[clip_id])
                by_length[len(waveform)].append((clip_id, waveform))
            for group in by_length.values():
                batch = np.stack([waveform for _, waveform in group])       # (b, samples)
                vectors = encoder.encode(batch).float().cpu().numpy()       # (b, T', D)
                for (clip_id, _), embedding in zip(group, vectors):
                    yield clip_id, embedding
                progress.update(len(group))
