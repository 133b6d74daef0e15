"""``avlib evaluate`` on a fabricated tiny run folder, then ``avlib report`` into Table 2."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from avlib.cli import main
from avlib.config import load_config
from avlib.errors import CheckpointError, MediaError
from avlib.evaluate import evaluate_run
from avlib.io import write_json
from avlib.media import save_audio, write_video
from avlib.metrics import MetricWarning
from avlib.report import load_published, table_rows, to_markdown

FPS, FRAMES, SR = 8, 8, 16000


def jumping_frames(events: list[int], shade: int) -> np.ndarray:
    """(F, 32, 32, 3): a square that jumps between x=2 and x=18 at the event frames."""
    frames = np.full((FRAMES, 32, 32, 3), shade, np.uint8)
    x = 2
    for f in range(FRAMES):
        if f in events:
            x = 20 - x
        frames[f, 8:16, x:x + 10] = 230
    return frames


def event_clip(path, events: list[int], shade: int) -> None:
    """A square that jumps at the event frames, with a click at each event's time."""
    frames = jumping_frames(events, shade)
    audio = np.zeros(FRAMES * SR // FPS, np.float32)
    for f in events:
        start = f * SR // FPS
        audio[start:start + 400] = 0.7 * np.random.default_rng(f).uniform(-1, 1, 400)
    write_video(path.with_suffix(".mp4"), frames, FPS, audio=audio)
    save_audio(path.with_suffix(".wav"), audio)


def make_run(root, experiment: str, profile: str = "tiny", shuffled: bool = False):
    """A run folder; ``shuffled`` adds the control, whose videos jump where their audio does not."""
    config = load_config(experiment, profile)
    write_json(root / "config.json", {"config": config.to_dict()})
    (root / "samples").mkdir(parents=True)
    (root / "reference").mkdir()
    rows, refs, control = ["clip_id,label,prompt"], ["clip_id,label"], ["clip_id,label,prompt,audio_of"]
    for i, label in enumerate(["dog", "dog", "thunder", "thunder"]):
        shade = 40 if label == "dog" else 160
        event_clip(root / "samples" / f"s{i}", [2 + i % 2, 6], shade)
        event_clip(root / "reference" / f"r{i}", [3, 5], shade + 20)
        rows.append(f"s{i},{label},")
        refs.append(f"r{i},{label}")
        if shuffled:
            (root / "shuffled").mkdir(exist_ok=True)
            event_clip(root / "shuffled" / f"s{i}", [2 + i % 2, 6], shade)  # the sound of s{i} ...
            jumps = [1, 4] if i % 2 else [4, 7]
            write_video(root / "shuffled" / f"s{i}.mp4", jumping_frames(jumps, shade), FPS)  # ... and motion elsewhere
            control.append(f"s{i},{label},,s{(i + 1) % 4}")
    (root / "samples" / "index.csv").write_text("\n".join(rows) + "\n")
    (root / "reference" / "index.csv").write_text("\n".join(refs) + "\n")
    if shuffled:
        (root / "shuffled" / "index.csv").write_text("\n".join(control) + "\n")
    return root


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny multiclass run with its shuffled-audio control, evaluated through the CLI."""
    root = make_run(tmp_path_factory.mktemp("run") / "multiclass", "multiclass", shuffled=True)
    write_json(root / "pipeline" / "model_index.json", {"t2v_source": "tiny", "settings": {"num_frames": FRAMES}})
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AVLIB_CACHE", str(cache))
        with pytest.warns(MetricWarning, match="rank-deficient"):  # 4 clips, 32-d features
            assert main(["evaluate", "--run", str(root), "--workers", "1", "--quiet"]) == 0
    return root


def test_metrics_json_has_values_cis_and_provenance(evaluated):
    data = json.loads((evaluated / "metrics.json").read_text())
    assert data["experiment"] == "multiclass" and data["profile"] == "tiny"
    for name in ("fvd", "clipsim", "av_align"):
        entry = data["metrics"][name]
        assert np.isfinite(entry["value"]) and entry["n"] == 4
        low, high = entry["ci95"]
        assert low <= entry["value"] <= high
    assert data["metrics"]["fvd"]["value"] > 0.0 and data["metrics"]["fvd"]["n_real"] == 4
    assert data["metrics"]["av_align"]["version"] == "2025"
    assert "TOY CLIP" in data["metrics"]["clipsim"]["model"]
    assert "TOY I3D" in data["definitions"]["fvd"]["backbone"]["name"]
    assert data["toy_backbones"] == ["FVD", "CLIPSIM"] and "TOY" in data["notes"][0]
    assert data["definitions"]["fvd"]["preprocessing"]["resolution"] == 32
    assert set(data["per_video"]) == {"s0", "s1", "s2", "s3"}
    assert data["run_record"]["config"]["name"] == "multiclass"


def test_evaluation_adds_the_metrics_to_the_pipelines_model_card(evaluated):
    card = (evaluated / "pipeline" / "README.md").read_text()
    value = json.loads((evaluated / "metrics.json").read_text())["metrics"]["av_align"]["value"]
    assert "experiment: `multiclass`" in card and f"| av_align | {value:.4g} |" in card


def test_per_class_results_use_each_class_only(evaluated):
    data = json.loads((evaluated / "metrics.json").read_text())
    assert set(data["per_class"]) == {"dog", "thunder"}
    dog = data["per_class"]["dog"]
    assert dog["clipsim"]["n"] == 2 and dog["fvd"]["n_real"] == 2
    per_video = data["per_video"]
    assert dog["av_align"]["value"] == pytest.approx(np.mean([per_video["s0"]["score"],
                                                              per_video["s1"]["score"]]))


def test_the_shuffled_audio_control_is_scored_like_the_samples(evaluated):
    data = json.loads((evaluated / "metrics.json").read_text())
    control = data["controls"]["shuffled"]
    assert "another test clip's audio" in control["what"] and set(control["per_class"]) == {"dog", "thunder"}
    assert set(control["per_video"]) == {"s0", "s1", "s2", "s3"}
    for name in ("fvd", "clipsim", "av_align"):
        assert control["metrics"][name]["n"] == 4 and control["per_class"]["dog"][name]["n"] == 2
    scores = [control["per_video"][clip]["score"] for clip in ("s0", "s1", "s2", "s3")]
    assert control["metrics"]["av_align"]["value"] == pytest.approx(np.mean(scores))
    # motion away from the sound scores below motion on it
    assert control["metrics"]["av_align"]["value"] < data["metrics"]["av_align"]["value"]


def test_report_places_runs_beside_the_published_table(evaluated, tmp_path):
    csv_path, md_path = tmp_path / "table.csv", tmp_path / "table.md"
    assert main(["report", "--runs", str(evaluated), "-o", str(csv_path), str(md_path)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len([r for r in rows if not r["control"]]) == len(load_published()["rows"])
    # each per-class row, then its shuffled-audio control, with its own N and values, no published ones
    multiclass = [(r["class"], r["control"]) for r in rows if r["experiment"] == "multiclass"]
    assert multiclass == [("thunder", ""), ("thunder", "shuffled"), ("dog", ""), ("dog", "shuffled")]
    metrics = json.loads((evaluated / "metrics.json").read_text())
    dog_control = next(r for r in rows if r["class"] == "dog" and r["control"] == "shuffled")
    assert dog_control["n"] == "2" and dog_control["fvd_report"] == "" and dog_control["fvd_report_invalid"] == ""
    assert float(dog_control["av_align"]) == pytest.approx(
        metrics["controls"]["shuffled"]["per_class"]["dog"]["av_align"]["value"])
    dog = next(r for r in rows if r["experiment"] == "multiclass" and r["class"] == "dog" and not r["control"])
    assert float(dog["fvd_report"]) == -1.7e9 and "impossible" in dog["fvd_report_invalid"]
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert float(dog["fvd"]) == pytest.approx(metrics["per_class"]["dog"]["fvd"]["value"])
    assert dog["n"] == "2"
    volleyball = next(r for r in rows if r["experiment"] == "volleyball")
    assert volleyball["fvd"] == "" and float(volleyball["fvd_report"]) == 2955
    markdown = md_path.read_text()
    assert "-1.7e+09 (invalid)" in markdown and "† TOY" in markdown and "TOY networks" in markdown
    control_line = next(line for line in markdown.splitlines() if line.startswith("| multiclass: dog · shuffled audio |"))
    assert "control: another clip's audio" in control_line and "† TOY" in control_line
    assert "shuffled audio: the row above it" in markdown


def _fake_metrics(root, experiment):
    """A metrics.json as `avlib evaluate` writes it, with made-up values."""
    root.mkdir()
    entry = {"value": 1.0, "ci95": [0.5, 1.5], "n": 3, "n_real": 3, "version": "2023"}
    metrics = {"fvd": entry, "clipsim": entry, "av_align": entry}
    write_json(root / "metrics.json", {
        "experiment": experiment, "profile": "paper", "run_dir": str(root), "metrics": metrics,
        "per_class": {}, "toy_backbones": []})
    return root


def test_report_appends_runs_of_other_experiments(tmp_path):
    dog, custom = _fake_metrics(tmp_path / "a", "dog"), _fake_metrics(tmp_path / "b", "custom")
    rows = table_rows([dog, custom])
    assert [r["experiment"] for r in rows][-1] == "custom" and rows[-1]["fvd_report"] is None
    dog_row = next(r for r in rows if r["experiment"] == "dog")
    assert dog_row["fvd"] == 1.0 and dog_row["fvd_report"] == 3105
    assert "†" not in to_markdown(rows) and "version 2023" in to_markdown(rows)


def test_the_published_baseline_row_is_the_released_weights_run(tmp_path):
    """"TempoTokens Baseline" is `tempotokens_baseline` (released weights); a retrained
    `tempotokens` run is an extra row, not the published one."""
    released = _fake_metrics(tmp_path / "released", "tempotokens_baseline")
    retrained = _fake_metrics(tmp_path / "retrained", "tempotokens")
    rows = table_rows([retrained, released])
    baseline = next(r for r in rows if r["fvd_report"] == 923)
    assert baseline["experiment"] == "tempotokens_baseline" and baseline["run"] == str(released)
    assert rows[-1]["experiment"] == "tempotokens" and rows[-1]["fvd_report"] is None


def test_report_needs_evaluated_runs(tmp_path):
    with pytest.raises(MediaError, match="avlib evaluate"):
        table_rows([tmp_path])


def test_paper_profile_without_i3d_says_what_to_pass(tmp_path):
    root = tmp_path / "run"
    (root / "samples").mkdir(parents=True)
    (root / "reference").mkdir()
    write_json(root / "config.json", {"config": load_config("dog", "paper").to_dict()})
    (root / "samples" / "index.csv").write_text("clip_id,label,prompt\n")
    write_video(root / "reference" / "r0.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=8)
    with pytest.raises(MediaError, match="no clips|columns"):
        evaluate_run(root)
    (root / "samples" / "index.csv").write_text("clip_id,label,prompt\nr0,dog,\n")
    write_video(root / "samples" / "r0.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=8)
    with pytest.raises(CheckpointError, match="no metric could be computed: fvd: .*--i3d"):
        evaluate_run(root, metrics=["fvd"])
    assert not (root / "metrics.json").exists()


@pytest.fixture
def paper_run(tmp_path):
    """A paper-profile run folder whose FVD and CLIP networks are not at hand (offline)."""
    return make_run(tmp_path / "dog", "dog", "paper")


def test_a_metric_without_its_network_is_skipped_and_the_others_written(paper_run, tmp_path, capsys):
    missing_clip = tmp_path / "no_clip_here"
    assert main(["evaluate", "--run", str(paper_run), "--clip-model", str(missing_clip),
                 "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped fvd: FVD needs the Kinetics-400 I3D") == 1
    assert out.count(f"skipped clipsim: cannot load CLIP model '{missing_clip}'") == 1
    data = json.loads((paper_run / "metrics.json").read_text())
    assert set(data["skipped"]) == {"fvd", "clipsim"} and "--i3d" in data["skipped"]["fvd"]
    assert data["metrics"]["fvd"] == {"value": None, "ci95": None, "skipped": data["skipped"]["fvd"]}
    assert data["metrics"]["clipsim"]["value"] is None
    av_align = data["metrics"]["av_align"]
    assert av_align["n"] == 4 and 0 <= av_align["value"] <= 1
    assert set(data["definitions"]) == {"av_align"} and data["toy_backbones"] == []
    assert "clipsim" not in data["per_video"]["s0"] and "score" in data["per_video"]["s0"]

    csv_path, md_path = tmp_path / "t.csv", tmp_path / "t.md"
    assert main(["report", "--runs", str(paper_run), "-o", str(csv_path), str(md_path)]) == 0
    dog = next(r for r in csv.DictReader(csv_path.open()) if r["experiment"] == "dog")
    assert dog["fvd"] == "" and "--i3d" in dog["fvd_skipped"] and dog["clipsim_skipped"]
    assert float(dog["av_align"]) == pytest.approx(av_align["value"]) and dog["n"] == "4"
    dog_line = next(line for line in md_path.read_text().splitlines() if line.startswith("| dog |"))
    assert dog_line.count("| skipped |") == 2
    assert f"- Skipped FVD in {paper_run}: FVD needs" in md_path.read_text()


def test_metrics_chooses_what_is_computed(paper_run, capsys):
    assert main(["evaluate", "--run", str(paper_run), "--metrics", "av-align", "--quiet"]) == 0
    assert "skipped fvd: not requested" in capsys.readouterr().out
    data = json.loads((paper_run / "metrics.json").read_text())
    assert data["skipped"] == {"fvd": "not requested (--metrics)", "clipsim": "not requested (--metrics)"}
    assert data["metrics"]["av_align"]["n"] == 4


@pytest.mark.parametrize("value", ["fvd,cats", ","])
def test_metrics_rejects_unknown_names(paper_run, value, capsys):
    assert main(["evaluate", "--run", str(paper_run), "--metrics", value]) == 2
    assert "choose from: fvd, clipsim, av-align" in capsys.readouterr().err
    assert not (paper_run / "metrics.json").exists()


def test_evaluate_help_says_where_runs_come_from_and_what_scores_tiny_runs(capsys):
    assert main(["evaluate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "`avlib train` and sampled by `avlib sample`" in text and "TOY networks" in text
    assert "random" not in text and "avlib generate" not in text
