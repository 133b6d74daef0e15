"""What the notebooks compute before they draw (principal components, the loss curve), and how their kernels exit."""
import subprocess
import sys

import numpy as np
import pytest

from avlib.notebook import loss_curve, principal_components
from avlib.run import Run


def test_principal_components_are_the_covariances_top_eigenvectors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 7.0   # (N, D), offset
    points = principal_components({"enc": x})["enc"]
    assert points.shape == (30, 2)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x, rowvar=False))
    top = eigenvectors[:, ::-1][:, :2]                                                  # (D, 2)
    np.testing.assert_allclose(np.abs(points), np.abs((x - x.mean(0)) @ top), atol=1e-10)
    np.testing.assert_allclose(points.var(0, ddof=1), eigenvalues[::-1][:2], rtol=1e-10)
    loadings = np.linalg.lstsq(x - x.mean(0), points, rcond=None)[0]                   # (D, 2)
    assert all(column[np.abs(column).argmax()] > 0 for column in loadings.T)           # sign fixed


def test_the_loss_curve_is_the_losses_and_their_running_mean(tmp_path):
    run = Run(tmp_path)
    losses = [4.0, 2.0, 6.0, 0.0, 1.0, 3.0, 5.0, 2.0, 2.0, 4.0, 8.0, 0.0]
    run.write_losses([{"step": i + 1, "epoch": 0, "loss": v, "mse": v, "regulariser": 0.0} for i, v in enumerate(losses)])
    curve = loss_curve(tmp_path)
    assert curve["window"] == 2 and list(curve["loss"]) == losses and list(curve["step"]) == list(range(1, 13))
    np.testing.assert_allclose(curve["mean"][:3], [3.0, 4.0, 3.0])  # (4+2)/2, (2+6)/2, (6+0)/2
    run.write_losses([{"step": i + 1, "epoch": 0, "loss": float(i % 4), "mse": 0, "regulariser": 0} for i in range(40)])
    curve = loss_curve(tmp_path)
    assert curve["window"] == 8 and list(curve["mean_step"]) == list(range(8, 41))
    np.testing.assert_allclose(curve["mean"], 1.5)  # every 8 consecutive of 0,1,2,3,0,... average 1.5


@pytest.mark.parametrize("entry,skips", [("import avlib.notebook", True),
                                         ("from avlib.cli import main; main(['--version'])", True),
                                         ("import avlib.media", False)])
def test_kernels_and_the_cli_skip_the_final_garbage_collection(entry, skips):
    """A notebook kernel or CLI process leaves what is alive at exit out of the last collection
    (its shutdown: seconds of walking torch's objects); importing the library alone does not."""
    script = f"""
{entry}
class Cycle:
    def __del__(self):
        print("collected at exit", flush=True)
a, b = Cycle(), Cycle()
a.other, b.other = b, a   # a reference cycle: only the garbage collector frees it
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert ("collected at exit" in result.stdout) is not skips


def test_a_notebook_rerun_reuses_its_own_default_run_and_never_numbers_a_second(tmp_path, monkeypatch, capsys):
    """The run-folder rule: 00 and 04 train into runs/{name}_{profile}; run again, they reuse the
    finished run of the same settings (and say so); other settings there are refused."""
    import avlib.train
    from avlib.errors import ConfigError
    from avlib.notebook import own_run_dir, train_config, train_or_reuse

    monkeypatch.setenv("AVLIB_RUNS", str(tmp_path))
    trained = []

    def fake_train(config, clips, run_dir, **kwargs):  # what avlib.train.train leaves in a run folder
        trained.append(run_dir)
        run = Run(run_dir)
        run.write_config(config, seed=0)
        run.pipeline_dir.mkdir()
        run.write_summary(config, seed=0, steps=20, final_loss=0.123456)
        return {"steps": 20, "final_loss": 0.123456}

    monkeypatch.setattr(avlib.train, "train", fake_train)
    monkeypatch.setattr("avlib.data.splits.training_clips", lambda config: [])
    config = train_config("dog")
    run_dir = own_run_dir(config)
    assert run_dir == tmp_path / "dog_tiny" and own_run_dir(config, name="quickstart") == tmp_path / "quickstart_tiny"
    assert train_or_reuse(config, run_dir)["steps"] == 20 and len(trained) == 1
    capsys.readouterr()
    assert train_or_reuse(train_config("dog"), own_run_dir(train_config("dog")))["final_loss"] == 0.123456
    printed = capsys.readouterr().out
    assert len(trained) == 1 and "already holds this run" in printed and "reusing it" in printed
    assert "20 training steps, final loss 0.123" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dog_tiny"]  # no dog_tiny_2
    with pytest.raises(ConfigError, match="already holds a run of other settings"):
        train_or_reuse(train_config("dog", epochs=3), run_dir)


@pytest.mark.parametrize("env, quiet", [({"AVLIB_HEADLESS": "1", "JPY_SESSION_NAME": "x.ipynb"}, True),
                                       ({}, True),                                      # papermill, nbval
                                       ({"JPY_SESSION_NAME": "05_generate.ipynb"}, False)])  # JupyterLab
def test_progress_bars_only_in_a_live_frontend(monkeypatch, env, quiet):
    """In a kernel no Jupyter server started (or a headless one), every tqdm bar is off, even one
    asked for with disable=False (avlib's progress=True), text or widget; elsewhere untouched."""
    import IPython
    import tqdm.notebook
    import tqdm.std

    from avlib.progress import quiet_progress_bars

    class ZMQInteractiveShell:  # the kernel's shell, by name
        pass

    for key in ("AVLIB_HEADLESS", "JPY_SESSION_NAME"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for cls in (tqdm.std.tqdm, tqdm.notebook.tqdm):  # restored after the test
        monkeypatch.setattr(cls, "__init__", cls.__init__)
        monkeypatch.setattr(cls, "_avlib_quiet", False, raising=False)
    monkeypatch.setattr(IPython, "get_ipython", lambda: ZMQInteractiveShell())
    quiet_progress_bars()
    for cls in (tqdm.std.tqdm, tqdm.notebook.tqdm):
        bar = cls(range(3), disable=False)
        assert bar.disable is quiet and list(bar) == [0, 1, 2]


def test_tables_write_every_number_in_one_format():
    from avlib.notebook import markdown_table

    table = markdown_table([{"agreement": 0.7, "ci95": [0.55, 0.8251], "fvd": 127.64, "n": 40},
                            {"agreement": 0.3846, "ci95": [0.1923, 0.5769], "fvd": 3105.0, "n": 26}]).data
    assert table.splitlines()[2:] == ["| 0.700 | [0.550, 0.825] | 127.6 | 40 |",
                                      "| 0.385 | [0.192, 0.577] | 3105.0 | 26 |"]
