"""Front ends: what each audio encoder sees instead of the raw waveform.

Both take a batch of 16 kHz mono waveforms ``(B, samples)`` (float32, roughly in [-1, 1])
and reproduce their upstream recipes exactly, because the pretrained networks only work
on the features they were trained with:

* :class:`CAVPMelSpectrogram` -- Diff-Foley's training-time log-mel, ``(B, 128, T)``.
* :class:`BEATsFbank` -- BEATs' normalised Kaldi filter bank, ``(B, T, 128)``.

Too-short input is zero-padded at the end to ``min_samples``, the shortest clip that
still yields one output vector of the encoder behind the front end (see each class).
"""
from __future__ import annotations

import librosa
import torch
import torch.nn.functional as F
import torchaudio.compliance.kaldi as kaldi
from torch import nn

SAMPLE_RATE = 16_000


def pad_to_min_samples(waveform: torch.Tensor, min_samples: int) -> torch.Tensor:
    """Zero-pad ``(B, samples)`` at the end so that it holds at least ``min_samples``."""
    missing = min_samples - waveform.shape[-1]
    return F.pad(waveform, (0, missing)) if missing > 0 else waveform


class CAVPMelSpectrogram(nn.Module):
    """Diff-Foley's CAVP log-mel spectrogram: ``(B, samples)`` -> ``(B, 128, T)`` in [0, 1].

    The recipe CAVP was trained with (``data_preprocess/wav2spec.py`` at hop 250; a later
    upstream commit's hop 256 does not match training): drop the waveform's last sample
    (upstream quirk, kept for parity), centred STFT with n_fft 1024, hop 250, periodic
    hann window and **reflect** padding (librosa 0.8, which Diff-Foley pins, pads this
    way; librosa >= 0.10 pads with zeros), magnitude, 128 slaney mel bins over
    125-7600 Hz, then ``clip((20 * log10(max(mel, 1e-5)) - 20 + 100) / 100, 0, 1)``.

    Frames: ``T = 1 + (samples - 1) // 250`` (64 per second: 4 s -> 256, 10 s -> 640).
    Clips shorter than ``min_samples`` (16 frames, the network's temporal stride) are
    zero-padded first, so every clip gives at least one embedding vector.
    """

    n_fft = 1024
    hop_length = 250
    n_mels = 128
    min_frames = 16
    min_samples = (min_frames - 1) * hop_length + 1

    def __init__(self, fmin: float = 125.0, fmax: float = 7600.0):
        super().__init__()
        # Derived constants, not weights: kept out of the state dict.
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=self.n_fft, n_mels=self.n_mels,
                                        fmin=fmin, fmax=fmax)  # (128, 513), slaney scale + norm
        self.register_buffer("mel_basis", torch.from_numpy(mel_basis), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return 1 + (max(num_samples, self.min_samples) - 1) // self.hop_length

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        waveform = pad_to_min_samples(waveform, self.min_samples)[:, :-1]
        stft = torch.stft(waveform, self.n_fft, hop_length=self.hop_length, window=self.window,
                          center=True, pad_mode="reflect", return_complex=True)  # (B, 513, T)
        mel = self.mel_basis @ stft.abs()                                   # (B, 128, T)
        log_mel = 20.0 * torch.log10(mel.clamp(min=1e-5))
        return ((log_mel - 20.0 + 100.0) / 100.0).clamp(0.0, 1.0)


class BEATsFbank(nn.Module):
    """BEATs' front end: ``(B, samples)`` -> normalised Kaldi fbank ``(B, T, 128)``.

    Upstream ``BEATs.preprocess``: scale to 16-bit range, ``torchaudio`` Kaldi fbank with
    128 bins and 25 ms / 10 ms frames (other options at their defaults: povey window,
    pre-emphasis 0.97, DC removal, no dither, ``snip_edges``), then
    ``(fbank - 15.41663) / (2 * 6.55582)`` with the AudioSet statistics BEATs used.

    Frames: ``T = 1 + (samples - 400) // 160`` (1 s -> 98, 2 s -> 198). Clips shorter
    than ``min_samples`` (16 frames, one patch row) are zero-padded first.
    """

    num_mel_bins = 128
    frame_length_ms = 25.0
    frame_shift_ms = 10.0
    fbank_mean = 15.41663
    fbank_std = 6.55582
    window_samples = int(SAMPLE_RATE * frame_length_ms / 1000)   # 400
    shift_samples = int(SAMPLE_RATE * frame_shift_ms / 1000)     # 160
    min_frames = 16
    min_samples = window_samples + (min_frames - 1) * shift_samples

    def num_frames(self, num_samples: int) -> int:
        return 1 + (max(num_samples, self.min_samples) - self.window_samples) // self.shift_samples

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        waveform = pad_to_min_samples(waveform, self.min_samples) * 2**15
        # Kaldi's fbank takes one signal at a time.
        fbank = torch.stack([
            kaldi.fbank(row[None], num_mel_bins=self.num_mel_bins, sample_frequency=SAMPLE_RATE,
                        frame_length=self.frame_length_ms, frame_shift=self.frame_shift_ms)
            for row in waveform
        ])                                                                   # (B, T, 128)
        return (fbank - self.fbank_mean) / (2 * self.fbank_std)


FRONTENDS: dict[str, type[nn.Module]] = {"cavp": CAVPMelSpectrogram, "beats": BEATsFbank}
