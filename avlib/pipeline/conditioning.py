"""Per-frame text conditioning for a frozen UNet3D, through diffusers' public extension points.

zeroscope's UNet repeats one text context for every frame. TempoTokens gives each frame its
own context instead; we do the same without forking diffusers:

1. :func:`encode_frame_prompts` builds one 77-token CLIP context per frame, with the audio
   tokens written into placeholder slots of the prompt (before position embeddings are added,
   as TempoTokens does), and concatenates the F contexts along the sequence: (B, F*77, D).
2. The UNet repeats that for each frame: row ``b*F + f`` receives all F contexts.
3. :class:`FrameConditioningProcessor`, installed on the cross-attention layers, keeps only
   the slice of frame ``f`` for row ``b*F + f``. A plain (B, 77, D) context passes through
   untouched, so text-only generation uses the same processors.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

AUDIO_MARKER = "{audio}"


class FrameConditioningProcessor:
    """Cross-attention where batch row ``b*F + f`` attends only to frame ``f``'s context."""

    def __init__(self, tokens_per_frame: int):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.tokens_per_frame = tokens_per_frame
        self.attend = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):
        if encoder_hidden_states is not None and encoder_hidden_states.shape[1] > self.tokens_per_frame:
            rows, seq, dim = encoder_hidden_states.shape  # (B*F, F*L, D)
            frames = seq // self.tokens_per_frame
            per_frame = encoder_hidden_states.view(rows, frames, self.tokens_per_frame, dim)
            row = torch.arange(rows, device=per_frame.device)
            encoder_hidden_states = per_frame[row, row % frames]  # (B*F, L, D)
        return self.attend(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def enable_frame_conditioning(unet: torch.nn.Module, tokens_per_frame: int) -> None:
    """Install :class:`FrameConditioningProcessor` on every cross-attention layer of ``unet``."""
    processors = {
        name: FrameConditioningProcessor(tokens_per_frame) if name.endswith("attn2.processor") else proc
        for name, proc in unet.attn_processors.items()
    }
    unet.set_attn_processor(processors)


@contextlib.contextmanager
def token_embedding_override(text_encoder: torch.nn.Module, slots: torch.Tensor,
                             values: torch.Tensor) -> Iterator[None]:
    """Replace token embeddings at ``slots`` (N, 77) bool with ``values`` (N, k, D).

    A forward hook on the input embedding table: the public way to inject pseudo-words into
    a CLIP text encoder, before its position embeddings are added. Gradients reach ``values``.
    """
    def hook(module, inputs, output):
        output = output.clone()
        output[slots] = values.reshape(-1, values.shape[-1]).to(output.dtype)
        return output

    handle = text_encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def prompt_ids_with_slots(tokenizer, prompt: str | None, num_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids for ``prompt`` with ``num_slots`` audio slots, and the slot mask, both (77,).

    The slots replace ``{audio}`` in the prompt, or follow the text when there is no marker;
    an empty prompt gives audio tokens alone. Text is truncated, never the slots.
    """
    before, _, after = (prompt or "").partition(AUDIO_MARKER)
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids if text.strip() else []
    ids_before, ids_after = encode(before), encode(after)
    room = tokenizer.model_max_length - 2 - num_slots
    if room < 0:
        raise ValueError(f"{num_slots} audio tokens do not fit in {tokenizer.model_max_length} positions")
    ids_after = ids_after[: max(0, room - len(ids_before))]
    ids_before = ids_before[:room]
    slot_id = tokenizer.pad_token_id  # overwritten by the audio tokens
    body = ids_before + [slot_id] * num_slots + ids_after
    ids = [tokenizer.bos_token_id] + body + [tokenizer.eos_token_id]
    ids += [tokenizer.pad_token_id] * (tokenizer.model_max_length - len(ids))
    slots = torch.zeros(len(ids), dtype=torch.bool)
    slots[1 + len(ids_before): 1 + len(ids_before) + num_slots] = True
    return torch.tensor(ids), slots


def encode_text(text_encoder, tokenizer, prompts: list[str]) -> torch.Tensor:
    """Plain CLIP text contexts (B, 77, D) for a list of prompts."""
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids.to(text_encoder.device))[0]


def encode_frame_prompts(text_encoder, tokenizer, prompt: str | None,
                         frame_tokens: torch.Tensor) -> torch.Tensor:
    """Per-frame contexts (B, F*77, D) from audio tokens (B, F, L, D) placed in ``prompt``."""
    batch, frames, num_slots, dim = frame_tokens.shape
    ids, slots = prompt_ids_with_slots(tokenizer, prompt, num_slots)
    rows = batch * frames
    ids = ids.expand(rows, -1).to(text_encoder.device)            # (B*F, 77)
    slots = slots.expand(rows, -1).to(text_encoder.device)
    with token_embedding_override(text_encoder, slots, frame_tokens.reshape(rows, num_slots, dim)):
        context = text_encoder(ids)[0]                            # (B*F, 77, D)
    return context.reshape(batch, frames * context.shape[1], context.shape[2])
