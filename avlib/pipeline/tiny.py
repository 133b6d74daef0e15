"""Tiny twins of zeroscope's components: the same diffusers/transformers classes, CPU-sized.

Nothing here downloads anything. The tokenizer is :func:`avlib.tokenizers.tiny_clip_tokenizer`,
a real byte-level BPE ``CLIPTokenizer`` built from an in-memory vocabulary.
"""
from __future__ import annotations

from pathlib import Path

import torch

from avlib.tokenizers import TINY_MAX_LENGTH, tiny_clip_tokenizer

__all__ = ["SIZES", "build_random_t2v", "build_tiny_t2v", "random_t2v_components", "tiny_clip_tokenizer"]

TINY_TEXT_DIM = 32

# Component sizes: "tiny" for CPU tests, "paper" = zeroscope_v2_576w's architecture (random
# weights; for benchmarks and GPU checks without downloading 7 GB).
SIZES = {
    "tiny": dict(text=dict(hidden_size=TINY_TEXT_DIM, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4),
                 vae=dict(block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8),
                 unet=dict(block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=8,
                           norm_num_groups=8, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                           up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))),
    "paper": dict(text=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                            num_attention_heads=16),
                  vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
                  unet=dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                            attention_head_dim=64, norm_num_groups=32)),
}


def random_t2v_components(size: str = "tiny", seed: int = 0, tokenizer=None) -> dict:
    """zeroscope's component classes with random weights, at ``size`` ("tiny" or "paper"),
    with ``tokenizer`` (default: the tiny one; :func:`avlib.pipeline.clip_vocab.clip_tokenizer`
    for CLIP's real vocabulary, which sizes the text encoder's embedding table).

    The tiny VAE downsamples by 4 (32x32 frames -> 8x8 latents), zeroscope's by 8: attention
    over many positions is what makes a CPU run slow.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    sizes = SIZES[size]
    torch.manual_seed(seed)
    tokenizer = tokenizer or tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), max_position_embeddings=TINY_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, **sizes["text"]))
    levels = len(sizes["vae"]["block_out_channels"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215,
                        down_block_types=("DownEncoderBlock2D",) * levels,
                        up_block_types=("UpDecoderBlock2D",) * levels, **sizes["vae"])
    unet = UNet3DConditionModel(in_channels=4, out_channels=4,
                                cross_attention_dim=sizes["text"]["hidden_size"], **sizes["unet"])
    # zeroscope's scheduler settings (scaled-linear betas, epsilon prediction).
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler}


def build_tiny_t2v(out_dir: str | Path, seed: int = 0) -> Path:
    """Save the tiny random components in diffusers' layout (``unet/ vae/ text_encoder/
    tokenizer/ scheduler/``), so they load through :func:`avlib.pipeline.t2v.load_t2v`
    exactly like zeroscope."""
    return build_random_t2v(out_dir, "tiny", seed)


def build_random_t2v(out_dir: str | Path, size: str = "tiny", seed: int = 0, tokenizer=None,
                     dtype: torch.dtype = torch.float32) -> Path:
    """:func:`random_t2v_components` saved as a diffusers folder, weights in ``dtype``."""
    out_dir = Path(out_dir)
    for name, component in random_t2v_components(size, seed, tokenizer).items():
        if isinstance(component, torch.nn.Module):
            component.to(dtype)
        component.save_pretrained(out_dir / name)
    return out_dir
