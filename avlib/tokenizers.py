"""CLIP tokenizers built offline, for every floor that needs one (the tiny text-to-video
twin, the tiny CLIP of the metrics, CLIP's real vocabulary in :mod:`avlib.pipeline.clip_vocab`).

The tiny tokenizer is a real byte-level BPE ``CLIPTokenizer`` built from an in-memory
vocabulary (every byte, plus whole-word merges for a small word list), so arbitrary text
tokenizes and the words avlib's prompts use are single tokens.
"""
from __future__ import annotations

# Words that get their own token; anything else falls back to byte-level pieces.
TINY_WORDS = (
    "a an the of in on with and is are at by to photo video clip sound "
    "dog dogs barking bark jumps thunder rain storm flash lightning volleyball ball bounces "
    "playing sports court field night day sky grass water object up down left right "
    "red green blue yellow white black bright dark frame"
).split()

TINY_MAX_LENGTH = 77


def byte_alphabet() -> list[str]:
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

    alphabet = byte_alphabet()
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
