"""`accelerate launch --num_processes 2 -m avlib train` on the CPU: shards, one writer, resume.

The same command with N GPUs: ``accelerate launch --multi_gpu --num_processes N -m avlib train ...``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avlib.config import load_config
from avlib.data.splits import load_split

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["--set", "train.batch_size=1", "--set", "train.epochs=1", "--set", "train.max_steps=null",
            "--set", "train.checkpoint_every=1", "--set", "data.synth_clips_per_class=4",
            "--set", "data.synth_test_clips=1"]


def launch(cwd: Path, cache: Path, *args: str) -> str:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "avlib", "train", *args]
    env = {**os.environ, "AVLIB_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow  # two processes, each loading the toy world, twice: about 90 s on 2 cores
def test_two_processes_train_their_shards_and_only_the_main_one_writes(tmp_path, monkeypatch):
    cache = tmp_path / "cache"  # empty: the features each process encodes show its shard
    out = launch(tmp_path, cache, "--experiment", "dog", "--out", "run", *SETTINGS)
    assert out.count("trained dog (tiny) for") == 2  # one line per process
    monkeypatch.setenv("AVLIB_CACHE", str(cache))
    clips = len(load_split(load_config("dog", "tiny", SETTINGS[1::2]), "train"))
    per_process = -(-clips // 2)
    run = tmp_path / "run"
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == per_process < clips
    assert summary["cache_misses"] == per_process  # the main process encoded its half only
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"step_{s:07d}" for s in range(1, per_process + 1)]
    assert len((run / "losses.csv").read_text().splitlines()) == 1 + per_process
    assert (run / "pipeline" / "model_index.json").is_file()  # the saved pipeline: diffusers' layout (#17)
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]

    launch(tmp_path, cache, "--resume", "run", "--set", "train.epochs=2")
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 2 * per_process
    assert (run / "checkpoints" / f"step_{2 * per_process:07d}").is_dir()
    assert len((run / "losses.csv").read_text().splitlines()) == 1 + 2 * per_process
