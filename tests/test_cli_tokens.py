"""``avlib tokens``: features or audio -> the six TempoTokens outputs in an npz + sidecar."""
from __future__ import annotations

import json

import numpy as np
import pytest
from audio_checkpoints import write_beats_checkpoint, write_float_wav

from avlib.cli import main

OUTPUTS = ("temporal_token", "local_window_1", "local_window_2", "local_window_3",
           "local_window_4", "audio_token")


@pytest.fixture(scope="module")
def beats_clip(fixtures_dir, synth_weights, tmp_path_factory):
    """The BEATs fixture's 2 s waveform as a lossless float wav, and stand-in BEATs weights
    in the official {"cfg", "model"} format."""
    folder = tmp_path_factory.mktemp("beats")
    checkpoint = write_beats_checkpoint(synth_weights, fixtures_dir, folder / "beats.pt")
    waveform = np.load(fixtures_dir / "beats_case_2s.npz")["waveform"][0]
    return write_float_wav(folder / "clip.wav", waveform), checkpoint


@pytest.mark.parametrize("case, squeeze", [("s96_b1", True), ("s48_b2", False)])
def test_writes_the_six_outputs_with_a_batch_axis(case, squeeze, tempotokens_file, tempotokens_reference,
                                                  tmp_path):
    features = tempotokens_reference[f"{case}_input"]
    np.save(tmp_path / "feats.npy", features[0] if squeeze else features)  # (S, D) or (B, S, D)
    out = tmp_path / "tokens.npz"
    rc = main(["tokens", str(tmp_path / "feats.npy"), "--mapper", "tempotokens",
               "--checkpoint", str(tempotokens_file), "-o", str(out)])
    assert rc == 0
    written = np.load(out)
    assert sorted(written.files) == sorted(OUTPUTS)
    for name in OUTPUTS:
        np.testing.assert_allclose(written[name], tempotokens_reference[f"{case}_{name}"], atol=1e-5, rtol=0)
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["upstream_dropout"] is False
    assert sidecar["checkpoint"] == str(tempotokens_file)
    assert sidecar["placeholders"]["<class>"] == "audio_token"
    assert sidecar["run_record"]["seed"] == 0 and "torch" in sidecar["run_record"]["versions"]


def test_upstream_dropout_is_recorded_and_seeded(tempotokens_file, tempotokens_reference, tmp_path):
    np.save(tmp_path / "feats.npy", tempotokens_reference["s48_b1_input"])
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        out = tmp_path / f"{name}.npz"
        assert main(["tokens", str(tmp_path / "feats.npy"), "--checkpoint", str(tempotokens_file),
                     "--upstream-dropout", "--seed", seed, "-o", str(out)]) == 0
        runs[name] = np.load(out)["audio_token"]
        assert json.loads(out.with_suffix(".json").read_text())["upstream_dropout"] is True
    assert np.array_equal(runs["a"], runs["b"])
    assert np.abs(runs["a"] - runs["c"]).max() > 1e-4


@pytest.mark.parametrize("via_embed", [True, False], ids=["embed-then-tokens", "audio-input"])
def test_chain_from_audio_matches_upstream(via_embed, beats_clip, tempotokens_file, tempotokens_reference,
                                           tmp_path):
    clip, beats = beats_clip
    out = tmp_path / "tokens.npz"
    if via_embed:
        features = tmp_path / "beats.npy"
        assert main(["embed", str(clip), "--encoder", "beats", "--checkpoint", str(beats),
                     "--layers", "all", "-o", str(features)]) == 0
        args = [str(features)]
    else:
        args = [str(clip), "--encoder-checkpoint", str(beats)]
    assert main(["tokens", *args, "--checkpoint", str(tempotokens_file), "-o", str(out)]) == 0
    written = np.load(out)
    for name in OUTPUTS:
        np.testing.assert_allclose(written[name], tempotokens_reference[f"beats_chain_2s_{name}"],
                                   atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("make_input, extra, message", [
    (lambda d: d / "missing.npy", [], "features file not found"),
    (lambda d: _save(d / "flat.npy", np.zeros(9216, np.float32)), [], "expected (S, 9216)"),
    (lambda d: _save(d / "narrow.npy", np.zeros((48, 768), np.float32)), [], "expects (batch"),
    (lambda d: _write(d / "clip.wav", b"RIFF"), [], "--encoder-checkpoint"),
    (lambda d: _save(d / "ok.npy", np.zeros((48, 9216), np.float32)), ["--checkpoint", "nope.pth"],
     "not found"),
])
def test_bad_inputs_exit_with_one_line(make_input, extra, message, tempotokens_file, tmp_path, capsys):
    args = ["tokens", str(make_input(tmp_path)), "--checkpoint", str(tempotokens_file),
            "-o", str(tmp_path / "out.npz"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.npz").exists()


def _save(path, array):
    np.save(path, array)
    return path


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", ["s40_b2", "s8_b1"])
def test_the_report_mapper_through_the_cli(case, report_mapper_state, report_mapper_reference, tmp_path):
    """`avlib tokens --mapper audiovisgen` on the students' DDP-saved at_embedder file."""
    import torch

    checkpoint = tmp_path / "at_embedder_1000.pth"
    torch.save({f"module.{k}": v for k, v in report_mapper_state.items()}, checkpoint)
    np.save(tmp_path / "cavp.npy", report_mapper_reference[f"{case}_input"])
    out = tmp_path / "tokens.npz"
    assert main(["tokens", str(tmp_path / "cavp.npy"), "--mapper", "audiovisgen",
                 "--checkpoint", str(checkpoint), "-o", str(out)]) == 0
    written = np.load(out)
    assert sorted(written.files) == sorted(OUTPUTS)
    for name in OUTPUTS:
        np.testing.assert_allclose(written[name], report_mapper_reference[f"{case}_{name}"],
                                   atol=1e-5, rtol=0, err_msg=name)
    assert json.loads(out.with_suffix(".json").read_text())["mapper"] == "audiovisgen"


def test_features_of_the_wrong_encoder_are_refused(report_mapper_state, tempotokens_reference, tmp_path, capsys):
    import torch

    checkpoint = tmp_path / "at_embedder_1000.pth"
    torch.save(report_mapper_state, checkpoint)
    np.save(tmp_path / "beats.npy", tempotokens_reference["s48_b1_input"])  # 9216-d BEATs features
    assert main(["tokens", str(tmp_path / "beats.npy"), "--mapper", "audiovisgen",
                 "--checkpoint", str(checkpoint), "-o", str(tmp_path / "t.npz")]) == 2
    assert "512" in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()
