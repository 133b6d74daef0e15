"""avlib's numpy onset detector against librosa's, and AV-Align against upstream's code: `==`.

AV-Align's audio peaks used to come from librosa (as upstream's do); ``avlib.metrics.onsets``
re-implements exactly that pipeline. Every comparison here is exact equality of arrays of
the same dtype: the onset frames decide the score, and a float that differs in its last bit
can move a frame across a peak-picking threshold.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal
import soundfile

from avlib.errors import MediaError
from avlib.metrics import MetricWarning, onsets
from avlib.metrics.av_align import av_align_videos

ROOT = Path(__file__).resolve().parents[1]
SR = onsets.SAMPLE_RATE
FIXTURE_NAMES = ("aligned", "shifted_0p3s", "static_clicks", "moving_silent")


def varied_signals() -> dict[str, np.ndarray]:
    """Mono float32 test signals at 22.05 kHz: silence, near-silence, clicks, noise, bursts."""
    rng = np.random.default_rng(0)
    seconds = np.arange(3 * SR) / SR
    clicks = np.zeros(3 * SR)
    clicks[rng.integers(0, len(clicks), 12)] = rng.uniform(-1, 1, 12)
    gated_tone = np.sin(2 * np.pi * 440 * seconds) * (np.sin(2 * np.pi * 1.7 * seconds) > 0)
    bursts = rng.uniform(-0.7, 0.7, 3 * SR) * (np.sin(2 * np.pi * 2.3 * seconds) > 0.9)
    signals = {
        "silence": np.zeros(2 * SR),
        "near_silent_noise": rng.normal(0, 1e-6, 2 * SR),
        "clicks": clicks,
        "white_noise": rng.normal(0, 0.3, 2 * SR + 123),
        "gated_tone": gated_tone,
        "noise_bursts": bursts,
        "quantised_sparse": np.round(rng.normal(0, 0.1, 2 * SR) * 64) / 64 * (rng.uniform(size=2 * SR) > 0.7),
        "chirp": scipy.signal.chirp(seconds, 50, seconds[-1], 9000) * np.exp(-((seconds % 0.5) * 8)),
        "one_sample": np.array([0.5]),
        "shorter_than_a_window": rng.normal(0, 0.3, 700),
        "exactly_one_window": rng.normal(0, 0.3, onsets.N_FFT),
        "hop_multiple": rng.normal(0, 0.3, 40 * onsets.HOP_LENGTH),
    }
    return {name: wave.astype(np.float32) for name, wave in signals.items()}


SIGNALS = varied_signals()


def test_window_and_mel_basis_are_scipys_and_librosas():
    np.testing.assert_array_equal(onsets.hann_window(), scipy.signal.get_window("hann", onsets.N_FFT))
    for sample_rate in (SR, 16_000):
        want = librosa.filters.mel(sr=sample_rate, n_fft=onsets.N_FFT, fmax=0.5 * sample_rate)
        assert onsets.mel_basis(sample_rate).dtype == want.dtype
        np.testing.assert_array_equal(onsets.mel_basis(sample_rate), want)


@pytest.mark.parametrize("name", SIGNALS)
def test_envelope_frames_and_times_equal_librosas(name):
    wave = SIGNALS[name]
    want_envelope = librosa.onset.onset_strength(y=wave, sr=SR)
    envelope = onsets.onset_strength(wave)
    assert envelope.dtype == want_envelope.dtype == np.float32
    np.testing.assert_array_equal(envelope, want_envelope)
    want_frames = librosa.onset.onset_detect(onset_envelope=want_envelope, sr=SR)
    np.testing.assert_array_equal(onsets.onset_frames(envelope), want_frames)
    times = onsets.onset_times(wave)
    np.testing.assert_array_equal(times, librosa.frames_to_time(want_frames, sr=SR))
    if name in ("clicks", "noise_bursts", "gated_tone"):
        assert len(times) > 2  # the comparison covers real onsets, not only empty lists


def test_onsets_at_another_sample_rate_equal_librosas():
    wave = SIGNALS["noise_bursts"]
    want = librosa.onset.onset_strength(y=wave, sr=16_000)
    np.testing.assert_array_equal(onsets.onset_strength(wave, 16_000), want)
    np.testing.assert_array_equal(onsets.onset_frames(want, 16_000),
                                  librosa.onset.onset_detect(onset_envelope=want, sr=16_000))


def random_peak_cases(count: int = 1500):
    """Envelopes with ties and candidates placed on (or one ulp beside) their threshold,
    where float32 and float64 arithmetic, or another summation order, pick differently."""
    rng = np.random.default_rng(1)
    for case in range(count):
        n = int(rng.integers(1, 50))
        if case % 2:
            envelope = (rng.integers(0, 6, n) / rng.choice([3, 7, 10])).astype(np.float32)
        else:
            envelope = rng.uniform(0, 1, n).astype(np.float32)
        params = dict(pre_max=int(rng.integers(0, 4)), post_max=int(rng.integers(1, 4)),
                      pre_avg=int(rng.integers(0, 6)), post_avg=int(rng.integers(1, 6)),
                      delta=float(rng.choice([0.0, 0.07, 0.3])), wait=int(rng.integers(0, 3)))
        if n > 3 and case % 3 == 0:
            k = int(rng.integers(1, n - 1))
            window = slice(max(0, k - params["pre_avg"]), min(k + params["post_avg"], n))
            for _ in range(3):  # the candidate is part of its own mean: iterate towards it
                mean64 = envelope[window].astype(np.float64).mean()
                target = np.float32(mean64 + params["delta"])
                envelope[k] = np.nextafter(target, rng.choice([-np.inf, np.inf])) if case % 5 == 0 else target
        yield envelope, params


def test_peak_picking_equals_librosas_on_ties_and_thresholds():
    cases = list(random_peak_cases())
    for envelope, params in cases:
        np.testing.assert_array_equal(onsets.pick_peaks(envelope, **params),
                                      librosa.util.peak_pick(envelope, **params),
                                      err_msg=f"{envelope.tolist()} {params}")
    assert sum(len(librosa.util.peak_pick(e, **p)) for e, p in cases) > 1000


def write_wavs(folder: Path) -> list[Path]:
    rng = np.random.default_rng(2)
    paths = []
    for rate in (8_000, 16_000, 22_050, 44_100, 48_000):
        for channels, subtype in ((1, "PCM_16"), (2, "PCM_24"), (1, "FLOAT")):
            n = int(rng.integers(1, rate * 2))
            wave = (rng.normal(0, 0.3, (n, channels)) * (rng.uniform(size=(n, 1)) > 0.8)).clip(-1, 1)
            path = folder / f"{rate}_{channels}_{subtype}.wav"
            soundfile.write(path, wave[:, 0] if channels == 1 else wave, rate, subtype=subtype)
            paths.append(path)
    return paths


def test_wav_reading_and_resampling_equal_librosa_load(tmp_path, fixtures_dir):
    paths = write_wavs(tmp_path) + sorted((fixtures_dir / "av_align").glob("*.wav"))
    for path in paths:
        want, _ = librosa.load(path)
        got = onsets.load_mono(path)
        assert got.dtype == want.dtype and got.shape == want.shape, path.name
        np.testing.assert_array_equal(got, want, err_msg=path.name)
        np.testing.assert_array_equal(onsets.onset_times(got), onsets.onset_times(want))


def test_unreadable_or_non_finite_audio_is_a_media_error(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(MediaError, match="cannot read audio .*notes.wav"):
        onsets.load_mono(text)
    broken = tmp_path / "nan.wav"
    soundfile.write(broken, np.array([0.1, np.nan, 0.2], np.float32), 16_000, subtype="FLOAT")
    with pytest.raises(MediaError, match="NaN or infinite"):
        onsets.load_mono(broken)


# --- AV-Align as a whole against upstream's code ------------------------------------------

@pytest.fixture(scope="module")
def upstream():
    """TempoTokens' av_align.py (its code verbatim in benchmarks/), imported as a module."""
    spec = importlib.util.spec_from_file_location("upstream_av_align",
                                                  ROOT / "benchmarks" / "upstream_av_align.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upstream_results(upstream, videos: list[Path]) -> dict[str, dict]:
    """The body of upstream's __main__ loop, per video."""
    results = {}
    for video in videos:
        frames, fps = upstream.extract_frames(str(video))
        audio_peaks = upstream.detect_audio_peaks(str(video.with_suffix(".wav")))
        trajectory, video_peaks = upstream.detect_video_peaks(frames, fps)
        score = (upstream.calc_intersection_over_union(audio_peaks, video_peaks, fps)
                 if len(audio_peaks) + len(video_peaks) else 0.0)  # avlib's guard; upstream divides by 0
        results[video.stem] = dict(score=score, audio_peaks_s=[float(t) for t in audio_peaks],
                                   video_peaks_s=[float(t) for t in video_peaks],
                                   flow_trajectory=[float(m) for m in trajectory])
    return results


def test_scores_and_peaks_equal_upstreams(upstream, tmp_path, fixtures_dir):
    """The test corpus (the fixtures and synthetic clips of all three classes), scored in two
    threads, gives upstream's scores and peak times exactly (its functions run one video at
    a time). The flow values agree to float32 rounding: upstream's own vary in the last
    bits from run to run (see ``mean_flow_magnitude``)."""
    from avlib.data.synthetic import write_synthetic_dataset

    write_synthetic_dataset(tmp_path, clips_per_class=2, seconds=2.0, size=64)
    for name in FIXTURE_NAMES:
        for suffix in (".mp4", ".wav"):
            shutil.copy(fixtures_dir / "av_align" / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    videos = sorted(tmp_path.glob("*.mp4"))
    assert len(videos) == 10
    want = upstream_results(upstream, videos)
    with pytest.warns(MetricWarning):  # static_clicks and moving_silent: one side has no peaks
        ours = av_align_videos(videos, "2025", workers=2, progress=False)
    for result in ours:
        expected = want[Path(result.video).stem]
        got = dict(score=result.score, audio_peaks_s=result.audio_peaks_s,
                   video_peaks_s=result.video_peaks_s)
        assert got == {key: expected[key] for key in got}, result.video
        # Upstream computes its entry 0 as a second flow of the first pair; ours copies entry 1.
        np.testing.assert_allclose(result.flow_trajectory, expected["flow_trajectory"], rtol=1e-6, atol=1e-12)
    assert sum(len(r.audio_peaks_s) for r in ours) > 10 and sum(len(r.video_peaks_s) for r in ours) > 10


def test_flow_magnitude_does_not_depend_on_where_memory_lies(fixtures_dir):
    """cv2.magnitude rounds some elements differently depending on its output's address
    (shown here on the fixture's flows); mean_flow_magnitude always writes it aligned, so
    its value is the same wherever the allocator puts the arrays."""
    import cv2

    from avlib.metrics.av_align import FARNEBACK, aligned_empty, mean_flow_magnitude, read_bgr_frames

    frames, _ = read_bgr_frames(fixtures_dir / "av_align" / "aligned.mp4")
    gray = [cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) for frame in frames]

    def magnitude_mean_at(flow: np.ndarray, offset: int) -> float:
        """The mean of cv2.magnitude written ``offset`` bytes past a 64-byte boundary."""
        nbytes = flow[..., 0].nbytes
        out = aligned_empty((nbytes + 64,), np.uint8)[offset:offset + nbytes].view(np.float32)
        cv2.magnitude(flow[..., 0], flow[..., 1], magnitude=out.reshape(flow.shape[:2]))
        return cv2.mean(out.reshape(flow.shape[:2]))[0]

    heap_noise, hazards = [], 0
    for prev_gray, next_gray in zip(gray[:-1], gray[1:]):
        flow = cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, **FARNEBACK)
        aligned = magnitude_mean_at(flow, 0)
        hazards += len({aligned, magnitude_mean_at(flow, 4), magnitude_mean_at(flow, 16)}) > 1
        for size in (16, 48, 4096):
            heap_noise.append(np.empty(size, np.uint8))  # move where the next arrays land
            assert mean_flow_magnitude(prev_gray, next_gray) == aligned
        assert aligned == pytest.approx(np.hypot(flow[..., 0], flow[..., 1]).mean(), rel=1e-6, abs=1e-12)
    assert hazards > 5  # the test exercises flows whose rounding does depend on the address


def test_keeping_freed_memory_stops_flows_page_faulting():
    """keep_freed_memory(): repeated Farneback calls no longer fault their buffers in again."""
    code = """
import resource, numpy as np
from avlib.metrics.av_align import keep_freed_memory, mean_flow_magnitude
rng = np.random.default_rng(0)
a, b = (rng.integers(0, 255, (256, 256), dtype=np.uint8) for _ in range(2))
def faults_per_call(calls=8):
    mean_flow_magnitude(a, b)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        mean_flow_magnitude(a, b)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls
default = faults_per_call()
keep_freed_memory()
print(default, faults_per_call())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    default, kept = map(float, out.stdout.split())
    assert default > 100  # ~650 pages of pyramids and matrices per 256x256 pair
    assert kept < default / 10
