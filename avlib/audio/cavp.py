"""CAVP audio encoder (Diff-Foley's contrastive audio-visual pretraining, audio branch).

A Cnn14-style CNN (PANNs) over the log-mel of :class:`~avlib.audio.frontends.CAVPMelSpectrogram`
that keeps the time axis: 16 mel frames (250 ms) per output vector, i.e. 4 vectors per
second (4 s -> 16, 10 s -> 40). Parameter names match the ``spec_encoder.*`` keys of the
released ``cavp_epoch66.ckpt``, so the official weights load without renaming.

Upstream quirk kept for parity: ``fc1`` (with its ReLU) is applied twice with the same
weights. ``width`` scales every channel count (64 upstream) for the tiny profile.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlib.audio.encoder import AudioEncoder
from avlib.audio.frontends import CAVPMelSpectrogram

# Average-pooling (time, mel) after each conv block: time / 16 overall, mel 128 -> 4.
POOL_SIZES = ((2, 2), (2, 2), (2, 2), (2, 2), (1, 2), (1, 1))
TIME_STRIDE = 16
DROPOUT = 0.2  # after each conv block, training only


class ConvBlock(nn.Module):
    """Two (3x3 conv without bias, BatchNorm, ReLU), then average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool_size)


class CAVPEncoder(AudioEncoder):
    """Waveform ``(B, samples)`` at 16 kHz -> ``(B, T // 16, embed_dim)``, T mel frames."""

    name = "cavp"
    frame_rate = 4.0  # 16 kHz / hop 250 = 64 mel frames per second, / TIME_STRIDE

    def __init__(self, width: int = 64, embed_dim: int = 512):
        super().__init__()
        self.width, self._embed_dim = width, embed_dim
        self.frontend = CAVPMelSpectrogram()
        self.bn = nn.BatchNorm2d(self.frontend.n_mels)
        channels = [1] + [width * 2**i for i in range(len(POOL_SIZES))]  # 1, 64, ..., 2048
        # Named conv_block1..6 like upstream so official keys load as they are.
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:]), start=1):
            self.add_module(f"conv_block{i}", ConvBlock(c_in, c_out))
        self.fc1 = nn.Linear(channels[-1], channels[-1])
        self.final_project = nn.Linear(channels[-1], embed_dim)

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    def architecture(self) -> dict[str, Any]:
        return {"width": self.width, "embed_dim": self.embed_dim}

    def num_vectors(self, num_samples: int) -> int:
        return self.frontend.num_frames(num_samples) // TIME_STRIDE

    def conv_blocks(self) -> list[ConvBlock]:
        return [getattr(self, f"conv_block{i}") for i in range(1, len(POOL_SIZES) + 1)]

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, 128, T)`` -> ``(B, T // 16, embed_dim)``."""
        x = self.bn(mel.unsqueeze(-1))            # (B, 128, T, 1): normalise each mel bin
        x = x.permute(0, 3, 2, 1)                 # (B, 1, T, 128): an image, time x mel
        for block, pool_size in zip(self.conv_blocks(), POOL_SIZES):
            x = F.dropout(block(x, pool_size), p=DROPOUT, training=self.training)
        x = x.mean(dim=3)                         # (B, 8 * width, T // 16): mean over mel
        # Smooth each step with its neighbours: max + mean over a window of 3.
        x = F.max_pool1d(x, 3, stride=1, padding=1) + F.avg_pool1d(x, 3, stride=1, padding=1)
        x = x.transpose(1, 2)                     # (B, T // 16, 8 * width)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc1(x))                   # upstream quirk: the same fc1 a second time
        return self.final_project(x)              # (B, T // 16, embed_dim)
