"""Audio slots with CLIP's real 49,408-token BPE vocabulary (zeroscope's tokenizer), offline.

The vocabulary is the one the ``open_clip_torch`` wheel ships (a test dependency, installed
without its dependencies by ``make setup``); the tiny tokenizer elsewhere cannot show how real
words split, how ``{audio}`` markers sit between them, or what truncation does at 77 tokens.
"""
import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel

from avlib.config import MapperConfig
from avlib.mapper import build_mapper
from avlib.pipeline.clip_vocab import clip_tokenizer
from avlib.pipeline.conditioning import encode_frame_prompts, prompt_ids_with_slots


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer()


def text_of(tokenizer, ids, slots):
    """The prompt's words, decoded from the ids outside the slots, BOS, EOS and padding."""
    body = ids[1:][~slots[1:]].tolist()
    return tokenizer.decode(body[:body.index(tokenizer.eos_token_id)]).strip()


def test_the_vocabulary_is_clips(tokenizer):
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
    assert tokenizer.tokenize("dogs barking in the thunderstorm") == [
        "dogs</w>", "barking</w>", "in</w>", "the</w>", "thunderstorm</w>"]
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("!", 0)


@pytest.mark.parametrize("prompt, before, after", [
    (None, "", ""),
    ("a dog barking", "a dog barking", ""),
    ("a {audio} dog in the rain", "a", "dog in the rain"),
    ("{audio} a dog barking", "", "a dog barking"),
])
def test_slots_follow_the_text_or_take_the_marker_place(tokenizer, prompt, before, after):
    ids, slots = prompt_ids_with_slots(tokenizer, prompt, 6)
    assert ids.shape == slots.shape == (77,) and int(slots.sum()) == 6
    assert ids[0] == tokenizer.bos_token_id
    first = int(slots.nonzero()[0])
    assert first == 1 + len(tokenizer(before, add_special_tokens=False).input_ids if before else [])
    assert slots[first:first + 6].all()
    assert text_of(tokenizer, ids, slots) == " ".join(w for w in (before, after) if w)
    assert ids[first + 6 + len(tokenizer(after, add_special_tokens=False).input_ids if after else [])] \
        == tokenizer.eos_token_id


@pytest.mark.parametrize("marker", ["", "{audio} "])
def test_long_prompts_are_truncated_never_the_audio_slots(tokenizer, marker):
    long_text = " ".join(["a loud dog barking at the thunder in heavy rain"] * 12)  # > 100 tokens
    assert len(tokenizer(long_text).input_ids) > 77
    ids, slots = prompt_ids_with_slots(tokenizer, marker + long_text, 6)
    assert ids.shape == (77,) and int(slots.sum()) == 6
    assert ids[-1] == tokenizer.eos_token_id  # full: text cut to 77 - BOS - EOS - 6 slots
    assert len(tokenizer(text_of(tokenizer, ids, slots), add_special_tokens=False).input_ids) == 77 - 2 - 6
    assert text_of(tokenizer, ids, slots) in long_text


@pytest.mark.parametrize("kind", ["tempotokens", "audiovisgen"])
def test_the_six_placeholders_of_each_mapper_land_in_their_slots(tokenizer, kind):
    """<temp> <local1..4> <class>: six tokens per frame, written into the real-vocabulary prompt."""
    dim = 32
    mapper = build_mapper(MapperConfig(kind=kind, hidden_dim=64, token_dim=dim, num_frames=4,
                                       attention_heads=4), in_dim=16).eval()
    assert len(mapper.placeholder_names) == 6
    out = mapper(torch.randn(1, 8, 16))
    assert out.frame_tokens.shape == (1, 4, 6, dim)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()
    seen = []  # what enters the transformer: token embeddings + position embeddings
    capture = lambda module, args, kwargs: seen.append(kwargs.get("inputs_embeds", args[0] if args else None))
    handle = text_encoder.encoder.register_forward_pre_hook(capture, with_kwargs=True)
    prompt = "a {audio} dog barking"
    context = encode_frame_prompts(text_encoder, tokenizer, prompt, out.frame_tokens)
    handle.remove()
    assert context.shape == (1, 4 * 77, dim)
    ids, slots = prompt_ids_with_slots(tokenizer, prompt, 6)
    embeddings = text_encoder.embeddings
    with torch.no_grad():
        words = embeddings.token_embedding(ids)                            # (77, D)
        tokens = seen[0] - embeddings.position_embedding.weight[:77]       # (F, 77, D)
    assert torch.allclose(tokens[:, ~slots], words[~slots].expand(4, -1, -1), atol=1e-6)
    assert torch.allclose(tokens[:, slots], out.frame_tokens[0].detach(), atol=1e-6)
    changed = out.frame_tokens.clone()
    changed[0, 2, 5] += 1.0  # frame 2's <class> token
    other = encode_frame_prompts(text_encoder, tokenizer, prompt, changed)
    frames, other_frames = context.reshape(4, 77, dim), other.reshape(4, 77, dim)
    assert torch.allclose(frames[[0, 1, 3]], other_frames[[0, 1, 3]])
    assert not torch.allclose(frames[2], other_frames[2])
