"""The notebooks: committed executed, parameters validated, every one executed headless (tiny).

``test_reproduce_runs_every_notebook`` is the end-to-end check: ``avlib reproduce`` over two
experiments runs all eleven notebooks (04-06 twice) with papermill and refreshes a figures
folder. That every stored output comes back is nbval's check, run by ``make test`` after these
tests (``pytest --nbval notebooks/ --nbval-sanitize-with notebooks/nbval_sanitize.cfg``).
"""
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from avlib.errors import ConfigError
from avlib.notebook import train_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["00_quickstart", "01_dataset_curation", "02_model_assembly", "03_audio_features", "04_train",
            "05_generate", "06_evaluate", "07_results", "08_human_eval", "09_toy_world",
            "10_long_and_live"]
FAST = {"train.max_steps": 3, "inference.num_inference_steps": 2}


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_all_numbered_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_holds_its_outputs_as_make_demo_stores_them(path):
    """Executed in order (counts 1, 2, ...), no errors, no papermill traces, no progress bars,
    no bare reprs, no widget views; one parameters cell; no functions or classes defined.
    `pytest --nbval` (make test) checks that every stored output comes back."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = code_cells(path)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), (
        f"{path.name} is not stored executed: run `make demo` (avlib reproduce --profile tiny)")
    outputs = [output for c in cells for output in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    assert "papermill" not in notebook.metadata and not any("papermill" in c.metadata for c in notebook.cells)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in cells)
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert "\r" not in streams and "it/s]" not in streams  # no finished (or stuck) progress bars
    for output in outputs:
        data = output.get("data", {})
        assert "application/vnd.jupyter.widget-view+json" not in data
        plain = data.get("text/plain", "")
        assert not plain.startswith(("PosixPath(", "{", "[PosixPath")), f"{path.name}: bare repr {plain[:80]}"
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1
    assert not any(line.lstrip().startswith(("def ", "class ")) for c in cells for line in c.source.splitlines())


def test_committed_notebooks_stay_small():
    assert sum(path.stat().st_size for path in NOTEBOOKS) < 3_000_000


def test_nbval_compares_every_cell():
    """Scores of generated videos come back to the last digit (mp4s are a pure function of the
    frames, features of the video alone), so no cell is exempt from nbval's comparison."""
    exempt = [(path.name, i) for path in NOTEBOOKS for i, cell in enumerate(code_cells(path))
              if "NBVAL_IGNORE_OUTPUT" in cell.source or "NBVAL_SKIP" in cell.source
              or {"nbval-ignore-output", "nbval-skip"} & set(cell.metadata.get("tags", []))]
    assert exempt == []


def test_stored_notebook_is_the_source_with_the_outputs_and_nothing_volatile():
    """What `avlib reproduce` writes back: papermill's injected cell and metadata gone, counts
    from 1, a stream split by timing joined; a source edited meanwhile is refused."""
    from avlib.errors import AvlibError
    from avlib.reproduce import stored_notebook

    new = nbformat.v4
    source = new.new_notebook(cells=[new.new_markdown_cell("# title"),
                                     new.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                     new.new_code_cell("print(x); x")], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    executed = nbformat.from_dict(json.loads(json.dumps(source)))
    executed.metadata["papermill"] = {"start_time": "2026-01-01T00:00:00"}
    injected = new.new_code_cell("x = 2", metadata={"tags": ["injected-parameters"]}, execution_count=2)
    executed.cells.insert(2, injected)
    executed.cells[1].execution_count, executed.cells[3].execution_count = 1, 3
    executed.cells[3].metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:01"}
    executed.cells[3].outputs = [new.new_output("stream", name="stdout", text="2"),
                                 new.new_output("stream", name="stdout", text="\n"),
                                 new.new_output("execute_result", {"text/plain": "2"}, execution_count=3)]
    stored = stored_notebook(executed, source)
    assert stored.metadata == source.metadata and [c.source for c in stored.cells] == [c.source for c in source.cells]
    assert [c.get("execution_count") for c in stored.cells] == [None, 1, 2]
    assert stored.cells[2].metadata == {} and [o.output_type for o in stored.cells[2].outputs] == ["stream", "execute_result"]
    assert stored.cells[2].outputs[0].text == "2\n" and stored.cells[2].outputs[1].execution_count == 2
    assert not source.cells[2].outputs  # the source is left as it was
    executed.cells[3].outputs = [new.new_output("stream", name="stdout", text="run folder: /home/u/avlib/runs/dog\n"),
                                 new.new_output("display_data", {"text/markdown": "| /home/u/avlib/runs/dog |"})]
    placed = stored_notebook(executed, source, checkout=Path("/home/u/avlib")).cells[2].outputs
    assert placed[0].text == "run folder: /path/to/avlib/runs/dog\n"
    assert placed[1].data["text/markdown"] == "| /path/to/avlib/runs/dog |"
    source.cells[2].source = "print(x)"
    with pytest.raises(AvlibError, match="cells differ"):
        stored_notebook(executed, source)


def test_parameters_default_to_the_tiny_profile_with_a_note_and_a_closing_summary():
    """Every notebook takes a profile (tiny by default; 05-08 use it for their default runs),
    says above its parameters cell what that cell is, and ends with what it showed."""
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        lines = [line for line in cells[index].source.splitlines() if line.startswith("profile")]
        assert [line.split("#")[0].strip() for line in lines] == ['profile = "tiny"'], path.name
        assert "holds this notebook's **parameters**" in cells[index - 1].source, path.name
        assert "What this showed" in cells[-1].source or "What this showed" in cells[-2].source, path.name


@pytest.mark.parametrize("kwargs, message", [
    ({"cls": "cat"}, "cls='cat' is not a dataset"),
    ({"epochs": -3}, "epochs=-3 must be a positive"),
    ({"lr": 0}, "lr=0 must be a positive"),
    ({"encoder": "wav2vec"}, "encoder='wav2vec'"),
    ({"cls": "dog", "mapper": "tempotokens"}, "use cls='volleyball'"),
    ({"cls": "thunder", "text_prompt": "rain"}, "dog set only"),
    ({"profile": "huge"}, "unknown profile 'huge'"),
])
def test_train_parameters_fail_clearly(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        train_config(**kwargs)


def test_train_parameters_pick_the_report_experiment():
    assert train_config("dog").name == "dog"
    config = train_config("dog", text_prompt="a dog barking", epochs=3, lr=1e-4)
    assert (config.name, config.prompt, config.train.epochs, config.train.lr) == ("dog_text", "a dog barking", 3, 1e-4)
    assert train_config("volleyball", mapper="tempotokens").mapper.kind == "tempotokens"
    assert train_config("multiclass", encoder="beats").encoder.name == "beats"


@pytest.mark.parametrize("parameters, error", [({"cls": "cat"}, "cls='cat'"), ({"epochs": -1}, "epochs=-1")])
def test_04_train_stops_in_the_first_cell_on_bad_parameters(tmp_path, parameters, error):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as caught:
        papermill.execute_notebook(str(ROOT / "notebooks" / "04_train.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters=parameters, kernel_name="python3", progress_bar=False)
    assert caught.value.ename == "ConfigError" and error in caught.value.evalue
    executed = [c for c in code_cells(tmp_path / "out.ipynb") if c.execution_count]
    tags = [c.metadata.get("tags", []) for c in executed]
    # parameters, papermill's injected parameters, then the failing cell: nothing later ran.
    assert "injected-parameters" in tags[-2] and len(executed) == 3


def test_train_and_generate_notebooks_take_mapper_and_scheduler(tmp_path):
    """04 trains the frame-attention variant with a chosen sampler; 05 samples it with another."""
    import papermill

    run_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "04_train.ipynb"), str(tmp_path / "04.ipynb"), kernel_name="python3",
        progress_bar=False, parameters={"frame_attention": True, "scheduler": "dpm-multistep",
                                        "run_dir": str(run_dir), "overrides": {"train.max_steps": 2}})
    record = json.loads((run_dir / "config.json").read_text())["config"]
    assert record["mapper"]["frame_attention"] is True and record["inference"]["scheduler"] == "dpm-multistep"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "05_generate.ipynb"), str(tmp_path / "05.ipynb"), kernel_name="python3",
        progress_bar=False, parameters={"run_dir": str(run_dir), "scheduler": "ddim", "limit": 1})
    settings = json.loads((run_dir / "samples" / "settings.json").read_text())["settings"]
    assert settings["scheduler"] == "ddim" and "ddim sampler" in outputs_text(tmp_path / "05.ipynb")


def test_reproduce_plan_chains_each_experiment_before_the_summaries(tmp_path):
    from avlib.reproduce import DEFAULT_EXPERIMENTS, plan

    chains = plan("tiny", list(DEFAULT_EXPERIMENTS), tmp_path)
    outputs = [[step.output for step in chain] for chain in chains]
    assert ["04_train.dog_text", "05_generate.dog_text", "06_evaluate.dog_text"] in outputs
    assert outputs[-2:] == [["07_results"], ["08_human_eval"]]
    # the default chain first (longest), then the experiments, then the single notebooks
    assert outputs[0] == ["04_train.default", "05_generate.default", "06_evaluate.default",
                          "07_results.default", "08_human_eval.default"]
    lengths = [len(chain) for chain in outputs[1:-2]]
    assert lengths == sorted(lengths, reverse=True) and lengths.count(3) == len(DEFAULT_EXPERIMENTS)
    assert outputs[1][0] == "04_train.multiclass"  # the longest experiment chain (three classes) next
    assert sorted(chain[0] for chain in outputs[1 + len(DEFAULT_EXPERIMENTS):-2]) == [
        "00_quickstart", "01_dataset_curation", "02_model_assembly", "03_audio_features", "09_toy_world",
        "10_long_and_live"]
    train = {chain[0].output: chain[0].parameters for chain in chains if chain[0].notebook == "04_train"}
    assert train["04_train.dog_text"]["text_prompt"] and train["04_train.tempotokens"]["mapper"] == "tempotokens"
    assert chains[-1][0].parameters["run_dirs"] == [f"runs/{name}" for name in DEFAULT_EXPERIMENTS]
    with pytest.raises(ConfigError, match="not one notebook 04 trains"):
        plan("tiny", ["tempotokens_baseline"], tmp_path)


def test_every_numbered_notebook_is_stored_once_with_default_parameters(tmp_path):
    """Each numbered notebook's outputs go back into it from exactly one run with no parameter
    that changes an output; with overrides (or another profile) none is stored."""
    from avlib.reproduce import plan

    stored = [step for chain in plan("tiny", ["dog"], tmp_path) for step in chain if step.stored]
    assert sorted(step.notebook for step in stored) == EXPECTED
    assert all(set(step.parameters) <= {"figures_dir"} for step in stored)
    assert not [step for chain in plan("tiny", ["dog"], tmp_path, FAST) for step in chain if step.stored]
    assert not [step for chain in plan("paper", ["dog"], tmp_path) for step in chain if step.stored]


def test_stored_notebooks_run_each_in_a_kernel_of_their_own(tmp_path, monkeypatch):
    """As nbval re-runs them: a lane's shared kernel would carry the earlier notebooks' memory."""
    import avlib.reproduce

    ran = []
    monkeypatch.setattr(avlib.reproduce, "run_notebook",
                        lambda step, out_dir, notebook_dir, kernel: ran.append((step.stored, kernel)) or 0.0)
    avlib.reproduce.reproduce("tiny", ["dog"], tmp_path / "out", tmp_path / "figures", jobs=1, progress=False)
    assert sorted(stored for stored, _ in ran) == [False] * 5 + [True] * len(EXPECTED)  # each numbered notebook stored once
    assert all((kernel is None) == stored for stored, kernel in ran)


def test_save_figure_stamps_the_profile(tmp_path):
    import matplotlib.pyplot as plt

    from avlib.figures import figure_profile, save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    assert save_figure(fig, tmp_path, "line", "tiny", "a test") is None  # a cell ending with it shows no path
    assert figure_profile(tmp_path / "line.tiny.png") == "tiny"
    save_figure(fig, None, "other", "tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["line.tiny.png"]


def test_agreement_counts_the_metric_siding_with_the_rater():
    from avlib.human_eval import agreement

    scores = {"a": {"clipsim": 0.9, "av_align": 0.1}, "b": {"clipsim": 0.1, "av_align": 0.1},
              "c": {"clipsim": 0.5, "av_align": 0.7}}
    ratings = [{"left": "a", "right": "b", "choice": "left"}, {"left": "c", "right": "a", "choice": "left"},
               {"left": "b", "right": "c", "choice": "left"}]
    rows = {row["metric"]: row for row in agreement(ratings, scores)}
    assert rows["clipsim"]["agreement"] == pytest.approx(1 / 3) and rows["clipsim"]["n"] == 3
    assert rows["av_align"]["ties"] == 1 and rows["av_align"]["agreement"] == pytest.approx(0.5)
    low, high = rows["clipsim"]["ci95"]
    assert 0 <= low <= 1 / 3 <= high <= 1


def test_agreement_and_scores_without_a_skipped_metric(tmp_path):
    """A run evaluated without CLIPSIM (no CLIP offline) still yields AV-Align agreement."""
    import matplotlib.pyplot as plt

    from avlib.figures import plot_agreement
    from avlib.human_eval import agreement, per_video_scores

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"per_video": {
        "a": {"label": "dog", "score": 0.9, "clipsim_skipped": True}, "b": {"label": "dog", "score": 0.2}}}))
    scores = per_video_scores([run])
    left, right = str(run / "samples" / "a.mp4"), str(run / "samples" / "b.mp4")
    assert scores == {left: {"av_align": 0.9}, right: {"av_align": 0.2}}
    rows = {row["metric"]: row for row in agreement([{"left": left, "right": right, "choice": "left"}], scores)}
    assert rows["av_align"]["agreement"] == 1.0 and rows["av_align"]["n"] == 1
    assert rows["clipsim"]["agreement"] is None and "no clipsim score for 2 rated video(s)" in rows["clipsim"]["skipped"]
    fig = plot_agreement(list(rows.values()), "oracle")
    assert [label.get_text() for label in fig.axes[0].get_xticklabels()] == ["clipsim\n(skipped)", "av_align\n(n=1)"]
    plt.close(fig)


def outputs_text(path):
    """Everything a notebook printed or displayed as text (stream, Markdown, plain reprs)."""
    parts = []
    for cell in code_cells(path):
        for output in cell.outputs:
            data = output.get("data", {})
            parts += [str(output.get("text", "")), data.get("text/markdown", ""), json.dumps(data.get("text/plain", ""))]
    return "\n".join(parts)


@pytest.mark.slow
def test_reproduce_runs_every_notebook(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from avlib.figures import figure_profile, save_figure
    from avlib.reproduce import reproduce

    figures = tmp_path / "figures"
    save_figure(plt.figure(), figures, "stale", "tiny")
    save_figure(plt.figure(), figures, "kept", "paper")
    # Relative folders, as `make demo` passes them: papermill changes the working folder
    # while notebooks run, and ours must be where it was afterwards.
    monkeypatch.chdir(tmp_path)
    # One kernel at a time: under `make test` another xdist worker shares the two CPUs.
    record = reproduce("tiny", ["dog", "multiclass"], "out", "figures", overrides=FAST,
                       sample_limit=3, jobs=1, progress=False)
    assert Path.cwd() == tmp_path
    executed = sorted(p.stem for p in (tmp_path / "out" / "notebooks").glob("*.ipynb"))
    assert {name.split(".")[0] for name in executed} == set(EXPECTED) and len(executed) == 14
    assert set(record["notebooks"]) == set(executed)

    assert not (figures / "stale.tiny.png").exists() and (figures / "kept.paper.png").exists()
    pngs = sorted(figures.glob("*.tiny.png"))
    names = {p.name for p in pngs}
    assert {"figure1_model.tiny.png", "figure2_frames_dog.tiny.png", "loss_multiclass.tiny.png",
            "table2_bars.tiny.png", "human_eval_agreement.tiny.png", "toyworld_evaluation_thunder.tiny.png",
            "toyworld_captions.tiny.png"} <= names
    assert all(figure_profile(p) == "tiny" for p in pngs)
    readme = (figures / "README.md").read_text()
    assert "## tiny profile" in readme and "figure1_model.tiny.png" in readme and "kept.paper.png" in readme
    table = (figures / "table2.tiny.md").read_text()
    assert "multiclass: dog" in table and "†" in table

    notebooks = tmp_path / "out" / "notebooks"
    assert "[headless] the explorer" in outputs_text(notebooks / "05_generate.dog.ipynb")
    human = outputs_text(notebooks / "08_human_eval.ipynb")
    assert "[headless] the 2AFC rater" in human and "NOT human ratings" in human
    assert "### thunder: criterion met" in outputs_text(notebooks / "09_toy_world.ipynb")
    run = tmp_path / "out" / "runs" / "dog"
    assert len((run / "samples" / "index.csv").read_text().splitlines()) == 4 and (run / "metrics.json").is_file()


def test_rater_widget_saves_each_click(tmp_path, monkeypatch):
    """The 2AFC rater as JupyterLab shows it: clicking a side appends a human rating."""
    import numpy as np

    import avlib.notebook
    from avlib.human_eval import make_pairs, rater, read_ratings
    from avlib.media import write_video

    for run, shade in (("a", 0.2), ("b", 0.8)):
        for clip in ("clip1", "clip2"):
            write_video(tmp_path / run / "samples" / f"{clip}.mp4", np.full((4, 16, 16, 3), shade), 4.0)
    pairs = make_pairs([tmp_path / "a", tmp_path / "b"])
    assert len(pairs) == 2 and {p.clip_id for p in pairs} == {"clip1", "clip2"}
    ratings = tmp_path / "ratings.csv"
    monkeypatch.setattr(avlib.notebook, "is_headless", lambda: False)
    widget = rater(pairs, ratings, "tester")
    left_button = widget.children[2].children[0]
    left_button.click()
    rows = read_ratings(ratings)
    assert [(r["pair_id"], r["choice"], r["rater"], r["kind"]) for r in rows] == [
        (pairs[0].pair_id, "left", "tester", "human")]
    assert rater(pairs, ratings, "tester").children[0].value.startswith("pair 1 of 1")  # rated pairs skipped


def test_rater_clicks_are_used_at_once_and_the_oracle_only_without_them(tmp_path, monkeypatch, capsys):
    """08 as a person uses it: no ratings_file set, clicks land in runs/ratings.csv and the
    agreement cell uses them; before any click it uses the labelled oracle."""
    import numpy as np

    import avlib.notebook
    from avlib.human_eval import ORACLE_RATER, make_pairs, rater, ratings_or_oracle, ratings_path
    from avlib.media import write_video

    monkeypatch.setenv("AVLIB_RUNS", str(tmp_path / "runs"))
    for folder, shade in (("a/samples", 0.2), ("b/samples", 0.8), ("a/reference", 0.3)):  # the oracle picks a
        write_video(tmp_path / folder / "clip1.mp4", np.full((4, 16, 16, 3), shade), 4.0)
    pairs = make_pairs([tmp_path / "a", tmp_path / "b"])
    assert ratings_path(None) == tmp_path / "runs" / "ratings.csv"

    ratings, who = ratings_or_oracle(pairs, None)
    assert who == ORACLE_RATER and ratings[0]["kind"] == "oracle" and "NOT human ratings" in capsys.readouterr().out

    monkeypatch.setattr(avlib.notebook, "is_headless", lambda: False)
    buttons = rater(pairs, ratings_path(None), "tester").children[2].children
    assert all(button.layout.width == "auto" for button in buttons)  # "right fits the sound better", uncut
    buttons[1].click()
    ratings, who = ratings_or_oracle(pairs, None)
    assert who == "1 rater(s): tester" and [(r["choice"], r["kind"]) for r in ratings] == [("right", "human")]


def test_the_oracle_prefers_the_video_nearer_the_truth_and_decodes_each_once(tmp_path, monkeypatch):
    import numpy as np

    import avlib.media
    from avlib.human_eval import make_pairs, oracle_ratings
    from avlib.media import write_video

    shades = {"a": 0.2, "b": 0.5, "c": 0.9}   # distance to the truth (0.45): b < a < c
    for clip in ("clip1", "clip2"):
        for run, shade in shades.items():
            write_video(tmp_path / run / "samples" / f"{clip}.mp4", np.full((4, 16, 16, 3), shade), 4.0)
            write_video(tmp_path / run / "reference" / f"{clip}.mp4", np.full((4, 16, 16, 3), 0.45), 4.0)
    pairs = make_pairs([tmp_path / run for run in shades])
    decoded = []
    read_videos = avlib.media.read_videos
    monkeypatch.setattr(avlib.media, "read_videos", lambda paths: decoded.extend(paths) or read_videos(paths))
    rows = oracle_ratings(pairs)
    assert [row["pair_id"] for row in rows] == [pair.pair_id for pair in pairs]  # every pair, in order
    for row, pair in zip(rows, pairs):
        chosen = pair.left if row["choice"] == "left" else pair.right
        other = pair.right if row["choice"] == "left" else pair.left
        assert abs(shades[chosen.parent.parent.name] - 0.45) < abs(shades[other.parent.parent.name] - 0.45)
    assert len(pairs) == 6 and len(decoded) == len(set(decoded)) == 2 * (3 + 1)  # per clip: 3 videos, 1 truth


def test_runs_live_at_the_checkout_root_whatever_the_working_folder(tmp_path, monkeypatch):
    from avlib.io import runs_dir

    monkeypatch.delenv("AVLIB_RUNS", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")  # where JupyterLab's kernels start
    assert runs_dir() == ROOT / "runs"
    monkeypatch.setenv("AVLIB_RUNS", str(tmp_path))
    assert runs_dir() == tmp_path


def test_default_runs_are_made_once_as_far_as_needed(tmp_path, monkeypatch, capsys):
    """05-08 without a run folder: the missing steps run, announced in one line; then nothing."""
    import avlib.notebook
    from avlib.notebook import prepared_run

    made = []

    def make(stage, config, run_dir):
        made.append(stage)
        (run_dir / stage).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / stage).touch()

    monkeypatch.setenv("AVLIB_RUNS", str(tmp_path))
    monkeypatch.setattr(avlib.notebook, "_make_stage", make)
    assert prepared_run("dog_text", "tiny", "samples/index.csv") == tmp_path / "dog_text_tiny"
    assert made == ["pipeline", "samples/index.csv"]
    assert capsys.readouterr().out == (f"{tmp_path}/dog_text_tiny lacks samples/index.csv: training and sampling "
                                       "the default dog_text run now (tiny profile)\n")
    prepared_run("dog_text", "tiny", "metrics.json")
    assert made[2:] == ["metrics.json"] and "scoring the default" in capsys.readouterr().out
    prepared_run("dog_text", "tiny", "metrics.json")
    assert made[3:] == [] and capsys.readouterr().out == ""


def test_reproduce_kernels_start_without_the_tcp_warning(tmp_path, capfd):
    """ipykernel warns "running over TCP without encryption" on every TCP start; ours use IPC."""
    from avlib.reproduce import NotebookRun, run_notebook

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import avlib; print(avlib.__file__)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    run_notebook(NotebookRun("probe", "probe"), tmp_path / "out", notebook_dir=tmp_path)
    assert "without encryption" not in capfd.readouterr().err
    printed = code_cells(tmp_path / "out" / "notebooks" / "probe.ipynb")[0].outputs[0].text
    assert printed.strip() == str(ROOT / "avlib" / "__init__.py")  # the kernel imports this checkout


def test_nbval_kernels_start_on_local_sockets():
    """notebooks/conftest.py makes the kernels `pytest --nbval notebooks/` starts use IPC."""
    import importlib.util

    import nbval.kernel

    spec = importlib.util.spec_from_file_location("notebooks_conftest", ROOT / "notebooks" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    kernel_manager = nbval.kernel.KernelManager
    try:
        spec.loader.exec_module(conftest)
        kernel = nbval.kernel.RunningKernel("python3")
        try:
            connection = json.loads(Path(kernel.km.connection_file).read_text())
            assert connection["transport"] == "ipc" and connection["ip"].startswith(conftest.SOCKETS)
            assert kernel.kc.execute_interactive("x = 1", timeout=60)["content"]["status"] == "ok"
        finally:
            kernel.stop()
    finally:
        nbval.kernel.KernelManager = kernel_manager
        shutil.rmtree(conftest.SOCKETS, ignore_errors=True)


def test_a_headless_kernel_prints_the_run_folder_on_the_terminal_and_once_in_the_notebook(tmp_path, capfd,
                                                                                         monkeypatch):
    """papermill's user sees the run folder at once on the terminal; the notebook stores it once,
    and no progress bar: the kernel has no live front end."""
    from avlib.reproduce import NotebookRun, run_notebook

    monkeypatch.setenv("AVLIB_HEADLESS", "1")
    source = ("from avlib.notebook import announce\nfrom tqdm.auto import tqdm\n"
              "announce('run folder: runs/dog_tiny')\nfor _ in tqdm(range(3), disable=False): pass")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    run_notebook(NotebookRun("probe", "probe"), tmp_path / "out", notebook_dir=tmp_path)
    assert "run folder: runs/dog_tiny" in capfd.readouterr().err
    outputs = code_cells(tmp_path / "out" / "notebooks" / "probe.ipynb")[0].outputs
    assert [(o.output_type, o.get("name"), o.get("text")) for o in outputs] == [
        ("stream", "stdout", "run folder: runs/dog_tiny\n")]


def test_a_lane_shares_one_kernel_and_each_notebook_starts_afresh(tmp_path):
    """A lane's notebooks run in one kernel (imports once), each from an empty namespace
    with cells counted from 1, in the output folder."""
    import threading

    from avlib.reproduce import NotebookRun, lane_kernel, run_notebook

    sources = {"first": "import os, sys\nleft_over = 1\nprint(os.getpid(), os.getcwd(), 'left_over' in dir())\n"
                        "os.chdir('/')",
               "second": "import os, sys\nprint(os.getpid(), os.getcwd(), 'left_over' in dir())"}
    for name, source in sources.items():
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")
    out = tmp_path / "out"
    out.mkdir()
    with lane_kernel(out) as kernel:
        for name in sources:
            run_notebook(NotebookRun(name, name), out, notebook_dir=tmp_path, kernel=kernel)
    first, second = (code_cells(out / "notebooks" / f"{name}.ipynb")[0] for name in sources)
    pid, cwd, defined = first.outputs[0].text.split()
    assert (cwd, defined) == (str(out), "True")
    assert second.outputs[0].text.split() == [pid, str(out), "False"]  # same kernel, clean namespace, folder
    assert first.execution_count == second.execution_count == 1
    assert not kernel.has_kernel  # shut down with the lane
    assert not [t for t in threading.enumerate() if type(t).__name__ == "HBChannel"]  # every client closed


def test_lanes_run_every_chain_stage_by_stage_and_stop_at_the_first_failure(tmp_path):
    import threading

    from avlib.reproduce import NotebookRun, run_in_lanes

    stages = [[[NotebookRun(name, name)] for name in "abcd"], [[NotebookRun("e", "e")]]]
    seen, lock = [], threading.Lock()

    def record(step, kernel):
        with lock:
            seen.append((step.output, id(kernel), kernel.has_kernel))

    run_in_lanes(stages, 2, tmp_path, record)
    assert sorted(name for name, _, _ in seen[:4]) == list("abcd") and seen[4][0] == "e"  # e after all
    assert len({kernel for _, kernel, _ in seen}) <= 2 and all(alive for _, _, alive in seen)

    def fail_on_b(step, kernel):
        if step.output == "b":
            raise ValueError("b broke")
        record(step, kernel)

    seen.clear()
    with pytest.raises(ValueError, match="b broke"):  # the failure itself, not the stopped lane's
        run_in_lanes(stages, 2, tmp_path, fail_on_b)
    assert "e" not in {name for name, _, _ in seen}


def test_summary_says_what_the_profile_runs_and_the_metric_table_notes_small_n():
    from avlib.notebook import config_summary, metric_rows

    summary = config_summary(train_config("dog"))
    assert "2 s clips (report" in summary and "tiny profile: 1 s clips, 8 frames of 32x32" in summary
    entry = {"value": 1.0, "ci95": [0.5, 1.5], "n": 4}
    metrics = {"metrics": {"fvd": {**entry, "warnings": ["rank-deficient ..."]}, "clipsim": entry},
               "per_class": {"dog": {"av_align": {**entry, "warnings": []}}}}
    notes = [(row["group"], row["metric"], row["note"]) for row in metric_rows(metrics)]
    assert notes == [("all", "fvd", "N below the feature size: biased upward, noisy"), ("all", "clipsim", ""),
                     ("dog", "av_align", "")]


@pytest.mark.slow
def test_05_to_08_run_as_they_come(tmp_path, monkeypatch):
    """No parameters at all: 05-08 make the default dog and dog_text runs they need, in runs/."""
    from avlib.reproduce import NotebookRun, run_notebook

    monkeypatch.setenv("AVLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("AVLIB_HEADLESS", "1")
    for name in ("05_generate", "06_evaluate", "07_results", "08_human_eval"):
        run_notebook(NotebookRun(name, name), tmp_path / "out")
    notebooks = tmp_path / "out" / "notebooks"
    assert "runs/dog_tiny lacks pipeline: training the default dog run" in outputs_text(notebooks / "05_generate.ipynb")
    assert "lacks" not in outputs_text(notebooks / "06_evaluate.ipynb")  # 05 sampled it; 06 scores it
    assert "dog_text_tiny lacks metrics.json: training and sampling and scoring" in outputs_text(
        notebooks / "07_results.ipynb")
    human = outputs_text(notebooks / "08_human_eval.ipynb")
    assert "pairs from 2 runs" in human and "NOT human ratings" in human and "lacks" not in human
    assert (tmp_path / "runs" / "dog_tiny" / "metrics.json").is_file()
