"""The interactive explorer: pick a run and a test clip (or upload audio), generate, compare.

:class:`Explorer` does the work (load a run's pipeline once, generate from a clip's or an
uploaded file's audio, write the mp4 with the sound muxed in); :func:`explore` wraps it
in ipywidgets for JupyterLab and, headless, prints what it would offer instead.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from avlib.errors import ConfigError


class Explorer:
    """Generation from trained run folders, one pipeline loaded per run and kept."""

    def __init__(self, run_dirs: Sequence[str | Path], out_dir: str | Path | None = None):
        self.run_dirs = {Path(d).name: Path(d) for d in run_dirs if (Path(d) / "pipeline").is_dir()}
        if not self.run_dirs:
            raise ConfigError(f"no trained run among {[str(d) for d in run_dirs]} (a run folder "
                              "holds pipeline/ after `avlib train` or notebook 04)")
        self._out_dir = Path(out_dir) if out_dir else None
        self._pipelines: dict[str, object] = {}
        self._clips: dict[str, object] = {}

    @property
    def out_dir(self) -> Path:
        """Where videos and uploads go; a temporary folder is made only once something is written."""
        if self._out_dir is None:
            self._out_dir = Path(tempfile.mkdtemp(prefix="avlib-explorer-"))
        return self._out_dir

    def config(self, run: str):
        from avlib.config import config_from_record

        return config_from_record(json.loads((self.run_dirs[run] / "config.json").read_text()))

    def clips(self, run: str):
        """The test clips of the run's dataset."""
        from avlib.data.splits import load_split

        if run not in self._clips:
            self._clips[run] = load_split(self.config(run), "test")
        return self._clips[run]

    def clip_ids(self, run: str) -> list[str]:
        return [row.clip_id for row in self.clips(run).rows]

    def source_video(self, run: str, clip_id: str) -> Path:
        from avlib.data.curate import clip_files

        return clip_files(self.clips(run).root, clip_id)[0]

    def pipeline(self, run: str):
        from avlib.pipeline.audio_to_video import AudioToVideoPipeline

        if run not in self._pipelines:
            config = self.config(run)
            self._pipelines[run] = AudioToVideoPipeline.from_pretrained(
                self.run_dirs[run] / "pipeline", device=config.model.device, dtype=config.model.dtype)
        return self._pipelines[run]

    def generate(self, run: str, clip_id: str | None = None, audio_file: str | Path | None = None,
                 seed: int = 0) -> Path:
        """Generate from a test clip's audio or from an audio file; returns the mp4 written."""
        from avlib.generate import read_conditioning_audio
        from avlib.media import SAMPLE_RATE, write_video

        if (clip_id is None) == (audio_file is None):
            raise ConfigError("give exactly one of clip_id (a test clip) or audio_file (your audio)")
        config = self.config(run)
        if clip_id is not None:
            wave = self.clips(run)[self.clip_ids(run).index(clip_id)]["waveform"].numpy()
            name = clip_id
        else:
            wave = read_conditioning_audio(audio_file)
            name = Path(audio_file).stem
        pipeline = self.pipeline(run)
        frames = pipeline(wave, prompt=config.prompt, num_inference_steps=config.inference.num_inference_steps,
                          guidance_scale=config.inference.guidance_scale, num_frames=pipeline.mapper.num_frames,
                          height=config.inference.height, width=config.inference.width,
                          generator=torch.Generator().manual_seed(seed), progress=False)[0]
        fps = pipeline.mapper.num_frames * SAMPLE_RATE / wave.size
        return write_video(self.out_dir / f"{run}__{name}__seed{seed}.mp4", frames, fps, audio=wave)


def explore(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None):
    """The explorer widget for ``run_dirs`` (None, after a printed note, when headless)."""
    from avlib.notebook import is_headless, video_html

    explorer = Explorer(run_dirs, out_dir)
    if is_headless():
        print(f"[headless] the explorer would let you pick one of the runs {', '.join(explorer.run_dirs)}, "
              "a test clip or an uploaded audio file, generate, and watch the result beside the source "
              "video; open this notebook in JupyterLab to use it.")
        return None
    import ipywidgets as widgets

    runs = widgets.Dropdown(options=list(explorer.run_dirs), description="run")
    clips = widgets.Dropdown(description="test clip")
    upload = widgets.FileUpload(accept="audio/*,.wav,.mp3,.flac", multiple=False, description="or upload audio")
    seed = widgets.IntText(value=0, description="seed")
    button = widgets.Button(description="generate", button_style="primary")
    view = widgets.HTML()

    def refresh_clips(_change=None) -> None:
        clips.options = explorer.clip_ids(runs.value)

    def on_generate(_button) -> None:
        button.disabled = True
        view.value = "generating..."
        try:
            if upload.value:
                item = upload.value[0]
                audio = explorer.out_dir / item["name"]
                audio.write_bytes(bytes(item["content"]))
                video = explorer.generate(runs.value, audio_file=audio, seed=seed.value)
                view.value = video_html(video, label="generated from your audio")
            else:
                video = explorer.generate(runs.value, clip_id=clips.value, seed=seed.value)
                view.value = (video_html(explorer.source_video(runs.value, clips.value), label="source clip")
                              + video_html(video, label=f"generated ({runs.value})"))
        except Exception as exc:  # shown in the widget, not lost in the kernel log
            view.value = f"<pre>{type(exc).__name__}: {exc}</pre>"
        finally:
            button.disabled = False

    runs.observe(refresh_clips, names="value")
    button.on_click(on_generate)
    refresh_clips()
    return widgets.VBox([widgets.HBox([runs, clips]), widgets.HBox([upload, seed, button]), view])
