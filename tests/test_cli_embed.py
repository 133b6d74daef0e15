"""``avlib embed``: the fixtures reproduced through the command, input formats, and errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from audio_checkpoints import write_beats_checkpoint, write_cavp_checkpoint, write_float_wav

from avlib.cli import main
from avlib.media import ffmpeg_exe, load_audio, resample, write_video

SR = 16000


@pytest.fixture(scope="module")
def cavp_case(fixtures_dir):
    return dict(np.load(fixtures_dir / "cavp_case_4s.npz"))


@pytest.fixture(scope="module")
def beats_case(fixtures_dir):
    return dict(np.load(fixtures_dir / "beats_case_2s.npz"))


@pytest.fixture(scope="module")
def beats_ckpt(tmp_path_factory, synth_weights, fixtures_dir):
    return write_beats_checkpoint(synth_weights, fixtures_dir,
                                  tmp_path_factory.mktemp("beats") / "BEATs_iter3_plus.pt")


def embed(*args) -> int:
    return main(["embed", *map(str, args)])


@pytest.mark.parametrize("layers, dim", [("last", 768), ("all", 9216)])
def test_beats_layers_reproduce_upstream(tmp_path, beats_ckpt, beats_case, layers, dim):
    wav = write_float_wav(tmp_path / "clip.wav", beats_case["waveform"][0])
    out = tmp_path / "beats.npy"
    assert embed(wav, "--encoder", "beats", "--checkpoint", beats_ckpt, "--layers", layers,
                 "-o", out) == 0
    array = np.load(out)
    assert array.shape == (96, dim) and array.dtype == np.float32
    # upstream's last layer is the last 768 columns of its 12-layer concatenation
    np.testing.assert_allclose(array, beats_case["layers_cat"][0, :, -dim:], atol=1e-3, rtol=0)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["layers"] == layers and sidecar["shape"] == [96, dim]
    assert "torch" in sidecar["run_record"]["versions"]


def test_cavp_from_a_hub_id_in_a_subprocess(tmp_path, synth_weights, fixtures_dir, cavp_case):
    """The real console script, the checkpoint found through the huggingface_hub cache."""
    repo = tmp_path / "hub" / "models--SimianLuo--Diff-Foley"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd" / "diff_foley_ckpt"
    snapshot.mkdir(parents=True)
    write_cavp_checkpoint(synth_weights, fixtures_dir, snapshot / "cavp_epoch66.ckpt")
    wav = write_float_wav(tmp_path / "clip.wav", cavp_case["waveform"])
    out = tmp_path / "cavp.npy"
    env = os.environ | {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "avlib"), "embed", str(wav),
         "--encoder", "cavp", "--checkpoint", "SimianLuo/Diff-Foley::diff_foley_ckpt/cavp_epoch66.ckpt",
         "-o", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    array = np.load(out)
    assert array.shape == (16, 512) and array.dtype == np.float32
    np.testing.assert_allclose(array, cavp_case["embedding_reflect_pad"][0], atol=1e-5, rtol=0)


def test_frontend_only_reproduces_upstream_features(tmp_path, cavp_case, beats_case):
    cavp_wav = write_float_wav(tmp_path / "cavp.wav", cavp_case["waveform"])
    assert embed(cavp_wav, "--encoder", "cavp", "--frontend-only", "-o", tmp_path / "mel.npy") == 0
    mel = np.load(tmp_path / "mel.npy")
    assert mel.shape == (128, 256)
    np.testing.assert_allclose(mel, cavp_case["mel_reflect_pad"][0], atol=1e-5, rtol=0)

    beats_wav = write_float_wav(tmp_path / "beats.wav", beats_case["waveform"][0])
    assert embed(beats_wav, "--encoder", "beats", "--frontend-only", "-o", tmp_path / "fb.npy") == 0
    fbank = np.load(tmp_path / "fb.npy")
    assert fbank.shape == (198, 128)
    np.testing.assert_allclose(fbank, beats_case["fbank"][0], atol=5e-4, rtol=0)


def test_stereo_44k_mp3_and_mp4_inputs(tmp_path, cavp_case):
    original = cavp_case["waveform"]                                  # 4 s at 16 kHz
    stereo = np.stack([original, original], axis=1)
    soundfile.write(tmp_path / "stereo.wav", resample(stereo.T, SR, 44100).T, 44100)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(tmp_path / "stereo.wav"),
                    str(tmp_path / "clip.mp3")], check=True)
    write_video(tmp_path / "clip.mp4", np.zeros((8, 16, 16, 3), np.uint8), fps=2.0, audio=original)

    assert embed(tmp_path / "stereo.wav", "--encoder", "cavp", "--frontend-only",
                 "-o", tmp_path / "stereo.npy") == 0
    mel = np.load(tmp_path / "stereo.npy")
    assert mel.shape == (128, 256)  # resampled to 16 kHz and mixed to mono
    assert np.abs(mel - cavp_case["mel_reflect_pad"][0]).mean() < 0.01
    for name in ("clip.mp3", "clip.mp4"):
        out = tmp_path / f"{name}.npy"
        assert embed(tmp_path / name, "--encoder", "beats", "--frontend-only", "-o", out) == 0
        frames = np.load(out).shape[0]
        assert frames == 1 + (len(load_audio(tmp_path / name)) - 400) // 160
        assert abs(frames - 398) <= 6  # 4 s, give or take the codec's padding


@pytest.mark.parametrize("case", ["not_audio", "wrong_checkpoint", "truncated_checkpoint",
                                  "no_checkpoint", "layers_for_cavp", "missing_audio"])
def test_errors_exit_nonzero_with_one_line_and_leave_no_file(tmp_path, capsys, cavp_case, case):
    wav = write_float_wav(tmp_path / "clip.wav", cavp_case["waveform"][:SR])
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio")
    wrong = tmp_path / "wrong.ckpt"
    torch.save({"cfg": {}, "model": {"patch_embedding.weight": torch.zeros(1)}}, wrong)
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(wrong.read_bytes()[:100])
    out_dir = tmp_path / "out"
    args = {
        "not_audio": [text, "--encoder", "cavp", "--checkpoint", wrong],
        "wrong_checkpoint": [wav, "--encoder", "cavp", "--checkpoint", wrong],
        "truncated_checkpoint": [wav, "--encoder", "beats", "--checkpoint", truncated],
        "no_checkpoint": [wav, "--encoder", "beats"],
        "layers_for_cavp": [wav, "--encoder", "cavp", "--layers", "all", "--checkpoint", wrong],
        "missing_audio": [tmp_path / "nope.wav", "--encoder", "cavp", "--frontend-only"],
    }[case]
    expected = {
        "not_audio": "cannot read audio", "wrong_checkpoint": "missing 81 keys",
        "truncated_checkpoint": "truncated", "no_checkpoint": "--checkpoint is required",
        "layers_for_cavp": "--layers applies to --encoder beats only",
        "missing_audio": "audio file not found",
    }[case]
    assert embed(*args, "-o", out_dir / "x.npy") == 2
    stderr = capsys.readouterr().err.strip()
    assert expected in stderr and "\n" not in stderr and stderr.startswith("avlib embed: error:")
    assert not out_dir.exists() or not any(out_dir.iterdir())
