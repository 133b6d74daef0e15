import torch

from avlib.pipeline.conditioning import encode_frame_prompts, encode_text, prompt_ids_with_slots

FRAMES, SLOTS = 6, 3


def _frame_tokens(dim, seed=0):
    return torch.randn(1, FRAMES, SLOTS, dim, generator=torch.Generator().manual_seed(seed))


def test_slots_follow_text_or_replace_the_marker(tiny_t2v):
    tok = tiny_t2v.tokenizer
    ids, slots = prompt_ids_with_slots(tok, "a dog", 3)
    text = tok("a dog", add_special_tokens=False).input_ids
    assert ids.shape == (77,) and slots.sum() == 3
    assert ids[1:1 + len(text)].tolist() == text and slots[1 + len(text)]
    ids, slots = prompt_ids_with_slots(tok, "{audio} a dog", 3)
    assert slots[1:4].all() and ids[4:4 + len(text)].tolist() == text
    ids, slots = prompt_ids_with_slots(tok, "", 3)
    assert slots[1:4].all() and ids[4] == tok.eos_token_id


def test_each_frame_context_carries_its_own_tokens(tiny_t2v):
    dim = tiny_t2v.text_encoder.config.hidden_size
    tokens = _frame_tokens(dim)
    context = encode_frame_prompts(tiny_t2v.text_encoder, tiny_t2v.tokenizer, "a dog", tokens)
    assert context.shape == (1, FRAMES * 77, dim)
    changed = tokens.clone()
    changed[:, 3] = torch.randn(changed[:, 3].shape)
    other = encode_frame_prompts(tiny_t2v.text_encoder, tiny_t2v.tokenizer, "a dog", changed)
    per_frame = (other - context).abs().view(FRAMES, 77, dim).amax(dim=(1, 2))
    assert per_frame[3] > 1e-3 and torch.all(per_frame[torch.arange(FRAMES) != 3] == 0)


def test_gradients_reach_the_audio_tokens(tiny_t2v):
    tokens = _frame_tokens(tiny_t2v.text_encoder.config.hidden_size).requires_grad_()
    encode_frame_prompts(tiny_t2v.text_encoder, tiny_t2v.tokenizer, None, tokens).sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0


def test_unet_frame_3_sees_only_its_tokens_at_the_first_cross_attention(tiny_t2v):
    from avlib.pipeline.conditioning import enable_frame_conditioning

    unet = tiny_t2v.unet
    enable_frame_conditioning(unet, 77)
    dim = tiny_t2v.text_encoder.config.hidden_size
    first_cross = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    captured = []
    handle = first_cross.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    latents = torch.randn(1, 4, FRAMES, 8, 8, generator=torch.Generator().manual_seed(1))
    tokens = _frame_tokens(dim)
    changed = tokens.clone()
    changed[:, 3] = torch.randn(changed[:, 3].shape)
    outputs = []
    with torch.no_grad():
        for t in (tokens, changed):
            context = encode_frame_prompts(tiny_t2v.text_encoder, tiny_t2v.tokenizer, "", t)
            outputs.append(unet(latents, 10, encoder_hidden_states=context).sample)
    handle.remove()
    first = (captured[1] - captured[0]).abs().amax(dim=(1, 2))  # one value per (batch*frame) row
    assert first[3] > 1e-4 and torch.all(first[torch.arange(FRAMES) != 3] == 0)
    final = (outputs[1] - outputs[0]).abs()[0].amax(dim=(0, 2, 3))  # per frame
    assert final[3] > 0


def test_plain_text_context_passes_through_unchanged(tiny_t2v):
    from avlib.pipeline.conditioning import enable_frame_conditioning

    enable_frame_conditioning(tiny_t2v.unet, 77)
    context = encode_text(tiny_t2v.text_encoder, tiny_t2v.tokenizer, ["rain"])
    latents = torch.randn(1, 4, FRAMES, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        shared = tiny_t2v.unet(latents, 10, encoder_hidden_states=context).sample
        repeated = tiny_t2v.unet(latents, 10, encoder_hidden_states=context.repeat(1, FRAMES, 1)).sample
    torch.testing.assert_close(shared, repeated, atol=1e-5, rtol=1e-5)
