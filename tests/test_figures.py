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


def test_figure2_picks_the_first_right_and_first_wrong_clip_reading_no_further():
    from avlib.notebook import right_and_wrong

    read = []

    def verdicts(judged):  # lazy, as the videos are read one by one
        for verdict in judged:
            read.append(verdict)
            yield verdict

    labels = ["dog", "dog", "thunder", "dog"]
    assert right_and_wrong(labels, verdicts(["thunder", "thunder", "thunder", "dog"])) == {"right": 2, "wrong": 0}
    assert len(read) == 3  # the fourth video was never judged
    assert right_and_wrong(labels, ["dog", "dog", "thunder", "dog"]) == {"right": 0}
    assert right_and_wrong(labels, ["volleyball"] * 4) == {"wrong": 0}


def test_figure2_of_a_tiny_run_labels_a_right_and_a_wrong_clip(tmp_path):
    """Real toy-world frames as the 'generated' videos: a dog clip judged dog, a thunder clip
    labelled dog judged thunder; the frame classifier is the judge."""
    from avlib.media import save_audio, write_video
    from avlib.notebook import judged_grid_rows
    from avlib.toyworld.data import rgb_frames, toy_clip

    clips = {"a": (toy_clip("dog", 1_000_001), "dog"), "b": (toy_clip("thunder", 1_000_001), "dog")}
    (tmp_path / "samples").mkdir()
    for clip_id, (clip, _) in clips.items():
        for folder in ("samples", "reference"):
            write_video(tmp_path / folder / f"{clip_id}.mp4", rgb_frames(clip), 8.0, audio=clip["waveform"].numpy())
        save_audio(tmp_path / "samples" / f"{clip_id}.wav", clip["waveform"].numpy())
    rows = ["clip_id,label,prompt"] + [f"{clip_id},{label}," for clip_id, (_, label) in clips.items()]
    (tmp_path / "samples" / "index.csv").write_text("\n".join(rows) + "\n")
    right, wrong = judged_grid_rows(tmp_path)
    assert right["title"].startswith("a (dog): generated video judged dog, RIGHT")
    assert wrong["title"].startswith("b (dog): generated video judged thunder, WRONG")
    assert right["frames"].shape == right["reference"].shape == (8, 32, 32, 3) and len(right["onsets_s"]) >= 1
    fig = figures.plot_frame_grid([right, wrong])
    assert [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")] == [right["title"], wrong["title"]]
    plt.close(fig)


def test_table2_bars_put_each_runs_shuffled_audio_control_beside_it():
    from avlib.report import METRICS

    def row(control, value):
        out = {"experiment": "dog", "class": "", "run": "runs/dog", "toy_backbones": "", "control": control}
        for metric in METRICS:
            out.update({metric: value, f"{metric}_ci_low": value - 0.1, f"{metric}_ci_high": value + 0.1,
                        f"{metric}_report": None if control else 0.9, f"{metric}_report_invalid": ""})
        return out

    fig = figures.plot_table2([row("", 0.6), row("shuffled", 0.3)])
    ax = fig.axes[2]  # AV-Align
    heights = sorted(round(bar.get_height(), 3) for bar in ax.patches)
    assert heights == [0.3, 0.6, 0.9] and len(ax.get_xticklabels()) == 1  # one group: ours, control, report
    assert "ours, shuffled audio (control)" in [text.get_text() for text in fig.legends[0].get_texts()]
    plt.close(fig)


def table2_row(experiment, value, report, toy_backbones="", run="runs/x"):
    from avlib.report import METRICS

    row = {"experiment": experiment, "class": "", "run": run, "toy_backbones": toy_backbones, "control": ""}
    for metric in METRICS:
        row.update({metric: value, f"{metric}_ci_low": value - 0.1, f"{metric}_ci_high": value + 0.1,
                    f"{metric}_report": report, f"{metric}_report_invalid": ""})
    return row


def bars_by_label(ax):
    return {container.get_label(): [round(bar.get_height(), 3) for bar in container] for container in ax.containers
            if hasattr(container, "patches")}


def test_table2_never_draws_a_toy_value_on_an_axis_with_a_published_one():
    """FVD and CLIPSIM from TOY networks: ours on the top panels, the report's alone below;
    AV-Align (no TOY network) keeps both side by side; a row without a run of ours is left out."""
    rows = [table2_row("dog", 0.6, 2900.0, toy_backbones="FVD CLIPSIM"),
            table2_row("thunder", 0.0, 1800.0, toy_backbones="FVD CLIPSIM", run="")]
    fig = figures.plot_table2(rows)
    (fvd, clipsim, av_align), (fvd_report, clipsim_report, av_align_below) = np.reshape(fig.axes, (2, 3))
    for ours, published in ((fvd, fvd_report), (clipsim, clipsim_report)):
        assert bars_by_label(ours) == {"ours (95% CI)": [0.6]}
        assert bars_by_label(published) == {"report": [2900.0]}
        assert "TOY" in ours.get_title() and "published" in published.get_title()
        assert [label.get_text() for label in ours.get_xticklabels()] == ["dog"]  # thunder: no run, no bar
    assert bars_by_label(av_align) == {"ours (95% CI)": [0.6], "report": [2900.0]}
    assert not av_align_below.axison
    plt.close(fig)


def test_agreement_plot_draws_points_with_cis_and_says_when_n_is_too_small():
    rows = [{"metric": "clipsim", "agreement": 2 / 3, "ci95": [0.2, 0.95], "n": 3, "skipped": ""},
            {"metric": "av_align", "agreement": 0.55, "ci95": [0.45, 0.65], "n": 40, "skipped": ""},
            {"metric": "fvd", "agreement": None, "ci95": None, "n": 0, "skipped": "no fvd score"}]
    fig = figures.plot_agreement(rows, "oracle")
    ax = fig.axes[0]
    assert not ax.patches  # points, not bars
    points = [line for line in ax.lines if line.get_marker() == "o"]
    assert [tuple(line.get_xydata()[0]) for line in points] == [(0.0, 2 / 3), (1.0, 0.55)]
    caps = sorted({round(y, 3) for line in ax.lines if line.get_marker() not in ("o", "None", None, "")
                   for y in line.get_ydata()})
    assert caps == [0.2, 0.45, 0.65, 0.95]  # each point's 95% CI
    texts = [text.get_text() for text in ax.texts]
    assert "0.67" in texts and "0.55" in texts and "skipped" in texts
    assert [t for t in texts if "too few" in t] == ["N=3: too few\nto tell from chance"]  # not for n=40
    plt.close(fig)


def test_the_loss_curve_has_whole_step_ticks_and_its_running_mean_drawn():
    curve = {"step": np.arange(1, 21), "loss": np.linspace(1, 0, 20), "window": 4,
             "mean_step": np.arange(4, 21), "mean": np.linspace(0.9, 0.1, 17)}
    fig = figures.plot_loss_curve(curve)
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [tick for tick in ax.get_xticks() if ax.get_xlim()[0] <= tick <= ax.get_xlim()[1]]
    assert ticks and all(float(tick).is_integer() for tick in ticks)
    raw, mean = ax.lines
    np.testing.assert_array_equal(mean.get_xdata(), curve["mean_step"])
    np.testing.assert_array_equal(mean.get_ydata(), curve["mean"])
    assert raw.get_alpha() < 1 and "running mean of 4 steps" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)
