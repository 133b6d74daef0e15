"""A synthetic audio-visual world: clips whose sound and visual events are known exactly.

One class per dataset of the report, each with one kind of event that is heard and seen
at the same instant:

* ``dog``        bark-like harmonic bursts; a brown dog on green grass hops one step
  sideways on each bark.
* ``thunder``    quiet steady rain hiss with thunder claps; on each clap the dark sky
  flashes and a lightning bolt strikes at a new place.
* ``volleyball`` short thuds; on each thud the ball is hit over the net to the other side
  of an orange beach court.

Two consumers shape the design:

* AV-Align (REFERENCE.md section 7) must find the events. A visual event is one sudden
  change of the scene at the event frame, and the scene is still in between (frames
  between events are identical apart from an additive flash, which optical flow ignores),
  so the flow magnitude has exactly one strict peak per event, like upstream's own test
  clips. Every sound has a sharp attack and a smooth end over a silent or very steady
  background, so onset detection finds exactly one onset per sound. Events sit on the
  frame grid, ``MIN_GAP_S`` apart or more and ``EDGE_S`` away from the ends.
* A tiny text-to-video model trains on these clips at 32x32: the classes differ by their
  background colour and the objects are large enough to stay visible.

Everything is drawn with numpy from one seed, so a clip is the same on every machine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from avlib.config import SYNTH_LAYOUTS
from avlib.data.manifests import ClipRow, write_manifest
from avlib.errors import ConfigError
from avlib.io import run_record, write_json
from avlib.media import SAMPLE_RATE, save_audio, write_videos

MIN_GAP_S = 0.5      # between events: AV-Align matches within 1/fps, onsets need room
MAX_GAP_S = 1.0
EDGE_S = 0.25        # no event this close to either end (a flow peak needs neighbours)
MIN_SIZE = 16


@dataclass(frozen=True)
class SynthClip:
    """One generated clip: what the files will hold, plus the ground truth."""

    label: str
    frames: np.ndarray              # (F, H, W, 3) uint8 RGB
    wave: np.ndarray                # (samples,) float32 mono
    video_events_s: np.ndarray      # when each visual event happens (on the frame grid)
    audio_events_s: np.ndarray      # when each sound starts (video events + shift, in the clip)
    fps: float
    sample_rate: int = SAMPLE_RATE


# ---------------------------------------------------------------------------- events

def sample_event_frames(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """Frame indices of the events: gaps of ``MIN_GAP_S..MAX_GAP_S``, away from the edges."""
    edge = math.ceil(EDGE_S * fps)
    min_gap, max_gap = math.ceil(MIN_GAP_S * fps), math.ceil(MAX_GAP_S * fps)
    last = num_frames - 1 - edge
    if last < edge:
        raise ConfigError(
            f"a synthetic clip of {num_frames} frames at {fps:g} fps is too short for an event "
            f"(make clips of at least {2 * EDGE_S + 1 / fps:.2f} s)")
    frames = [int(rng.integers(edge, min(edge + max_gap, last) + 1))]
    while (following := frames[-1] + int(rng.integers(min_gap, max_gap + 1))) <= last:
        frames.append(following)
    return np.asarray(frames)


def events_so_far(num_frames: int, event_frames: np.ndarray) -> np.ndarray:
    """(F,) how many events have happened by each frame: the index of the scene's state."""
    return np.searchsorted(event_frames, np.arange(num_frames), side="right")


def flash(num_frames: int, event_frames: np.ndarray) -> np.ndarray:
    """(F,) 1 at each event frame, halving every frame after it; 0 before the first."""
    out = np.zeros(num_frames)
    for k in event_frames:
        out[k:] = 0.5 ** np.arange(num_frames - k)
    return out


# ---------------------------------------------------------------------------- drawing
# Each ``draw_*`` renders one frame per state (before the first event, after each event)
# and returns frames (F, H, W, 3) in [0, 1]; coordinates are fractions of the frame size.

def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: rows (size, 1) and columns (1, size), in [0, 1]."""
    coords = (np.arange(size) + 0.5) / size
    return coords[:, None], coords[None, :]


def _ellipse(size: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Anti-aliased coverage (H, W) in [0, 1] of an ellipse."""
    yy, xx = _grid(size)
    dist = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return np.clip((1.0 - dist) * min(ry, rx) * size + 0.5, 0.0, 1.0)


def _box(size: int, top: float, bottom: float, left: float, right: float) -> np.ndarray:
    yy, xx = _grid(size)
    return ((yy >= top) & (yy < bottom) & (xx >= left) & (xx < right)).astype(float)


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour: Sequence[float]) -> None:
    """Blend ``colour`` into ``canvas`` (H, W, 3) in place, weighted by ``alpha`` (H, W)."""
    canvas += alpha[..., None] * (np.asarray(colour) - canvas)


def _landscape(size: int, sky: Sequence[float], ground: Sequence[float], horizon: float) -> np.ndarray:
    yy, _ = _grid(size)
    below = np.broadcast_to(yy >= horizon, (size, size))[..., None]
    return np.where(below, np.asarray(ground), np.asarray(sky)).astype(float)


def draw_dog(event_frames: np.ndarray, num_frames: int, rng: np.random.Generator,
             size: int, canonical: bool = False) -> np.ndarray:
    """A dog on grass that hops one step sideways per event, turning round at the edges
    (canonical: from the left, hopping twice as far, so it alternates between two places)."""
    background = _landscape(size, sky=(0.62, 0.80, 0.55), ground=(0.22, 0.55, 0.20), horizon=0.45)
    x, step = (0.35, 0.3) if canonical else (rng.uniform(0.3, 0.7), rng.choice([-0.15, 0.15]))
    states = []
    for _ in range(len(event_frames) + 1):
        facing = np.sign(step)
        frame = background.copy()
        _paint(frame, _ellipse(size, 0.70, x, 0.11, 0.20), (0.45, 0.27, 0.12))                # body
        _paint(frame, _ellipse(size, 0.59, x + facing * 0.19, 0.09, 0.09), (0.50, 0.31, 0.14))  # head
        _paint(frame, _ellipse(size, 0.57, x + facing * 0.15, 0.06, 0.03), (0.20, 0.12, 0.05))  # ear
        _paint(frame, _ellipse(size, 0.68, x - facing * 0.05, 0.04, 0.06), (0.95, 0.92, 0.85))  # spot
        states.append(frame)
        if not 0.25 <= x + step <= 0.75:
            step = -step
        x += step
    return np.stack(states)[events_so_far(num_frames, event_frames)]


def draw_thunder(event_frames: np.ndarray, num_frames: int, rng: np.random.Generator,
                 size: int, canonical: bool = False) -> np.ndarray:
    """A dark rainy sky; each event strikes a new bolt (it stays) and flashes the sky
    (canonical: every bolt starts from the top centre)."""
    yy, _ = _grid(size)
    sky = np.broadcast_to(np.asarray((0.12, 0.14, 0.24)) + 0.10 * (1.0 - yy)[..., None],
                          (size, size, 3)).copy()
    _paint(sky, 0.35 * _rain_streaks(rng, size), (0.65, 0.70, 0.85))   # still: rain must not move
    states = [sky]
    for _ in event_frames:
        frame = sky.copy()
        _paint(frame, _bolt(rng, size, 0.5 if canonical else None), (0.7, 0.7, 0.6))  # + flash 0.3: never clips
        states.append(frame)
    frames = np.stack(states)[events_so_far(num_frames, event_frames)]
    # The flash is additive: a uniform brightness offset leaves image gradients, hence
    # optical flow, unchanged, so only the bolt's arrival registers as motion.
    return np.clip(frames + 0.3 * flash(num_frames, event_frames)[:, None, None, None], 0.0, 1.0)


def _rain_streaks(rng: np.random.Generator, size: int) -> np.ndarray:
    streaks = np.zeros((size, size))
    along = np.linspace(0.0, 0.1, 8)
    for _ in range(size // 3):
        y0, x0 = rng.uniform(0.0, 0.9), rng.uniform(0.0, 1.0)
        rows = np.clip(((y0 + along) * size).astype(int), 0, size - 1)
        cols = np.clip(((x0 - 0.3 * along) * size).astype(int), 0, size - 1)
        streaks[rows, cols] = 1.0
    return streaks


def _bolt(rng: np.random.Generator, size: int, start: float | None = None) -> np.ndarray:
    """A jagged vertical bolt (H, W), a few pixels wide, from the top (at ``start``, random
    when None) to two thirds down."""
    mask = np.zeros((size, size))
    x = (rng.uniform(0.25, 0.75) if start is None else start) * size
    half_width = max(1, size // 24)
    for row in range(int(0.68 * size)):
        x = np.clip(x + rng.normal(0.0, 0.7), 2, size - 3)
        mask[row, int(x) - half_width:int(x) + half_width + 1] = 1.0
    return mask


def draw_volleyball(event_frames: np.ndarray, num_frames: int, rng: np.random.Generator,
                    size: int, canonical: bool = False) -> np.ndarray:
    """A beach court with a net; each event sends the ball to the other side, at a new height
    (canonical: from the left, always at mid height)."""
    court = _landscape(size, sky=(0.95, 0.72, 0.35), ground=(0.85, 0.55, 0.22), horizon=0.6)
    _paint(court, _box(size, 0.3, 0.6, 0.48, 0.52), (0.25, 0.25, 0.30))      # post
    _paint(court, _box(size, 0.3, 0.42, 0.46, 0.54), (0.95, 0.95, 0.95))     # net, seen edge-on
    side = 0 if canonical else rng.integers(2)
    states = []
    for _ in range(len(event_frames) + 1):
        jitter, cy = (0.0, 0.5) if canonical else (rng.uniform(-0.05, 0.05), rng.uniform(0.3, 0.75))
        cx = (0.25, 0.75)[side] + jitter
        ball = _ellipse(size, cy, cx, 0.12, 0.12)
        frame = court.copy()
        _paint(frame, ball, (0.98, 0.98, 0.92))
        _paint(frame, ball * (np.abs(_grid(size)[0] - cy) < 0.035), (0.15, 0.30, 0.80))  # stripe
        states.append(frame)
        side = 1 - side
    return np.stack(states)[events_so_far(num_frames, event_frames)]


# ---------------------------------------------------------------------------- sounds
# Each sound takes (rng, sample_rate) and returns a short waveform starting at its onset.

def _envelope(n: int, sr: int, attack_s: float, tau_s: float) -> np.ndarray:
    """Linear attack, exponential decay, and a smooth fade over the last quarter.

    The fade matters: a sound cut off mid-decay splatters energy over all frequencies,
    which onset detection reports as a second event.
    """
    t = np.arange(n) / sr
    fade = np.clip((n - np.arange(n)) / (0.25 * n), 0.0, 1.0)
    return np.minimum(t / attack_s, 1.0) * np.exp(-t / tau_s) * np.sin(0.5 * np.pi * fade) ** 2


def _filtered_noise(rng: np.random.Generator, n: int, sr: int, btype: str, cutoff_hz: float) -> np.ndarray:
    """White noise through a 4th-order Butterworth filter, scaled to unit RMS."""
    from scipy.signal import butter, sosfilt  # seconds to import; `avlib data --help` imports this module

    noise = sosfilt(butter(4, cutoff_hz, btype=btype, fs=sr, output="sos"), rng.uniform(-1, 1, n))
    return noise / np.sqrt(np.mean(noise ** 2))


def bark(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A 0.15 s harmonic burst with a falling pitch."""
    n = int(0.15 * sr)
    f0 = rng.uniform(380.0, 620.0) * np.linspace(1.0, 0.75, n)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(h * phase) / h for h in range(1, 7))
    return 0.5 * voiced * _envelope(n, sr, attack_s=0.002, tau_s=0.05)


def thunder_clap(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A broadband crack followed by a low rumble, 0.35 s."""
    n = int(0.35 * sr)
    crack = rng.uniform(-1, 1, n) * _envelope(n, sr, attack_s=0.001, tau_s=0.012)
    rumble = _filtered_noise(rng, n, sr, "lowpass", 200.0) * _envelope(n, sr, attack_s=0.003, tau_s=0.09)
    return 0.6 * crack + 0.3 * rumble


def thud(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A ball being hit: a short click and a damped low tone, 0.2 s."""
    n = int(0.2 * sr)
    t = np.arange(n) / sr
    tone = np.sin(2 * np.pi * rng.uniform(90.0, 140.0) * t) * _envelope(n, sr, attack_s=0.001, tau_s=0.05)
    click = rng.uniform(-1, 1, n) * _envelope(n, sr, attack_s=0.0005, tau_s=0.004)
    return 0.7 * tone + 0.4 * click


def rain(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Steady rain hiss above 4 kHz, faded in over ``EDGE_S``.

    Onset strength works on log power, where even quiet noise that starts abruptly looks
    like an onset at the start of the clip. So the hiss rises linearly in decibels (40 dB
    over ``EDGE_S``), stays in the top third of the mel bands and ~45 dB below the claps.
    """
    fade_in_db = np.minimum(-40.0 + 40.0 * np.arange(n) / (EDGE_S * sr), 0.0)
    return 0.006 * 10 ** (fade_in_db / 20) * _filtered_noise(rng, n, sr, "highpass", 4000.0)


@dataclass(frozen=True)
class ClassDesign:
    """How one synthetic class looks and sounds."""

    draw: Callable[[np.ndarray, int, np.random.Generator, int, bool], np.ndarray]
    sound: Callable[[np.random.Generator, int], np.ndarray]
    ambience: Callable[[np.random.Generator, int, int], np.ndarray] | None = None


DESIGNS = {
    "dog": ClassDesign(draw_dog, bark),
    "thunder": ClassDesign(draw_thunder, thunder_clap, ambience=rain),
    "volleyball": ClassDesign(draw_volleyball, thud),
}
CLASSES = tuple(DESIGNS)


def _check_class(label: str) -> None:
    if label not in DESIGNS:
        raise ConfigError(f"unknown synthetic class '{label}' (choose from: {', '.join(CLASSES)})")


def render_audio(label: str, events_s: np.ndarray, seconds: float, rng: np.random.Generator,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(samples,) float32: the class's ambience plus its sound at each event time."""
    design = DESIGNS[label]
    n = int(round(seconds * sample_rate))
    wave = design.ambience(rng, n, sample_rate) if design.ambience else np.zeros(n)
    for t in events_s:
        start = int(round(t * sample_rate))
        sound = design.sound(rng, sample_rate)[: n - start]
        wave[start:start + len(sound)] += sound
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------- clips

def synth_clip(label: str, seed: int, *, seconds: float = 2.0, fps: float = 12.0, size: int = 64,
               shift_s: float = 0.0, layout: str = "random", sample_rate: int = SAMPLE_RATE) -> SynthClip:
    """Generate one clip of class ``label`` from ``seed`` (same seed, same clip, anywhere).

    ``shift_s`` delays the audio against the video (negative: audio early), making a clip
    that is deliberately out of sync; sounds shifted out of the clip are dropped.
    ``layout`` "canonical" starts every clip of a class from the same scene and moves it the
    same way at each event (the toy world's choice: then a frame's state -- before or after
    an event -- fixes what it shows); "random" draws positions per clip.
    """
    _check_class(label)
    if layout not in SYNTH_LAYOUTS:
        raise ConfigError(f"unknown synthetic layout '{layout}' (choose from: {', '.join(SYNTH_LAYOUTS)})")
    if size < MIN_SIZE:
        raise ConfigError(f"synthetic frame size {size} is too small to draw on (use {MIN_SIZE} or more)")
    rng = np.random.default_rng(seed)
    num_frames = int(round(seconds * fps))
    event_frames = sample_event_frames(rng, num_frames, fps)
    frames = DESIGNS[label].draw(event_frames, num_frames, rng, size, layout == "canonical")  # (F, H, W, 3)
    video_events = event_frames / fps
    audio_events = video_events + shift_s
    audio_events = audio_events[(audio_events >= 0) & (audio_events < seconds)]
    wave = render_audio(label, audio_events, seconds, rng, sample_rate)
    return SynthClip(label=label, frames=(frames * 255).round().astype(np.uint8), wave=wave,
                     video_events_s=video_events, audio_events_s=audio_events, fps=fps,
                     sample_rate=sample_rate)


# ---------------------------------------------------------------------------- datasets

SYNTH_CRF = 10   # x264 at its default crf 18 flickers on still frames: flow peaks that are not events


def clip_seed(seed: int, label: str, index: int) -> int:
    """The seed of clip ``index`` of class ``label`` in a dataset generated from ``seed``."""
    return int(np.random.SeedSequence([seed, CLASSES.index(label), index]).generate_state(1)[0])


def write_synthetic_dataset(out_dir: str | Path, classes: Sequence[str] = CLASSES,
                            clips_per_class: int = 8, *, seed: int = 0, seconds: float = 2.0,
                            fps: float = 12.0, size: int = 64, shift_s: float = 0.0, layout: str = "random",
                            shuffle_pairs: bool = False, test_fraction: float = 0.2,
                            test_clips: int | None = None) -> Path:
    """Write a synthetic dataset in the real datasets' layout and return its manifest path.

    ``out_dir`` gets ``{clip_id}.mp4`` (H.264 with the AAC soundtrack), ``{clip_id}.wav``
    (16 kHz mono), ``manifest.csv`` (events in seconds) and ``synth.json`` (parameters and
    versions). The last ``test_clips`` of each class's clips form the test split (None: the
    last ``test_fraction`` of them, at least one given two or more).
    ``shuffle_pairs`` gives every video the soundtrack of another clip of its class, so
    nothing is in sync (AV-Align should fall to chance); ``shift_s`` delays every soundtrack;
    ``layout`` is :func:`synth_clip`'s.
    """
    for label in classes:
        _check_class(label)
    fewest = 2 if shuffle_pairs else 1
    if clips_per_class < fewest:
        raise ConfigError(f"clips per class {clips_per_class} is too few (use at least {fewest}"
                          f"{' to shuffle pairs' if shuffle_pairs else ''})")
    out_dir = Path(out_dir)
    num_test = max(1, round(clips_per_class * test_fraction)) if clips_per_class > 1 else 0
    num_test = num_test if test_clips is None else test_clips
    rows = []
    with tqdm(total=len(classes) * clips_per_class, desc="synthesising clips", unit="clip") as progress:
        for label in classes:
            clips = [synth_clip(label, clip_seed(seed, label, i), seconds=seconds, fps=fps, size=size,
                                shift_s=shift_s, layout=layout) for i in range(clips_per_class)]
            sound_of = (derangement(clips_per_class, [seed, CLASSES.index(label), clips_per_class])
                        if shuffle_pairs else range(clips_per_class))
            sounds = [clips[j] for j in sound_of]
            clip_ids = [f"synth_{label}_{i:04d}" for i in range(clips_per_class)]
            write_videos([out_dir / f"{clip_id}.mp4" for clip_id in clip_ids], [clip.frames for clip in clips],
                         fps, [sound.wave for sound in sounds], crf=SYNTH_CRF)
            for i, (clip_id, clip, sound) in enumerate(zip(clip_ids, clips, sounds)):
                save_audio(out_dir / f"{clip_id}.wav", sound.wave, sound.sample_rate)
                split = "test" if i >= clips_per_class - num_test else "train"
                rows.append(ClipRow(clip_id, label, split, "synthetic", 0.0, seconds,
                                    tuple(clip.video_events_s), tuple(sound.audio_events_s)))
                progress.update()
    params = dict(classes=list(classes), clips_per_class=clips_per_class, seconds=seconds, fps=fps,
                  size=size, shift_s=shift_s, layout=layout, shuffle_pairs=shuffle_pairs,
                  test_fraction=test_fraction, test_clips=num_test)
    write_json(out_dir / "synth.json", run_record(params, seed=seed))
    described = " ".join(f"{k}={v}" for k, v in {**params, "seed": seed}.items())
    return write_manifest(out_dir / "manifest.csv", rows, comments=[f"avlib.data.synthetic: {described}"])


def derangement(n: int, seed) -> np.ndarray:
    """A seeded permutation with no fixed point (n > 1): clip ``i`` takes the sound of clip
    ``result[i] != i``. ``seed``: anything ``np.random.default_rng`` takes."""
    order = np.random.default_rng(seed).permutation(n)
    result = np.empty(n, dtype=int)
    result[order] = np.roll(order, -1)
    return result
