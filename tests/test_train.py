"""The training loop on the tiny profile: learning, exact resume, feature caching."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from avlib.config import load_config
from avlib.data.synthetic import synth_clip
from avlib.errors import AvlibError
from avlib.train import latest_checkpoint, train


def _clips(n=4, frames=8, seconds=1.0):
    items = []
    for i in range(n):
        clip = synth_clip("dog" if i % 2 else "thunder", seed=i, seconds=seconds, fps=frames / seconds, size=32)
        video = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 127.5 - 1  # (F, 3, H, W)
        items.append({"frames": video, "waveform": torch.from_numpy(clip.wave), "clip_id": f"clip{i}"})
    return items


def _config(**overrides):
    base = {"train.batch_size": 2, "train.max_steps": 6, "train.checkpoint_every": 3, "train.epochs": 10}
    return load_config("dog", "tiny", {**base, **overrides})


def test_three_steps_lower_the_loss_on_a_fixed_batch(tiny_t2v):
    from diffusers import DDPMScheduler

    from avlib.audio import build_audio_encoder
    from avlib.mapper import build_mapper
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline
    from avlib.train import FrozenFeatures, denoising_loss

    cfg = _config()
    torch.manual_seed(0)
    pipeline = AudioToVideoPipeline.from_t2v(tiny_t2v)  # installs the per-frame conditioning
    encoder = build_audio_encoder(cfg.encoder).eval()
    features = FrozenFeatures(cfg, tiny_t2v, encoder, cache_root=None)
    audio, latents = (torch.stack(x) for x in zip(*(features(c) for c in _clips(2))))
    mapper = build_mapper(cfg.mapper, in_dim=encoder.output_dim)
    schedule = DDPMScheduler.from_config(tiny_t2v.scheduler.config)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    timesteps = torch.tensor([300, 700])
    optimizer = torch.optim.AdamW(mapper.parameters(), lr=1e-2)
    losses = []
    for _ in range(4):  # three updates, and the loss after the last one
        loss, _, _ = denoising_loss(pipeline, mapper, schedule, audio, latents, noise, timesteps, None, 0.01)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0]
    assert not any(p.grad is not None for p in tiny_t2v.unet.parameters())  # the UNet stays frozen


def test_block_checkpointing_gives_the_same_gradients():
    from avlib.pipeline.tiny import random_t2v_components
    from avlib.train import checkpoint_unet_blocks

    grads = []
    for checkpointed in (False, True):
        unet = random_t2v_components("tiny")["unet"].requires_grad_(False)
        if checkpointed:
            checkpoint_unet_blocks(unet)
        context = torch.randn(1, 4 * 77, 32, generator=torch.Generator().manual_seed(0)).requires_grad_()
        latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
        unet(latents, 10, encoder_hidden_states=context[:, :77]).sample.square().mean().backward()
        grads.append(context.grad)
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_a_run_writes_losses_config_and_a_loadable_pipeline(tmp_path):
    config = _config(**{"train.max_steps": 4, "train.gradient_checkpointing": True})
    summary = train(config, _clips(2), tmp_path / "run", progress=False)
    losses = np.loadtxt(tmp_path / "run" / "losses.csv", delimiter=",", skiprows=1, usecols=2)
    assert summary["steps"] == 4 and len(losses) == 4 and np.isfinite(losses).all()
    assert (tmp_path / "run" / "config.json").is_file()
    assert (tmp_path / "run" / "pipeline" / "mapper").is_dir()


def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path):
    clips = _clips(4)
    train(_config(), clips, tmp_path / "straight", progress=False)
    train(_config(**{"train.max_steps": 3}), clips, tmp_path / "resumed", progress=False)
    assert latest_checkpoint(tmp_path / "resumed").name == "step_0000003"
    train(_config(), clips, tmp_path / "resumed", resume=True, progress=False)
    straight = load_file(latest_checkpoint(tmp_path / "straight") / "mapper.safetensors")
    resumed = load_file(latest_checkpoint(tmp_path / "resumed") / "mapper.safetensors")
    assert latest_checkpoint(tmp_path / "resumed").name == "step_0000006"
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    clips = _clips(2)
    cfg = _config(**{"train.max_steps": 1})
    train(cfg, clips, tmp_path / "run", progress=False)
    with pytest.raises(AvlibError, match="already holds a run"):
        train(cfg, clips, tmp_path / "run", progress=False)
    with pytest.raises(AvlibError, match="nothing to resume"):
        train(cfg, clips, tmp_path / "empty", resume=True, progress=False)


def test_feature_cache_hit_on_second_epoch_and_invalidated_by_config(tmp_path, monkeypatch):
    monkeypatch.setenv("AVLIB_CACHE", str(tmp_path / "cache"))  # start from an empty cache
    clips = _clips(2)
    cfg = _config(**{"train.max_steps": 2, "train.batch_size": 1})  # two clips = one epoch
    first = train(cfg, clips, tmp_path / "a", progress=False)
    assert (first["cache_misses"], first["cache_hits"]) == (2, 0)
    second = train(_config(**{"train.max_steps": 4, "train.batch_size": 1}), clips, tmp_path / "b", progress=False)
    assert (second["cache_misses"], second["cache_hits"]) == (0, 4)  # reused across epochs and runs
    changed = train(_config(**{"train.max_steps": 2, "train.batch_size": 1, "encoder.width": 8}),
                    clips, tmp_path / "c", progress=False)
    assert changed["cache_misses"] == 2  # a different encoder is a different cache entry


def test_unet_fine_tuning_flag_saves_and_reloads_the_unet(tmp_path, tiny_t2v):
    from avlib.pipeline.audio_to_video import AudioToVideoPipeline

    config = _config(**{"train.max_steps": 1, "train.train_unet": True, "train.lr": 1e-2})
    train(config, _clips(2), tmp_path / "run", progress=False)
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert (checkpoint / "unet.safetensors").is_file()
    pipeline = AudioToVideoPipeline.from_pretrained(tmp_path / "run" / "pipeline")
    tuned = dict(pipeline.unet.named_parameters())
    frozen = dict(tiny_t2v.unet.named_parameters())
    assert any(not torch.equal(tuned[name], frozen[name]) for name in frozen)
    assert not any(p.requires_grad for p in pipeline.unet.parameters())


def test_random_windows_of_cached_whole_clips_differ_per_epoch(tiny_t2v, tmp_path):
    """3 s clips, 1 s windows: the whole clip is encoded and cached once, each epoch crops
    new aligned windows from the cache (audio vectors and latents of the same seconds)."""
    from avlib.audio import build_audio_encoder
    from avlib.data.window import AudioFrameWindow
    from avlib.train import FeatureDataset, FrozenFeatures

    cfg = _config()
    encoder = build_audio_encoder(cfg.encoder).eval()
    features = FrozenFeatures(cfg, tiny_t2v, encoder, cache_root=tmp_path / "cache")
    clips = _clips(2, frames=24, seconds=3.0)
    dataset = FeatureDataset(clips, features, AudioFrameWindow.for_training(cfg.data), seed=0)
    starts = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        items = [dataset[i] for i in range(2)]
        starts.append(tuple(item["start_frame"] for item in items))
        for item in items:
            assert item["latents"].shape[1] == 8 and item["audio"].shape == (4, encoder.output_dim)
    assert features.misses == 2 and features.hits == 6
    assert len(set(starts)) > 1 and all(s % 2 == 0 for pair in starts for s in pair)  # CAVP grid: 2 frames
    whole_audio, whole_latents = features(clips[1])
    assert whole_latents.shape[1] == 24 and whole_audio.shape[0] == 12
    item = dataset[1]
    start = item["start_frame"]
    assert torch.equal(item["latents"], whole_latents[:, start:start + 8])
    assert torch.equal(item["audio"], whole_audio[start // 2:start // 2 + 4])  # 4 vectors/s, 8 fps


def test_report_padded_window_encodes_ten_seconds_per_step(tiny_t2v):
    """The report repo's quirk: the window's audio zero-padded to 10 s (40 CAVP vectors)."""
    from avlib.audio import build_audio_encoder
    from avlib.data.window import AudioFrameWindow
    from avlib.train import FeatureDataset, FrozenFeatures

    cfg = _config(**{"data.audio_window": "report_padded"})
    encoder = build_audio_encoder(cfg.encoder).eval()
    features = FrozenFeatures(cfg, tiny_t2v, encoder, cache_root=None, whole_audio=False)
    dataset = FeatureDataset(_clips(1), features, AudioFrameWindow.for_training(cfg.data), seed=0)
    item = dataset[0]
    assert item["audio"].shape[0] == 40 and item["latents"].shape[1] == 8


@pytest.mark.parametrize("overrides", [{"mapper.frame_attention": True},
                                       {"data.audio_window": "report_padded"}],
                         ids=["frame-attention", "report-padded"])
def test_mapper_variants_train(overrides, tmp_path):
    config = _config(**{"train.max_steps": 2, **overrides})
    summary = train(config, _clips(2), tmp_path / "run", progress=False)
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
