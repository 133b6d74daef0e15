"""Stand-in CAVP and BEATs checkpoints written in the official file formats (for the audio tests).

The fixtures' reference outputs were computed by the upstream code with these weights, so
loading the files through avlib's real loaders and matching the outputs checks layout
and numerics at once.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile
import torch

CAVP_MANIFEST = "cavp_audio_state_dict_shapes.json"
BEATS_MANIFEST = "beats_state_dict_shapes.json"


def write_cavp_checkpoint(synth_weights, fixtures_dir: Path, path: Path) -> Path:
    """Diff-Foley's layout: ``{"state_dict": {"module.spec_encoder.X": ...}, "epoch": ...}``.

    A video-branch key is added so the test also sees it skipped.
    """
    state_dict = synth_weights.synth_from_manifest(fixtures_dir / CAVP_MANIFEST, 0)
    state_dict["video_encoder.stem.weight"] = torch.zeros(4, 3)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": 66}, path)
    return path


def write_beats_checkpoint(synth_weights, fixtures_dir: Path, path: Path) -> Path:
    """BEATs' layout: ``{"cfg": {...}, "model": {...}}`` with the fine-tuned predictor."""
    manifest = json.loads((fixtures_dir / BEATS_MANIFEST).read_text())
    model = synth_weights.synth_from_manifest(fixtures_dir / BEATS_MANIFEST, 0)
    model.update(synth_weights.synth_state_dict(manifest["predictor_shapes"], 0))
    torch.save({"cfg": manifest["cfg"], "model": model}, path)
    return path


def write_float_wav(path: Path, waveform: np.ndarray, sample_rate: int = 16000) -> Path:
    """A 32-bit float wav, so the samples read back bit-exact."""
    soundfile.write(path, np.asarray(waveform, dtype=np.float32), sample_rate, subtype="FLOAT")
    return path


def noise(seconds: float, seed: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """Seeded Gaussian noise, a test waveform of any length."""
    return (0.3 * np.random.default_rng(seed).standard_normal(round(seconds * sample_rate))).astype(np.float32)
