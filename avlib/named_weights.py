"""Every name avlib accepts for weights, resolved to a local folder or file in one place.

=====================  =====================================================================
``"toyworld"``         the shipped toy world (``avlib/toyworld/weights``): as
                       ``model.pretrained`` its text-to-video folder, as
                       ``encoder.checkpoint`` its CAVP
``"toy"``              the toy world's TOY metric networks (``--i3d toy``, ``--model toy``)
``"tiny"``             the random tiny twin of zeroscope, kept in avlib's cache folder
a local path           a diffusers folder or a checkpoint file
``"repo_id"``          a diffusers model on the hub (``cerspense/zeroscope_v2_576w``)
``"repo_id::file"``    one file of a hub repository (``SimianLuo/Diff-Foley::...ckpt``)
=====================  =====================================================================

Hub names go through huggingface_hub's cache (``HF_HUB_OFFLINE=1`` stays offline once
cached). This is the ground floor: it imports no model code, so every floor above may ask it
where weights are. What a name stands for is then loaded (and the tiny twin built, by
:func:`avlib.pipeline.t2v.ensure_tiny_t2v`) by the floor that owns the model classes.
"""
from __future__ import annotations

import os
from pathlib import Path

from avlib.errors import CheckpointError
from avlib.io import cache_dir as avlib_cache_dir

TINY = "tiny"
TOYWORLD = "toyworld"
TOY_METRICS = "toy"
BUILT_IN_MODELS = (TINY, TOYWORLD)   # model.pretrained names that are not paths
HUB_SEPARATOR = "::"                 # "repo_id::filename" names one file of a hub repository

# The toy world's files (written by `avlib toyworld build` / `avlib toyworld metrics`).
TOYWORLD_WEIGHTS_DIR = Path(__file__).parent / "toyworld" / "weights"
T2V_SUBDIR = "t2v"
CAVP_FILE = "cavp.safetensors"
METRIC_NETS_DIR = TOYWORLD_WEIGHTS_DIR / "metrics"
TOY_CLIP_SUBDIR = "clip"                   # transformers' CLIP layout: model, tokenizer, image processor
TOY_VIDEO_FILE = "video_i3d.safetensors"   # the toy I3D's weights, its config as metadata

T2V_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
TINY_T2V_VERSION = 1  # bump when the tiny twin's architecture changes, so stale cached twins are rebuilt


def tiny_t2v_folder(seed: int = 0) -> Path:
    """Where the tiny twin of ``seed`` is kept once built."""
    return avlib_cache_dir() / f"tiny-t2v-v{TINY_T2V_VERSION}-seed{seed}"


def toyworld_t2v_folder(weights: str | Path = TOYWORLD_WEIGHTS_DIR) -> Path:
    """The toy world's text-to-video folder (diffusers layout)."""
    folder = Path(weights) / T2V_SUBDIR
    if not (folder / "unet").is_dir():
        raise CheckpointError(f"the toy world's weights are missing from {weights}; build them with "
                              f"`avlib toyworld build --out {weights}`")
    return folder


def t2v_folder(pretrained: str) -> Path:
    """A local diffusers text-to-video folder for ``pretrained``: "toyworld", "tiny" (its cache
    folder, which may not be built yet), a local path, or a hub id (downloaded if not cached)."""
    if pretrained == TINY:
        return tiny_t2v_folder()
    if pretrained == TOYWORLD:
        return toyworld_t2v_folder()
    local = Path(pretrained).expanduser()
    if local.is_dir():
        missing = [s for s in T2V_SUBFOLDERS if not (local / s).is_dir()]
        if missing:
            raise CheckpointError(
                f"{local} is not a diffusers text-to-video folder: missing {', '.join(missing)} "
                "(pass the folder that holds unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
        return local
    from huggingface_hub import snapshot_download  # its HTTP stack only when a hub id is given

    patterns = ["model_index.json"] + [f"{s}/*" for s in T2V_SUBFOLDERS]
    try:
        return Path(snapshot_download(pretrained, allow_patterns=patterns))
    except Exception as exc:  # offline, unknown repo, no network: one actionable message
        raise CheckpointError(
            f"weights for {pretrained} not found in the cache; run with network once or pass a "
            f"local path ({type(exc).__name__})") from exc


def resolve_checkpoint(spec: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local file for ``spec``: a path, ``"repo_id::filename"`` from the hub cache, or
    ``"toyworld"`` for the shipped toy-world CAVP (trained by ``avlib toyworld build``)."""
    spec = str(spec)
    if spec == TOYWORLD:
        spec = str(TOYWORLD_WEIGHTS_DIR / CAVP_FILE)
    if HUB_SEPARATOR not in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path} "
                                  f"(check the path, or give a hub id as repo_id{HUB_SEPARATOR}filename)")
        return path
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache  # as above

    repo_id, filename = spec.split(HUB_SEPARATOR, 1)
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    if isinstance(cached, str):
        return Path(cached)
    not_found = (f"weights for {spec} not found in the huggingface_hub cache; "
                 "run once with network access to download them, or pass a local path")
    if constants.HF_HUB_OFFLINE:
        raise CheckpointError(not_found)
    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir))
    except Exception as exc:  # network, auth and missing-file errors all end here
        raise CheckpointError(f"{not_found} (download failed: {type(exc).__name__})") from exc
