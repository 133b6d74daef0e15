"""Operations along the time axis shared by both mappers.

* :func:`resample_frames` maps any number of audio vectors onto the video's frame count.
* :func:`local_window_means` builds TempoTokens' local tokens: for frame ``i`` and window
  ``w``, the mean of frames ``max(i - w, 0) .. min(i + w, F) - 1``. The window is
  end-exclusive, so it is asymmetric (``i - w`` to ``i + w - 1``) and truncated at the
  edges; this is upstream's definition and the released weights were trained with it.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def resample_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Resample ``(B, T, D)`` along time to ``(B, num_frames, D)``.

    Shrinking (``T > num_frames``) averages consecutive spans (adaptive average pooling):
    frame ``i`` is the mean of inputs ``floor(i T / F) .. ceil((i + 1) T / F) - 1``. When
    ``T`` is a multiple of ``F`` this is exactly TempoTokens' ``view(B, F, -1, D).mean(2)``,
    which raises for other lengths. Growing (``T < num_frames``) interpolates linearly, so
    short audio is stretched over the clip instead of being zero-padded.
    """
    length = x.shape[1]
    if length == num_frames:
        return x
    x = x.transpose(1, 2)  # (B, D, T)
    if length > num_frames:
        x = F.adaptive_avg_pool1d(x, num_frames)
    else:
        x = F.interpolate(x, size=num_frames, mode="linear", align_corners=False)
    return x.transpose(1, 2)  # (B, F, D)


def window_average_matrix(num_frames: int, windows: Sequence[int], device=None,
                          dtype=None) -> torch.Tensor:
    """``(W, F, F)`` row-stochastic matrices: row ``i`` of matrix ``k`` averages frame ``i``'s
    window ``windows[k]``."""
    frames = torch.arange(num_frames, device=device)
    matrices = []
    for window in windows:
        start = (frames - window).clamp(min=0)[:, None]        # (F, 1)
        end = (frames + window).clamp(max=num_frames)[:, None]  # (F, 1)
        inside = (frames[None, :] >= start) & (frames[None, :] < end)  # (F, F)
        matrices.append(inside / (end - start))
    return torch.stack(matrices).to(dtype or torch.get_default_dtype())


def local_window_means(tokens: torch.Tensor, windows: Sequence[int]) -> torch.Tensor:
    """``(B, F, D)`` frame tokens -> ``(B, F, W, D)`` local means, one per window."""
    averages = window_average_matrix(tokens.shape[1], windows, tokens.device, tokens.dtype)
    return torch.einsum("wij,bjd->biwd", averages, tokens)
