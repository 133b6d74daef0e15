"""TempoTokens mapper: parity with upstream on its released layout, strict loading, any length."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avlib.config import load_config
from avlib.errors import CheckpointError, ConfigError
from avlib.mapper import TempoTokensMapper, build_mapper
from avlib.mapper.temporal import resample_frames
from avlib.mapper.tempotokens import load_released_weights

CASES = ("s48_b1", "s96_b1", "s48_b2", "beats_chain_2s")
OUTPUTS = ("temporal_token", "local_window_1", "local_window_2", "local_window_3",
           "local_window_4", "audio_token")


@pytest.fixture(scope="module")
def mapper(tempotokens_file):
    return TempoTokensMapper.from_checkpoint(tempotokens_file)


def case_input(case, tempotokens_reference, fixtures_dir):
    if case == "beats_chain_2s":  # the BEATs stand-in's 12 layers on its 2 s waveform
        return torch.from_numpy(np.load(fixtures_dir / "beats_case_2s.npz")["layers_cat"])
    return torch.from_numpy(tempotokens_reference[f"{case}_input"])


@pytest.mark.parametrize("case", CASES)
def test_reproduces_upstream_outputs(case, mapper, tempotokens_reference, fixtures_dir):
    features = case_input(case, tempotokens_reference, fixtures_dir)
    with torch.no_grad():
        out = mapper(features)
        weights = mapper.fga.attention_weights(out.temporal_tokens)
    assert list(out.extras) == list(OUTPUTS)
    for name in OUTPUTS:
        expected = tempotokens_reference[f"{case}_{name}"]
        assert out.extras[name].shape == expected.shape
        np.testing.assert_allclose(out.extras[name].numpy(), expected, atol=1e-5, rtol=0,
                                   err_msg=name)
    np.testing.assert_allclose(weights.numpy(), tempotokens_reference[f"{case}_fga_weights"], atol=1e-6, rtol=0)


def test_frame_tokens_follow_the_placeholder_order(mapper, tempotokens_reference):
    with torch.no_grad():
        out = mapper(torch.from_numpy(tempotokens_reference["s48_b2_input"]))
    assert mapper.placeholder_names == ["<temp>", "<local1>", "<local2>", "<local3>", "<local4>",
                                        "<class>"]
    assert out.frame_tokens.shape == (2, 24, 6, 1024)
    assert torch.equal(out.temporal_tokens, out.extras["temporal_token"])
    for k, name in enumerate(OUTPUTS[:-1]):
        assert torch.equal(out.frame_tokens[:, :, k], out.extras[name])
    # <class> is one vector shared by every frame
    shared = out.extras["audio_token"][:, None].expand(-1, 24, -1)
    assert torch.equal(out.frame_tokens[:, :, -1], shared)


def test_module_prefix_of_a_ddp_checkpoint_is_stripped(tempotokens_state, tmp_path, mapper):
    path = tmp_path / "at_embedder_500.pth"
    torch.save({f"module.{k}": v for k, v in tempotokens_state.items()}, path)
    loaded = TempoTokensMapper.from_checkpoint(path)
    for key, value in mapper.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_upstream_dropout_randomises_only_the_class_token(tempotokens_file, tempotokens_reference):
    faithful = TempoTokensMapper.from_checkpoint(tempotokens_file, upstream_dropout=True)
    features = torch.from_numpy(tempotokens_reference["s48_b1_input"])
    with torch.no_grad():
        torch.manual_seed(1234)
        first = faithful(features).extras
        torch.manual_seed(5678)
        second = faithful(features).extras
    for name in OUTPUTS[:-1]:
        np.testing.assert_allclose(first[name].numpy(), tempotokens_reference[f"s48_b1_{name}"], atol=1e-5)
    draw_gap = (first["audio_token"] - second["audio_token"]).abs().max()
    reference_gap = np.abs(first["audio_token"].numpy() - tempotokens_reference["s48_b1_audio_token"]).max()
    assert draw_gap > 1e-4 and reference_gap > 1e-4


def test_dropout_off_in_eval_is_deterministic_but_on_in_training(mapper, tempotokens_reference):
    features = torch.from_numpy(tempotokens_reference["s48_b1_input"])
    with torch.no_grad():
        assert torch.equal(mapper(features).extras["audio_token"],
                           mapper(features).extras["audio_token"])
        mapper.train()
        try:
            trained = mapper(features).extras["audio_token"]
        finally:
            mapper.eval()
    assert (trained - torch.from_numpy(tempotokens_reference["s48_b1_audio_token"])).abs().max() > 1e-4


@pytest.mark.parametrize("edit, words", [
    (lambda sd: {k: v for k, v in sd.items() if not k.startswith("fga.")},
     ["missing keys", "fga.reduce_potentials.0.weight"]),
    (lambda sd: {**sd, "text_proj.weight": torch.zeros(2, 2)},
     ["unexpected keys", "text_proj.weight"]),
    (lambda sd: {"state_dict": sd}, ["not a plain state dict"]),
])
def test_wrong_files_are_rejected_with_their_keys(edit, words, tempotokens_state, tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(edit(tempotokens_state), path)
    with pytest.raises(CheckpointError) as info:
        TempoTokensMapper.from_checkpoint(path)
    for word in words:
        assert word in str(info.value)


def test_missing_and_corrupt_files_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*learned_embeds.pth"):
        TempoTokensMapper.from_checkpoint(tmp_path / "nope.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint"):
        TempoTokensMapper.from_checkpoint(corrupt)


def test_sizes_that_differ_from_the_file_are_named(tempotokens_state):
    tiny = TempoTokensMapper(in_dim=9216, hidden_dim=64, token_dim=1024)
    sizes = r"fc1.weight \(2304, 9216\) \(mapper: \(64, 9216\)\)"
    with pytest.raises(CheckpointError, match=sizes):
        load_released_weights(tiny, tempotokens_state)


# Lengths that are not a multiple of 24: upstream raises; here frames average consecutive spans.

def test_resampling_equals_upstream_grouping_for_multiples():
    x = torch.randn(2, 96, 5)
    assert torch.allclose(resample_frames(x, 24), x.view(2, 24, 4, 5).mean(2), atol=1e-6)


def test_resampling_averages_consecutive_spans_for_other_lengths():
    x = torch.arange(30, dtype=torch.float32).view(1, 30, 1)
    # 30 rows onto 24 frames: frame i covers rows floor(30 i / 24) .. ceil(30 (i + 1) / 24) - 1
    expected = [x[0, (30 * i) // 24: -(-30 * (i + 1) // 24), 0].mean() for i in range(24)]
    assert torch.allclose(resample_frames(x, 24)[0, :, 0], torch.stack(expected))


def test_resampling_interpolates_short_inputs():
    x = torch.tensor([[[0.0], [4.0]]])  # (1, 2, 1)
    assert resample_frames(x, 4)[0, :, 0].tolist() == [0.0, 1.0, 3.0, 4.0]


@pytest.mark.parametrize("length", [10, 50, 248, 496])  # < 24, 1 s + 2 rows, 5 s and 10 s of BEATs
def test_any_length_gives_24_frames(length):
    torch.manual_seed(0)
    small = TempoTokensMapper(in_dim=16, hidden_dim=8, token_dim=8).eval()
    with torch.no_grad():
        out = small(torch.randn(2, length, 16))
    assert out.frame_tokens.shape == (2, 24, 6, 8)
    assert out.extras["audio_token"].shape == (2, 8)
    assert torch.isfinite(out.frame_tokens).all()


def test_features_of_the_wrong_width_are_a_config_error():
    small = TempoTokensMapper(in_dim=16, hidden_dim=8, token_dim=8)
    with pytest.raises(ConfigError, match=r"expects \(batch, time, 16\)"):
        small(torch.randn(1, 48, 768))


def test_baseline_experiment_loads_the_released_file(tempotokens_file, mapper, tempotokens_reference):
    config = load_config("tempotokens_baseline", "paper", [f"mapper.checkpoint={tempotokens_file}"])
    assert config.train.max_steps == 0  # evaluated as released, never trained
    baseline = build_mapper(config.mapper, in_dim=9216).eval()
    features = torch.from_numpy(tempotokens_reference["s48_b1_input"])
    with torch.no_grad():
        np.testing.assert_allclose(baseline(features).extras["audio_token"].numpy(),
                                   tempotokens_reference["s48_b1_audio_token"], atol=1e-5, rtol=0)
