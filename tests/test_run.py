"""avlib.run.Run: the run folder's layout, its config, samples, references and metrics."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from avlib.config import load_config
from avlib.errors import AvlibError, MediaError
from avlib.run import SAMPLED, SCORED, STAGES, TRAINED, Run, resolve_run_paths


@pytest.fixture
def config():
    return resolve_run_paths(load_config("dog", "tiny", ["inference.guidance_scale=7"]))


def sampled_run(root, rows=(("c1", "dog", ""), ("c2", "thunder", "a storm"))) -> Run:
    """A run with a config, a sample index and (empty) files for every indexed clip."""
    run = Run(root)
    run.write_config(load_config("multiclass", "tiny"), seed=5)
    run.write_sample_index(list(rows))
    for clip_id, _, _ in rows:
        for path in (run.sample_video(clip_id), run.sample_audio(clip_id), run.reference_video(clip_id)):
            path.write_bytes(b"")
    return run


def test_the_layout_is_relative_to_the_folder(tmp_path):
    run = Run(tmp_path / "r")
    assert run.config_file == tmp_path / "r" / "config.json"
    assert run.pipeline_dir == tmp_path / "r" / "pipeline"
    assert run.checkpoints_dir == tmp_path / "r" / "checkpoints"
    assert run.losses_file == tmp_path / "r" / "losses.csv"
    assert run.metrics_file == tmp_path / "r" / "metrics.json"
    assert run.sample_video("x") == tmp_path / "r" / "samples" / "x.mp4"
    assert run.sample_audio("x") == tmp_path / "r" / "samples" / "x.wav"
    assert run.reference_video("x") == tmp_path / "r" / "reference" / "x.mp4"
    assert run.explorer_dir == tmp_path / "r" / "explorer"
    assert not run.root.exists()  # naming a run creates nothing


def test_the_config_is_written_with_provenance_and_read_back(tmp_path, config):
    run = Run(tmp_path / "r")
    run.write_config(config, seed=3)
    record = json.loads(run.config_file.read_text())
    assert record["seed"] == 3 and "torch" in record["versions"] and record["config"] == config.to_dict()
    assert run.read_config().to_dict() == config.to_dict()
    assert run.read_config(["inference.guidance_scale=2"]).inference.guidance_scale == 2.0
    assert json.loads(run.config_file.read_text())["config"]["inference"]["guidance_scale"] == 7.0  # not rewritten


def test_a_moved_run_reads_the_same_from_another_folder(tmp_path, monkeypatch, config):
    run = sampled_run(tmp_path / "made" / "r")
    moved = Run(shutil.move(run.root, tmp_path / "archive"))
    monkeypatch.chdir(tmp_path / "made")
    assert moved.read_config().name == "multiclass"
    assert [s.video for s in moved.samples()] == [tmp_path / "archive" / "samples" / f"{c}.mp4" for c in ("c1", "c2")]
    assert moved.references() == [tmp_path / "archive" / "reference" / f"{c}.mp4" for c in ("c1", "c2")]


def test_samples_and_references_are_indexed_together(tmp_path):
    run = sampled_run(tmp_path / "r")
    samples = run.samples()
    assert [(s.clip_id, s.label, s.prompt) for s in samples] == [("c1", "dog", ""), ("c2", "thunder", "a storm")]
    assert run.samples(limit=1)[0].clip_id == "c1"
    assert run.sample_rows()[1] == {"clip_id": "c2", "label": "thunder", "prompt": "a storm"}
    assert run.reference_labels() == {"c1": "dog", "c2": "thunder"}
    with open(run.reference_dir / "index.csv", newline="") as handle:
        assert next(csv.reader(handle)) == ["clip_id", "label"]
    assert run.sample_files() == [run.sample_video("c1"), run.sample_video("c2")]
    run.sample_video("c2").unlink()
    with pytest.raises(MediaError, match="lists c2 but .* is missing"):
        run.samples()


def test_losses_and_metrics_round_trip(tmp_path):
    run = Run(tmp_path / "r")
    run.write_losses([{"step": 1, "epoch": 0, "loss": 0.5, "mse": 0.4, "regulariser": 0.1}])
    assert run.losses_file.read_text().splitlines() == ["step,epoch,loss,mse,regulariser", "1,0,0.5,0.4,0.1"]
    run.write_metrics({"experiment": "dog", "per_video": {}})
    assert run.read_metrics(("experiment",)) == {"experiment": "dog", "per_video": {}}
    with pytest.raises(MediaError, match="is not a metrics.json written by `avlib evaluate` .*lacks metrics"):
        run.read_metrics(("experiment", "metrics"))


def test_stages_say_how_far_a_run_got(tmp_path):
    assert [name for name, _ in STAGES] == [TRAINED, SAMPLED, SCORED]
    run = Run(tmp_path / "r")
    assert run.missing_stages(SCORED) == list(STAGES) and not run.has(TRAINED)
    run.pipeline_dir.mkdir(parents=True)
    assert not run.has(TRAINED)  # a pipeline without a config is no run
    run.write_config(load_config("dog", "tiny"), seed=0)
    assert run.has(TRAINED) and run.missing_stages(SAMPLED) == [STAGES[1]]
    with pytest.raises(ValueError, match="needs='losses' is not one of"):
        run.missing_stages("losses")


@pytest.mark.parametrize("make, call, message", [
    (lambda root: root.mkdir(), lambda run: run.read_config(), r"is not a training run \(no config.json\)"),
    (lambda root: (root.mkdir(), (root / "config.json").write_text('{"hello": 1}')),
     lambda run: run.read_config(), "holds no experiment config"),
    (lambda root: (root.mkdir(), (root / "config.json").write_text('{"conf')),
     lambda run: run.read_config(), "is not valid JSON"),
    (lambda root: root.mkdir(), lambda run: run.sample_rows(), "has no samples/index.csv: generate them first"),
    (lambda root: root.mkdir(), lambda run: run.references(), "video folder not found"),
    (lambda root: root.mkdir(), lambda run: run.read_metrics(), r"no metrics.json in .* \(run `avlib evaluate"),
])
def test_what_is_missing_is_one_clear_error(tmp_path, make, call, message):
    make(tmp_path / "r")
    with pytest.raises(AvlibError, match=message):
        call(Run(tmp_path / "r"))


def test_the_cli_and_the_notebooks_name_a_run_folder_by_one_rule(tmp_path, monkeypatch, capsys):
    """``avlib train`` without --out trains where notebook 04 does: runs/{experiment}_{profile}
    (:func:`avlib.run.experiment_run_dir`, the rule's one owner)."""
    import avlib.train
    from avlib.cli import main
    from avlib.notebook import own_run_dir, train_config
    from avlib.run import experiment_run_dir

    monkeypatch.setenv("AVLIB_RUNS", str(tmp_path))
    trained_in = []
    monkeypatch.setattr(avlib.train, "train", lambda config, clips, run_dir, **kwargs:
                        trained_in.append(Path(run_dir)) or {"steps": 0, "final_loss": None})
    monkeypatch.setattr("avlib.data.splits.training_clips", lambda config: [])
    assert main(["train", "--experiment", "thunder", "--profile", "tiny"]) == 0
    assert trained_in == [tmp_path / "thunder_tiny"] == [own_run_dir(train_config("thunder"))]
    assert experiment_run_dir(train_config("thunder"), root=tmp_path / "x") == tmp_path / "x" / "thunder_tiny"
    assert f"run folder {tmp_path / 'thunder_tiny'}" in capsys.readouterr().out
