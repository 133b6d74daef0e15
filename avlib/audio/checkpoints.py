"""Finding and loading audio encoder weights.

Three kinds of file load into the encoders:

* Diff-Foley's ``cavp_epoch66.ckpt``: ``{"state_dict": {"module.spec_encoder.X": ...}, ...}``
  (the ``module.`` DDP prefix is optional; video-branch keys and ``logit_scale`` are skipped).
* BEATs' ``BEATs_*.pt``: ``{"cfg": {...}, "model": {...}}`` (a fine-tuned model's
  ``predictor.*`` classifier is dropped; the relative position bias that upstream ties
  across layers is stored once per layer there and loaded once here).
* avlib's own ``.safetensors`` (:func:`save_encoder`), for networks avlib trained or
  initialised itself, e.g. the tiny profile's; the architecture rides along as metadata.

Pickled checkpoints are read with ``torch.load(weights_only=True)``. Loading is strict
over the keys the audio path uses, and every failure is a one-line :class:`CheckpointError`.

A checkpoint is named by a local path, a hub id ``"repo_id::filename"`` or ``"toyworld"``,
resolved by :func:`avlib.named_weights.resolve_checkpoint`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from avlib.audio.beats import BEATsConfig, BEATsEncoder
from avlib.audio.cavp import CAVPEncoder
from avlib.audio.encoder import AudioEncoder
from avlib.errors import CheckpointError, ConfigError
from avlib.io import atomic_path
from avlib.named_weights import resolve_checkpoint
from avlib.weights import torch_load_weights

ENCODER_CLASSES: dict[str, type[AudioEncoder]] = {"cavp": CAVPEncoder, "beats": BEATsEncoder}
OFFICIAL_FILES = {
    "cavp": "Diff-Foley's CAVP checkpoint (SimianLuo/Diff-Foley::diff_foley_ckpt/cavp_epoch66.ckpt)",
    "beats": "a BEATs checkpoint such as BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt",
}

# BEATs' cfg entries that avlib's implementation assumes (other values: a different model).
BEATS_FIXED_CFG = {"layer_norm_first": False, "relative_position_embedding": True,
                   "gru_rel_pos": True, "activation_fn": "gelu"}
BEATS_TIED_BIAS = "self_attn.relative_attention_bias.weight"


def _preview(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], path: Path,
                        expected: str) -> None:
    """``load_state_dict(strict=True)``, failing with one line that lists what differs."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state_dict.items()
                   if k in own and v.shape != own[k].shape]
    problems = [f"{label} {len(keys)} keys: {_preview(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys]
    if problems:
        raise CheckpointError(f"{path} does not fit {module.__class__.__name__}: "
                              f"{'; '.join(problems)} (expected {expected})")
    module.load_state_dict(state_dict, strict=True)


def _require_dict(obj: Any, path: Path, keys: tuple[str, ...], expected: str) -> None:
    if not isinstance(obj, dict) or not all(k in obj for k in keys):
        found = _preview(sorted(map(str, obj))) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path} is not {expected}: expected entries {', '.join(keys)}, "
                              f"found {found or 'nothing'}")


def load_official_cavp(path: str | os.PathLike) -> CAVPEncoder:
    """Diff-Foley's CAVP checkpoint -> the CAVP audio encoder (video branch skipped)."""
    path = Path(path)
    checkpoint = torch_load_weights(path, OFFICIAL_FILES["cavp"])
    _require_dict(checkpoint, path, (), OFFICIAL_FILES["cavp"])
    state_dict = checkpoint.get("state_dict", checkpoint)  # Lightning wraps it, bare dicts too
    prefix = "spec_encoder."
    audio = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")                  # DDP-wrapped training
        if key.startswith(prefix):
            audio[key[len(prefix):]] = value
    # Widths read off the weights (upstream: 64, 512), so a narrower CAVP in this layout loads too.
    width = audio["conv_block1.conv1.weight"].shape[0] if "conv_block1.conv1.weight" in audio else 64
    embed_dim = audio["final_project.weight"].shape[0] if "final_project.weight" in audio else 512
    encoder = CAVPEncoder(width=width, embed_dim=embed_dim)
    load_weights_strict(encoder, audio, path, OFFICIAL_FILES["cavp"])
    return encoder


def beats_config_from_official(cfg: dict[str, Any], path: Path) -> BEATsConfig:
    """The architecture fields of an official ``cfg``; all must be present and supported."""
    fields = BEATsConfig.__dataclass_fields__
    missing = [name for name in [*fields, *BEATS_FIXED_CFG] if name not in cfg]
    if missing:
        raise CheckpointError(f"{path}: BEATs cfg lacks {_preview(missing)} "
                              f"(expected {OFFICIAL_FILES['beats']})")
    unsupported = [f"{k}={cfg[k]!r}" for k, v in BEATS_FIXED_CFG.items() if cfg[k] != v]
    if unsupported:
        raise CheckpointError(f"{path}: unsupported BEATs variant ({', '.join(unsupported)}); "
                              f"avlib implements the iter3+ models ({OFFICIAL_FILES['beats']})")
    return BEATsConfig(**{name: cfg[name] for name in fields})


def beats_state_dict_from_official(model: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Upstream's key layout -> :class:`BEATsEncoder`'s (predictor dropped, bias untied)."""
    state_dict, tied = {}, []
    for key, value in model.items():
        if key.startswith("predictor."):
            continue
        if key.endswith(BEATS_TIED_BIAS):
            tied.append((int(key.split(".")[2]), value))   # encoder.layers.{i}.self_attn...
            continue
        state_dict[key.replace("encoder.pos_conv.0.", "encoder.pos_conv.")] = value
    if tied:
        # One shared module upstream: loading its copies in order leaves the last one.
        state_dict["encoder.rel_pos_bias.embedding.weight"] = max(tied, key=lambda t: t[0])[1]
    return state_dict


def load_official_beats(path: str | os.PathLike) -> BEATsEncoder:
    """A BEATs ``{"cfg", "model"}`` checkpoint -> :class:`BEATsEncoder`."""
    path = Path(path)
    checkpoint = torch_load_weights(path, OFFICIAL_FILES["beats"])
    _require_dict(checkpoint, path, ("cfg", "model"), OFFICIAL_FILES["beats"])
    encoder = BEATsEncoder(beats_config_from_official(checkpoint["cfg"], path))
    load_weights_strict(encoder, beats_state_dict_from_official(checkpoint["model"]), path,
                        OFFICIAL_FILES["beats"])
    return encoder


def save_encoder(encoder: AudioEncoder, path: str | os.PathLike) -> Path:
    """Write an encoder's weights as safetensors, its class and architecture as metadata."""
    metadata = {"avlib_encoder": encoder.name, "architecture": json.dumps(encoder.architecture())}
    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def load_saved_encoder(path: str | os.PathLike) -> AudioEncoder:
    """An encoder written by :func:`save_encoder`."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state_dict = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: not a valid safetensors file "
                              "(the file is truncated or corrupt; write it again)") from exc
    name = metadata.get("avlib_encoder")
    if name not in ENCODER_CLASSES or "architecture" not in metadata:
        raise CheckpointError(f"{path} is not an avlib audio encoder file (no 'avlib_encoder' "
                              "metadata; write it with avlib.audio.save_encoder)")
    encoder = ENCODER_CLASSES[name].from_architecture(json.loads(metadata["architecture"]))
    load_weights_strict(encoder, state_dict, path, f"a {name} encoder saved by avlib")
    return encoder


def load_encoder(spec: str | os.PathLike, name: str,
                 cache_dir: str | os.PathLike | None = None) -> AudioEncoder:
    """Resolve ``spec`` and load the ``name`` encoder ("cavp" | "beats") from it."""
    if name not in ENCODER_CLASSES:
        raise ConfigError(f"unknown audio encoder '{name}' (choose from: {', '.join(ENCODER_CLASSES)})")
    path = resolve_checkpoint(spec, cache_dir)
    if path.suffix == ".safetensors":
        encoder = load_saved_encoder(path)
        if encoder.name != name:
            raise CheckpointError(f"{path} holds a {encoder.name} encoder, not {name} "
                                  f"(pass a {name} checkpoint or use encoder {encoder.name})")
        return encoder
    return load_official_cavp(path) if name == "cavp" else load_official_beats(path)
