"""Deterministic stand-in weights for an official checkpoint layout.

The real CAVP, BEATs, TempoTokens, report-mapper and I3D weights are not shipped, so layouts
and numerics are checked with stand-ins instead: each key of a layout manifest
(``tests/fixtures/*_state_dict_shapes.json``: ``{"shapes": {key: [dims]}, "tied_keys": ...}``)
gets a tensor drawn from its own generator, seeded by the seed and the key's name. The same
manifest gives the same tensors on every machine, so the upstream code, run once with them,
left reference outputs (``tests/fixtures/*_case.npz``) that avlib's loaders and models must
reproduce. ``benchmarks/paper_standins.py`` builds the paper profile's files from them too.

The rule, per key (``shape`` its list of dims), on ``numpy.random.default_rng(h)`` where ``h``
is the first 16 hex digits of ``sha256(f"{seed}:{key}")``:

================================================  ==========================================
key ends with ``num_batches_tracked``             zeros, int64
key ends with ``running_var``                     ``0.5 + uniform[0, 1)``
key ends with ``running_mean``                    ``0.1 * normal``
1-d ``.weight`` of a norm (``norm``/``bn``/``ln``  ``1.0 + 0.1 * normal``
in the lower-cased key)
any other tensor of 0 or 1 dims                   ``0.02 * normal``
everything else                                   ``normal / sqrt(fan_in)``, fan_in = prod(dims[1:])
================================================  ==========================================

drawn in float64 and stored as float32. Keys a manifest lists as ``tied_keys`` copies then
take their source key's tensor, as a checkpoint of one shared module holds it.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

NORM_MARKERS = ("norm", "bn", "ln")


def _generator(key: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()
    return np.random.default_rng(int(digest[:16], 16))


def _is_norm_scale(key: str, shape: list[int]) -> bool:
    return len(shape) == 1 and key.endswith(".weight") and any(m in key.lower() for m in NORM_MARKERS)


def synth_tensor(key: str, shape: list[int], seed: int = 0) -> torch.Tensor:
    """One stand-in tensor; it depends only on the key's name, its shape and the seed."""
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    rng = _generator(key, seed)
    if key.endswith("running_var"):
        values = 0.5 + rng.random(shape)
    elif key.endswith("running_mean"):
        values = 0.1 * rng.standard_normal(shape)
    elif _is_norm_scale(key, shape):
        values = 1.0 + 0.1 * rng.standard_normal(shape)
    elif len(shape) <= 1:
        values = 0.02 * rng.standard_normal(shape)
    else:
        values = rng.standard_normal(shape) / math.sqrt(math.prod(shape[1:]))
    return torch.from_numpy(np.asarray(values, dtype=np.float32))


def synth_state_dict(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict holding a stand-in tensor for every key of ``shapes``, in its order."""
    return {key: synth_tensor(key, shape, seed) for key, shape in shapes.items()}


def synth_from_manifest(path: str | Path, seed: int = 0) -> dict[str, torch.Tensor]:
    """The stand-in state dict of a layout manifest, its ``tied_keys`` copies made equal."""
    manifest = json.loads(Path(path).read_text())
    state_dict = synth_state_dict(manifest["shapes"], seed)
    for source, copies in manifest.get("tied_keys", {}).items():
        for copy in copies:
            state_dict[copy] = state_dict[source]
    return state_dict
