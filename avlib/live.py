"""A live view in JupyterLab: the audio plays in the browser while its frames appear in step.

The audio arrives at a live source's pace (:func:`avlib.streaming.paced`) and is turned into
frames by :meth:`AudioToVideoPipeline.stream` on a worker thread, into a bounded queue. Like a
broadcast, the view starts once the first frame is ready: the browser's audio player starts
then, and frame ``i`` is shown ``i / fps`` seconds after it, as the audio under it is heard. A
frame that comes later than its time is shown at once and counted as late.
"""
from __future__ import annotations

import io
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from avlib.media import SAMPLE_RATE

QUEUE_FRAMES = 16      # frames the worker may run ahead of the view


@dataclass
class LiveReport:
    """What a live view measured."""
    frames: int
    video_seconds: float
    generation_seconds: float      # first audio in to last frame out
    real_time_factor: float        # video seconds per second of generation
    first_frame_latency_s: float   # first audio in to first frame out: the broadcast delay
    late_frames: int               # frames shown after their time
    shown: bool = True             # False headless: nothing was on screen to be late

    def summary(self) -> str:
        if not self.shown:  # a stored notebook keeps what does not depend on this machine's clock
            return (f"{self.frames} frames ({self.video_seconds:.1f} s of video) streamed headless: run this "
                    "cell in JupyterLab to watch it and see the real-time factor and first-frame latency")
        return (f"{self.frames} frames ({self.video_seconds:.1f} s of video) in {self.generation_seconds:.1f} s: "
                f"real-time factor {self.real_time_factor:.2f}, first frame after "
                f"{self.first_frame_latency_s:.2f} s, {self.late_frames} frame(s) late")


def png_bytes(frame: np.ndarray, scale: int = 8) -> bytes:
    """A frame (H, W, 3) in [0, 1] as PNG, enlarged ``scale`` times (nearest neighbour)."""
    from PIL import Image

    image = Image.fromarray((np.clip(frame, 0, 1) * 255).round().astype(np.uint8))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(wave: np.ndarray) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, wave, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def live_view(pipeline, audio: np.ndarray, prompt: str | None = None, scale: int = 8,
              chunk_seconds: float = 0.25, live_seconds: float | None = None, **options) -> LiveReport:
    """Show ``audio`` (16 kHz; its first ``live_seconds`` if given) becoming video live in the
    notebook, with the pipeline's settings (``options`` go to :meth:`AudioToVideoPipeline.stream`);
    returns what it measured."""
    import ipywidgets as widgets
    from IPython.display import display

    from avlib.config import check_positive_number
    from avlib.notebook import is_headless
    from avlib.streaming import paced

    if live_seconds is not None:
        check_positive_number("live_seconds", live_seconds, "(seconds of audio played in the live view)")
        audio = audio[: round(live_seconds * SAMPLE_RATE)]

    settings = pipeline.settings
    frames: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
    times: dict[str, float] = {}
    failed: list[BaseException] = []        # the worker's error, raised here
    step = round(chunk_seconds * SAMPLE_RATE)

    def arriving():
        for start in range(0, audio.size, step):
            times.setdefault("first_audio", time.perf_counter())
            yield audio[start:start + step]

    def produce():
        try:
            for frame in pipeline.stream(paced(arriving()), prompt, **options):
                frames.put(frame)
        except BaseException as exc:
            failed.append(exc)
        finally:
            times["last_frame"] = time.perf_counter()
            frames.put(None)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    # Without a front end (papermill, nbval) the stream is paced and timed all the same, but
    # nothing is shown: a stored widget view would show nothing in a static notebook.
    show = not is_headless()
    image = widgets.Image(format="png", width=settings.width * scale, height=settings.height * scale)
    if show:
        display(image)
    first = frames.get()
    if failed:
        raise failed[0]
    shown_from = time.perf_counter()
    latency = shown_from - times["first_audio"]
    if show:
        display(widgets.Audio(value=wav_bytes(audio), format="wav", autoplay=True, controls=True))
    count, late, frame = 0, 0, first
    while frame is not None:
        delay = shown_from + count / settings.fps - time.perf_counter()
        late += delay < -0.5 / settings.fps
        time.sleep(max(0.0, delay))
        image.value = png_bytes(frame, scale)
        count += 1
        frame = frames.get()
    worker.join()
    if failed:
        raise failed[0]
    generation = times["last_frame"] - times["first_audio"]
    return LiveReport(count, count / settings.fps, generation, count / settings.fps / generation, latency, late,
                      shown=show)
