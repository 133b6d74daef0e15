"""Figures as a reader sees them: text inside its box, lines where the metric puts them."""
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from avlib import figures  # noqa: E402
from avlib.notebook import train_config  # noqa: E402


def test_figure1_text_stays_inside_its_boxes():
    counts = {"encoder": 1_234_567, "mapper": 7_654_321, "text_encoder": 123_456_789, "unet+vae": 1_234_567_890}
    fig = figures.plot_model_structure(train_config("dog"), counts)
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [patch.get_window_extent(renderer) for patch in ax.patches]
    texts = [text for text in ax.texts if "\n" in text.get_text()]
    assert len(boxes) == len(texts) == 7 and "1.23 B params" in texts[5].get_text()
    for box, text in zip(boxes, texts):
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
    plt.close(fig)


def test_av_align_timeline_draws_the_motion_peak_at_the_curve_maximum():
    """The metric puts trajectory entry i at i / fps; the plot must too (it drew it a frame late)."""
    trajectory = [0.1, 0.1, 0.2, 0.9, 0.2, 0.1, 0.1, 0.1]
    result = SimpleNamespace(flow_trajectory=trajectory, fps=8.0, video_peaks_s=[3 / 8], audio_peaks_s=[3 / 8],
                             video="clip.mp4", score=1.0)
    fig = figures.plot_av_align_timelines([result])
    ax = fig.axes[0]
    times, values = ax.lines[0].get_data()
    peak_line = ax.lines[1].get_xdata()[0]
    assert times[np.argmax(values)] == peak_line == 3 / 8
    plt.close(fig)


def test_toyworld_figure_names_its_experiment():
    record = {"av_align": {"trained": {"mean": 0.6, "ci95": [0.5, 0.7], "n": 40},
                           "shuffled": {"mean": 0.4, "ci95": [0.3, 0.5], "n": 40}},
              "av_align_version": "2025", "class_match": {"trained": {"mean": 0.9, "ci95": [0.8, 1.0]}},
              "class_chance": 1 / 3}
    fig = figures.plot_toyworld_evaluation(record, "thunder_seed1")
    assert fig._suptitle.get_text() == "toy world: the thunder_seed1 experiment"
    plt.close(fig)


def test_table2_legend_sits_above_the_panels_not_on_a_bar():
    from avlib.report import METRICS

    row = {"experiment": "dog", "class": "", "run": "runs/dog", "toy_backbones": ""}
    for metric in METRICS:
        row.update({metric: 0.5, f"{metric}_ci_low": 0.4, f"{metric}_ci_high": 0.6, f"{metric}_report": 0.9,
                    f"{metric}_report_invalid": False})
    fig = figures.plot_table2([row])
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert all(legend.y0 >= ax.get_window_extent(renderer).y1 for ax in fig.axes)
    plt.close(fig)
