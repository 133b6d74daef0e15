"""`avlib train` -> `avlib generate --mapper` -> `avlib sample`, end to end on the tiny profile."""
import json

import pytest

from avlib.cli import main
from avlib.errors import ConfigError
from avlib.generate import sample_test_set
from avlib.media import probe, read_video

FAST = ["--set", "train.max_steps=2", "--set", "data.synth_clips_per_class=4", "--set", "data.synth_test_clips=2",
        "--set", "inference.num_inference_steps=2"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "dog"
    assert main(["train", "--experiment", "dog", "--profile", "tiny", "--out", str(run), *FAST]) == 0
    return run


def test_train_writes_a_run_folder(trained_run):
    record = json.loads((trained_run / "config.json").read_text())
    assert record["config"]["name"] == "dog" and record["seed"] == 64
    assert (trained_run / "pipeline" / "mapper" / "mapper.safetensors").is_file()
    assert len((trained_run / "losses.csv").read_text().splitlines()) == 3  # header + 2 steps


def test_generate_from_the_trained_mapper_muxes_the_audio(trained_run, tmp_path, tone_wav):
    out = tmp_path / "dog.mp4"
    assert main(["generate", "--mapper", str(trained_run), "--audio", str(tone_wav), "-o", str(out)]) == 0
    frames, fps = read_video(out)
    # As long as the 2 s clip: two of the mapper's 1 s windows, 16 frames at 8 fps.
    assert frames.shape == (16, 32, 32, 3) and fps == pytest.approx(8.0)
    assert probe(out).has_audio and probe(out).duration_s == pytest.approx(2.0, abs=0.1)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["audio_conditioned"] is True and sidecar["config"]["name"] == "dog"


def test_generate_refuses_another_time_scale_for_a_mapper(trained_run, tmp_path, tone_wav, capsys):
    out = tmp_path / "dog.mp4"
    assert main(["generate", "--mapper", str(trained_run), "--audio", str(tone_wav), "-o", str(out),
                 "--fps", "4"]) == 2
    assert "trained on 8 frames over 1 s" in capsys.readouterr().err
    assert not out.exists()


def test_run_folders_of_the_older_layout_generate_and_sample(trained_run, tmp_path, tone_wav):
    """Runs trained before the diffusers layout hold pipeline/pipeline.json + mapper/ (the same
    mapper files): `generate --mapper` and `sample --run` read them as before."""
    import shutil

    import numpy as np

    old = tmp_path / "old_dog"
    shutil.copytree(trained_run, old, ignore=shutil.ignore_patterns("checkpoints", "samples", "reference"))
    index = json.loads((old / "pipeline" / "model_index.json").read_text())
    (old / "pipeline" / "model_index.json").unlink()
    for name in ("tokenizer", "scheduler"):
        shutil.rmtree(old / "pipeline" / name)
    (old / "pipeline" / "pipeline.json").write_text(json.dumps(
        {"t2v": index["t2v_source"], "encoder": index["encoder_config"], "has_mapper": True, "unet": None}))
    videos = {}
    for name, run in (("new", trained_run), ("old", old)):
        videos[name] = tmp_path / f"{name}.mp4"
        assert main(["generate", "--mapper", str(run), "--audio", str(tone_wav), "-o", str(videos[name])]) == 0
    np.testing.assert_array_equal(read_video(videos["old"])[0], read_video(videos["new"])[0])
    assert main(["sample", "--run", str(old), "--limit", "1"]) == 0
    assert len((old / "samples" / "index.csv").read_text().splitlines()) == 2


def test_resume_continues_to_more_steps(trained_run):
    assert main(["train", "--resume", str(trained_run), "--set", "train.max_steps=3"]) == 0
    assert len((trained_run / "losses.csv").read_text().splitlines()) == 4


def test_sample_writes_what_evaluate_reads(trained_run):
    (trained_run / "shuffled").mkdir()  # a stale control is removed, not scored with new samples
    assert main(["sample", "--run", str(trained_run), "--limit", "2", "--no-shuffled-control"]) == 0
    assert not (trained_run / "shuffled").exists()
    index = (trained_run / "samples" / "index.csv").read_text().splitlines()
    assert index[0] == "clip_id,label,prompt" and len(index) == 3
    clip_id = index[1].split(",")[0]
    assert (trained_run / "samples" / f"{clip_id}.wav").is_file()
    assert (trained_run / "reference" / f"{clip_id}.mp4").is_file()


def test_sample_writes_the_shuffled_audio_control_and_batches_keep_each_clips_noise(trained_run):
    import numpy as np

    from avlib.media import load_audio

    def videos(folder):
        return {p.stem: read_video(p)[0].astype(int) for p in sorted((trained_run / folder).glob("*.mp4"))}

    sample_test_set(trained_run, batch_size=1, progress=False)
    one_at_a_time = videos("samples"), videos("shuffled")
    sample_test_set(trained_run, batch_size=2, progress=False)
    batched = videos("samples"), videos("shuffled")
    for before, after in zip(one_at_a_time, batched):
        assert before.keys() == after.keys() and len(before) == 2
        for clip_id in before:  # the same noise and audio per clip, whatever the batch (float round-off only)
            assert np.abs(before[clip_id] - after[clip_id]).mean() < 1.0
    rows = (trained_run / "shuffled" / "index.csv").read_text().splitlines()
    assert rows[0] == "clip_id,label,prompt,audio_of"
    pairs = [row.split(",") for row in rows[1:]]
    assert all(clip_id != audio_of for clip_id, *_, audio_of in pairs)  # always another clip's audio
    samples, shuffled = batched
    for clip_id, *_ in pairs:
        # another clip's audio makes another video, which carries this clip's own audio
        assert np.abs(samples[clip_id] - shuffled[clip_id]).mean() > 0
        own = load_audio(trained_run / "samples" / f"{clip_id}.wav", 16000)
        assert np.array_equal(load_audio(trained_run / "shuffled" / f"{clip_id}.wav", 16000), own)


def test_sample_honours_inference_settings_given_with_set(trained_run):
    """Size, frames and fps of the samples come from inference.*, overridable per call."""
    assert main(["sample", "--run", str(trained_run), "--limit", "1",
                 "--set", "inference.height=48", "--set", "inference.width=40",
                 "--set", "inference.scheduler=dpm-multistep"]) == 0
    clip_id = (trained_run / "samples" / "index.csv").read_text().splitlines()[1].split(",")[0]
    frames, fps = read_video(trained_run / "samples" / f"{clip_id}.mp4")
    assert frames.shape == (8, 48, 40, 3) and fps == pytest.approx(8.0)
    settings = json.loads((trained_run / "samples" / "settings.json").read_text())["settings"]
    assert settings["scheduler"] == "dpm-multistep" and settings["height"] == 48
    ref_frames, _ = read_video(trained_run / "reference" / f"{clip_id}.mp4")
    assert ref_frames.shape == (8, 32, 32, 3)  # the real clip at the training size
    # The run's own config is untouched; a window the mapper never saw is refused.
    assert json.loads((trained_run / "config.json").read_text())["config"]["inference"]["height"] == 32
    with pytest.raises(ConfigError, match="8 frames at 4 fps span 2 s"):
        sample_test_set(trained_run, limit=1, overrides=["inference.fps=4"], progress=False)


def test_unknown_experiment_exits_nonzero(tmp_path, capsys):
    assert main(["train", "--experiment", "cat", "--out", str(tmp_path / "r")]) == 2
    assert "unknown experiment 'cat'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_released_baseline_needs_no_training(tmp_path, monkeypatch):
    """tempotokens_baseline with max_steps 0 just assembles the pipeline (released weights in paper)."""
    run = tmp_path / "baseline"
    no_clips = tmp_path / "no_clips"  # a dataset folder without a single training clip
    no_clips.mkdir()
    assert main(["train", "--experiment", "tempotokens_baseline", "--out", str(run), *FAST[2:],
                 "--set", "train.max_steps=0", "--set", "data.dataset=volleyball",
                 "--set", f"data.root={no_clips}", "--set", "data.classes=[playing volleyball]"]) == 0
    assert (run / "pipeline" / "model_index.json").is_file()  # the saved pipeline: diffusers' layout (#17)
    assert not (run / "checkpoints").exists()


def test_one_noise_rule_for_samples_their_control_and_the_toy_world(trained_run, monkeypatch):
    """Clip i's noise is clip_noise(seed, i) for its sample, its shuffled-audio control and
    the toy world's conditions: a control differs from its sample by the audio alone."""
    from avlib.generate import clip_noise
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline
    from avlib.toyworld.data import toy_clips
    from avlib.toyworld.evaluate import caption_videos

    seeds, generate = [], AudioToVideoPipeline.__call__

    def recording(self, *args, generator=None, **kwargs):
        seeds.append([g.initial_seed() for g in (generator if isinstance(generator, list) else [generator])])
        return generate(self, *args, generator=generator, **kwargs)

    monkeypatch.setattr(AudioToVideoPipeline, "__call__", recording)
    sample_test_set(trained_run, seed=7, progress=False)
    assert seeds == [[7, 8], [7, 8]]          # the two test clips' samples, then their control
    seeds.clear()
    caption_videos(AudioToVideoPipeline.from_run(trained_run), toy_clips(per_class=1, split="test"), seed=7)
    assert seeds == [[7], [8], [9]] and clip_noise(7, 2).initial_seed() == 9
