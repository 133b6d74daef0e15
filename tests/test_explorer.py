"""The explorer: generation from a trained run's test clips or an uploaded file, headless fallback."""
from datetime import datetime, timezone

import numpy as np
import pytest

from avlib.cli import main
from avlib.errors import ConfigError
from avlib.explorer import Explorer, ExplorerControls, explore
from avlib.media import probe, read_video, save_audio


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
    save_audio(wav, (0.1 * np.sin(np.linspace(0, 5000, 40000))).astype(np.float32), 16000)
    mine = explorer.generate("dog", audio_file=wav)
    assert mine.name.startswith("dog__mine__")
    assert read_video(mine)[0].shape[0] == 20              # your audio: a video as long as it (2.5 s at 8 fps)
    with pytest.raises(ConfigError, match="exactly one of clip_id"):
        explorer.generate("dog")


def test_widget_generates_on_first_click_and_switches_between_clip_and_upload(run_dir, tmp_path):
    """The widgets driven from Python, as JupyterLab's clicks drive them."""
    controls = ExplorerControls(Explorer([run_dir]))
    first = controls.explorer.clip_ids("dog")[0]
    assert (controls.source.value, controls.clips.value) == ("clip", first) and not controls.clips.disabled
    assert all(w.tooltip for w in (controls.runs, controls.clips, controls.upload, controls.button))

    controls.button.click()  # first click: the preselected test clip
    assert "source clip" in controls.view.value and "<video" in controls.view.value
    assert (run_dir / "explorer" / f"dog__{first}__seed0.mp4").is_file()  # kept with the run
    comparison = probe(run_dir / "explorer" / f"dog__{first}__seed0_beside_source.mp4")
    assert comparison.has_video and comparison.has_audio and controls.view.value.count("<video") == 1

    wav = tmp_path / "mine.wav"
    save_audio(wav, (0.1 * np.sin(np.linspace(0, 2000, 16000))).astype(np.float32), 16000)
    controls.upload.value = ({"name": "mine.wav", "type": "audio/wav", "size": wav.stat().st_size,
                              "content": memoryview(wav.read_bytes()),
                              "last_modified": datetime.now(timezone.utc)},)
    assert controls.source.value == "upload" and controls.clips.disabled  # an upload switches the source
    controls.button.click()
    assert "from your audio (mine.wav)" in controls.view.value and (run_dir / "explorer" / "mine.wav").is_file()

    controls.source.value = "clip"  # and back: the chosen clip again, not the uploaded file
    controls.clips.value = controls.clips.options[1]
    controls.button.click()
    assert "source clip" in controls.view.value and "your audio" not in controls.view.value


def test_upload_source_without_a_file_says_what_to_do(run_dir):
    controls = ExplorerControls(Explorer([run_dir]))
    controls.source.value = "upload"
    controls.button.click()
    assert "no audio uploaded yet" in controls.view.value and not controls.button.disabled


def test_headless_explore_writes_nothing(run_dir, monkeypatch, capsys):
    monkeypatch.setenv("AVLIB_HEADLESS", "1")
    before = sorted(run_dir.rglob("*"))
    explore([run_dir])
    assert "[headless] the explorer" in capsys.readouterr().out
    assert sorted(run_dir.rglob("*")) == before
    with pytest.raises(ConfigError, match="no trained run"):
        Explorer([run_dir.parent / "missing"])


def test_the_explorer_loads_a_run_as_its_config_says(run_dir, tmp_path):
    """Through the one run loader: the run's settings, text-to-video source and VAE slicing."""
    import json
    import shutil

    from avlib.config import GenerationSettings

    run = shutil.copytree(run_dir, tmp_path / "dog")
    record = json.loads((run / "config.json").read_text())
    record["config"]["model"]["vae_slicing"] = True
    (run / "config.json").write_text(json.dumps(record))
    explorer = Explorer([run])
    pipeline, config = explorer.pipeline("dog"), explorer.config("dog")
    assert pipeline.vae_slicing is True and pipeline.t2v_source == config.model.pretrained
    assert pipeline.settings == GenerationSettings.of(config)
