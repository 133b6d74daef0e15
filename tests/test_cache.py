"""The content-addressed caches (avlib.cache): one key function for every cache, entries that
carry their content digest and verify themselves, and the clip-id collision that once handed a
run another dataset's features."""
from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import avlib.cache
from avlib.cache import CACHE_VERSION, CacheWarning, FeatureCache, cache_key, digest
from avlib.cli import main


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.safetensors"))


def test_the_key_names_every_input_and_nothing_else():
    base = dict(content="c" * 64, weights="w" * 64, settings={"hop": 160}, dtype="torch.float32")
    key = cache_key("audio", **base)
    assert key == cache_key("audio", **{**base, "settings": {"hop": 160}}) and len(key) == 64
    for changed in ({"content": "d" * 64}, {"weights": "v" * 64}, {"settings": {"hop": 320}},
                    {"dtype": "torch.float16"}):
        assert cache_key("audio", **{**base, **changed}) != key, changed
    assert cache_key("latents", **base) != key


def test_the_cache_version_is_part_of_every_key(monkeypatch):
    args = dict(content="c", weights="w", settings={}, dtype="float32")
    key = cache_key("fvd", **args)
    monkeypatch.setattr(avlib.cache, "CACHE_VERSION", CACHE_VERSION + 1)
    assert cache_key("fvd", **args) != key


def test_digest_counts_dtype_and_shape():
    x = np.arange(6, dtype=np.float32)
    assert digest(x) == digest(x.copy()) and digest(torch.from_numpy(x)) == digest(torch.from_numpy(x.copy()))
    assert digest(x) != digest(x.reshape(2, 3)) and digest(x) != digest(x.astype(np.float64))
    assert digest(torch.from_numpy(x)) != digest(torch.from_numpy(x).to(torch.bfloat16))


def test_an_entry_carries_its_content_digest_and_checksum(tmp_path):
    cache, value = FeatureCache(tmp_path), np.arange(12, dtype=np.float32).reshape(3, 4)
    key = cache_key("fvd", content="abc", weights="w", settings={}, dtype="float32")
    path = cache.save(key, "abc", value)
    with safe_open(str(path), "np") as handle:
        meta = handle.metadata()
    assert meta == {"avlib_cache": str(CACHE_VERSION), "key": key, "content": "abc", "sha256": digest(value)}
    np.testing.assert_array_equal(cache.load(key, "abc"), value)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "foreign"])
def test_a_damaged_or_foreign_entry_warns_once_and_is_not_used(damage, tmp_path):
    cache, value = FeatureCache(tmp_path), np.arange(64, dtype=np.float32)
    key = cache_key("fvd", content="abc", weights="w", settings={}, dtype="float32")
    path = cache.save(key, "abc", value)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:-10])
    elif damage == "flip":  # a bit flipped in the array: only the checksum can tell
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04not safetensors at all")
    else:  # another input's entry copied under this name
        other = cache_key("fvd", content="xyz", weights="w", settings={}, dtype="float32")
        path.write_bytes(cache.save(other, "xyz", value + 1).read_bytes())
    with pytest.warns(CacheWarning) as caught:
        assert cache.load(key, "abc") is None
    (message,) = [str(w.message) for w in caught]
    assert str(path) in message and "AVLIB_CACHE" in message and "--no-cache" in message
    assert "\n" not in message and "allow_pickle" not in message
    cache.save(key, "abc", value)  # computed again, the entry is whole again
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cache.load(key, "abc"), value)


def test_a_full_disk_while_caching_warns_and_carries_on(tmp_path, monkeypatch):
    import errno

    import safetensors.numpy

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    cache = FeatureCache(tmp_path)
    with pytest.warns(CacheWarning, match="No space left on device.*AVLIB_CACHE.*--no-cache"):
        assert cache.save("ab" * 32, "c", np.zeros(3, np.float32)) is None
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# -- each cache uses the one key function: every entry is named by cache_key of its parts ------

def _stored(entry: Path) -> dict[str, str]:
    with safe_open(str(entry), "np") as handle:
        return handle.metadata()


def test_training_features_use_the_one_key_function(tmp_path, tiny_t2v):
    from test_train import _clips, _config

    from avlib.audio import build_audio_encoder
    from avlib.cache import weights_digest
    from avlib.train import FrozenFeatures

    cfg = _config()
    encoder = build_audio_encoder(cfg.encoder).eval()
    features = FrozenFeatures(cfg, tiny_t2v, encoder, tmp_path)
    clip = _clips(1)[0]
    audio, latents = features(clip)
    samples = digest(torch.as_tensor(np.asarray(clip["waveform"], np.float32)))
    audio_key = cache_key("audio", content=samples, weights=weights_digest(encoder),
                          settings=dataclasses.asdict(cfg.encoder), dtype="torch.float32")
    latent_key = cache_key("latents", content=digest(clip["frames"]), weights=weights_digest(tiny_t2v.vae),
                           settings={"scaling_factor": tiny_t2v.vae.config.scaling_factor}, dtype="torch.float32")
    for kind, key, content in (("audio", audio_key, samples), ("latents", latent_key, digest(clip["frames"]))):
        (entry,) = _entries(tmp_path / kind)
        assert entry.stem == key and _stored(entry)["content"] == content  # named by content, not clip id
    again = FrozenFeatures(cfg, tiny_t2v, encoder, tmp_path)
    cached_audio, cached_latents = again({**clip, "clip_id": "another_name"})
    assert again.hits == 1 and torch.equal(cached_audio, audio) and torch.equal(cached_latents, latents)


def test_fvd_features_use_the_one_key_function(tmp_path):
    from avlib.cache import file_digest
    from avlib.media import write_video
    from avlib.metrics.fvd import extract_features, tiny_backbone

    video, backbone = tmp_path / "v.mp4", tiny_backbone()
    write_video(video, np.full((8, 32, 32, 3), 40, np.uint8), 8.0)
    extract_features([video], backbone, FeatureCache(tmp_path / "fvd"), progress=False)
    (entry,) = _entries(tmp_path / "fvd")
    key = cache_key("fvd", content=file_digest(video), weights=backbone.fingerprint,
                    settings=dataclasses.asdict(backbone.preprocessing), dtype="torch.float32")
    assert entry.stem == key and _stored(entry)["content"] == file_digest(video)
    renamed = tmp_path / "renamed.mp4"
    renamed.write_bytes(video.read_bytes())  # the same bytes elsewhere: the same entry
    extract_features([renamed], backbone, FeatureCache(tmp_path / "fvd"), progress=False)
    assert _entries(tmp_path / "fvd") == [entry]


def test_audio_embedding_cache_uses_the_one_key_function(tmp_path):
    from avlib.audio import EmbeddingCache, build_audio_encoder
    from avlib.cache import weights_digest
    from avlib.config import EncoderConfig

    config = EncoderConfig(name="cavp", width=4)
    encoder = build_audio_encoder(config)
    cache = EmbeddingCache(encoder, dataclasses.asdict(config), tmp_path)
    wave = np.zeros(16000, np.float32)
    content = digest(torch.from_numpy(wave))
    assert cache.key(wave) == cache.key(torch.from_numpy(wave)) == (cache_key(
        "audio", content=content, weights=weights_digest(encoder), settings=dataclasses.asdict(config),
        dtype="torch.float32"), content)


def test_a_damaged_training_entry_is_recomputed_with_a_warning(tmp_path, tiny_t2v):
    from test_train import _clips, _config

    from avlib.audio import build_audio_encoder
    from avlib.train import FrozenFeatures

    cfg = _config()
    encoder = build_audio_encoder(cfg.encoder).eval()
    clip = _clips(1)[0]
    audio, _ = FrozenFeatures(cfg, tiny_t2v, encoder, tmp_path)(clip)
    (entry,) = _entries(tmp_path / "audio")
    entry.write_bytes(entry.read_bytes()[:-8] + b"\x00" * 8)
    features = FrozenFeatures(cfg, tiny_t2v, encoder, tmp_path)
    with pytest.warns(CacheWarning, match="damaged"):
        recomputed, _ = features(clip)
    assert features.misses == 1 and torch.equal(recomputed, audio)


# -- the collision that once poisoned a run --------------------------------------------------

def test_clips_that_reuse_ids_cannot_change_a_seeded_run(tmp_path, monkeypatch, capsys):
    """Train tiny dog; write another dataset whose clips are named synth_dog_0000... with other
    sounds and pictures and train on it (sharing the cache); train tiny dog again: the same
    weights, byte for byte (the old cache, keyed by clip id, handed the third run the second's
    features)."""
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))  # one cache, shared by the three runs
    small = ["--set", "data.synth_clips_per_class=4", "--set", "data.synth_test_clips=1",
             "--set", "train.max_steps=2", "--set", "train.checkpoint_every=2"]
    train = ["train", "--experiment", "dog", "--profile", "tiny", *small]
    assert main([*train, "--out", str(tmp_path / "before")]) == 0
    other = tmp_path / "other"
    assert main(["data", "synth", "--out", str(other), "--clips-per-class", "4", "--classes", "dog",
                 "--seed", "7", "--size", "32", "--fps", "8", "--seconds", "1", "--layout", "canonical"]) == 0
    assert (other / "synth_dog_0000.mp4").is_file()
    assert main([*train, "--set", f"data.root={other}", "--out", str(tmp_path / "poison")]) == 0
    assert main([*train, "--out", str(tmp_path / "after")]) == 0
    capsys.readouterr()
    before = (tmp_path / "before" / "pipeline" / "mapper")
    after = (tmp_path / "after" / "pipeline" / "mapper")
    files = sorted(p.relative_to(before) for p in before.rglob("*.safetensors"))
    assert files and files == sorted(p.relative_to(after) for p in after.rglob("*.safetensors"))
    for name in files:
        assert (before / name).read_bytes() == (after / name).read_bytes(), name
    poisoned = load_file(next((tmp_path / "poison" / "pipeline" / "mapper").rglob("*.safetensors")))
    clean = load_file(before / files[0])
    assert any(not torch.equal(poisoned[k], clean[k]) for k in clean)  # the other data did differ
    assert len(_entries(tmp_path / "cache" / "features" / "audio")) >= 6  # both datasets' clips kept


def test_the_toy_world_uses_the_cache_and_gets_the_same_mapper(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))
    argv = ["toyworld", "evaluate", "--test-per-class", "2", "--mapper-steps", "2", "--classes", "thunder", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "first")]) == 0
    assert main([*argv, "--out", str(tmp_path / "second")]) == 0
    capsys.readouterr()
    assert _entries(tmp_path / "cache" / "features" / "audio") and _entries(tmp_path / "cache" / "features" / "latents")
    summaries = [json.loads((tmp_path / name / "mapper_run" / "train_summary.json").read_text()) for name in ("first", "second")]
    assert summaries[0]["cache_misses"] > 0 and summaries[1]["cache_misses"] == 0 and summaries[1]["cache_hits"] > 0
    first, second = (sorted((tmp_path / name / "mapper_run" / "pipeline" / "mapper").rglob("*.safetensors"))
                     for name in ("first", "second"))
    assert first and [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_synthetic_clips_and_the_class_judge_are_named_by_the_one_key_function(monkeypatch, tmp_path):
    """Made from settings alone, they are still named by :func:`cache_key`, so a new cache version
    (code that writes them differently) never reads an older copy."""
    from avlib.config import load_config
    from avlib.data import splits

    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path))
    written = []
    monkeypatch.setattr(splits, "write_synthetic_dataset", lambda root, **params: written.append(root))
    config = load_config("dog", "tiny")
    first = splits.synthetic_root(config)
    assert splits.synthetic_root(dataclasses.replace(config, data=dataclasses.replace(config.data, fps=4))) != first
    monkeypatch.setattr(avlib.cache, "CACHE_VERSION", CACHE_VERSION + 1)
    assert splits.synthetic_root(config) != first and len(set(written)) == 3
