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
    assert curve["window"] == 1 and list(curve["loss"]) == losses and list(curve["step"]) == list(range(1, 13))
    run.write_losses([{"step": i + 1, "epoch": 0, "loss": float(i % 4), "mse": 0, "regulariser": 0} for i in range(40)])
    curve = loss_curve(tmp_path)
    assert curve["window"] == 4 and list(curve["mean_step"]) == list(range(4, 41))
    np.testing.assert_allclose(curve["mean"], 1.5)  # every 4 consecutive of 0,1,2,3,0,... average 1.5


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
