"""CAVP: front end and network against Diff-Foley's outputs, loaders, lengths, tiny variant."""
from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import torch
from audio_checkpoints import noise, write_cavp_checkpoint, write_float_wav

from avlib.audio import (CAVPEncoder, CAVPMelSpectrogram, EmbeddingCache, build_audio_encoder,
                         load_encoder, load_official_cavp, resolve_checkpoint,
                         save_encoder, tiny_encoder)
from avlib.config import EncoderConfig
from avlib.errors import CheckpointError
from avlib.media import load_audio

SR = 16000


@pytest.fixture(scope="module")
def case(fixtures_dir):
    return dict(np.load(fixtures_dir / "cavp_case_4s.npz"))


@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory, synth_weights, fixtures_dir):
    return write_cavp_checkpoint(synth_weights, fixtures_dir,
                                 tmp_path_factory.mktemp("cavp") / "cavp_epoch66.ckpt")


@pytest.fixture(scope="module")
def cavp(official_ckpt):
    return build_audio_encoder(EncoderConfig(name="cavp", checkpoint=str(official_ckpt)))


def librosa_reference_mel(waveform: np.ndarray) -> np.ndarray:
    """Diff-Foley's recipe written with librosa (reflect padding as in its pinned 0.8)."""
    stft = np.abs(librosa.stft(waveform[:-1], n_fft=1024, hop_length=250, pad_mode="reflect"))
    mel = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128, fmin=125, fmax=7600) @ stft
    return np.clip((20 * np.log10(np.maximum(mel, 1e-5)) - 20 + 100) / 100, 0, 1)


def test_mel_matches_upstream_reflect_padding(case):
    mel = CAVPMelSpectrogram()(torch.from_numpy(case["waveform"])[None]).numpy()
    assert mel.shape == (1, 128, 256)
    np.testing.assert_allclose(mel, case["mel_reflect_pad"], atol=1e-5, rtol=0)
    # The zero-padded variant (librosa >= 0.10) differs at the edges: padding mode matters.
    assert np.abs(mel - case["mel"]).max() > 1e-2


def test_official_checkpoint_reproduces_upstream_embedding(cavp, case):
    waveform = case["waveform"][None]
    np.testing.assert_allclose(cavp.frontend(torch.from_numpy(waveform)).numpy(),
                               case["mel_reflect_pad"], atol=1e-5, rtol=0)
    embedding = cavp.encode(waveform).numpy()
    assert embedding.shape == (1, 16, 512) and embedding.dtype == np.float32
    np.testing.assert_allclose(embedding, case["embedding_reflect_pad"], atol=1e-5, rtol=0)
    assert not cavp.training and not any(p.requires_grad for p in cavp.parameters())


@pytest.mark.parametrize("layout", ["ddp_lightning", "lightning", "bare"])
def test_official_loader_accepts_upstream_layouts(tmp_path, layout):
    tiny = tiny_encoder("cavp", width=4, embed_dim=24)  # widths are read off the weights
    audio = {f"spec_encoder.{k}": v for k, v in tiny.state_dict().items()}
    others = {"video_encoder.stem.weight": torch.zeros(2), "logit_scale": torch.tensor(2.6)}
    checkpoint = {
        "ddp_lightning": {"state_dict": {f"module.{k}": v for k, v in (audio | others).items()},
                          "epoch": 66},
        "lightning": {"state_dict": audio | others},
        "bare": audio,
    }[layout]
    torch.save(checkpoint, tmp_path / "cavp.ckpt")
    loaded = load_official_cavp(tmp_path / "cavp.ckpt").eval()
    waveform = noise(1.0)[None]
    torch.testing.assert_close(loaded.encode(waveform), tiny.eval().encode(waveform), atol=0, rtol=0)


@pytest.mark.parametrize("seconds", [1.0, 3.3, 10.0])
def test_other_lengths_follow_the_frame_rules(cavp, seconds):
    waveform = noise(seconds, seed=int(seconds * 10))
    n = len(waveform)
    mel = cavp.frontend(torch.from_numpy(waveform)[None])
    assert mel.shape == (1, 128, 1 + (n - 1) // 250)
    np.testing.assert_allclose(mel[0].numpy(), librosa_reference_mel(waveform), atol=1e-5, rtol=0)
    embedding = cavp.encode(waveform[None])
    assert embedding.shape == (1, mel.shape[-1] // 16, 512) == (1, cavp.num_vectors(n), 512)
    assert embedding.shape[1] == int(seconds * cavp.frame_rate)
    assert torch.isfinite(embedding).all()


def test_batched_equals_one_by_one(cavp):
    waveforms = np.stack([noise(0.5, seed) for seed in range(3)])
    batched = cavp.encode(waveforms)
    singles = torch.cat([cavp.encode(w[None]) for w in waveforms])
    assert batched.shape == (3, 2, 512)
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=0)
    assert (batched[0] - batched[1]).abs().max() > 1e-5  # different clips, different vectors


def test_short_audio_is_zero_padded_to_one_vector_and_silence_is_finite(cavp):
    short = noise(0.1)
    assert CAVPMelSpectrogram.min_samples == 15 * 250 + 1
    padded = np.pad(short, (0, CAVPMelSpectrogram.min_samples - len(short)))
    out = cavp.encode(short[None])
    assert out.shape == (1, 1, 512) and cavp.num_vectors(len(short)) == 1
    torch.testing.assert_close(out, cavp.encode(padded[None]), atol=0, rtol=0)
    silent = cavp.encode(np.zeros((1, SR // 2), np.float32))
    assert silent.shape == (1, 2, 512) and torch.isfinite(silent).all()


def test_tiny_cavp_is_seeded_and_round_trips_through_safetensors(tmp_path):
    config = EncoderConfig(name="cavp", width=4)
    state = torch.random.get_rng_state()
    tiny = build_audio_encoder(config, embed_dim=24)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert isinstance(tiny, CAVPEncoder) and tiny.conv_block6.conv2.out_channels == 128
    again = build_audio_encoder(config, embed_dim=24)
    other = build_audio_encoder(config, embed_dim=24, seed=1)
    waveform = noise(2.0)[None]
    out = tiny.encode(waveform)
    assert out.shape == (1, 8, 24) and tiny.output_dim == 24
    torch.testing.assert_close(again.encode(waveform), out, atol=0, rtol=0)
    assert (other.encode(waveform) - out).abs().max() > 1e-4

    path = save_encoder(tiny, tmp_path / "tiny_cavp.safetensors")
    reloaded = build_audio_encoder(EncoderConfig(name="cavp", checkpoint=str(path)))
    torch.testing.assert_close(reloaded.encode(waveform), out, atol=0, rtol=0)
    with pytest.raises(CheckpointError, match="holds a cavp encoder, not beats"):
        load_encoder(path, "beats")


def test_official_loader_rejects_a_wrong_file_listing_keys(tmp_path):
    audio = {f"spec_encoder.{k}": v for k, v in tiny_encoder("cavp", width=4).state_dict().items()}
    audio["spec_encoder.fc1.weight"] = torch.zeros(128, 100)
    path = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": audio}, path)
    with pytest.raises(CheckpointError, match=r"wrong shape 1 keys: fc1.weight \(128, 100\) vs "
                                              r"\(128, 128\)") as wrong_shape:
        load_official_cavp(path)
    torch.save({"cfg": {}, "model": {"patch_embedding.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match=r"missing 81 keys: .*\(\+77 more\)") as missing:
        load_official_cavp(path)
    for error in (wrong_shape, missing):
        assert "\n" not in str(error.value) and "cavp_epoch66.ckpt" in str(error.value)


def test_truncated_or_missing_checkpoint_gives_one_line_error(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"spec_encoder.fc1.bias": torch.zeros(2048)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="is truncated or damaged") as error:
        load_official_cavp(path)
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        build_audio_encoder(EncoderConfig(name="cavp", checkpoint=str(tmp_path / "nope.ckpt")))


def test_hub_id_resolves_from_the_cache_and_fails_clearly_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--SimianLuo--Diff-Foley" / "snapshots" / "abc123"
    (snapshot / "diff_foley_ckpt").mkdir(parents=True)
    (snapshot / "diff_foley_ckpt" / "cavp_epoch66.ckpt").write_bytes(b"weights")
    (tmp_path / "models--SimianLuo--Diff-Foley" / "refs").mkdir()
    (tmp_path / "models--SimianLuo--Diff-Foley" / "refs" / "main").write_text("abc123")
    hub_id = "SimianLuo/Diff-Foley::diff_foley_ckpt/cavp_epoch66.ckpt"
    path = resolve_checkpoint(hub_id, cache_dir=tmp_path)
    assert path.read_bytes() == b"weights"

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="not found in the huggingface_hub cache; run once "
                                              "with network access .* or pass a local path"):
        resolve_checkpoint(hub_id, cache_dir=tmp_path / "empty")


def test_embedding_cache_encodes_each_clip_once(tmp_path):
    config = EncoderConfig(name="cavp", width=4)
    encoder = build_audio_encoder(config)
    clips = {f"clip{i}": write_float_wav(tmp_path / f"clip{i}.wav", noise(seconds, seed=i))
             for i, seconds in enumerate([1.0, 1.0, 0.5])}
    cache = EmbeddingCache(encoder, dataclasses.asdict(config), tmp_path / "cache")
    assert cache.fill(encoder, clips) == 3
    for clip_id, path in clips.items():
        expected = encoder.encode(load_audio(path)[None])[0].numpy()
        np.testing.assert_array_equal(cache.entries.load(*cache.key(load_audio(path))), expected)  # as training encodes it
    assert cache.entries.load(*cache.key(load_audio(clips["clip2"]))).shape == (2, 32)
    assert cache.fill(encoder, clips) == 0  # all cached
    assert cache.fill(encoder, {"renamed": clips["clip0"]}) == 0  # keyed by the samples, not the id
    wider = EncoderConfig(name="cavp", width=8)
    other = EmbeddingCache(build_audio_encoder(wider), dataclasses.asdict(wider), tmp_path / "cache")
    assert other.key(load_audio(clips["clip0"])) != cache.key(load_audio(clips["clip0"]))
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3
