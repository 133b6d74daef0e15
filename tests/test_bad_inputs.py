"""Bad input, as a demanding user gives it: every case exits with status 2 and one line on
stderr naming the problem, no traceback, and leaves no file behind (not even a hidden
temporary one). Plus the faults around the edges: a full disk, a checkpoint cut short
before --resume, a temporary file orphaned by SIGKILL, papermill parameters."""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

from avlib.cache import CacheWarning
from avlib.cli import main
from avlib.metrics import MetricWarning
from avlib.config import load_config
from avlib.data.curate import dataset_status
from avlib.errors import ConfigError
from avlib.figures import save_figure
from avlib.generate import read_conditioning_audio
from avlib.human_eval import rater, ratings_path
from avlib.live import live_view
from avlib.notebook import (notebook_run, notebook_runs, own_run_dir, shipped_manifests, synthetic_examples, table2_files,
                            train_config)
from avlib.pipeline.audio_to_video import AudioToVideoPipeline
from avlib.toyworld.evaluate import evaluate_toyworld, load_evaluation
from avlib.toyworld.long_video import long_clip, long_thunder_record, train_thunder_mapper
from avlib.io import run_record

ROOT = Path(__file__).resolve().parents[1]


class Evil:
    """A pickle that would run a shell command if anything unpickled it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _wav(path: Path, seconds: float) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), 16000, subtype="PCM_16")
    return path


def _run_dir(path: Path, config_text: str | None = None) -> Path:
    """A run folder holding only a config.json (good unless ``config_text`` says otherwise)."""
    path.mkdir()
    record = run_record(load_config("dog", "tiny"), seed=64)
    (path / "config.json").write_text(config_text if config_text is not None else json.dumps(record))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> SimpleNamespace:
    """Every bad (and the few good) input files the cases point at, built once."""
    from avlib.media import write_video

    d = tmp_path_factory.mktemp("inputs")
    good = _wav(d / "tone.wav", 2.0)
    cut_wav = d / "cut.wav"
    cut_wav.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    torch.save({"state_dict": {"x": Evil()}}, d / "evil.pt")
    torch.save({"state_dict": {"x": torch.zeros(4096)}}, d / "cut.pt")
    (d / "cut.pt").write_bytes((d / "cut.pt").read_bytes()[:400])
    (d / "text.pt").write_text("these are not weights\n")
    np.save(d / "nan.npy", np.full((2, 9216), np.nan, dtype=np.float32))
    np.save(d / "features.npy", np.zeros((2, 9216), dtype=np.float32))
    (d / "bad.npy").write_text("not numpy")
    write_video(d / "silent.mp4", np.zeros((4, 16, 16, 3), np.uint8), 4.0)  # no audio track
    (d / "manifest.csv").write_bytes(bytes(range(256)) * 4)                   # binary "manifest"
    (d / "empty_dir").mkdir()
    (d / "no_config").mkdir()
    _run_dir(d / "run")
    _run_dir(d / "run_cut", json.dumps(run_record(load_config("dog", "tiny")))[:120])
    _run_dir(d / "run_foreign", json.dumps({"hello": "world"}))
    metrics_cut = _run_dir(d / "metrics_cut")
    (metrics_cut / "metrics.json").write_text('{"experiment": "dog", "metr')
    metrics_foreign = _run_dir(d / "metrics_foreign")
    (metrics_foreign / "metrics.json").write_text(json.dumps({"fvd": 1.0}))
    # A diffusers folder whose UNet weights are a malicious pickle.
    from avlib.toyworld import T2V_SUBDIR, WEIGHTS_DIR
    import shutil

    evil_t2v = d / "evil_t2v"
    shutil.copytree(WEIGHTS_DIR / T2V_SUBDIR, evil_t2v)
    for weights in (evil_t2v / "unet").glob("*.safetensors"):
        weights.unlink()
    torch.save({"x": Evil()}, evil_t2v / "unet" / "diffusion_pytorch_model.bin")
    (d / "half_t2v" / "unet").mkdir(parents=True)
    # A transformers CLIP folder whose weights are a malicious pickle.
    from avlib.metrics.clipsim import ClipScorer

    with open(d / "plain_evil.pt", "wb") as handle:  # a plain pickle (not torch's zip) holding code
        pickle.dump({"x": Evil()}, handle)
    np.save(d / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    escape = _run_dir(d / "run_escape")
    (escape / "samples").mkdir()
    (escape / "samples" / "index.csv").write_text("clip_id,label,prompt\n../../../etc/passwd,dog,\n")
    binary_index = _run_dir(d / "run_binary_index")
    (binary_index / "samples").mkdir()
    (binary_index / "samples" / "index.csv").write_bytes(bytes(range(128, 256)) * 4)
    write_video(d / "short_source.mp4", np.zeros((8, 16, 16, 3), np.uint8), 8.0,
                audio=np.zeros(16000, np.float32))   # 1 s: every dog clip lies beyond its end
    soundfile.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    evil_clip = d / "evil_clip"
    ClipScorer.tiny().model.config.save_pretrained(evil_clip)
    torch.save({"x": Evil()}, evil_clip / "pytorch_model.bin")
    plain_t2v, plain_clip = d / "plain_t2v", d / "plain_clip"  # the same, as plain pickles
    shutil.copytree(evil_t2v, plain_t2v)
    shutil.copytree(evil_clip, plain_clip)
    for weights in (plain_t2v / "unet" / "diffusion_pytorch_model.bin", plain_clip / "pytorch_model.bin"):
        weights.write_bytes(pickle.dumps({"x": Evil()}))
    return SimpleNamespace(
        dir=d, good=good, short=_wav(d / "short.wav", 0.05), cut_wav=cut_wav, evil=d / "evil.pt",
        cut_pt=d / "cut.pt", text_pt=d / "text.pt", nan=d / "nan.npy", features=d / "features.npy", bad_npy=d / "bad.npy",
        silent=d / "silent.mp4", manifest=d / "manifest.csv", empty_dir=d / "empty_dir",
        no_config=d / "no_config", run=d / "run", run_cut=d / "run_cut", run_foreign=d / "run_foreign",
        metrics_cut=metrics_cut, metrics_foreign=metrics_foreign, evil_t2v=evil_t2v,
        half_t2v=d / "half_t2v", evil_clip=evil_clip, dog_manifest=ROOT / "data_manifests" / "dog.csv",
        plain_evil=d / "plain_evil.pt", objects=d / "objects.npy", run_escape=escape,
        run_binary_index=binary_index, plain_t2v=plain_t2v, plain_clip=plain_clip, short_source=d / "short_source.mp4", silent_wav=d / "silent.wav")


# (id, argv with {name} filled from `inputs` and {out} the empty output folder, expected text)
CASES = [
    # generate
    ("generate-steps-0", "generate --prompt dog --steps 0 -o {out}/o.mp4", "--steps: must be a whole number >= 1"),
    ("generate-steps-negative", "generate --prompt dog --steps -1 -o {out}/o.mp4", "--steps: must be a whole number >= 1"),
    ("generate-steps-text", "generate --prompt dog --steps many -o {out}/o.mp4", "'many' is not a whole number"),
    ("generate-frames-0", "generate --prompt dog --frames 0 -o {out}/o.mp4", "--frames: must be a whole number >= 1"),
    ("generate-frames-negative", "generate --prompt dog --frames -3 -o {out}/o.mp4", "--frames: must be"),
    ("generate-fps-0", "generate --prompt dog --fps 0 -o {out}/o.mp4", "--fps: must be a number > 0"),
    ("generate-fps-inf", "generate --prompt dog --fps inf -o {out}/o.mp4", "'inf' is not a finite number"),
    ("generate-guidance-nan", "generate --prompt dog --guidance nan -o {out}/o.mp4", "'nan' is not a finite number"),
    ("generate-guidance-negative", "generate --prompt dog --guidance -2 -o {out}/o.mp4", "--guidance: must be a number >= 0"),
    ("generate-height-30", "generate --prompt dog --height 30 -o {out}/o.mp4", "--height 30 is not a multiple of 4"),
    ("generate-width-0", "generate --prompt dog --width 0 -o {out}/o.mp4", "--width: must be a whole number >= 1"),
    ("generate-seed-negative", "generate --prompt dog --seed -1 -o {out}/o.mp4", "--seed: must be a whole number >= 0"),
    ("generate-device-unknown", "generate --prompt dog --device banana -o {out}/o.mp4", "--device 'banana' is not a device"),
    ("generate-output-avi", "generate --prompt dog -o {out}/o.avi", "must end in .mp4"),
    ("generate-output-is-folder", "generate --prompt dog -o {empty_dir}", "is a folder"),
    ("generate-output-under-file", "generate --prompt dog -o {good}/o.mp4", "is a file, not a folder"),
    ("generate-audio-missing", "generate --prompt dog --audio {dir}/nope.wav -o {out}/o.mp4", "audio file not found"),
    ("generate-audio-not-audio", "generate --prompt dog --audio {text_pt} -o {out}/o.mp4", "cannot read audio"),
    ("generate-audio-too-short", "generate --prompt dog --audio {short} -o {out}/o.mp4", "give at least 0.1 s"),
    ("generate-audio-truncated-wav", "generate --prompt dog --audio {cut_wav} -o {out}/o.mp4", "is truncated: its header promises"),
    ("generate-audio-no-track", "generate --prompt dog --audio {silent} -o {out}/o.mp4", "has no audio track"),
    ("generate-mapper-not-a-run", "generate --audio {good} --mapper {no_config} -o {out}/o.mp4", "is not a training run"),
    ("generate-mapper-truncated-config", "generate --audio {good} --mapper {run_cut} -o {out}/o.mp4", "is not valid JSON"),
    ("generate-mapper-foreign-config", "generate --audio {good} --mapper {run_foreign} -o {out}/o.mp4", "holds no experiment config"),
    ("generate-pretrained-incomplete", "generate --prompt dog --pretrained {half_t2v} -o {out}/o.mp4", "missing vae, text_encoder"),
    ("generate-pretrained-pickle", "generate --prompt dog --pretrained {evil_t2v} -o {out}/o.mp4",
     "unet/diffusion_pytorch_model.bin holds the Python object posix.system, which avlib never unpickles"),
    # train
    ("train-checkpoint-every-0", "train --set train.checkpoint_every=0 --out {out}/run", "train.checkpoint_every=0 must be >= 1"),
    ("train-num-frames-0", "train --set data.num_frames=0 --out {out}/run", "data.num_frames=0 must be >= 1"),
    ("train-max-steps-negative", "train --set train.max_steps=-5 --out {out}/run", "train.max_steps=-5 must be >= 0"),
    ("train-lr-nan", "train --set train.lr=.nan --out {out}/run", "train.lr=nan is not a finite number"),
    ("train-lr-0", "train --set train.lr=0 --out {out}/run", "train.lr=0.0 must be a positive number"),
    ("train-fps-0", "train --set data.fps=0 --out {out}/run", "data.fps=0.0 must be > 0"),
    ("train-unknown-experiment", "train --experiment unicorn --out {out}/run", "unknown experiment 'unicorn'"),
    ("train-height-not-vae-multiple", "train --set data.height=30 --out {out}/run", "data.height=30 is not a multiple of 8"),
    ("train-frame-counts-differ", "train --set mapper.num_frames=6 --out {out}/run", "frame counts differ"),
    ("train-window-mismatch", "train --set inference.fps=4 --out {out}/run", "8 frames at 4 fps span 2 s"),
    ("sample-window-mismatch", "sample --run {run} --set inference.fps=4", "8 frames at 4 fps span 2 s"),
    ("train-unknown-key", "train --set train.speed=9 --out {out}/run", "unknown config key 'train.speed'"),
    ("train-override-not-key-value", "train --set train.lr --out {out}/run", "is not KEY=VALUE"),
    ("train-device-unknown", "train --set model.device=banana --out {out}/run", "model.device 'banana' is not a device"),
    ("train-resume-not-a-run", "train --resume {no_config}", "is not a training run"),
    ("train-resume-truncated-config", "train --resume {run_cut}", "is not valid JSON"),
    ("train-resume-changes-lr", "train --resume {run} --set train.lr=0.5",
     "asked: 0.5): the saved weights and optimizer keep the run's values"),
    # sample
    ("sample-not-a-run", "sample --run {no_config}", "is not a training run"),
    ("sample-truncated-config", "sample --run {run_cut}", "is not valid JSON"),
    ("sample-limit-0", "sample --run {run} --limit 0", "--limit: must be a whole number >= 1"),
    ("sample-seed-negative", "sample --run {run} --seed -2", "--seed: must be a whole number >= 0"),
    # evaluate, report
    ("evaluate-not-a-run", "evaluate --run {no_config}", "no config.json"),
    ("evaluate-never-sampled", "evaluate --run {run}", "has no samples/index.csv"),
    ("evaluate-truncated-config", "evaluate --run {run_cut}", "is not valid JSON"),
    ("evaluate-fvd-frames-0", "evaluate --run {run} --fvd-frames 0", "--fvd-frames: must be"),
    ("evaluate-workers-0", "evaluate --run {run} --workers 0", "--workers: must be"),
    ("report-not-evaluated", "report --runs {run} -o {out}/t.md", "no metrics.json"),
    ("report-truncated-metrics", "report --runs {metrics_cut} -o {out}/t.md", "is not valid JSON"),
    ("report-foreign-metrics", "report --runs {metrics_foreign} -o {out}/t.md", "is not a metrics.json written by"),
    ("report-output-is-folder", "report --runs {run} -o {empty_dir}", "is a folder"),
    # metrics
    ("av-align-missing-video", "metrics av-align {dir}/nope.mp4 --json {out}/a.json", "video file or folder not found"),
    ("av-align-workers-0", "metrics av-align {silent} --workers 0 --json {out}/a.json", "--workers: must be"),
    ("fvd-frames-0", "metrics fvd --real {dir} --fake {dir} --frames 0 --json {out}/f.json", "--frames: must be"),
    ("fvd-no-i3d", "metrics fvd --real {dir} --fake {dir} --json {out}/f.json", "FVD needs the Kinetics-400 I3D"),
    ("fvd-i3d-pickle", "metrics fvd --real {dir} --fake {dir} --i3d {evil} --json {out}/f.json",
     "holds the Python object posix.system, which avlib never unpickles"),
    ("fvd-i3d-truncated", "metrics fvd --real {dir} --fake {dir} --i3d {cut_pt} --json {out}/f.json", "is truncated or damaged"),
    ("fvd-i3d-not-weights", "metrics fvd --real {dir} --fake {dir} --i3d {text_pt} --json {out}/f.json",
     "is not a PyTorch checkpoint"),
    ("fvd-json-is-folder", "metrics fvd --real {dir} --fake {dir} --i3d tiny --json {empty_dir}", "is a folder"),
    ("clipsim-model-empty-folder", "metrics clipsim --videos {dir} --text dog --model {empty_dir} --json {out}/c.json",
     "cannot load CLIP model"),
    ("clipsim-model-pickle", "metrics clipsim --videos {dir} --text dog --model {evil_clip} --json {out}/c.json",
     "holds the Python object posix.system, which avlib never unpickles"),
    ("clipsim-no-videos", "metrics clipsim --videos {empty_dir} --text dog --model tiny --json {out}/c.json", "no .mp4 files"),
    # embed
    ("embed-output-suffix", "embed {good} --encoder cavp --frontend-only -o {out}/e.txt", "must end in .npy"),
    ("embed-output-is-folder", "embed {good} --encoder cavp --frontend-only -o {empty_dir}", "is a folder"),
    ("embed-audio-missing", "embed {dir}/nope.wav --encoder cavp --frontend-only -o {out}/e.npy", "audio file not found"),
    ("embed-audio-too-short", "embed {short} --encoder cavp --frontend-only -o {out}/e.npy", "give at least 0.1 s"),
    ("embed-audio-truncated-wav", "embed {cut_wav} --encoder cavp --frontend-only -o {out}/e.npy", "is truncated"),
    ("embed-checkpoint-pickle", "embed {good} --encoder cavp --checkpoint {evil} -o {out}/e.npy",
     "holds the Python object posix.system, which avlib never unpickles"),
    ("embed-checkpoint-truncated", "embed {good} --encoder beats --checkpoint {cut_pt} -o {out}/e.npy", "is truncated or damaged"),
    ("embed-checkpoint-not-weights", "embed {good} --encoder cavp --checkpoint {text_pt} -o {out}/e.npy",
     "is not a PyTorch checkpoint"),
    ("embed-layers-with-cavp", "embed {good} --encoder cavp --layers all --frontend-only -o {out}/e.npy", "--layers applies to"),
    ("embed-no-checkpoint", "embed {good} --encoder cavp -o {out}/e.npy", "--checkpoint is required"),
    # tokens
    ("tokens-nan-features", "tokens {nan} --checkpoint {evil} -o {out}/t.npz", "holds NaN, infinite"),
    ("tokens-bad-npy", "tokens {bad_npy} --checkpoint {evil} -o {out}/t.npz", "cannot read"),
    ("tokens-features-missing", "tokens {dir}/nope.npy --checkpoint {evil} -o {out}/t.npz", "features file not found"),
    ("tokens-checkpoint-pickle", "tokens {features} --checkpoint {evil} -o {out}/t.npz",
     "holds the Python object posix.system, which avlib never unpickles"),
    ("tokens-output-is-folder", "tokens {nan} --checkpoint {evil} -o {empty_dir}", "is a folder"),
    ("tokens-output-suffix", "tokens {nan} --checkpoint {evil} -o {out}/t.npy", "must end in .npz"),
    # data
    ("data-status-binary-manifest", "data status --manifest {manifest} --root {dir}", "not an avlib manifest"),
    ("data-status-missing-manifest", "data status --manifest {dir}/nope.csv --root {dir}", "manifest not found"),
    ("data-status-json-is-folder", "data status --manifest {manifest} --root {dir} --json {empty_dir}", "is a folder"),
    ("data-synth-clips-0", "data synth --out {out}/s --clips-per-class 0", "--clips-per-class: must be"),
    ("data-synth-fps-0", "data synth --out {out}/s --clips-per-class 1 --fps 0", "--fps: must be a number > 0"),
    ("data-synth-seconds-negative", "data synth --out {out}/s --clips-per-class 1 --seconds -1", "--seconds: must be"),
    ("data-vggsound-missing-index", "data vggsound --index {dir}/nope.csv --out {out}/m.csv", "not found"),
    ("data-vggsound-binary-index", "data vggsound --index {manifest} --out {out}/m.csv", "is binary, not the VGGSound index"),
    ("data-status-missing-root", "data status --manifest {dog_manifest} --root {dir}/nope", "does not exist"),
    ("data-status-root-is-file", "data status --manifest {dog_manifest} --root {good}", "is a file"),
    ("data-synth-shift-beyond-clip", "data synth --out {out}/s --clips-per-class 1 --shift-s 100",
     "moves every sound out of its 2.0 s clip"),
    # seeds, counts and texts bounded before any work
    ("generate-seed-beyond-64-bits", "generate --prompt dog --seed 99999999999999999999999 -o {out}/o.mp4",
     "--seed: must be a whole number >= 0 and below 2**63"),
    ("generate-nothing-to-generate-from", "generate -o {out}/o.mp4", "nothing to generate from"),
    ("generate-blank-prompt-no-audio", "generate --prompt {space} -o {out}/o.mp4", "nothing to generate from"),
    ("clipsim-blank-text", "metrics clipsim --videos {dir} --text {space} --model tiny --json {out}/c.json",
     "--text: must not be empty or only spaces"),
    ("reproduce-limit-0", "reproduce --limit 0 --out {out}/r", "--limit: must be a whole number >= 1"),
    ("reproduce-jobs-0", "reproduce --jobs 0 --out {out}/r", "--jobs: must be a whole number >= 1"),
    ("toyworld-build-vae-steps-negative", "toyworld build --vae-steps -1 --out {out}/w", "--vae-steps: must be"),
    ("toyworld-build-threads-0", "toyworld build --threads 0 --out {out}/w", "--threads: must be a whole number >= 1"),
    ("toyworld-evaluate-test-per-class-0", "toyworld evaluate --test-per-class 0 --out {out}/e",
     "--test-per-class: must be a whole number >= 1"),
    ("toyworld-metrics-clip-steps-0", "toyworld metrics --clip-steps 0 --out {out}/m", "--clip-steps: must be"),
    ("toyworld-metrics-lr-negative", "toyworld metrics --lr -0.1 --out {out}/m", "--lr: must be a number > 0"),
    # overrides
    ("train-set-broken-yaml", "train --set data.classes=[dog --out {out}/run", "is not valid YAML"),
    ("train-set-section", "train --set train=5 --out {out}/run", "'train' is a section, not a value"),
    ("train-resume-with-experiment", "train --resume {run} --experiment thunder", "drop --experiment"),
    ("train-out-is-a-file", "train --out {good}", "tone.wav is a file; give a folder"),
    ("data-synth-out-is-a-file", "data synth --out {good} --clips-per-class 1", "tone.wav is a file, not a folder"),
    ("data-curate-out-under-a-file", "data curate --manifest {dog_manifest} --source {short_source} --out {good}/clips",
     "tone.wav is a file, not a folder"),
    ("toyworld-build-out-is-a-file", "toyworld build --out {good}", "tone.wav is a file, not a folder"),
    ("toyworld-metrics-out-is-a-file", "toyworld metrics --out {good}", "tone.wav is a file, not a folder"),
    ("toyworld-evaluate-out-is-a-file", "toyworld evaluate --out {good}", "tone.wav is a file, not a folder"),
    ("reproduce-out-is-a-file", "reproduce --out {good}", "tone.wav is a file, not a folder"),
    ("reproduce-figures-is-a-file", "reproduce --figures {good} --out {out}/r", "tone.wav is a file, not a folder"),
    # files that hold code or are not what they claim
    ("fvd-i3d-plain-pickle", "metrics fvd --real {dir} --fake {dir} --i3d {plain_evil} --json {out}/f.json",
     "holds the Python object posix.system, which avlib never unpickles"),
    ("embed-checkpoint-plain-pickle", "embed {good} --encoder cavp --checkpoint {plain_evil} -o {out}/e.npy",
     "holds the Python object posix.system, which avlib never unpickles"),
    ("embed-beats-plain-pickle", "embed {good} --encoder beats --checkpoint {plain_evil} -o {out}/e.npy",
     "holds the Python object posix.system, which avlib never unpickles"),
    ("tokens-checkpoint-plain-pickle", "tokens {features} --checkpoint {plain_evil} -o {out}/t.npz",
     "holds the Python object posix.system, which avlib never unpickles"),
    ("generate-pretrained-plain-pickle", "generate --prompt dog --pretrained {plain_t2v} -o {out}/o.mp4",
     "unet/diffusion_pytorch_model.bin holds the Python object posix.system, which avlib never unpickles"),
    ("clipsim-model-plain-pickle", "metrics clipsim --videos {dir} --text dog --model {plain_clip} --json {out}/c.json",
     "pytorch_model.bin holds the Python object posix.system, which avlib never unpickles"),
    ("tokens-npy-of-objects", "tokens {objects} --checkpoint {evil} -o {out}/t.npz",
     "holds pickled Python objects, which avlib never unpickles"),
    ("evaluate-clip-id-leaves-the-run", "evaluate --run {run_escape}", "which is not a file name inside the run"),
    ("evaluate-binary-index", "evaluate --run {run_binary_index}", "is binary, not a CSV"),
    ("sample-set-training-setting", "sample --run {run} --set train.lr=5", "--set train.lr: sampling cannot change"),
]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(argv, expected, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written relative to the working folder shows up here
    out = tmp_path / "out"
    out.mkdir()
    before = _files(inputs.dir)
    args = [part.format(out=out, space=" ", **vars(inputs)) for part in argv.split()]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1, err
    assert expected in lines[0] and "Traceback" not in err
    assert "weights_only" not in err  # torch's advice to unpickle anything is never passed on
    assert "allow_pickle" not in err and "Warning" not in err  # nor numpy's, nor torch's remarks
    assert _files(out) == set() and _files(inputs.dir) == before  # nothing written, nothing hidden
    assert not (tmp_path / "PWNED").exists() and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_enough_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_device_without_a_gpu_is_refused(inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["generate", "--prompt", "dog", "--device", "cuda", "-o", str(tmp_path / "o.mp4")]) == 2
    assert "--device cuda: no CUDA GPU is visible" in capsys.readouterr().err
    assert main(["train", "--profile", "paper", "--out", str(tmp_path / "run")]) == 2
    assert "model.device cuda: no CUDA GPU is visible" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error, fix", [
    (OSError(errno.ENOSPC, "No space left on device"), "free some disk space"),
    (PermissionError(errno.EACCES, "Permission denied"), "choose a folder you can write to"),
    (OSError(errno.EROFS, "Read-only file system"), "writable file system"),
])
def test_write_failures_are_one_line_and_leave_nothing(error, fix, inputs, tmp_path, capsys, monkeypatch):
    def failing_save(handle, array):
        handle.write(b"half")  # some bytes reach the temporary file, then the disk gives out
        raise error
    monkeypatch.setattr(np, "save", failing_save)
    out = tmp_path / "e.npy"
    assert main(["embed", str(inputs.good), "--encoder", "cavp", "--frontend-only", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fix in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, expected", [
    ("generate --prompt dog --steps 0 -o {out}/o.mp4", "--steps: must be a whole number >= 1"),
    ("embed {good} --encoder cavp --checkpoint {evil} -o {out}/e.npy", "posix.system, which avlib never unpickles"),
    ("train --set train.checkpoint_every=0 --out {out}/run", "train.checkpoint_every=0 must be >= 1"),
])
def test_the_process_exit_path(argv, expected, inputs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = [part.format(out=out, **vars(inputs)) for part in argv.split()]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "avlib", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and expected in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == [] and not (tmp_path / "PWNED").exists()


def test_a_temporary_file_orphaned_by_sigkill_is_removed_by_the_next_write(tmp_path):
    from avlib.io import atomic_path

    target = tmp_path / "o.mp4"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    orphan = tmp_path / f".o.mp4.tmp{dead}.k3j2x9.mp4"   # what a killed writer left
    live = tmp_path / f".o.mp4.tmp{os.getpid()}.a1b2c3.mp4"  # a writer still running
    orphan.write_bytes(b"")
    live.write_bytes(b"")
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(f".o.mp4.tmp{os.getpid()}.")
        tmp.write_bytes(b"video")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "o.mp4"])


@pytest.mark.parametrize("parameters, message", [
    ({"cls": "unicorn"}, "ConfigError: cls='unicorn' is not a dataset of the report"),
    ({"epochs": -1}, "ConfigError: epochs=-1 must be a positive whole number"),
])
def test_papermill_shows_the_config_error_first(parameters, message, tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as caught:
        papermill.execute_notebook(str(ROOT / "notebooks" / "04_train.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters=parameters, kernel_name="python3", progress_bar=False,
                                   cwd=str(tmp_path))
    assert caught.value.traceback == [f"ConfigError: {caught.value.evalue}"]  # the line, no frames
    shown = [line for line in str(caught.value).splitlines() if line.strip() and not line.startswith("-")]
    assert shown[0].startswith("Exception encountered at") and shown[1].startswith(message)
    assert len(shown) == 2


def test_resume_skips_a_truncated_latest_checkpoint_and_ends_as_an_uninterrupted_run(tmp_path, caplog):
    from safetensors.torch import load_file
    from test_train import _clips, _config

    from avlib.train import latest_checkpoint, train

    clips = _clips(2)

    def config(steps):
        return _config(**{"train.max_steps": steps, "train.checkpoint_every": 1, "train.batch_size": 1})

    train(config(3), clips, tmp_path / "straight", progress=False)
    run = tmp_path / "run"
    train(config(2), clips, run, progress=False)
    cut = run / "checkpoints" / "step_0000002" / "mapper.safetensors"
    cut.write_bytes(cut.read_bytes()[:-64])                      # the newest save, cut short
    staging = run / "checkpoints" / ".step_0000003.tmp"          # a save killed half-way
    staging.mkdir()
    (staging / "mapper.safetensors").write_bytes(b"")
    with caplog.at_level("WARNING", logger="avlib.train"):
        summary = train(config(3), clips, run, resume=True, progress=False)
    assert "skipping checkpoint" in caplog.text and "step_0000002: mapper.safetensors is truncated" in caplog.text
    assert summary["steps"] == 3 and not staging.exists()
    straight = load_file(latest_checkpoint(tmp_path / "straight") / "mapper.safetensors")
    resumed = load_file(latest_checkpoint(run) / "mapper.safetensors")
    assert latest_checkpoint(run).name == "step_0000003"
    for key in straight:  # resumed from step 1: the same weights as never stopping
        assert torch.equal(straight[key], resumed[key]), key


# -- faults, leftovers and warnings ------------------------------------------------------------

def _error_line(err: str, command: str) -> str:
    """The error, which must start a line of its own (not the end of a progress bar's)."""
    found = re.findall(rf"(?:^|\n)(avlib {command}: error: [^\n]*)", err)
    assert len(found) == 1 and "Traceback" not in err, err
    return found[0]


def test_curate_that_writes_no_clip_fails_and_leaves_no_folder(inputs, tmp_path, capsys):
    out = tmp_path / "clips"
    assert main(["data", "curate", "--manifest", str(inputs.dog_manifest), "--source",
                 str(inputs.short_source), "--out", str(out)]) == 2
    assert "no clip of" in _error_line(capsys.readouterr().err, "data")
    assert not out.exists()


def test_a_full_disk_during_a_checkpoint_leaves_no_temp_folder_and_no_run(tmp_path, capsys, monkeypatch):
    from safetensors import SafetensorError

    import avlib.train

    real_save = avlib.train.save_file

    def full_disk(tensors, path, *args, **kwargs):  # the first file lands, then the disk is full
        if Path(path).name == "optimizer.safetensors":
            Path(path).write_bytes(b"\0" * 10)
            # safetensors reports an OS error only as text, in this form
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                  'message: "No space left on device" })')
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(avlib.train, "save_file", full_disk)
    run = tmp_path / "run"
    assert main(["train", "--set", "train.max_steps=1", "--set", "train.checkpoint_every=1",
                 "--no-cache", "--out", str(run)]) == 2
    line = _error_line(capsys.readouterr().err, "train")
    assert "No space left on device" in line and "step_0000001" in line and "free some disk space" in line
    assert not run.exists()  # no checkpoint was completed: nothing half-made stays


def test_training_on_corrupt_clips_leaves_no_run_and_its_error_on_its_own_line(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "synth", "--out", str(data), "--clips-per-class", "2", "--classes", "dog",
                 "--size", "32", "--fps", "8", "--seconds", "1", "--layout", "canonical"]) == 0
    for clip in [*data.glob("*.mp4"), *data.glob("*.wav")]:
        clip.write_bytes(b"not a clip")
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["train", "--set", f"data.root={data}", "--set", "train.max_steps=1", "--no-cache",
                 "--out", str(run)]) == 2
    assert "cannot decode" in _error_line(capsys.readouterr().err, "train")
    assert not run.exists()


def test_a_full_disk_in_generate_leaves_no_video_without_its_sidecar(tmp_path, capsys, monkeypatch):
    real_write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.suffix == ".json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["generate", "--prompt", "dog", "--steps", "1", "-o", str(out / "o.mp4")]) == 2
    line = _error_line(capsys.readouterr().err, "generate")
    assert f"No space left on device: {out / 'o.json'}" in line and "free some disk space" in line
    assert list(out.iterdir()) == []  # neither the mp4 nor a hidden temporary file


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)


def test_generate_and_sample_remove_what_a_killed_run_left_when_they_start(inputs, tmp_path, capsys):
    dead, live = _dead_pid(), os.getpid()
    out = tmp_path / "out"
    out.mkdir()
    left = [out / f".o.mp4.tmp{dead}.k3j2x9ab.mp4", out / f".o.json.tmp{dead}.a1b2c3d4.json"]
    running = out / f".o.mp4.tmp{live}.zzzzzzzz.mp4"  # a writer still running is never touched
    for path in [*left, running]:
        path.write_bytes(b"")
    assert main(["generate", "-o", str(out / "o.mp4")]) == 2  # refused, but after tidying
    assert sorted(out.iterdir()) == [running]

    run = _run_dir(tmp_path / "run")
    for folder in ("samples", "reference", "shuffled"):
        (run / folder).mkdir()
        for i in range(3):
            (run / folder / f".clip{i}.mp4.tmp{dead}.q1w2e3r4.mp4").write_bytes(b"")
    (run / "samples" / f".clip9.mp4.tmp{live}.q1w2e3r4.mp4").write_bytes(b"")
    assert main(["sample", "--run", str(run), "--limit", "1"]) == 2  # no pipeline: refused after tidying
    hidden = sorted(p.name for p in run.rglob(".*"))
    assert hidden == [f".clip9.mp4.tmp{live}.q1w2e3r4.mp4"]


@pytest.fixture(scope="module")
def fvd_sets(tmp_path_factory):
    from avlib.media import write_video

    root = tmp_path_factory.mktemp("fvd_sets")
    sets = {}
    for name, fps, offset in (("real", 12.0, 0), ("fake", 30.0, 90)):
        (root / name).mkdir()
        for i in range(2):
            frames = np.full((8, 32, 32, 3), 10 + offset + 40 * i, np.uint8)
            write_video(root / name / f"v{i}.mp4", frames, fps)
        sets[name] = root / name
    return sets


def test_a_damaged_fvd_cache_is_recomputed_with_one_warning(fvd_sets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))
    argv = ["metrics", "fvd", "--real", str(fvd_sets["real"]), "--fake", str(fvd_sets["fake"]), "--i3d", "tiny",
            "--frames", "8", "--quiet", "--json", str(tmp_path / "f.json")]
    assert main(argv) == 0
    first = json.loads((tmp_path / "f.json").read_text())["fvd"]
    entries = sorted((tmp_path / "cache").rglob("*.safetensors"))
    assert len(entries) == 4
    entries[0].write_bytes(entries[0].read_bytes()[:-4])   # cut short
    entries[1].write_bytes(pickle.dumps(Evil()))           # replaced by a pickle holding code
    capsys.readouterr()
    with pytest.warns(CacheWarning) as caught:
        assert main(argv) == 0
    warned = [str(w.message) for w in caught if w.category is CacheWarning]
    assert len(warned) == 2 and all(line.startswith("cache entry") and "\n" not in line for line in warned)
    assert all("AVLIB_CACHE" in line and "--no-cache" in line for line in warned)
    err = capsys.readouterr().err
    assert "allow_pickle" not in err and "Traceback" not in err and not Path("PWNED").exists()
    assert json.loads((tmp_path / "f.json").read_text())["fvd"] == first


def test_fvd_of_sets_at_different_frame_rates_warns(fvd_sets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))
    with pytest.warns(MetricWarning) as caught:
        assert main(["metrics", "fvd", "--real", str(fvd_sets["real"]), "--fake", str(fvd_sets["fake"]), "--i3d",
                     "tiny", "--frames", "8", "--quiet", "--no-cache", "--json", str(tmp_path / "f.json")]) == 0
    warned = [str(w.message) for w in caught if "fps" in str(w.message)]
    assert len(warned) == 1 and "real videos play at 12 fps and the generated ones at 30 fps" in warned[0]
    assert any("30 fps" in w for w in json.loads((tmp_path / "f.json").read_text())["warnings"])


def test_silent_conditioning_audio_is_one_warning_line(inputs, tmp_path):
    """In a real process (pytest records warnings instead of showing them): how the CLI shows one."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "avlib", "generate", "--audio", str(inputs.silent_wav), "--mapper",
                           str(inputs.no_config), "-o", str(tmp_path / "o.mp4")], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 2   # warned on reading, then refused for the mapper
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("avlib generate: warning: audio file")
    assert "is silent" in lines[0] and "is not a training run" in lines[1]


def test_papermill_limit_below_one_is_our_line_not_a_widget_error(tmp_path, capsys):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    run = tmp_path / "run"
    assert main(["train", "--set", "train.max_steps=1", "--set", "train.checkpoint_every=1", "--out", str(run)]) == 0
    with pytest.raises(PapermillExecutionError) as caught:
        papermill.execute_notebook(str(ROOT / "notebooks" / "05_generate.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"run_dir": str(run), "limit": -1}, kernel_name="python3",
                                   progress_bar=False, cwd=str(tmp_path))
    assert caught.value.ename == "ConfigError" and "TraitError" not in str(caught.value)
    assert caught.value.traceback == ["ConfigError: limit=-1 must be a whole number >= 1 (or None for every test clip)"]
    assert not (run / "samples").exists()


@pytest.mark.parametrize("value", [-1, "many"])
def test_papermill_per_class_of_the_wrong_kind_is_our_line(value, tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as caught:
        papermill.execute_notebook(str(ROOT / "notebooks" / "03_audio_features.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"per_class": value}, kernel_name="python3", progress_bar=False,
                                   cwd=str(tmp_path))
    assert caught.value.traceback == [f"ConfigError: per_class={value!r} must be a whole number >= 1"]


NOWHERE = ROOT / "no-such-folder"
A_FILE = ROOT / "pyproject.toml"
# Each bad notebook parameter, handed to the avlib function its notebook passes it to.
NOTEBOOK_PARAMETERS = {
    "00-overrides-not-a-dict": (lambda: train_config("dog", overrides="x"), "overrides='x' must be a dict"),
    "00-run_dir-a-number": (lambda: own_run_dir(load_config("dog", "tiny"), 5), "run_dir=5 must be a path"),
    "01-dataset-unknown": (lambda: shipped_manifests()["cat"], "dataset='cat' has no shipped manifest"),
    "01-data_root-missing": (lambda: dataset_status([], NOWHERE), f"dataset folder {NOWHERE} does not exist"),
    "01-data_root-a-number": (lambda: dataset_status([], 5), "data_root=5 must be a path"),
    "05-run_dir-a-number": (lambda: notebook_run(5), "run_dir=5 must be a path"),
    "07-run_dirs-a-string": (lambda: notebook_runs("runs/dog_tiny"), "run_dirs='runs/dog_tiny' must be a list"),
    "07-run_dirs-entry-a-number": (lambda: notebook_runs([5]), r"run_dirs\[0\]=5 must be a path"),
    "08-ratings_file-a-number": (lambda: ratings_path(5), "ratings_file=5 must be a path"),
    "08-rater_name-blank": (lambda: rater([], NOWHERE / "r.csv", " "), "rater_name=' ' must be your name"),
    "any-figures_dir-a-list": (lambda: save_figure(None, ["f"], "x", "tiny"), r"figures_dir=\['f'\] must be a path"),
    "09-evaluation-a-number": (lambda: load_evaluation(5), "evaluation=5 must be a path"),
    "10-seconds-zero": (lambda: long_clip(0, 0, 0, 8, 32), "seconds=0 must be a number > 0"),
    "10-seconds-text": (lambda: long_clip(0, 0, "12", 8, 32), "seconds='12' must be a number > 0"),
    "10-seconds-beyond-memory": (lambda: long_clip(0, 0, 1e6, 8, 32), "seconds=1000000.0 must be at most 3600"),
    "10-seed-negative": (lambda: long_clip(-1, 0, 2.0, 8, 32), "seed=-1 must be a whole number >= 0"),
    "10-seed-too-big": (lambda: long_clip(2**63, 0, 2.0, 8, 32), r"below 2\*\*63"),
    "10-mapper_steps-zero": (lambda: train_thunder_mapper(NOWHERE, 0), "mapper_steps=0 must be a whole number >= 1"),
    "10-mapper_run-a-number": (lambda: AudioToVideoPipeline.from_run(5), "run_dir=5 must be a path"),
    "10-audio_file-a-number": (lambda: read_conditioning_audio(5), "audio_file=5 must be a path"),
    "00-overrides-key-not-text": (lambda: train_config("dog", overrides={5: 1}), "override key 5 is not a config key"),
    "04-text_prompt-blank": (lambda: train_config("dog", text_prompt="  "), "text_prompt='  ' is blank"),
    "00-run_dir-a-file": (lambda: own_run_dir(load_config("dog", "tiny"), A_FILE),
                          f"{A_FILE} is a file, not a folder; give a folder"),
    "03-per_class-beyond-memory": (lambda: synthetic_examples(load_config("multiclass", "tiny"), per_class=10**12),
                                   "per_class=1000000000000 must be at most 1000"),
    "07-table_dir-a-number": (lambda: table2_files(5, "tiny"), "table_dir=5 must be a path"),
    "07-table_dir-a-file": (lambda: table2_files(A_FILE, "tiny"), f"{A_FILE} is a file, not a folder"),
    "08-ratings_file-a-folder": (lambda: ratings_path(ROOT), "is a folder: give a file name"),
    "any-figures_dir-under-a-file": (lambda: save_figure(None, A_FILE / "figures", "x", "tiny"),
                                     f"{A_FILE} is a file, not a folder; check the path"),
    "09-classes-a-number": (lambda: evaluate_toyworld(NOWHERE, classes=5), "classes=5: toy world classes must be"),
    "09-classes-none": (lambda: evaluate_toyworld(NOWHERE, classes=None), "classes=None: toy world classes must be"),
    "09-classes-twice": (lambda: evaluate_toyworld(NOWHERE, classes=["dog", "dog"]), "each once"),
    "09-rerun_into-a-file": (lambda: evaluate_toyworld(A_FILE), f"{A_FILE} is a file, not a folder"),
    "10-rerun_into-a-file": (lambda: long_thunder_record(A_FILE, NOWHERE), f"{A_FILE} is a file, not a folder"),
    "10-live_seconds-negative": (lambda: live_view(None, np.zeros(16000), live_seconds=-1),
                                 "live_seconds=-1 must be a number > 0"),
    "10-live_seconds-text": (lambda: live_view(None, np.zeros(16000), live_seconds="6"),
                             "live_seconds='6' must be a number > 0"),
}


@pytest.mark.parametrize("case", NOTEBOOK_PARAMETERS)
def test_a_bad_notebook_parameter_is_one_config_error_naming_it(case):
    call, message = NOTEBOOK_PARAMETERS[case]
    with pytest.raises(ConfigError, match=message) as caught:
        call()
    # What the kernel shows (IPython's _render_traceback_): this one line, no frames.
    assert "\n" not in str(caught.value) and caught.value._render_traceback_() == [f"ConfigError: {caught.value}"]
    assert not NOWHERE.exists()


def test_a_ratings_file_that_is_another_file_is_refused_not_overwritten(tmp_path):
    from avlib.errors import MediaError

    other = tmp_path / "notes.txt"
    other.write_text("my notes\n")  # one line: a CSV header with no rows, none of the rating columns
    with pytest.raises(MediaError, match=f"{re.escape(str(other))} is not a ratings file"):
        rater([], ratings_path(other), "me")
    assert other.read_text() == "my notes\n"


@pytest.mark.parametrize("arguments, message", [
    ({"test_per_class": 0}, "test_per_class=0 must be a whole number >= 1"),
    ({"test_per_class": "40"}, "test_per_class='40' must be a whole number >= 1"),
    ({"mapper_steps": -1}, "mapper_steps=-1 must be a whole number >= 1"),
])
def test_notebook_09_rerun_settings_are_refused_before_any_work(arguments, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        evaluate_toyworld(tmp_path / "rerun", **arguments)
    assert not (tmp_path / "rerun").exists()


@pytest.mark.parametrize("reader", ["losses", "ratings", "report-repo-index"])
def test_a_binary_text_file_is_named(reader, tmp_path):
    from avlib.data.manifests import convert_report_repo_index
    from avlib.errors import AvlibError
    from avlib.human_eval import read_ratings
    from avlib.run import Run

    path = tmp_path / {"losses": "losses.csv", "ratings": "ratings.csv", "report-repo-index": "index.csv"}[reader]
    path.write_bytes(bytes(range(128, 256)) * 4)
    read = {"losses": lambda: Run(tmp_path).read_losses(), "ratings": lambda: read_ratings(path),
            "report-repo-index": lambda: convert_report_repo_index(path)}[reader]
    with pytest.raises(AvlibError, match=f"{re.escape(str(path))} is binary, not a"):
        read()


def test_evaluate_warns_once_when_references_and_samples_differ_in_frame_rate(tmp_path, monkeypatch, capsys):
    from avlib.media import write_video
    from test_evaluate_report import jumping_frames, make_run

    run = make_run(tmp_path / "dog", "dog")
    for i in range(4):  # the same clips at 24 fps instead of the samples' 8
        write_video(run / "reference" / f"r{i}.mp4", jumping_frames([3, 5], 60), 24)
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))
    with pytest.warns(MetricWarning) as caught:
        assert main(["evaluate", "--run", str(run), "--metrics", "fvd", "--no-cache", "--quiet"]) == 0
    warned = [str(w.message) for w in caught if "fps" in str(w.message)]
    assert warned == ["the real videos play at 24 fps and the generated ones at 8 fps: FVD compares frame "
                      "sequences, so motion is judged at different speeds (resample one set to the other's "
                      "frame rate)"]


def _papermill_command(notebook: str, *parameters: str, cwd: Path) -> subprocess.CompletedProcess:
    """``papermill NOTEBOOK OUT -p ...`` as a user types it, with avlib's ``papermill.engine``
    entry point visible as ``pyproject.toml`` declares it (a dist-info folder on the path: the
    test does not depend on when the editable install was last refreshed)."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["papermill.engine"]
    dist_info = cwd / "entry_points" / "avlib_papermill_test-0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: avlib-papermill-test\nVersion: 0\n")
    (dist_info / "entry_points.txt").write_text(
        "[papermill.engine]\n" + "".join(f"{name} = {target}\n" for name, target in declared.items()))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{dist_info.parent}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(Path(sys.executable).with_name("papermill")), str(ROOT / "notebooks" / notebook),
                           str(cwd / "out.ipynb"), *parameters, "-k", "python3"],
                          capture_output=True, text=True, cwd=cwd, env=env)


@pytest.mark.parametrize("notebook, parameters, line", [
    ("04_train.ipynb", ("-p", "cls", "cat"), "the notebook failed in cell 3: ConfigError: cls='cat' is not a dataset "
                                             "of the report (choose from: dog, thunder, volleyball, multiclass)"),
    ("01_dataset_curation.ipynb", ("-p", "data_root", str(NOWHERE), "--no-progress-bar"),
     f"the notebook failed in cell 5: ConfigError: dataset folder {NOWHERE} does not exist: pass the folder "
     "`avlib data curate --out` wrote (`avlib data status --root`, notebook 01's data_root)"),
])
def test_papermill_command_line_shows_only_our_line_and_exits_2(notebook, parameters, line, tmp_path):
    proc = _papermill_command(notebook, *parameters, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == f"papermill: error: {line}"
    assert "Traceback" not in proc.stderr and "PapermillExecutionError" not in proc.stderr
    assert "without encryption" not in proc.stderr  # papermill's kernel on local sockets (avlib.kernels)
    errors = [output for cell in json.loads((tmp_path / "out.ipynb").read_text())["cells"]
              for output in cell.get("outputs", []) if output["output_type"] == "error"]
    assert [error["traceback"] for error in errors] == [[line.split(": ", 1)[1]]]  # the notebook: our line


def _raised(error: BaseException):
    try:
        raise error
    except BaseException as caught:
        return caught.__traceback__


def test_the_papermill_hook_leaves_every_other_error_as_python_shows_it():
    """Only an avlib error that reached the top of papermill's command line is shortened: not
    another cell error, not papermill's error in a program of its own (``avlib reproduce``)."""
    from papermill.exceptions import PapermillExecutionError

    import avlib.papermill_cli as hook

    def cell_error(ename):
        return PapermillExecutionError(2, 3, "", ename, "x=1 must be a path", [f"{ename}: x=1 must be a path"])

    def through_the_command_line(error):  # a frame of papermill.cli on the way up
        exec(compile("def run(error):\n    raise error\n", "cli.py", "exec"), namespace := {"__name__": "papermill.cli"})
        try:
            namespace["run"](error)
        except BaseException as caught:
            return caught.__traceback__

    for name in ("ConfigError", "CheckpointError", "MediaError", "AvlibError"):
        error = cell_error(name)
        assert hook.one_line(error, through_the_command_line(error)) == (
            f"papermill: error: the notebook failed in cell 3: {name}: x=1 must be a path")
        error = cell_error(name)
        assert hook.one_line(error, _raised(error)) is None               # not papermill's command line
    for error in (cell_error("ValueError"), ConfigError("x=1 must be a path"), KeyError("x")):
        assert hook.one_line(error, through_the_command_line(error)) is None
    # Installed once, in front of the hook before it, to which every other error goes.
    hook.install()
    assert sys.excepthook is hook.excepthook and hook._previous_hook is not hook.excepthook
    shown = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hook, "_previous_hook", lambda *args: shown.append(args))
        error = cell_error("ValueError")
        hook.excepthook(PapermillExecutionError, error, through_the_command_line(error))
    assert shown == [(PapermillExecutionError, error, error.__traceback__)]


def test_reproduce_turns_a_failing_notebook_into_our_one_line(tmp_path):
    from avlib.cli import describe_error
    from avlib.reproduce import NotebookRun, run_notebook

    step = NotebookRun("01_dataset_curation", "01_bad", {"data_root": str(NOWHERE)})
    with pytest.raises(Exception) as caught:
        run_notebook(step, tmp_path)
    assert describe_error(caught.value) == (
        f"01_bad failed in cell 5: ConfigError: dataset folder {NOWHERE} does not exist: pass the folder "
        "`avlib data curate --out` wrote (`avlib data status --root`, notebook 01's data_root) "
        f"(the executed notebook is {tmp_path / 'notebooks' / '01_bad.ipynb'})")
