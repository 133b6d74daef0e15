"""The clips an experiment trains or evaluates on, from its config alone.

A real dataset reads ``data.root`` (clips curated from its manifest). The synthetic world
(``data.dataset: synth``, the tiny profile) needs no files: when ``data.root`` is unset the
clips are generated once into avlib's cache folder, keyed by their parameters.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from avlib.config import ExperimentConfig
from avlib.data.dataset import ClipDataset
from avlib.data.synthetic import write_synthetic_dataset
from avlib.cache import cache_key
from avlib.io import cache_dir


def synthetic_root(config: ExperimentConfig) -> Path:
    """Where the synthetic clips for ``config`` live; written on first use."""
    data = config.data
    params = dict(classes=list(data.classes), clips_per_class=data.synth_clips_per_class,
                  seconds=max(data.clip_seconds, data.num_frames / data.fps), fps=data.fps,
                  size=max(data.height, data.width), layout=data.synth_layout, seed=config.train.seed,
                  test_clips=data.synth_test_clips)
    # Made from settings alone (no input, no network); the cache version names the code that writes it.
    key = cache_key("synth", content="", weights="", settings=params, dtype="uint8")[:16]
    root = cache_dir() / "synth" / key
    if not (root / "manifest.csv").is_file():
        write_synthetic_dataset(root, **params)
    return root


def load_split(config: ExperimentConfig, split: str, start: str = "zero") -> ClipDataset:
    """The ``split`` (train | test) clips of ``config``'s dataset, as a ``ClipDataset``."""
    data = config.data
    if data.dataset == "synth" and data.root is None:
        data = dataclasses.replace(data, root=str(synthetic_root(config)))
    return ClipDataset.from_config(data, split, prompt=config.prompt, start=start, seed=config.train.seed)


def training_clips(config: ExperimentConfig) -> ClipDataset | list:
    """What :func:`avlib.train.train` takes: the train split's whole clips (training crops a
    random aligned window of each per step), or nothing for a run that trains no step
    (``max_steps: 0``, e.g. TempoTokens' released weights), which needs no training data."""
    if config.train.max_steps == 0:
        return []
    return load_split(config, "train", start="whole")
