"""The interactive explorer: pick a run and a test clip (or upload audio), generate, compare.

:class:`Explorer` does the work (load a run's pipeline once, generate from a clip's or an
uploaded file's audio, write the mp4 with the sound muxed in, into ``RUN/explorer/``, and
for a test clip a comparison clip with the source beside it);
:class:`ExplorerControls` is its ipywidgets front end, and :func:`explore` shows that in
JupyterLab or, headless, prints what it would offer instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from avlib.data.curate import clip_files
from avlib.data.splits import load_split
from avlib.errors import ConfigError
from avlib.generate import read_conditioning_audio
from avlib.media import side_by_side
from avlib.notebook import is_headless, video_html
from avlib.pipeline.audio_to_video import AudioToVideoPipeline
from avlib.run import TRAINED, Run


class Explorer:
    """Generation from trained run folders, one pipeline loaded per run and kept."""

    def __init__(self, run_dirs: Sequence[str | Path], out_dir: str | Path | None = None):
        self.runs = {Path(d).name: Run(d) for d in run_dirs if Run(d).has(TRAINED)}
        if not self.runs:
            raise ConfigError(f"no trained run among {[str(d) for d in run_dirs]} (a run folder "
                              "holds a trained pipeline after `avlib train` or notebook 04)")
        self._out_dir = Path(out_dir) if out_dir else None
        self._pipelines: dict[str, object] = {}
        self._clips: dict[str, object] = {}

    def out_dir(self, run: str) -> Path:
        """Where ``run``'s videos and uploads go: ``out_dir`` if given, else ``RUN/explorer/``
        (kept with the run it came from, never in an uncleaned temporary folder)."""
        return self._out_dir or self.runs[run].explorer_dir

    def config(self, run: str):
        return self.runs[run].read_config()

    def clips(self, run: str):
        """The test clips of the run's dataset."""
        if run not in self._clips:
            self._clips[run] = load_split(self.config(run), "test")
        return self._clips[run]

    def clip_ids(self, run: str) -> list[str]:
        return [row.clip_id for row in self.clips(run).rows]

    def source_video(self, run: str, clip_id: str) -> Path:
        return clip_files(self.clips(run).root, clip_id)[0]

    def pipeline(self, run: str):
        if run not in self._pipelines:
            pipeline = AudioToVideoPipeline.from_run(self.runs[run].root)
            pipeline.set_progress_bar_config(disable=True)
            self._pipelines[run] = pipeline
        return self._pipelines[run]

    def generate(self, run: str, clip_id: str | None = None, audio_file: str | Path | None = None,
                 seed: int = 0) -> Path:
        """Generate from a test clip's audio or from an audio file; returns the mp4 written."""
        if (clip_id is None) == (audio_file is None):
            raise ConfigError("give exactly one of clip_id (a test clip) or audio_file (your audio)")
        config = self.config(run)
        if clip_id is not None:  # a test clip: its window, as the run was sampled
            wave = self.clips(run)[self.clip_ids(run).index(clip_id)]["waveform"].numpy()
            video = self.pipeline(run)(wave, config.prompt, generator=torch.Generator().manual_seed(seed))
            name = clip_id
        else:  # your audio: a video as long as it (avlib.pipeline.long_video)
            video = self.pipeline(run).generate_long(read_conditioning_audio(audio_file), config.prompt, seed=seed)
            name = Path(audio_file).stem
        return video.save(self.out_dir(run) / f"{run}__{name}__seed{seed}.mp4")

    def compare(self, run: str, clip_id: str, seed: int = 0) -> Path:
        """Generate from a test clip's audio and write one comparison clip: the source clip
        (left, with its sound) beside the generated video (right), as long as the generated
        window; returns its path (``..._beside_source.mp4``)."""
        generated = self.generate(run, clip_id=clip_id, seed=seed)
        return side_by_side([self.source_video(run, clip_id), generated],
                            generated.with_name(f"{generated.stem}_beside_source.mp4"))


# The explorer's two sources of sound, as the toggle shows them.
SOURCES = {"test clip": "clip", "your audio": "upload"}


class ExplorerControls:
    """The explorer's widgets and what their clicks do (built headless too, for tests).

    The source toggle decides what "generate" uses: a test clip (the first is selected) or
    the last uploaded file; uploading switches to "your audio", and switching back to
    "test clip" generates from the chosen clip again.
    """

    def __init__(self, explorer: Explorer):
        import ipywidgets as widgets

        self.explorer = explorer
        self.runs = widgets.Dropdown(options=list(explorer.runs), description="run",
                                     tooltip="a trained run folder")
        self.source = widgets.ToggleButtons(options=list(SOURCES.items()), value="clip", description="sound",
                                            tooltips=["generate from a test clip's audio",
                                                      "generate from an audio file you upload"])
        self.clips = widgets.Dropdown(description="test clip", tooltip="a test clip the mapper never saw")
        self.upload = widgets.FileUpload(accept="audio/*,.wav,.mp3,.flac", multiple=False,
                                         description="upload audio", tooltip="a .wav, .mp3 or .flac file")
        self.seed = widgets.IntText(value=0, description="seed", tooltip="the initial noise (same seed, same video)")
        self.button = widgets.Button(description="generate", button_style="primary",
                                     tooltip="generate a video from the chosen sound")
        self.view = widgets.HTML()
        self.runs.observe(self.refresh_clips, names="value")
        self.source.observe(self.show_source, names="value")
        self.upload.observe(lambda _change: setattr(self.source, "value", "upload"), names="value")
        self.button.on_click(self.generate)
        self.refresh_clips()
        self.show_source()

    def box(self):
        import ipywidgets as widgets

        return widgets.VBox([widgets.HBox([self.runs, self.source]), widgets.HBox([self.clips, self.upload]),
                             widgets.HBox([self.seed, self.button]), self.view])

    def refresh_clips(self, _change=None) -> None:
        ids = self.explorer.clip_ids(self.runs.value)
        self.clips.options = ids
        self.clips.value = ids[0] if ids else None  # ipywidgets 8 leaves new options unselected

    def show_source(self, _change=None) -> None:
        # The upload button stays live: uploading is how most people say "your audio".
        self.clips.disabled = self.source.value != "clip"

    def generate(self, _button=None) -> None:
        run, explorer = self.runs.value, self.explorer
        self.button.disabled = True
        self.view.value = "generating..."
        try:
            if self.source.value == "upload":
                if not self.upload.value:
                    raise ConfigError("no audio uploaded yet: click 'upload audio' first, or choose 'test clip'")
                item = self.upload.value[-1]
                audio = explorer.out_dir(run) / item["name"]
                audio.parent.mkdir(parents=True, exist_ok=True)
                audio.write_bytes(bytes(item["content"]))
                video = explorer.generate(run, audio_file=audio, seed=self.seed.value)
                self.view.value = video_html(video, label=f"generated from your audio ({item['name']})")
            else:
                video = explorer.compare(run, self.clips.value, seed=self.seed.value)
                self.view.value = video_html(video, label=f"source clip (left) beside the video generated "
                                                          f"from its sound ({run}, right)")
        except Exception as exc:  # shown in the widget, not lost in the kernel log
            self.view.value = f"<pre>{type(exc).__name__}: {exc}</pre>"
        finally:
            self.button.disabled = False


def explore(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None):
    """The explorer widget for ``run_dirs`` (None, after a printed note, when headless)."""
    explorer = Explorer(run_dirs, out_dir)
    if is_headless():
        print(f"[headless] the explorer would let you pick one of the runs {', '.join(explorer.runs)}, "
              "a test clip or an uploaded audio file, generate, and watch the result beside the source "
              "video; open this notebook in JupyterLab to use it.")
        return None
    return ExplorerControls(explorer).box()
