import numpy as np
import pytest
import torch

from avlib.audio import build_audio_encoder
from avlib.config import load_config
from avlib.mapper import build_mapper
from avlib.pipeline.audio_to_video import AudioToVideoPipeline
from avlib.pipeline.t2v import load_t2v

SETTINGS = dict(num_inference_steps=3, guidance_scale=5.0, num_frames=8, height=32, width=32)


def _audio_pipeline(t2v):
    cfg = load_config("dog", "tiny")
    encoder = build_audio_encoder(cfg.encoder).eval()
    torch.manual_seed(0)
    mapper = build_mapper(cfg.mapper, in_dim=encoder.output_dim).eval()
    pipe = AudioToVideoPipeline.from_t2v(t2v, encoder, mapper, encoder_config=cfg.encoder.__dict__)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_text_only_matches_diffusers_text_to_video_pipeline():
    from diffusers import TextToVideoSDPipeline

    t2v = load_t2v("tiny")
    ours = AudioToVideoPipeline.from_t2v(t2v)
    ours.set_settings(scheduler="ddim")   # TextToVideoSDPipeline samples with the model's own DDIM
    ours.set_progress_bar_config(disable=True)
    ours = ours(prompt="rain", generator=_seeded(), **SETTINGS).frames
    reference = TextToVideoSDPipeline(vae=t2v.vae, text_encoder=t2v.text_encoder, tokenizer=t2v.tokenizer,
                                      unet=t2v.unet, scheduler=t2v.scheduler)
    reference.set_progress_bar_config(disable=True)
    theirs = reference(prompt="rain", negative_prompt="", generator=_seeded(), output_type="np", **SETTINGS).frames
    assert ours.shape == theirs.shape == (1, 8, 32, 32, 3)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_audio_conditions_the_frames(tiny_t2v):
    pipe = _audio_pipeline(tiny_t2v)
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32)
    a = pipe(tone, generator=_seeded(), **SETTINGS).frames
    b = pipe(noise, generator=_seeded(), **SETTINGS).frames
    assert a.shape == (1, 8, 32, 32, 3) and np.isfinite(a).all()
    # Random tiny weights barely separate the two sounds, but the path is live end to end.
    assert not np.array_equal(a, b)
    contexts = [pipe.encode_conditioning(torch.from_numpy(x)[None], None, 8, 1) for x in (tone, noise)]
    assert contexts[0].shape == (1, 8 * 77, 32) and not torch.equal(contexts[0], contexts[1])
    batch = pipe(np.stack([tone, noise]), generator=_seeded(), **SETTINGS).frames
    assert batch.shape[0] == 2


def test_save_load_round_trip_gives_identical_frames(tiny_t2v, tmp_path):
    pipe = _audio_pipeline(tiny_t2v)
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, 24000).astype(np.float32)
    before = pipe(audio, prompt="a dog", generator=_seeded(3), **SETTINGS).frames
    pipe.save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "mapper" / "mapper.safetensors").is_file()
    loaded = AudioToVideoPipeline.from_pretrained(tmp_path / "pipe")
    after = loaded(audio, prompt="a dog", generator=_seeded(3), **SETTINGS).frames
    np.testing.assert_array_equal(before, after)


def test_wrong_frame_count_for_the_mapper_is_a_clear_error(tiny_t2v):
    from avlib.errors import ConfigError

    with pytest.raises(ConfigError, match="tokens for 8 frames"):
        _audio_pipeline(tiny_t2v)(np.zeros(16000, np.float32), **{**SETTINGS, "num_frames": 12})


def test_from_pretrained_on_a_folder_without_a_pipeline(tmp_path):
    from avlib.errors import CheckpointError

    with pytest.raises(CheckpointError, match="pipeline.json"):
        AudioToVideoPipeline.from_pretrained(tmp_path)
