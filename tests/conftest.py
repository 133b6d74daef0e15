"""Test fixtures shared by the test files: tests/fixtures/ (upstream layouts and reference outputs)
and the stand-in weight generator those outputs were made with."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: checkpoint layouts, upstream reference cases, AV-Align pairs, manifests."""
    return FIXTURES


@pytest.fixture(scope="session")
def synth_weights():
    """Deterministic stand-in weights for a layout manifest (:mod:`avlib.standin_weights`)."""
    from avlib import standin_weights

    return standin_weights


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
    """Upstream's outputs for the stand-in weights (tempotokens_mapper_case.npz), with each case's
    ``<case>_input`` regenerated from the recipe its sidecar records instead of stored."""
    import numpy as np

    reference = dict(np.load(fixtures_dir / "tempotokens_mapper_case.npz"))
    recipes = json.loads((fixtures_dir / "tempotokens_mapper_case.json").read_text())["inputs"]
    for case, recipe in recipes.items():
        # float64 straight to float16, as upstream's inputs were rounded (not via float32)
        draws = np.random.default_rng(recipe["rng_seed"]).standard_normal(recipe["shape"])
        features = draws.astype(np.float16).astype(np.float32)
        if hashlib.sha256(features.tobytes()).hexdigest() != recipe["sha256"]:
            pytest.fail(f"this numpy draws {case}'s input differently from upstream's (sha256 mismatch)")
        reference[f"{case}_input"] = features
    return reference


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
