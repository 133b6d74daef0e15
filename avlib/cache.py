"""Content-addressed caches: what avlib computes once from an input and keeps in ``AVLIB_CACHE``.

One function, :func:`cache_key`, names every cache entry (training's audio features and VAE
latents, FVD's video features, the toy world's runs through both) from everything that
determines it: a digest of the input's content (its samples, or its file's bytes), a digest of
the weights that computed it, the settings that change the numbers (front end, window,
preprocessing), the dtype and :data:`CACHE_VERSION`. No key names a path or a clip id, so
two datasets whose clips share ids, or a model rebuilt at the same path, never share an entry.

Each entry is a safetensors file (no pickle) written atomically, carrying its key, its
content digest and a SHA-256 of its array, all checked when it is read. A damaged, foreign or
stale entry is computed again after a one-line :class:`CacheWarning`. Layout::

    {root}/{key[:2]}/{key}.safetensors      e.g. $AVLIB_CACHE/features/audio/3f/3f9c....safetensors
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from avlib.errors import AvlibWarning
from avlib.io import as_os_error, atomic_path, cache_dir

CACHE_VERSION = 4  # bump when a front end, network or entry layout changes what an entry holds
HINT = "the cache is the folder AVLIB_CACHE names; --no-cache runs without it"


class CacheWarning(AvlibWarning):
    """A cache entry that could not be used or kept; the result is computed instead."""


def digest(*parts: Any) -> str:
    """SHA-256 (hex) of arrays, tensors, bytes and JSON-able values, in order.

    An array's dtype and shape count, not only its bytes, so a float32 and a float16 copy of
    the same numbers differ.
    """
    h = hashlib.sha256()
    for part in parts:
        if hasattr(part, "detach"):  # a torch tensor, of any dtype numpy may lack (bfloat16)
            import torch

            part = part.detach().cpu().contiguous()
            h.update(f"torch:{part.dtype}:{tuple(part.shape)};".encode())
            h.update(part.reshape(-1).view(torch.uint8).numpy().data)
        elif isinstance(part, np.ndarray):
            h.update(f"numpy:{part.dtype.str}:{part.shape};".encode())
            h.update(np.ascontiguousarray(part).data)
        elif isinstance(part, (bytes, bytearray, memoryview)):
            h.update(b"bytes;")
            h.update(part)
        else:
            h.update(b"json;" + json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_digest(module) -> str:
    """SHA-256 of a module's weights and buffers, by name: what a network computes, wherever
    it was loaded from."""
    return digest(*(part for name, tensor in sorted(module.state_dict().items()) for part in (name, tensor)))


def cache_key(kind: str, *, content: str, weights: str, settings: Mapping[str, Any], dtype: str) -> str:
    """The one name of a cache entry: SHA-256 (hex) of everything that determines it.

    ``kind`` says what is cached ("audio", "latents", "fvd"); ``content`` is the input's digest
    (:func:`digest` of its samples or :func:`file_digest` of its file); ``weights`` the digest
    of the network (:func:`weights_digest`); ``settings`` the options that change the numbers
    (front end, window, preprocessing); ``dtype`` the precision it ran in.
    """
    identity = {"avlib_cache": CACHE_VERSION, "kind": kind, "content": content, "weights": weights,
                "settings": settings, "dtype": str(dtype)}
    return digest(identity)


def default_root(kind: str) -> Path:
    """Where entries of ``kind`` live: ``$AVLIB_CACHE/features/{kind}``."""
    return cache_dir() / "features" / kind


class FeatureCache:
    """Arrays named by :func:`cache_key`, one verified safetensors file each."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def load(self, key: str, content: str) -> np.ndarray | None:
        """The array stored under ``key``, or None when there is none or it does not verify
        (then a one-line warning says so, and the caller computes it again)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            array, meta = _read_entry(path)
        except Exception as exc:  # any damage: safetensors, JSON, OS errors alike
            return self._warn(path, f"cannot be read ({type(exc).__name__})")
        expected = {"avlib_cache": str(CACHE_VERSION), "key": key, "content": content, "sha256": digest(array)}
        wrong = [name for name, value in expected.items() if meta.get(name) != value]
        if wrong:
            what = "damaged (its checksum does not match)" if wrong == ["sha256"] else \
                f"not this input's entry ({', '.join(wrong)} differ)"
            return self._warn(path, f"is {what}")
        return array

    def save(self, key: str, content: str, array: np.ndarray) -> Path | None:
        """Store ``array`` atomically; a failed write (a full disk) warns and keeps going."""
        from safetensors.numpy import save_file

        array = np.ascontiguousarray(array)
        meta = {"avlib_cache": str(CACHE_VERSION), "key": key, "content": content, "sha256": digest(array)}
        path = self.path(key)
        try:
            with atomic_path(path) as tmp:
                save_file({"value": array}, str(tmp), metadata=meta)
        except Exception as exc:
            exc = as_os_error(exc)
            if not isinstance(exc, OSError):
                raise
            warnings.warn(f"could not write the cache entry {path} ({exc.strerror or exc}); carrying on "
                          f"without it ({HINT})", CacheWarning, stacklevel=2)
            return None
        return path

    def _warn(self, path: Path, problem: str) -> None:
        warnings.warn(f"cache entry {path} {problem}; computing it again ({HINT})", CacheWarning, stacklevel=3)
        return None


class CachedModel:
    """What one frozen network computes from an input, cached under the input's content digest.

    ``settings`` holds whatever else changes the output (front end, window); the network's
    weights and dtype are read from ``model``.
    """

    def __init__(self, kind: str, model, settings: Mapping[str, Any], root: str | os.PathLike | None = None):
        self.kind, self.settings = kind, dict(settings)
        self.entries = FeatureCache(root if root is not None else default_root(kind))
        self.weights = weights_digest(model)
        floats = (t.dtype for t in model.state_dict().values() if t.is_floating_point())
        self.dtype = str(next(floats, "none"))  # what it computes in (not an int buffer's type)

    def key(self, inputs) -> tuple[str, str]:
        """(cache key, content digest) of one input (array or tensor; dtype and shape count)."""
        content = digest(inputs)
        return cache_key(self.kind, content=content, weights=self.weights, settings=self.settings,
                         dtype=self.dtype), content

    def get(self, inputs, compute) -> tuple[np.ndarray, bool]:
        """(output, whether it came from the cache): ``compute(inputs)`` only on a miss."""
        key, content = self.key(inputs)
        cached = self.entries.load(key, content)
        if cached is not None:
            return cached, True
        output = np.asarray(compute(inputs))
        self.entries.save(key, content, output)
        return output, False


def _read_entry(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), "np") as handle:
        return handle.get_tensor("value"), handle.metadata() or {}
