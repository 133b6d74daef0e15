"""Evaluation metrics of the report's Table 2, each with a pinned definition.

- :mod:`avlib.metrics.av_align`: AV-Align (TempoTokens), versions ``2025`` and ``2023``.
- :mod:`avlib.metrics.fvd`: Frechet Video Distance on Kinetics-400 I3D logits
  (the network itself lives in :mod:`avlib.metrics.i3d`).
- :mod:`avlib.metrics.clipsim`: frame-averaged CLIP image-text cosine similarity.
- :mod:`avlib.metrics.stats`: seeded bootstrap confidence intervals.

Submodules are imported on demand (torch, librosa and OpenCV are slow to import), so this
package only holds what they share, and the names of each metric's definitions: the one list
that the CLI's choices and each module's table of definitions use.
"""

AV_ALIGN_VERSIONS = ("2025", "2023")                     # avlib.metrics.av_align.VERSIONS
FVD_PROTOCOLS = ("avlib", "stylegan-v", "videogpt")      # avlib.metrics.fvd.PROTOCOLS
FVD_RESIZE_MODES = ("short-side", "squash", "crop-squash")
CLIPSIM_PROTOCOLS = ("clip", "report")                   # avlib.metrics.clipsim.PROTOCOLS


from pathlib import Path

from avlib.errors import AvlibWarning, MediaError


class MetricWarning(AvlibWarning):
    """A metric value that is defined but deserves a second look (no peaks, few samples)."""



def video_paths(paths) -> list:
    """Videos named by files and folders (a folder's ``.mp4`` files, sorted), in order given.

    AV-Align pairs each video with ``{stem}.wav`` beside it, so a folder of pairs is enough.
    """
    videos = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.mp4"))
            if not found:
                raise MediaError(f"no .mp4 files in {path} (point at the folder holding the videos)")
            videos.extend(found)
        elif path.is_file():
            videos.append(path)
        else:
            raise MediaError(f"video file or folder not found: {path} (check the path)")
    return videos
