"""Whole-audio generation and streaming (avlib.pipeline.long_video) on the tiny profile."""
import json

import numpy as np
import pytest
import soundfile
import torch

from avlib.cli import main
from avlib.media import SAMPLE_RATE, load_audio, probe, read_video

FAST = ["--set", "train.max_steps=15", "--set", "data.synth_clips_per_class=4", "--set", "data.synth_test_clips=2"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "thunder"
    assert main(["train", "--experiment", "thunder", "--profile", "tiny", "--out", str(run), *FAST]) == 0
    return run


@pytest.fixture(scope="module")
def pipeline(trained_run):
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline

    pipe = AudioToVideoPipeline.from_run(trained_run)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def settings(pipeline):
    return pipeline.settings


def noisy_audio(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, round(seconds * SAMPLE_RATE)).astype(np.float32)


def test_per_frame_timesteps_equal_the_unets_own_for_one_timestep(tiny_t2v):
    """The hooked time embedding reproduces the UNet's when every frame has the same timestep,
    and changes the output when they differ."""
    from avlib.pipeline.long_video import frame_time_embedding, frame_timesteps

    unet = tiny_t2v.unet
    x = torch.randn(2, 4, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = unet(x, torch.tensor(500), encoder_hidden_states=context).sample
        same = frame_time_embedding(unet, torch.full((6,), 500)).repeat(2, 1)
        with frame_timesteps(unet, same):
            hooked = unet(x, torch.tensor(10), encoder_hidden_states=context).sample
        mixed = frame_time_embedding(unet, torch.tensor([900, 900, 500, 500, 100, 100])).repeat(2, 1)
        with frame_timesteps(unet, mixed):
            varied = unet(x, torch.tensor(500), encoder_hidden_states=context).sample
    torch.testing.assert_close(hooked, plain, atol=1e-5, rtol=1e-5)
    assert (varied[:, :, :2] - plain[:, :, :2]).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["diagonal", "independent"])
def test_stream_gives_the_whole_audio_frames_in_order(pipeline, settings, mode):
    audio = noisy_audio(3.3)
    whole = pipeline.generate_long(audio, None, long_mode=mode)
    assert whole.frames.shape == (1, round(3.3 * settings.fps), 32, 32, 3)
    chunks = iter([audio[i:i + 1234] for i in range(0, audio.size, 1234)])
    streamed = np.stack(list(pipeline.stream(lambda: next(chunks, None), None, long_mode=mode)))
    np.testing.assert_array_equal(streamed, whole.frames[0])


def test_modes_differ_and_a_seed_reproduces(pipeline, settings):
    audio = noisy_audio(2.0)
    diagonal = pipeline.generate_long(audio, None).frames
    again = pipeline.generate_long(audio, None).frames
    independent = pipeline.generate_long(audio, None, long_mode="independent").frames
    other_seed = pipeline.generate_long(audio, None, seed=5).frames
    np.testing.assert_array_equal(diagonal, again)
    assert np.abs(diagonal - independent).max() > 0.01 and np.abs(diagonal - other_seed).max() > 0.01


def test_generate_makes_a_video_as_long_as_the_audio(trained_run, tmp_path):
    wav = tmp_path / "long.wav"
    soundfile.write(wav, noisy_audio(9.5), SAMPLE_RATE)
    out = tmp_path / "long.mp4"
    assert main(["generate", "--mapper", str(trained_run), "--audio", str(wav), "-o", str(out)]) == 0
    frames, fps = read_video(out)
    assert abs(frames.shape[0] - 9.5 * fps) <= 1 and fps == pytest.approx(8.0)
    assert load_audio(out).size / SAMPLE_RATE == pytest.approx(9.5, abs=0.05)   # the whole audio track
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["conditioning"]["long_mode"] == "diagonal" and sidecar["audio_conditioned"] is True
    assert sidecar["audio_seconds"] == pytest.approx(9.5)


def test_start_and_seconds_cut_the_audio(trained_run, tmp_path):
    wav = tmp_path / "long.wav"
    soundfile.write(wav, noisy_audio(5.0), SAMPLE_RATE)
    out = tmp_path / "cut.mp4"
    assert main(["generate", "--mapper", str(trained_run), "--audio", str(wav), "-o", str(out),
                 "--start", "1.5", "--seconds", "2.5", "--long-mode", "independent"]) == 0
    frames, _ = read_video(out)
    assert frames.shape[0] == 20 and probe(out).duration_s == pytest.approx(2.5, abs=0.1)
    np.testing.assert_allclose(load_audio(out).size / SAMPLE_RATE, 2.5, atol=0.05)
    assert json.loads(out.with_suffix(".json").read_text())["conditioning"]["long_mode"] == "independent"


def test_start_without_audio_is_refused(tmp_path, capsys):
    assert main(["generate", "--prompt", "rain", "--seconds", "2", "-o", str(tmp_path / "o.mp4")]) == 2
    assert "--start and --seconds cut the audio: give --audio too" in capsys.readouterr().err


def test_start_past_the_end_is_refused(trained_run, tmp_path, capsys):
    wav = tmp_path / "short.wav"
    soundfile.write(wav, noisy_audio(2.0), SAMPLE_RATE)
    out = tmp_path / "o.mp4"
    assert main(["generate", "--mapper", str(trained_run), "--audio", str(wav), "-o", str(out), "--start", "3"]) == 2
    assert "--start 3 is at or past the end" in capsys.readouterr().err and not out.exists()


def steady_audio(seconds: float, seed: int) -> np.ndarray:
    """Toy-world thunder ambience (rain) without a clap: a steady scene."""
    from avlib.data.synthetic import render_audio

    return render_audio("thunder", np.array([]), seconds, np.random.default_rng(seed))


def test_seam_score_of_the_diagonal_is_below_independent_windows(pipeline, settings):
    from avlib.metrics.long_video import seam_score

    videos = {mode: [pipeline.generate_long(steady_audio(6.0, seed), None, long_mode=mode,
                                            seed=seed).frames[0] for seed in (0, 1)]
              for mode in ("diagonal", "independent")}
    scores = {mode: seam_score(frames, settings.num_frames, n_resamples=2000) for mode, frames in videos.items()}
    assert scores["diagonal"]["seam_score"] < scores["independent"]["seam_score"]
    assert scores["diagonal"]["boundary_change"] < scores["independent"]["boundary_change"]
    assert scores["independent"]["n_boundaries"] == 2 * 5


def test_metrics_take_long_videos(trained_run, tmp_path):
    """`avlib metrics seam` reads the window from the sidecar; `av-align --segment-seconds`
    scores each piece of a long video."""
    from avlib.data.synthetic import render_audio

    wav = tmp_path / "storm.wav"
    soundfile.write(wav, render_audio("thunder", np.array([0.5, 2.2, 3.9]), 5.0, np.random.default_rng(0)),
                    SAMPLE_RATE)
    out = tmp_path / "storm.mp4"
    assert main(["generate", "--mapper", str(trained_run), "--audio", str(wav), "-o", str(out)]) == 0
    assert main(["metrics", "seam", str(out), "--json", str(tmp_path / "seam.json")]) == 0
    seam = json.loads((tmp_path / "seam.json").read_text())
    assert seam["window_frames"] == 8 and seam["n_boundaries"] == 4 and seam["n_within"] == 35
    assert seam["ci95"][0] <= seam["seam_score"] <= seam["ci95"][1]
    assert main(["metrics", "av-align", str(out), "--segment-seconds", "2.5",
                 "--json", str(tmp_path / "align.json")]) == 0
    segments = json.loads((tmp_path / "align.json").read_text())["videos"]["storm"]["segments"]
    assert segments["n"] == 2 and len(segments["scores"]) == 2


def test_seam_score_needs_a_window_boundary():
    from avlib.errors import MediaError
    from avlib.metrics.long_video import seam_score

    with pytest.raises(MediaError, match="longer than one window"):
        seam_score([np.random.default_rng(0).random((8, 4, 4, 3))], 8)


# -- avlib stream ---------------------------------------------------------------------------
STATS_KEYS = {"video_seconds", "wall_seconds", "real_time_factor", "first_frame_latency_s", "peak_memory_mb"}


def wav_bytes(wave: np.ndarray, announce_seconds: float | None = None) -> bytes:
    """16-bit PCM WAV bytes of ``wave``; a header announcing ``announce_seconds`` if given."""
    import io
    import struct

    buffer = io.BytesIO()
    soundfile.write(buffer, wave, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    if announce_seconds is not None:
        size = round(announce_seconds * SAMPLE_RATE) * 2
        data[4:8], data[40:44] = struct.pack("<I", size + 36), struct.pack("<I", size)
    return bytes(data)


def stream_cli(run, audio, out, stats, *flags, stdin: bytes | None = None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "avlib", "stream", "--mapper", str(run), "--audio", str(audio),
                           "-o", str(out), "--stats", str(stats), *flags],
                          input=stdin if stdin is not None else b"", capture_output=True)


def test_stream_writes_a_fragmented_mp4_and_its_stats(trained_run, tmp_path):
    wav = tmp_path / "storm.wav"
    soundfile.write(wav, steady_audio(3.0, 0), SAMPLE_RATE)
    out, stats = tmp_path / "live.mp4", tmp_path / "stats.json"
    assert main(["stream", "--mapper", str(trained_run), "--audio", str(wav), "-o", str(out),
                 "--stats", str(stats)]) == 0
    frames, fps = read_video(out)
    assert frames.shape == (24, 32, 32, 3) and fps == pytest.approx(8.0)
    assert b"moof" in out.read_bytes() and probe(out).has_audio            # fragmented, with its audio
    record = json.loads(stats.read_text())
    assert STATS_KEYS <= set(record) and record["video_seconds"] == 3.0 and record["frames"] == 24
    assert record["real_time_factor"] == pytest.approx(3.0 / record["wall_seconds"], rel=1e-3)
    assert 0 < record["first_frame_latency_s"] <= record["wall_seconds"]
    assert {"config", "seed", "versions"} <= set(record)


def test_stream_reads_a_wav_pipe(trained_run, tmp_path):
    out, stats = tmp_path / "pipe.mp4", tmp_path / "stats.json"
    proc = stream_cli(trained_run, "-", out, stats, stdin=wav_bytes(steady_audio(2.0, 1)))
    assert proc.returncode == 0, proc.stderr.decode()
    assert read_video(out)[0].shape[0] == 16


@pytest.mark.parametrize("case, message", [
    ("empty pipe", "not a PCM WAV stream"),
    ("empty file", "the audio ended before any sample arrived"),
    ("pipe closes early", "closed after 1.00 s of the 3.00 s its WAV header announced"),
    ("silent file", "the audio is silent"),
    ("no mapper", "has no audio mapper"),
])
def test_stream_refuses_bad_input_with_one_line(trained_run, tmp_path, case, message):
    out, stats, audio, stdin, run = tmp_path / "o.mp4", tmp_path / "s.json", "-", None, trained_run
    if case == "pipe closes early":
        stdin = wav_bytes(steady_audio(1.0, 0), announce_seconds=3.0)
    if case == "empty file":
        audio = tmp_path / "empty.wav"
        soundfile.write(audio, np.zeros(0, np.float32), SAMPLE_RATE)
    if case == "silent file":
        audio = tmp_path / "silence.wav"
        soundfile.write(audio, np.zeros(2 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    if case == "no mapper":
        from avlib.config import load_config
        from avlib.pipeline.audio_to_video import AudioToVideoPipeline
        from avlib.pipeline.t2v import load_t2v
        from avlib.run import Run

        run = Run(tmp_path / "textonly")
        run.write_config(load_config("thunder", "tiny"), seed=0)
        AudioToVideoPipeline.from_t2v(load_t2v("toyworld")).save_pretrained(run.pipeline_dir)
        stdin = wav_bytes(steady_audio(1.0, 0))
    proc = stream_cli(run.root if case == "no mapper" else run, audio, out, stats, stdin=stdin)
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2 and message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not stats.exists()


def test_paced_chunks_arrive_no_faster_than_recorded():
    import time

    from avlib.streaming import paced

    chunks = [np.zeros(800, np.float32)] * 5                      # 5 x 50 ms
    start = time.perf_counter()
    arrivals = [time.perf_counter() - start for _ in paced(chunks)]
    assert arrivals[-1] >= 0.24 and all(b >= a for a, b in zip(arrivals, arrivals[1:]))
    assert arrivals[2] >= 0.14


def test_realtime_stream_keeps_pace_with_its_source(trained_run, tmp_path):
    wav = tmp_path / "storm.wav"
    soundfile.write(wav, steady_audio(3.0, 0), SAMPLE_RATE)
    stats = tmp_path / "stats.json"
    proc = stream_cli(trained_run, wav, tmp_path / "live.mp4", stats, "--realtime")
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads(stats.read_text())
    # The last audio arrives 3 s after the first chunk began (0.25 s chunks): no frame can precede it.
    assert record["wall_seconds"] >= 2.7 and record["realtime_input"] is True
    assert record["first_frame_latency_s"] >= 0.7       # the first 1 s window had to be recorded


def test_stream_memory_does_not_grow_with_the_audio(trained_run, tmp_path):
    peaks = {}
    for seconds in (10, 40):
        wav = tmp_path / f"{seconds}.wav"
        soundfile.write(wav, steady_audio(seconds, 0), SAMPLE_RATE)
        stats = tmp_path / f"{seconds}.json"
        proc = stream_cli(trained_run, wav, tmp_path / f"{seconds}.mp4", stats)
        assert proc.returncode == 0, proc.stderr.decode()
        peaks[seconds] = json.loads(stats.read_text())["peak_memory_mb"]
    assert peaks[40] <= 1.2 * peaks[10], peaks


def test_generate_refuses_silent_audio_before_generating(trained_run, tmp_path, capsys):
    wav = tmp_path / "silence.wav"
    soundfile.write(wav, np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    out = tmp_path / "o.mp4"
    assert main(["generate", "--mapper", str(trained_run), "--audio", str(wav), "-o", str(out)]) == 2
    assert "the audio is silent" in capsys.readouterr().err and not out.exists()


def test_seam_score_sees_jumps_at_window_boundaries():
    """Frames that drift slowly score about 1; a jump at every 8th frame scores its size."""
    from avlib.metrics.long_video import boundary_pairs, seam_score

    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(0, 0.01, (40, 4, 4, 3)), axis=0) + 0.5       # steps of ~0.01 everywhere
    jumps = smooth.copy()
    for start in range(8, 40, 8):
        jumps[start:] += 0.05                                                   # a seam at each boundary
    assert boundary_pairs(40, 8).sum() == 4 and boundary_pairs(40, 8)[7]
    flat, seamed = seam_score([smooth], 8, n_resamples=500), seam_score([jumps], 8, n_resamples=500)
    assert 0.6 < flat["seam_score"] < 1.6 and flat["ci95"][0] < 1 < flat["ci95"][1]
    assert seamed["seam_score"] > 4 and seamed["ci95"][0] > flat["ci95"][1]


def test_evaluate_scores_long_samples_whole_and_their_seams(trained_run, pipeline, settings, tmp_path):
    """A run whose samples are one window long is scored as before (no seam score); once its
    samples are long videos, AV-Align covers each whole video, FVD its first window and the
    metrics gain a seam score with its CI, overall and per class."""
    import shutil

    from avlib.data.synthetic import render_audio
    from avlib.evaluate import evaluate_run
    from avlib.generate import sample_test_set
    from avlib.media import save_audio, write_videos
    from avlib.metrics import MetricWarning, long_video
    from avlib.run import Run

    run = Run(shutil.copytree(trained_run, tmp_path / "run"))
    sample_test_set(run.root, progress=False, shuffled_control=False)
    with pytest.MonkeyPatch.context() as patch:   # one-window samples are told by their containers, not decoded
        patch.setattr(long_video, "iter_videos", lambda videos: pytest.fail("decoded for the seam score"))
        one_window = evaluate_run(run.root, metrics=["av-align"], workers=1, progress=False, use_cache=False)
    assert "seam_score" not in one_window["metrics"] and "seam_score" not in one_window["definitions"]
    assert not any("window" in note for note in one_window["notes"])
    assert all("frames" not in entry for entry in one_window["per_video"].values())

    seconds, claps = 3.0, {0: [0.4, 1.3, 2.6], 1: [0.7, 2.1]}
    samples = run.samples()
    for i, sample in enumerate(samples):    # the same clips, now whole-audio videos 3 windows long
        audio = render_audio("thunder", np.array(claps[i % 2]), seconds, np.random.default_rng(i))
        video = pipeline.generate_long(audio, None, seed=i)
        write_videos([run.sample_video(sample.clip_id)], video.frames, video.fps, [audio])
        save_audio(run.sample_audio(sample.clip_id), audio)
    record = json.loads(run.config_file.read_text())
    record["config"]["eval_per_class"] = True                   # per class too
    run.config_file.write_text(json.dumps(record))
    with pytest.warns(MetricWarning, match="rank-deficient"):    # 2 clips, 16-d TOY I3D features
        result = evaluate_run(run.root, metrics=["av-align", "fvd"], workers=1, progress=False, use_cache=False)

    frames = round(seconds * settings.fps)
    seam = result["metrics"]["seam_score"]
    assert seam["n"] == len(samples) and seam["window_frames"] == settings.num_frames == 8
    assert seam["n_boundaries"] == len(samples) * 2 and seam["n_within"] == len(samples) * (frames - 3)
    assert seam["ci95"][0] <= seam["value"] <= seam["ci95"][1]
    assert list(result["metrics"]) == ["fvd", "clipsim", "av_align", "seam_score"]
    assert result["per_class"]["thunder"]["seam_score"]["value"] == seam["value"]   # the only class
    for i, sample in enumerate(samples):
        entry = result["per_video"][sample.clip_id]
        assert entry["frames"] == frames
        assert max(entry["audio_peaks_s"]) > 2.0    # onsets from the last window: the whole audio
    assert result["definitions"]["seam_score"]["window_frames"] == 8
    assert result["metrics"]["fvd"]["n"] == len(samples) and result["metrics"]["fvd"]["ci95"] is not None
    note = next(note for note in result["notes"] if "longer than one window" in note)
    assert f"{len(samples)} of {len(samples)} samples" in note and "first 8 frames" in note
    assert json.loads(run.metrics_file.read_text())["metrics"]["seam_score"]["value"] == seam["value"]


def test_a_headless_live_report_stores_no_timings():
    """A stored notebook keeps only what does not depend on the machine's clock."""
    from avlib.live import LiveReport

    live = LiveReport(48, 6.0, 6.6, 0.91, 1.30, 2)
    headless = LiveReport(48, 6.0, 6.6, 0.91, 1.30, 2, shown=False)
    assert "real-time factor 0.91" in live.summary() and "first frame after 1.30 s" in live.summary()
    assert headless.summary().startswith("48 frames (6.0 s of video) streamed headless")
    assert "0.91" not in headless.summary() and "1.30" not in headless.summary()
