"""Training with the frozen parts in model.dtype: half-precision frozen models, float32 trainables.

On CUDA ``load_t2v`` gives the frozen UNet, VAE and text encoder in ``model.dtype``; on the
CPU it keeps float32, so here a wrapper loads in bfloat16 on the CPU to run the same loop.
"""
import pytest
import torch
from safetensors.torch import load_file

import avlib.pipeline.assemble
import avlib.train
from avlib.config import load_config
from avlib.data.splits import load_split
from avlib.pipeline.t2v import DTYPES, load_t2v
from avlib.train import train


@pytest.fixture
def half_frozen(monkeypatch):
    """Make train() load the frozen model in the dtype it asks for, on the CPU too; record it."""
    asked, seen = [], []

    def load_in_dtype(pretrained, dtype, device):
        asked.append(dtype)
        t2v = load_t2v(pretrained, "float32", device)
        for model in (t2v.unet, t2v.vae, t2v.text_encoder):
            model.to(DTYPES[dtype])
        return t2v

    def recording_loss(t2v, mapper, *args, **kwargs):
        loss, mse, regulariser = denoising_loss(t2v, mapper, *args, **kwargs)
        seen.append({"unet": t2v.unet.dtype, "vae": t2v.vae.dtype, "text_encoder": t2v.text_encoder.dtype,
                     "mapper": {p.dtype for p in mapper.parameters()}, "loss": loss.dtype})
        return loss, mse, regulariser

    denoising_loss = avlib.train.denoising_loss
    monkeypatch.setattr(avlib.pipeline.assemble, "load_t2v", load_in_dtype)
    monkeypatch.setattr(avlib.train, "denoising_loss", recording_loss)
    return asked, seen


def test_frozen_parts_in_model_dtype_trainables_and_optimizer_in_float32(half_frozen, tmp_path):
    asked, seen = half_frozen
    config = load_config("dog", "tiny", {"model.dtype": "bfloat16", "train.max_steps": 2,
                                         "train.checkpoint_every": 2, "data.synth_clips_per_class": 2,
                                         "data.synth_test_clips": 1})
    summary = train(config, load_split(config, "train", start="whole"), tmp_path / "run", progress=False)
    assert asked == ["bfloat16"] and len(seen) == 2
    for step in seen:
        assert step["unet"] == step["vae"] == step["text_encoder"] == torch.bfloat16
        assert step["mapper"] == {torch.float32} and step["loss"] == torch.float32
    assert torch.isfinite(torch.tensor(summary["final_loss"]))
    checkpoint = tmp_path / "run" / "checkpoints" / "step_0000002"
    optimizer = load_file(checkpoint / "optimizer.safetensors")
    assert optimizer and {t.dtype for t in optimizer.values() if t.ndim} == {torch.float32}
    mapper = load_file(checkpoint / "mapper.safetensors")
    assert {t.dtype for t in mapper.values()} == {torch.float32}


def test_a_trained_unet_is_float32_even_when_the_rest_is_half(half_frozen, tmp_path):
    asked, seen = half_frozen
    config = load_config("dog", "tiny", {"model.dtype": "bfloat16", "train.max_steps": 1,
                                         "train.train_unet": True, "data.synth_clips_per_class": 2,
                                         "data.synth_test_clips": 1})
    train(config, load_split(config, "train", start="whole"), tmp_path / "run", progress=False)
    assert seen[0]["unet"] == torch.float32 and seen[0]["text_encoder"] == torch.bfloat16
    unet = load_file(tmp_path / "run" / "checkpoints" / "step_0000001" / "unet.safetensors")
    assert {t.dtype for t in unet.values()} == {torch.float32}


def test_load_t2v_keeps_float32_on_the_cpu():
    t2v = load_t2v("tiny", dtype="float16", device="cpu")
    assert {t2v.unet.dtype, t2v.vae.dtype, t2v.text_encoder.dtype} == {torch.float32}
