"""AudioVisGen mapper (report 4.2), the shared window averages, and mapper build/save/load."""
from __future__ import annotations

import json

import pytest
import torch

from avlib.config import load_config
from avlib.errors import CheckpointError, ConfigError
from avlib.mapper import (AudioVisGenMapper, TempoTokensMapper, build_mapper, load_mapper,
                          save_mapper)
from avlib.mapper.temporal import local_window_means

CAVP_DIM = 512
CAVP_VECTORS_PER_SECOND = 4


def tiny_mapper(seed: int = 0, **kwargs) -> AudioVisGenMapper:
    torch.manual_seed(seed)
    sizes = dict(in_dim=CAVP_DIM, hidden_dim=32, token_dim=16, num_frames=24, attention_heads=4)
    return AudioVisGenMapper(**{**sizes, **kwargs}).eval()


def test_window_means_match_a_hand_computed_example():
    tokens = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]).view(1, 5, 1)
    means = local_window_means(tokens, [1, 2])[0, :, :, 0]  # (F, W)
    # frame i, window w: mean of frames max(i - w, 0) .. min(i + w, 5) - 1
    assert means[:, 0].tolist() == [1.0, 1.5, 2.5, 3.5, 4.5]
    assert means[:, 1].tolist() == [1.5, 2.0, 2.5, 3.5, 4.0]


@pytest.mark.parametrize("seconds", [1, 2, 4, 10])
def test_any_audio_length_maps_to_the_configured_frames(seconds):
    mapper = tiny_mapper()
    features = torch.randn(2, seconds * CAVP_VECTORS_PER_SECOND, CAVP_DIM)  # T = 4, 8, 16, 40
    with torch.no_grad():
        out = mapper(features)
    assert mapper.placeholder_names == ["<frame>", "<w1>", "<w2>", "<w4>", "<w8>"]
    assert out.frame_tokens.shape == (2, 24, 5, 16)
    assert torch.equal(out.temporal_tokens, out.frame_tokens[:, :, 0])
    assert torch.isfinite(out.frame_tokens).all()


def test_short_audio_is_stretched_not_zero_padded():
    mapper = tiny_mapper(attention=False)
    steady = torch.randn(1, 1, CAVP_DIM).expand(1, 4, CAVP_DIM)  # 1 s of a steady sound
    with torch.no_grad():
        frames = mapper(steady).temporal_tokens[0]  # (24, D)
    # Padding would give frames without audio a different token; stretching keeps them equal.
    assert torch.allclose(frames, frames[:1].expand_as(frames), atol=1e-6)


def test_attention_changes_the_output_and_mixes_distant_frames():
    with_attention = tiny_mapper(attention=True)
    without = tiny_mapper(attention=False)
    without.load_state_dict(with_attention.state_dict(), strict=False)  # same MLP weights
    features = torch.randn(1, 16, CAVP_DIM)
    nudged = features.clone()
    nudged[:, 0] += 1.0  # change the first 250 ms only
    with torch.no_grad():
        on, off = with_attention(features), without(features)
        on_nudged, off_nudged = with_attention(nudged), without(nudged)
    assert (on.frame_tokens - off.frame_tokens).abs().max() > 1e-3
    # The last frame's windows (at most 8 frames) never reach the first frame; attention does.
    last = slice(-1, None)
    assert torch.equal(off.frame_tokens[:, last], off_nudged.frame_tokens[:, last])
    assert (on.frame_tokens[:, last] - on_nudged.frame_tokens[:, last]).abs().max() > 1e-6


def test_windows_and_heads_are_config_values():
    mapper = tiny_mapper(windows=[2, 6], num_frames=8, token_dim=24, attention_heads=3)
    with torch.no_grad():
        out = mapper(torch.randn(1, 40, CAVP_DIM))
    assert mapper.placeholder_names == ["<frame>", "<w2>", "<w6>"]
    assert out.frame_tokens.shape == (1, 8, 3, 24)
    with pytest.raises(ConfigError, match="divisible"):
        tiny_mapper(token_dim=16, attention_heads=3)
    with pytest.raises(ConfigError, match="windows"):
        tiny_mapper(windows=[1, 1])


def test_build_mapper_from_experiment_configs():
    config = load_config("dog", "tiny").mapper
    mapper = build_mapper(config, in_dim=CAVP_DIM)
    assert isinstance(mapper, AudioVisGenMapper)
    with torch.no_grad():
        out = mapper(torch.randn(1, 8, CAVP_DIM))
    assert out.frame_tokens.shape == (1, config.num_frames, 1 + len(config.windows),
                                      config.token_dim)
    baseline = build_mapper(load_config("tempotokens", "tiny").mapper, in_dim=96)
    assert isinstance(baseline, TempoTokensMapper)
    assert len(baseline.placeholder_names) == 6
    with pytest.raises(ConfigError, match="run folder"):
        build_mapper(load_config("dog", "tiny", ["mapper.checkpoint=x.pth"]).mapper, CAVP_DIM)


@pytest.mark.parametrize("mapper", [
    tiny_mapper(windows=[1, 3]),
    TempoTokensMapper(in_dim=20, hidden_dim=12, token_dim=8, num_frames=6, upstream_dropout=True),
], ids=["audiovisgen", "tempotokens"])
def test_save_load_round_trip(mapper, tmp_path):
    save_mapper(mapper, tmp_path / "mapper")
    assert sorted(p.name for p in (tmp_path / "mapper").iterdir()) == [
        "mapper.safetensors", "mapper_config.json"]
    saved_config = json.loads((tmp_path / "mapper" / "mapper_config.json").read_text())
    assert saved_config["kind"] == mapper.kind
    loaded = load_mapper(tmp_path / "mapper")
    assert type(loaded) is type(mapper) and loaded.config == mapper.config
    features = torch.randn(2, 10, mapper.in_dim)
    mapper.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        expected = mapper(features).frame_tokens
        torch.manual_seed(0)
        assert torch.equal(loaded(features).frame_tokens, expected)


def test_load_mapper_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_mapper(tmp_path / "missing")
    save_mapper(tiny_mapper(), tmp_path / "damaged")
    (tmp_path / "damaged" / "mapper.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="damaged"):
        load_mapper(tmp_path / "damaged")
    save_mapper(tiny_mapper(), tmp_path / "resized")
    config_file = tmp_path / "resized" / "mapper_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "token_dim": 8}))
    with pytest.raises(CheckpointError, match="does not match"):
        load_mapper(tmp_path / "resized")
