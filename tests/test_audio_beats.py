"""BEATs: fbank and transformer against the upstream outputs, loader, lengths, tiny variant."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from audio_checkpoints import noise, write_beats_checkpoint

from avlib.audio import (BEATsEncoder, BEATsFbank, build_audio_encoder, load_official_beats,
                         save_encoder)
from avlib.audio.beats import RelativePositionBias
from avlib.audio.checkpoints import beats_state_dict_from_official
from avlib.config import EncoderConfig
from avlib.errors import CheckpointError

SR = 16000


@pytest.fixture(scope="module")
def case(fixtures_dir):
    return dict(np.load(fixtures_dir / "beats_case_2s.npz"))


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory, synth_weights, fixtures_dir):
    return write_beats_checkpoint(synth_weights, fixtures_dir,
                                  tmp_path_factory.mktemp("beats") / "BEATs_iter3_plus.pt")


@pytest.fixture(scope="module")
def beats(official_ckpt):
    return build_audio_encoder(EncoderConfig(name="beats", checkpoint=str(official_ckpt), layers="all"))


def test_fbank_matches_upstream(case):
    fbank = BEATsFbank()(torch.from_numpy(case["waveform"]))
    assert fbank.shape == (1, 198, 128)
    np.testing.assert_allclose(fbank.numpy(), case["fbank"], atol=5e-4, rtol=0)


def test_official_checkpoint_reproduces_upstream_layers(beats, case):
    layers_cat = beats.encode(case["waveform"]).numpy()
    assert layers_cat.shape == (1, 96, 9216) and beats.output_dim == 9216
    np.testing.assert_allclose(layers_cat, case["layers_cat"], atol=1e-3, rtol=0)


def test_layers_option_comes_from_the_config(official_ckpt):
    last = build_audio_encoder(EncoderConfig(name="beats", checkpoint=str(official_ckpt), layers="last"))
    assert last.output_layers == "last" and last.output_dim == 768


def test_official_keys_are_mapped_predictor_dropped_and_tied_bias_taken_from_last_copy():
    model = {
        "predictor.weight": torch.zeros(3, 2),
        "encoder.pos_conv.0.weight_g": torch.ones(1, 1, 4),
        "encoder.layers.0.self_attn.relative_attention_bias.weight": torch.full((4, 2), 0.0),
        "encoder.layers.10.self_attn.relative_attention_bias.weight": torch.full((4, 2), 10.0),
        "encoder.layers.2.self_attn.relative_attention_bias.weight": torch.full((4, 2), 2.0),
        "encoder.layers.2.fc1.bias": torch.ones(3),
    }
    mapped = beats_state_dict_from_official(model)
    assert sorted(mapped) == ["encoder.layers.2.fc1.bias", "encoder.pos_conv.weight_g",
                              "encoder.rel_pos_bias.embedding.weight"]
    # torch's load_state_dict into upstream's one shared module keeps the last copy loaded
    assert mapped["encoder.rel_pos_bias.embedding.weight"][0, 0] == 10.0


def test_relative_position_buckets():
    buckets = RelativePositionBias(num_buckets=320, max_distance=800, num_heads=1).bucket(
        torch.tensor([0, -1, 1, -79, 79, -80, 80, -799, 800, 5000]))
    # 160 buckets per direction (keys after the query: +160); exact below 80, log-spaced above.
    assert buckets.tolist() == [0, 1, 161, 79, 239, 80, 240, 159, 319, 319]


@pytest.mark.parametrize("seconds", [1.0, 3.3, 10.0])
def test_other_lengths_follow_the_patch_rules(beats, seconds):
    waveform = noise(seconds, seed=int(seconds * 10))
    n = len(waveform)
    fbank = beats.frontend(torch.from_numpy(waveform)[None])
    frames = 1 + (n - 400) // 160
    assert fbank.shape == (1, frames, 128)
    out = beats.encode(waveform[None])
    assert out.shape == (1, frames // 16 * 8, 9216) == (1, beats.num_vectors(n), 9216)
    assert abs(out.shape[1] - seconds * beats.frame_rate) <= 8  # one partial 160 ms step
    assert torch.isfinite(out).all()


def test_batched_equals_one_by_one(beats):
    waveforms = np.stack([noise(0.5, seed) for seed in range(2)])
    batched = beats.encode(waveforms)
    singles = torch.cat([beats.encode(w[None]) for w in waveforms])
    assert batched.shape == (2, 24, 9216)
    torch.testing.assert_close(batched, singles, atol=1e-4, rtol=0)
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_short_audio_is_zero_padded_to_one_step_and_silence_is_finite(beats):
    short = noise(0.05)
    assert BEATsFbank.min_samples == 400 + 15 * 160
    padded = np.pad(short, (0, BEATsFbank.min_samples - len(short)))
    out = beats.encode(short[None])
    assert out.shape == (1, 8, 9216) and beats.num_vectors(len(short)) == 8
    torch.testing.assert_close(out, beats.encode(padded[None]), atol=0, rtol=0)
    silent = beats.encode(np.zeros((1, SR // 2), np.float32))
    assert silent.shape == (1, 24, 9216) and torch.isfinite(silent).all()


def test_tiny_beats_shapes_and_safetensors_round_trip(tmp_path):
    tiny = build_audio_encoder(EncoderConfig(name="beats", width=8, layers="all"), embed_dim=16)
    assert isinstance(tiny, BEATsEncoder) and len(tiny.encoder.layers) == 2
    waveform = noise(1.0)[None]
    out = tiny.encode(waveform)
    assert out.shape == (1, 48, 32) and tiny.output_dim == 32 and tiny.frame_rate == 50.0
    path = save_encoder(tiny, tmp_path / "tiny_beats.safetensors")
    reloaded = build_audio_encoder(EncoderConfig(name="beats", checkpoint=str(path), layers="last"))
    torch.testing.assert_close(reloaded.encode(waveform), out[..., -16:], atol=0, rtol=0)


def test_loader_errors_are_one_line(tmp_path, fixtures_dir):
    cfg = json.loads((fixtures_dir / "beats_state_dict_shapes.json").read_text())["cfg"]
    path = tmp_path / "beats.pt"
    cases = {
        "expected entries cfg, model, found epoch, state_dict": {"state_dict": {}, "epoch": 1},
        "BEATs cfg lacks deep_norm": {"cfg": {k: v for k, v in cfg.items() if k != "deep_norm"},
                                      "model": {}},
        r"unsupported BEATs variant \(layer_norm_first=True\)": {
            "cfg": cfg | {"layer_norm_first": True}, "model": {}},
        r"missing 2\d\d keys: .*\(\+2\d\d more\)": {"cfg": cfg, "model": {}},
    }
    for message, checkpoint in cases.items():
        torch.save(checkpoint, path)
        with pytest.raises(CheckpointError, match=message) as error:
            load_official_beats(path)
        assert "\n" not in str(error.value)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        load_official_beats(path)
    torch.save({"cfg": argparse.Namespace(**cfg), "model": {}}, path)
    with pytest.raises(CheckpointError, match="holds the Python object argparse.Namespace"):
        load_official_beats(path)
