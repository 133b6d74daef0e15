"""Tiny twins of zeroscope's components: the same diffusers/transformers classes, CPU-sized.

Nothing here downloads anything. The tokenizer is a real byte-level BPE ``CLIPTokenizer``
built from an in-memory vocabulary (every byte, plus whole-word merges for a small word
list), so arbitrary text tokenizes and the words avlib's prompts use are single tokens.
"""
from __future__ import annotations

from pathlib import Path

import torch

# Words that get their own token; anything else falls back to byte-level pieces.
TINY_WORDS = (
    "a an the of in on with and is are at by to photo video clip sound "
    "dog dogs barking bark jumps thunder rain storm flash lightning volleyball ball bounces "
    "playing sports court field night day sky grass water object up down left right "
    "red green blue yellow white black bright dark frame"
).split()

TINY_TEXT_DIM = 32
TINY_MAX_LENGTH = 77


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2's convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    extra = (b for b in range(256) if b not in printable)
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + i) for i, b in enumerate(extra)})
    return [mapping[b] for b in range(256)]


def tiny_clip_tokenizer(words: tuple[str, ...] = TINY_WORDS):
    """A ``CLIPTokenizer`` with a small vocabulary, built without any file or download."""
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    vocab: dict[str, int] = {}
    for symbol in alphabet + [c + "</w>" for c in alphabet]:
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in words:
        # Merge left to right so every prefix of the word is itself a token.
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merged = pieces[0] + pieces[1]
            if merged not in vocab:
                merges.append((pieces[0], pieces[1]))
                vocab[merged] = len(vocab)
            pieces = [merged] + pieces[2:]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TINY_MAX_LENGTH)


def build_tiny_t2v(out_dir: str | Path, seed: int = 0) -> Path:
    """Create zeroscope's component classes at tiny sizes and ``save_pretrained`` them.

    The layout is diffusers' (``unet/ vae/ text_encoder/ tokenizer/ scheduler/``), so the
    result loads through :func:`avlib.pipeline.t2v.load_t2v` exactly like zeroscope.
    Frames are 32x32 with 8x8 latents (the VAE downsamples by 4, zeroscope's by 8) because
    attention over more positions is what makes a CPU run slow.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TINY_TEXT_DIM, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=TINY_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=32, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32), norm_num_groups=8, scaling_factor=0.18215,
    )
    unet = UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(32, 64), cross_attention_dim=TINY_TEXT_DIM,
        attention_head_dim=8, norm_num_groups=8,
    )
    # zeroscope's scheduler settings (scaled-linear betas, epsilon prediction).
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    for name, component in [("unet", unet), ("vae", vae), ("text_encoder", text_encoder),
                            ("tokenizer", tokenizer), ("scheduler", scheduler)]:
        component.save_pretrained(out_dir / name)
    return out_dir
