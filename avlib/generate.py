"""Generate a video file from audio and/or text: mp4 with the audio muxed in, plus a JSON sidecar."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from avlib.config import InferenceConfig
from avlib.errors import MediaError
from avlib.io import run_record, write_json
from avlib.media import SAMPLE_RATE, load_audio, save_audio, write_video

MIN_AUDIO_SECONDS = 0.1


def read_conditioning_audio(path: str | Path) -> np.ndarray:
    """Load audio for conditioning, refusing clips too short to carry any event."""
    wave = load_audio(path, SAMPLE_RATE)
    if wave.size < MIN_AUDIO_SECONDS * SAMPLE_RATE:
        raise MediaError(f"audio file {path} is {wave.size / SAMPLE_RATE:.3f} s long; "
                         f"give at least {MIN_AUDIO_SECONDS} s of audio")
    return wave


def generate_file(pipeline, output: str | Path, settings: InferenceConfig, prompt: str | None = None,
                  audio_path: str | Path | None = None, config=None) -> dict:
    """Run ``pipeline`` with ``settings`` and write ``output`` (mp4) and ``output``.json;
    returns the sidecar. The video shows ``settings.num_frames`` frames at ``settings.fps``
    and carries the audio window they were made from (:class:`AudioToVideoPipeline`)."""
    wave = read_conditioning_audio(audio_path) if audio_path is not None else None
    generator = torch.Generator().manual_seed(settings.seed) if settings.seed is not None else None
    audio_window = config.data.audio_window if config is not None else "aligned"
    start = time.perf_counter()
    video = pipeline(wave, prompt, settings, generator=generator, audio_window=audio_window)
    elapsed = time.perf_counter() - start
    video.save(output)
    sidecar = run_record(
        config, seed=settings.seed, prompt=prompt,
        audio=str(audio_path) if audio_path is not None else None,
        audio_conditioned=video.conditioning["source"] == "audio",
        settings=dataclasses.asdict(settings), conditioning=video.conditioning, t2v=pipeline.t2v_source,
        elapsed_s=round(elapsed, 3), output=str(output),
    )
    write_json(Path(output).with_suffix(".json"), sidecar)
    return sidecar


def sample_test_set(run_dir: str | Path, limit: int | None = None, seed: int | None = None,
                    progress: bool = True, overrides=None) -> Path:
    """Generate a video for every test clip of a trained run, in the layout ``avlib evaluate`` reads.

    The run's inference settings apply (size, frames, fps, audio window, steps, guidance,
    scheduler), with ``overrides`` (``["inference.guidance_scale=15"]``) on top. Each test clip
    gets a sample (its audio window muxed in, and that audio beside it) and its real clip at
    the training size as a reference, then the index of both and the settings used
    (:class:`avlib.run.Run`). Clip ``i`` gets the noise of ``seed + i``, so a rerun reproduces
    every video. Returns the samples folder.
    """
    from tqdm.auto import tqdm

    from avlib.data.splits import load_split
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline
    from avlib.run import Run

    run = Run(run_dir)
    config = run.read_config(overrides)
    settings = config.inference
    seed = settings.seed if seed is None else seed
    pipeline = AudioToVideoPipeline.from_pretrained(run.pipeline_dir, t2v_source=config.model.pretrained,
                                                    device=config.model.device, dtype=config.model.dtype)
    pipeline.enable_vae_slicing(config.model.vae_slicing)
    pipeline.set_progress_bar_config(disable=True)
    clips = load_split(config, "test")
    count = len(clips) if limit is None else min(limit, len(clips))
    rows = []
    for index in tqdm(range(count), desc="sampling test clips", disable=not progress):
        clip = clips[index]
        video = pipeline(clip["waveform"], config.prompt, settings, audio_window=config.data.audio_window,
                         generator=torch.Generator().manual_seed((seed or 0) + index))
        video.save(run.sample_video(clip["clip_id"]))
        wave = video.audio[0]
        save_audio(run.sample_audio(clip["clip_id"]), wave)
        real = (clip["frames"].permute(0, 2, 3, 1).numpy() + 1) / 2             # (F, H, W, 3) in [0, 1]
        write_video(run.reference_video(clip["clip_id"]), real, config.data.fps, audio=wave)
        rows.append((clip["clip_id"], clip["label"], config.prompt or ""))
    run.write_sample_index(rows)
    run.write_sample_settings(run_record(config, seed=seed, settings=dataclasses.asdict(settings), clips=count))
    return run.samples_dir
