"""librosa's default onset detector, as TempoTokens' AV-Align calls it, in plain numpy.

Upstream's audio peaks are::

    y, sr = librosa.load(wav)                       # 22.05 kHz mono, soxr "HQ" resampling
    envelope = librosa.onset.onset_strength(y=y, sr=sr)
    frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=sr)
    times = librosa.frames_to_time(frames, sr=sr)

librosa's first use costs 3-4 s of CPU in every process (it imports scipy.signal,
scipy.ndimage and numba and loads numba's cache) for ~20 ms of work per clip. This module
performs the same arithmetic without them: soundfile and soxr, which ``librosa.load``
itself calls, read and resample; every later step is the numpy operation librosa runs, on
the same dtypes and the same memory layout (numpy's reductions sum in a layout-dependent
order), so the envelope and the onset frames are bit-identical to librosa's. The one part
librosa runs in numba, peak picking, is repeated with that kernel's float32 arithmetic
(numba 0.68's ``np.mean``). ``tests/test_metrics_onsets.py`` checks equality with
librosa on varied audio; this follows librosa >= 0.10 (zero padding at the edges).

Fixed parameters (librosa's defaults): n_fft 2048, hop 512, periodic Hann window, power
spectrum, 128 Slaney mel bands up to sr / 2, dB with ref 1.0 and top_db 80, spectral flux
with lag 1, mean over bands; peaks with pre_max 30 ms, post_max 1 frame, pre_avg 100 ms,
post_avg 100 ms + 1 frame, wait 30 ms and delta 0.07 on the min-max normalised envelope.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import soundfile
import soxr

from avlib.errors import MediaError

SAMPLE_RATE = 22_050  # librosa.load's default rate, which upstream relies on
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
FRAMES_PER_BLOCK = 256  # STFT frames transformed at once (bounds memory; results per frame)


# --- reading -----------------------------------------------------------------------------

def load_mono(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``librosa.load(path, sr=sample_rate)``: float32 mono, soxr "HQ" resampling, (N,).

    A file libsndfile cannot read goes to librosa itself, which then tries audioread, as
    upstream's call would.
    """
    try:
        with soundfile.SoundFile(path) as handle:
            native_rate = handle.samplerate
            wave = handle.read(dtype=np.float32, always_2d=False).T  # (N,) or (C, N)
    except soundfile.SoundFileRuntimeError:
        return _load_with_librosa(path, sample_rate)
    if not np.isfinite(wave).all():
        raise MediaError(f"audio file {path} contains NaN or infinite samples (re-export it)")
    if wave.ndim > 1:
        wave = np.mean(wave, axis=tuple(range(wave.ndim - 1)))  # librosa.to_mono
    if native_rate == sample_rate:
        return wave
    n_out = int(np.ceil(wave.shape[-1] * (float(sample_rate) / native_rate)))
    resampled = soxr.resample(wave, in_rate=native_rate, out_rate=sample_rate, quality="soxr_hq")
    # librosa.util.fix_length: soxr's output length can differ from ceil(N * ratio) by one.
    resampled = resampled[:n_out] if len(resampled) >= n_out else np.pad(
        resampled, (0, n_out - len(resampled)))
    return np.asarray(resampled, dtype=wave.dtype)


def _load_with_librosa(path: str | Path, sample_rate: int) -> np.ndarray:
    # Only files libsndfile cannot read come here; `avlib metrics av-align` loads no librosa (or numba).
    import librosa

    try:
        wave, _ = librosa.load(path, sr=sample_rate)
    except Exception as exc:  # audioread's and soundfile's errors share no base class
        raise MediaError(f"cannot read audio {path}: {exc} (re-export it as a PCM wav)") from exc
    return wave


# --- envelope ----------------------------------------------------------------------------

@functools.cache
def hann_window(length: int = N_FFT) -> np.ndarray:
    """scipy.signal.get_window("hann", length), the periodic window, as scipy computes it."""
    angles = np.linspace(-np.pi, np.pi, length + 1)
    window = np.zeros(length + 1)
    for k, weight in enumerate((0.5, 0.5)):  # a general cosine window with alpha = 0.5
        window += weight * np.cos(k * angles)
    return window[:-1]


def _hz_to_mel(hz: float) -> float:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    linear_step, min_log_hz = 200.0 / 3, 1000.0
    if hz < min_log_hz:
        return hz / linear_step
    return min_log_hz / linear_step + np.log(hz / min_log_hz) / (np.log(6.4) / 27.0)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    linear_step, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, log_step = min_log_hz / linear_step, np.log(6.4) / 27.0
    hz = linear_step * mels
    log_part = mels >= min_log_mel
    hz[log_part] = min_log_hz * np.exp(log_step * (mels[log_part] - min_log_mel))
    return hz


@functools.cache
def mel_basis(sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft=2048, fmax=sr/2): Slaney-normalised triangles, (128, 1025)."""
    fft_hz = np.fft.rfftfreq(n=N_FFT, d=1.0 / sample_rate)                          # (1025,)
    band_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(0.5 * sample_rate),
                                     N_MELS + 2))                                    # (130,)
    band_width = np.diff(band_hz)
    ramps = np.subtract.outer(band_hz, fft_hz)                                      # (130, 1025)
    weights = np.zeros((N_MELS, 1 + N_FFT // 2), dtype=np.float32)
    for band in range(N_MELS):
        rising = -ramps[band] / band_width[band]
        falling = ramps[band + 2] / band_width[band + 1]
        weights[band] = np.maximum(0, np.minimum(rising, falling))
    weights *= (2.0 / (band_hz[2:N_MELS + 2] - band_hz[:N_MELS]))[:, np.newaxis]  # equal area
    return weights


def power_spectrogram(wave: np.ndarray) -> np.ndarray:
    """|librosa.stft(wave)|^2, centred with zero padding: (1025, T) float32, Fortran order.

    The window (float64) times the float32 frames is transformed in float64 and stored as
    complex64, as librosa does; the Fortran order is librosa's too and decides the
    summation order of the mel projection and band mean that follow.
    """
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio (N,), got shape {wave.shape}")
    padded = np.pad(wave, N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]  # (T, 2048)
    window = hann_window()
    spectrum = np.zeros((1 + N_FFT // 2, len(frames)), dtype=np.complex64, order="F")
    for start in range(0, len(frames), FRAMES_PER_BLOCK):
        block = frames[start:start + FRAMES_PER_BLOCK]
        spectrum[:, start:start + len(block)] = np.fft.rfft(window * block, axis=-1).T
    return np.abs(spectrum) ** 2.0


def onset_strength(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """librosa.onset.onset_strength(y=wave, sr=sample_rate): (T,) float32."""
    power = power_spectrogram(wave)                                                 # (1025, T)
    # librosa's einsum("...ft,mf->...mt", optimize=True) contracts with tensordot, which
    # calls np.dot on these very arrays: the same BLAS call, without einsum's ~10 ms of setup.
    mel = np.abs(np.dot(mel_basis(sample_rate), power))                            # (128, T)
    decibels = 10.0 * np.log10(np.maximum(1e-10, mel))  # ref 1.0: subtracting 0 dB is exact
    decibels = np.maximum(decibels, decibels.max() - 80.0)                         # (128, T)
    flux = np.maximum(0.0, decibels[..., 1:] - decibels[..., :-1])                 # (128, T-1)
    envelope = np.mean(flux, axis=-2)                                              # (T-1,)
    # Centred frames: lag 1 plus n_fft / (2 hop) frames of delay, cut back to T.
    delay = 1 + N_FFT // (2 * HOP_LENGTH)
    return np.pad(envelope, (delay, 0))[:power.shape[-1]]


# --- peaks -------------------------------------------------------------------------------

def _window_mean(values: np.ndarray) -> np.float32:
    """numba's ``np.mean`` of float32 (numba 0.68): a float32 running sum over the window,
    divided by its length and rounded to float32."""
    return np.float32(float(np.cumsum(values, dtype=np.float32)[-1]) / len(values))


def pick_peaks(envelope: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int,
               delta: float, wait: int) -> np.ndarray:
    """librosa.util.peak_pick on a 1-D float32 envelope: indices of the peaks.

    A frame is a peak if it equals the maximum of ``[n - pre_max, n + post_max)`` (frame 0:
    of ``[0, post_max)``), is at least ``delta`` above the mean of
    ``[n - pre_avg, n + post_avg)``, and comes more than ``wait`` frames after the previous
    peak. The arithmetic is librosa's numba kernel's: float32 throughout, delta included.
    """
    delta = np.float32(delta)
    count = len(envelope)

    def is_peak(n: int, max_from: int, mean_from: int) -> bool:
        local_max = envelope[max_from:min(n + post_max, count)].max()
        return bool(envelope[n] == local_max and
                    envelope[n] >= _window_mean(envelope[mean_from:min(n + post_avg, count)]) + delta)

    peaks = []
    n = 1
    if is_peak(0, 0, 0):
        peaks.append(0)
        n = wait + 1
    while n < count:
        if is_peak(n, max(0, n - pre_max), max(0, n - pre_avg)):
            peaks.append(n)
            n += wait + 1
        else:
            n += 1
    return np.array(peaks, dtype=np.int64)


def onset_frames(envelope: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate): frame indices."""
    envelope = envelope - np.min(envelope, keepdims=True, axis=-1)
    envelope /= np.max(envelope, keepdims=True, axis=-1) + np.finfo(envelope.dtype).tiny
    if not envelope.any() or not np.all(np.isfinite(envelope)):
        return np.array([], dtype=int)

    def frames(seconds: float, extra: int = 0) -> int:  # librosa's "seconds * sr // hop"
        return int(np.ceil(seconds * sample_rate // HOP_LENGTH + extra))

    return pick_peaks(envelope, pre_max=frames(0.03), post_max=frames(0.0, 1),
                      pre_avg=frames(0.1), post_avg=frames(0.1, 1), delta=0.07,
                      wait=frames(0.03))


def onset_times(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Audio peak times in seconds, as upstream's ``detect_audio_peaks`` returns them."""
    frames = onset_frames(onset_strength(wave, sample_rate), sample_rate)
    return (frames * HOP_LENGTH).astype(int) / float(sample_rate)  # librosa.frames_to_time
