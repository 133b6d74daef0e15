"""Shared test fixtures: the read-only ../shared folder and its stand-in weight generator."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVLIB_SHARED", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES} (set AVLIB_SHARED)")
    return FIXTURES


@pytest.fixture(scope="session")
def synth_weights(fixtures_dir):
    """The ``synth_weights`` module from ../shared/fixtures (deterministic stand-in weights)."""
    spec = importlib.util.spec_from_file_location("synth_weights", fixtures_dir / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep everything avlib builds (tiny twin, feature caches) out of the user's home."""
    os.environ["AVLIB_CACHE"] = str(tmp_path_factory.mktemp("avlib-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_t2v():
    """The tiny text-to-video twin, loaded through the same code path as zeroscope."""
    from avlib.pipeline.t2v import load_t2v

    return load_t2v("tiny")


@pytest.fixture
def tone_wav(tmp_path):
    """A 2 s 440 Hz tone at 16 kHz, as a wav file."""
    import numpy as np
    import soundfile

    t = np.arange(32000) / 16000
    path = tmp_path / "tone.wav"
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), 16000)
    return path


@pytest.fixture(scope="session")
def tempotokens_state(fixtures_dir, synth_weights):
    """Stand-in TempoTokens mapper weights in the released layout (a plain 17-key state dict)."""
    return synth_weights.synth_from_manifest(fixtures_dir / "tempotokens_mapper_state_dict_shapes.json", seed=0)


@pytest.fixture(scope="session")
def tempotokens_file(tempotokens_state, tmp_path_factory):
    """Those weights saved as the released ``learned_embeds.pth``."""
    import torch

    path = tmp_path_factory.mktemp("tempotokens") / "learned_embeds.pth"
    torch.save(tempotokens_state, path)
    return path


@pytest.fixture(scope="session")
def tempotokens_reference(fixtures_dir):
    """Upstream's outputs for the stand-in weights (tempotokens_mapper_case.npz)."""
    import numpy as np

    return dict(np.load(fixtures_dir / "tempotokens_mapper_case.npz"))


@pytest.fixture(scope="session")
def report_mapper_state(fixtures_dir, synth_weights):
    """Stand-in weights in the layout of the report repo's at_embedder_{step}.pth (17 keys)."""
    return synth_weights.synth_from_manifest(
        fixtures_dir / "audiovisgen_report_mapper_state_dict_shapes.json", seed=0)


@pytest.fixture(scope="session")
def report_mapper_reference(fixtures_dir):
    """The report repo's mapper outputs for those weights (audiovisgen_report_mapper_case.npz)."""
    import numpy as np

    return dict(np.load(fixtures_dir / "audiovisgen_report_mapper_case.npz"))
