"""Curation: cut a manifest's clips out of long videos, and report which clips are on disk.

Every clip becomes two files in the dataset folder: ``{clip_id}.mp4`` (H.264 + AAC, the
source's size and frame rate) and ``{clip_id}.wav`` (16 kHz mono PCM, cut from the source
directly so the loader's audio skips a lossy generation), both cut with moviepy. Curation
is idempotent: a clip whose two files exist is skipped, and files appear only once complete
(:func:`avlib.io.atomic_path`).

Sources: ``source=`` one local long video that every row is cut from (the custom dog and
thunder sets; their YouTube ids are unknown, so any video of the right content works), or
``download=True`` to fetch each row's ``source_id`` section from YouTube with yt-dlp (the
``download`` extra). About 20% of VGGSound is gone from YouTube: such rows are reported as
unavailable, never fatal.
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import soundfile
from tqdm.auto import tqdm

from avlib.config import check_path
from avlib.data.manifests import ClipRow, distinct_clips
from avlib.errors import AvlibError, ConfigError, MediaError
from avlib.io import atomic_path
from avlib.media import SAMPLE_RATE, ffmpeg_exe, ffmpeg_message, probe, write_clip

CLIP_STATES = ("present", "missing", "corrupt")
DURATION_TOLERANCE_S = 0.5      # containers round; a clip this much shorter is truncated


def clip_files(root: str | Path, clip_id: str) -> tuple[Path, Path]:
    """The (mp4, wav) paths of a clip in a dataset folder.

    Absolute, so a clip named after a YouTube id that starts with '-' never reads as an
    ffmpeg option.
    """
    root = Path(root).absolute()
    return root / f"{clip_id}.mp4", root / f"{clip_id}.wav"


# ---------------------------------------------------------------------------- status

@dataclass(frozen=True)
class ClipStatus:
    clip_id: str
    state: str          # present | missing | corrupt
    reason: str = ""


def check_clip(root: str | Path, row: ClipRow) -> ClipStatus:
    """Whether a clip's files are there and usable: headers, durations, and a decode of the end."""
    mp4, wav = clip_files(root, row.clip_id)
    if not mp4.exists():
        return ClipStatus(row.clip_id, "missing", f"no {mp4.name}")
    problem = _video_problem(mp4, row.duration_s) or _wav_problem(wav, row.duration_s)
    return ClipStatus(row.clip_id, "corrupt", problem) if problem else ClipStatus(row.clip_id, "present")


def _video_problem(mp4: Path, expected_s: float) -> str | None:
    try:
        info = probe(mp4)
    except MediaError:
        return f"{mp4.name} is not a readable video"
    if not info.has_video:
        return f"{mp4.name} has no video stream"
    if info.duration_s < expected_s - DURATION_TOLERANCE_S:
        return f"{mp4.name} lasts {info.duration_s:.2f} s of {expected_s:g} s"
    # A truncated download keeps a valid header; decoding its last second shows the hole.
    proc = subprocess.run([ffmpeg_exe(), "-v", "error", "-nostdin", "-sseof", "-1", "-i", str(mp4),
                           "-f", "null", "-"], capture_output=True)
    errors = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or errors:
        return f"{mp4.name} does not decode to the end ({errors[0] if errors else 'ffmpeg failed'})"
    return None


def _wav_problem(wav: Path, expected_s: float) -> str | None:
    try:
        info = soundfile.info(str(wav))
    except Exception:        # soundfile raises its own LibsndfileError, or OSError
        return f"{wav.name} is missing or not a readable wav"
    if info.frames / info.samplerate < expected_s - DURATION_TOLERANCE_S:
        return f"{wav.name} lasts {info.frames / info.samplerate:.2f} s of {expected_s:g} s"
    return None


def dataset_status(rows: Sequence[ClipRow], root: str | Path, progress: bool = True) -> list[ClipStatus]:
    """One status per distinct clip of ``rows`` (a clip listed in two splits counts once);
    ``root`` must be a folder (else every clip would just count as missing)."""
    root = check_path("data_root", root)
    if not root.is_dir():
        raise ConfigError(f"dataset folder {root} {'is a file' if root.exists() else 'does not exist'}: pass the "
                         "folder `avlib data curate --out` wrote (`avlib data status --root`, notebook 01's data_root)")
    return [check_clip(root, row) for row in tqdm(distinct_clips(rows), desc="checking clips",
                                                  unit="clip", disable=not progress)]


def count_states(statuses: Sequence[ClipStatus]) -> dict[str, int]:
    counts = {state: 0 for state in CLIP_STATES}
    for status in statuses:
        counts[status.state] += 1
    return counts


# ---------------------------------------------------------------------------- cutting

def cut_clip(source: str | Path, start_s: float, duration_s: float, mp4: Path, wav: Path) -> None:
    """Cut ``[start_s, start_s + duration_s)`` of ``source`` into an mp4 and a 16 kHz mono wav,
    with moviepy.

    The mp4 is re-encoded (H.264 + AAC at the source's size, rounded down to even, and frame
    rate), so the cut is frame-accurate, where stream copy can only cut at keyframes; its
    sound is stereo (moviepy reads two channels, duplicating a mono source's). The wav is
    decoded from the source at 16 kHz (ffmpeg resamples) and averaged to mono.
    """
    from moviepy import AudioFileClip, VideoFileClip  # heavy; `avlib data --help` imports this module

    source = str(Path(source).absolute())
    end_s = start_s + duration_s
    try:
        video = VideoFileClip(source)
        sound = AudioFileClip(source, fps=SAMPLE_RATE)
    except (OSError, KeyError) as exc:  # moviepy: unreadable file, or no audio stream
        raise MediaError(f"cannot cut clips from {source}: {ffmpeg_message(str(exc))} "
                         "(is the source a video with an audio track?)") from exc
    with video, sound:
        clip = video.subclipped(start_s, min(end_s, video.duration))
        if clip.w % 2 or clip.h % 2:  # yuv420p needs even sizes
            clip = clip.resized((clip.w // 2 * 2, clip.h // 2 * 2))
        write_clip(clip, mp4, fps=video.fps, audio_fps=video.audio.fps if video.audio else SAMPLE_RATE)
        wave = sound.subclipped(start_s, min(end_s, sound.duration)).to_soundarray(fps=SAMPLE_RATE)
        with atomic_path(wav) as tmp:
            soundfile.write(str(tmp), wave.reshape(len(wave), -1).mean(axis=1), SAMPLE_RATE,
                            subtype="PCM_16", format="WAV")


@dataclass
class CurationReport:
    """What a curation run did, by clip id."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)            # already on disk
    beyond_source: list[str] = field(default_factory=list)      # the source video is too short
    unavailable: list[str] = field(default_factory=list)        # download failed

    def counts(self) -> dict[str, int]:
        return {name: len(ids) for name, ids in vars(self).items()}


def curate(rows: Sequence[ClipRow], out_dir: str | Path, *, source: str | Path | None = None,
           download: bool = False, progress: bool = True) -> CurationReport:
    """Write every clip of ``rows`` that is not yet in ``out_dir``, from ``source`` or YouTube."""
    if (source is not None) == download:
        raise ConfigError("give exactly one clip source: a local long video (--source VIDEO) "
                          "or YouTube (--download)")
    source_length = _check_source(source) if source is not None else None
    report = CurationReport()
    for row in tqdm(distinct_clips(rows), desc="cutting clips", unit="clip", disable=not progress):
        mp4, wav = clip_files(out_dir, row.clip_id)
        if mp4.exists() and wav.exists():
            report.skipped.append(row.clip_id)
        elif source_length is not None and row.end_s > source_length + 1e-3:
            report.beyond_source.append(row.clip_id)
        elif source is not None:
            cut_clip(source, row.start_s, row.duration_s, mp4, wav)
            report.written.append(row.clip_id)
        elif _download_clip(row, mp4, wav):
            report.written.append(row.clip_id)
        else:
            report.unavailable.append(row.clip_id)
    return report


def _check_source(source: str | Path) -> float:
    info = probe(source)
    if not (info.has_video and info.has_audio):
        raise MediaError(f"source {source} needs both a video and an audio track "
                         "(clips are trimmed from one video with sound)")
    return info.duration_s


# ---------------------------------------------------------------------------- download

def _yt_dlp():
    """yt-dlp, imported only when a download is asked for (it is an optional extra)."""
    try:
        import yt_dlp
    except ImportError:
        raise AvlibError('downloading needs yt-dlp, which is not installed: '
                         'pip install "avlib[download]"') from None
    return yt_dlp


def _download_clip(row: ClipRow, mp4: Path, wav: Path) -> bool:
    """Fetch the row's section of YouTube video ``source_id`` and cut it; False if unavailable."""
    yt_dlp = _yt_dlp()
    if not row.source_id:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        options = {
            "format": "bv*[ext=mp4]+ba[ext=m4a]/b[ext=mp4]/b",
            "outtmpl": str(Path(scratch) / "section.%(ext)s"),
            "merge_output_format": "mp4",
            "download_ranges": yt_dlp.utils.download_range_func(None, [(row.start_s, row.end_s)]),
            "force_keyframes_at_cuts": True,
            "ffmpeg_location": ffmpeg_exe(),
            "quiet": True, "noprogress": True, "noplaylist": True,
        }
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                ydl.download([f"https://www.youtube.com/watch?v={row.source_id}"])
        except yt_dlp.utils.DownloadError:
            return False
        sections = [p for p in Path(scratch).glob("section.*") if p.suffix != ".part"]
        if not sections:
            return False
        cut_clip(sections[0], 0.0, row.duration_s, mp4, wav)
    return True
