"""The explorer: generation from a trained run's test clips or an uploaded file, headless fallback."""
import tempfile
from pathlib import Path

import numpy as np
import pytest

from avlib.cli import main
from avlib.errors import ConfigError
from avlib.explorer import Explorer, explore
from avlib.media import probe, save_audio


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "dog"
    assert main(["train", "--experiment", "dog", "--profile", "tiny", "--set", "train.max_steps=1",
                 "--out", str(run)]) == 0
    return run


def test_generates_from_a_test_clip_and_from_a_file(run_dir, tmp_path):
    explorer = Explorer([run_dir], tmp_path / "out")
    clip_id = explorer.clip_ids("dog")[0]
    video = explorer.generate("dog", clip_id=clip_id, seed=1)
    info = probe(video)
    assert video.parent == tmp_path / "out" and info.has_video and info.has_audio and info.fps == 8
    wav = tmp_path / "mine.wav"
    save_audio(wav, (0.1 * np.sin(np.linspace(0, 2000, 16000))).astype(np.float32), 16000)
    assert explorer.generate("dog", audio_file=wav).name.startswith("dog__mine__")
    with pytest.raises(ConfigError, match="exactly one of clip_id"):
        explorer.generate("dog")


def test_headless_explore_writes_nothing(run_dir, monkeypatch, capsys):
    monkeypatch.setenv("AVLIB_HEADLESS", "1")
    before = set(Path(tempfile.gettempdir()).glob("avlib-explorer-*"))
    explore([run_dir])
    assert "[headless] the explorer" in capsys.readouterr().out
    assert set(Path(tempfile.gettempdir()).glob("avlib-explorer-*")) == before
    with pytest.raises(ConfigError, match="no trained run"):
        Explorer([run_dir.parent / "missing"])
