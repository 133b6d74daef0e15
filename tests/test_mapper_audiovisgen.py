"""AudioVisGen mapper (report 4.2), the shared window averages, and mapper build/save/load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


# -- parity with the report repository's TempEmbedder ------------------------------------------------
CASES = ("s40_b1", "s40_b2", "s8_b1", "s16_b1")
OUTPUTS = ("temporal_token", "local_window_1", "local_window_2", "local_window_3",
           "local_window_4", "audio_token")


@pytest.fixture(scope="module", params=["plain", "module."])
def report_file(request, report_mapper_state, tmp_path_factory):
    """The weights saved as the students saved them, with and without DDP's ``module.``."""
    prefix = "" if request.param == "plain" else request.param
    path = tmp_path_factory.mktemp("report") / "at_embedder_1000.pth"
    torch.save({prefix + k: v for k, v in report_mapper_state.items()}, path)
    return path


@pytest.mark.parametrize("case", CASES)
def test_reproduces_the_report_repository_outputs(case, report_file, report_mapper_reference):
    mapper = AudioVisGenMapper.from_checkpoint(report_file)
    assert (mapper.in_dim, mapper.token_dim, mapper.tokens_per_vector) == (512, 1024, 3)
    with torch.no_grad():
        out = mapper(torch.from_numpy(report_mapper_reference[f"{case}_input"]))
    assert list(out.extras) == list(OUTPUTS)
    for name in OUTPUTS:
        expected = report_mapper_reference[f"{case}_{name}"]
        assert out.extras[name].shape == expected.shape
        np.testing.assert_allclose(out.extras[name].numpy(), expected, atol=1e-5, rtol=0,
                                   err_msg=name)


def test_the_experiment_config_loads_the_students_checkpoint(report_file, report_mapper_reference):
    config = load_config("dog", "paper", [f"mapper.checkpoint={report_file}"]).mapper
    mapper = build_mapper(config, in_dim=CAVP_DIM).eval()
    assert mapper.placeholder_names == ["<temp>", "<local1>", "<local2>", "<local3>", "<local4>",
                                        "<class>"]
    with torch.no_grad():
        out = mapper(torch.from_numpy(report_mapper_reference["s8_b1_input"]))
    np.testing.assert_allclose(out.extras["audio_token"].numpy(),
                               report_mapper_reference["s8_b1_audio_token"], atol=1e-5, rtol=0)
    # frame f's prompt: <temp>_f, <local1..4>_f and the shared <class>
    assert out.frame_tokens.shape == (1, 24, 6, 1024)
    assert torch.equal(out.frame_tokens[:, :, -1], out.extras["audio_token"][:, None].expand(-1, 24, -1))


def test_a_tempotokens_file_is_not_taken_for_the_report_mapper(tempotokens_file):
    with pytest.raises(CheckpointError, match="other sizes"):
        build_mapper(load_config("dog", "paper", [f"mapper.checkpoint={tempotokens_file}"]).mapper,
                     in_dim=CAVP_DIM)


def test_regrouping_is_upstreams_view_when_it_runs():
    """fc3's rows: 3 per CAVP vector, grouped into frames exactly as view(B, F, -1, D).mean(2)."""
    mapper = tiny_mapper()
    features = torch.randn(2, 16, CAVP_DIM)  # 4 s: 48 rows -> 2 per frame
    with torch.no_grad():
        rows = mapper.fc3(F.gelu(mapper.fc2(F.gelu(mapper.fc1(features)))))   # (B, 16, 48)
        upstream = rows.view(2, 24, -1, 16).mean(2)
        expected = mapper.fc4(F.gelu(upstream))
        assert torch.allclose(mapper.frame_embeddings(features), expected, atol=1e-6)


@pytest.mark.parametrize("seconds", [1, 2, 2.5, 4, 10])
def test_any_audio_length_maps_to_the_configured_frames(seconds):
    mapper = tiny_mapper()
    features = torch.randn(2, int(seconds * CAVP_VECTORS_PER_SECOND), CAVP_DIM)  # S = 4 .. 40
    with torch.no_grad():
        out = mapper(features)
    assert out.frame_tokens.shape == (2, 24, 6, 16)
    assert torch.equal(out.temporal_tokens, out.frame_tokens[:, :, 0])
    assert torch.isfinite(out.frame_tokens).all()


def test_short_audio_is_stretched_not_zero_padded():
    mapper = tiny_mapper()
    steady = torch.randn(1, 1, CAVP_DIM).expand(1, 2, CAVP_DIM)  # 0.5 s of a steady sound
    with torch.no_grad():
        frames = mapper(steady).temporal_tokens[0]  # (24, D)
    # The vector's 3 rows differ from each other, but no frame gets a padding-only token:
    # every frame is a blend of the same 3 rows, and the first and last are rows 0 and 2.
    rows = mapper.fc3(F.gelu(mapper.fc2(F.gelu(mapper.fc1(steady[:, :1]))))).view(3, 16)
    with torch.no_grad():
        assert torch.allclose(frames[0], mapper.fc4(F.gelu(rows[0])), atol=1e-5)
        assert torch.allclose(frames[-1], mapper.fc4(F.gelu(rows[-1])), atol=1e-5)


def test_frame_attention_changes_the_output_and_mixes_distant_frames():
    with_attention = tiny_mapper(frame_attention=True)
    without = tiny_mapper(frame_attention=False)
    without.load_state_dict(with_attention.state_dict(), strict=False)  # same MLP weights
    features = torch.randn(1, 16, CAVP_DIM)
    nudged = features.clone()
    nudged[:, 0] += 1.0  # change the first 250 ms only
    with torch.no_grad():
        on, off = with_attention(features), without(features)
        on_nudged, off_nudged = with_attention(nudged), without(nudged)
    assert on.frame_tokens.shape == off.frame_tokens.shape == (1, 24, 6, 16)
    assert (on.frame_tokens[:, :, :-1] - off.frame_tokens[:, :, :-1]).abs().max() > 1e-3
    # <class> is upstream's pooling of the unmixed frames, with or without frame attention
    assert torch.allclose(on.frame_tokens[:, :, -1], off.frame_tokens[:, :, -1])
    # The last frame's windows (at most 8 frames) never reach the first frame; attention does.
    last = slice(-1, None)
    assert torch.equal(off.frame_tokens[:, last, :-1], off_nudged.frame_tokens[:, last, :-1])
    assert (on.frame_tokens[:, last, :-1] - on_nudged.frame_tokens[:, last, :-1]).abs().max() > 1e-6


def test_windows_and_heads_are_config_values():
    mapper = tiny_mapper(windows=[2, 6], num_frames=8, token_dim=24, attention_heads=3,
                         frame_attention=True)
    with torch.no_grad():
        out = mapper(torch.randn(1, 40, CAVP_DIM))
    assert mapper.placeholder_names == ["<temp>", "<local1>", "<local2>", "<class>"]
    assert out.frame_tokens.shape == (1, 8, 4, 24)
    with pytest.raises(ConfigError, match="divisible"):
        tiny_mapper(token_dim=16, attention_heads=3, frame_attention=True)
    with pytest.raises(ConfigError, match="windows"):
        tiny_mapper(windows=[1, 1])


def test_build_mapper_from_experiment_configs():
    config = load_config("dog", "tiny").mapper
    mapper = build_mapper(config, in_dim=CAVP_DIM)
    assert isinstance(mapper, AudioVisGenMapper) and mapper.frame_attention is None
    with torch.no_grad():
        out = mapper(torch.randn(1, 4, CAVP_DIM))
    assert out.frame_tokens.shape == (1, config.num_frames, 2 + len(config.windows),
                                      config.token_dim)
    variant = build_mapper(load_config("dog", "tiny", ["mapper.frame_attention=true"]).mapper, CAVP_DIM)
    assert variant.frame_attention is not None
    baseline = build_mapper(load_config("tempotokens", "tiny").mapper, in_dim=96)
    assert isinstance(baseline, TempoTokensMapper) and baseline.tokens_per_vector == 1
    assert len(baseline.placeholder_names) == 6


@pytest.mark.parametrize("mapper", [
    tiny_mapper(windows=[1, 3]),
    tiny_mapper(frame_attention=True),
    TempoTokensMapper(in_dim=20, hidden_dim=12, token_dim=8, num_frames=6, upstream_dropout=True),
], ids=["audiovisgen", "audiovisgen-frame-attention", "tempotokens"])
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
