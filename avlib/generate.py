"""Generate a video file from audio and/or text: mp4 with the audio muxed in, plus a JSON sidecar."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avlib.errors import MediaError
from avlib.io import run_record, write_json
from avlib.media import SAMPLE_RATE, load_audio, write_video

MIN_AUDIO_SECONDS = 0.1


@dataclass
class GenerationSettings:
    num_inference_steps: int = 25
    guidance_scale: float = 25.0
    num_frames: int = 24
    height: int = 320
    width: int = 576
    fps: float | None = None     # None: stretch the frames over the audio (or 12 fps without audio)
    seed: int | None = 64


def read_conditioning_audio(path: str | Path) -> np.ndarray:
    """Load audio for conditioning, refusing clips too short to carry any event."""
    wave = load_audio(path, SAMPLE_RATE)
    if wave.size < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        raise MediaError(f"audio file {path} is {wave.size / SAMPLE_RATE:.3f} s long; "
                         f"give at least {MIN_AUDIO_SECONDS} s of audio")
    return wave


def generate_file(pipeline, output: str | Path, settings: GenerationSettings,
                  prompt: str | None = None, audio_path: str | Path | None = None,
                  config=None) -> dict:
    """Run ``pipeline`` and write ``output`` (mp4) and ``output``.json; returns the sidecar."""
    wave = read_conditioning_audio(audio_path) if audio_path is not None else None
    generator = torch.Generator().manual_seed(settings.seed) if settings.seed is not None else None
    start = time.perf_counter()
    frames = pipeline(
        audio=wave if getattr(pipeline, "mapper", None) is not None else None, prompt=prompt,
        num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
        num_frames=settings.num_frames, height=settings.height, width=settings.width,
        generator=generator,
    )[0]                                                           # (F, H, W, 3)
    elapsed = time.perf_counter() - start
    fps = settings.fps or (settings.num_frames * SAMPLE_RATE / wave.size if wave is not None else 12.0)
    write_video(output, frames, fps, audio=wave)
    sidecar = run_record(
        config, seed=settings.seed, prompt=prompt,
        audio=str(audio_path) if audio_path is not None else None,
        audio_conditioned=getattr(pipeline, "mapper", None) is not None and wave is not None,
        settings={**settings.__dict__, "fps": fps}, t2v=getattr(pipeline, "t2v_source", None),
        elapsed_s=round(elapsed, 3), output=str(output),
    )
    write_json(Path(output).with_suffix(".json"), sidecar)
    return sidecar
