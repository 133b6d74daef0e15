"""Evaluation metrics of the report's Table 2, each with a pinned definition.

- :mod:`avlib.metrics.av_align`: AV-Align (TempoTokens), versions ``2025`` and ``2023``.
- :mod:`avlib.metrics.fvd`: Frechet Video Distance on Kinetics-400 I3D logits
  (the network itself lives in :mod:`avlib.metrics.i3d`).
- :mod:`avlib.metrics.clipsim`: frame-averaged CLIP image-text cosine similarity.
- :mod:`avlib.metrics.stats`: seeded bootstrap confidence intervals.

Submodules are imported on demand (torch, librosa and OpenCV are slow to import), so this
package only holds what they share.
"""


class MetricWarning(UserWarning):
    """A metric value that is defined but deserves a second look (no peaks, few samples)."""

