"""CLIP's real BPE tokenizer, built offline from the vocabulary file that open_clip ships.

zeroscope's tokenizer (like OpenAI CLIP's and Stable Diffusion 2's) is CLIP's byte-level BPE
over 49,408 tokens: 256 byte symbols, the same with ``</w>``, 48,894 merges and the two
special tokens. ``open_clip_torch`` ships those merges as ``bpe_simple_vocab_16e6.txt.gz``;
:func:`clip_tokenizer` rebuilds the vocabulary from it exactly as open_clip's
``SimpleTokenizer`` does and returns a transformers ``CLIPTokenizer``, with no download.
The file is found without importing open_clip (which would import torchvision).
"""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

from avlib.errors import CheckpointError
from avlib.tokenizers import byte_alphabet

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2   # open_clip's SimpleTokenizer: merges[1:49152-256-2+1]
PAD_TOKEN = "!"                # Stable Diffusion 2's tokenizer folder (id 0), which zeroscope's follows


def open_clip_vocab_file() -> Path:
    """The BPE merges file inside the installed ``open_clip_torch`` package."""
    spec = importlib.util.find_spec("open_clip")
    found = [Path(p) / VOCAB_FILE for p in (spec.submodule_search_locations or [])] if spec else []
    if not found or not found[0].is_file():
        raise CheckpointError(f"CLIP's BPE vocabulary ({VOCAB_FILE}) not found: install it with "
                              "`pip install --no-deps open_clip_torch==3.3.0` (make setup does)")
    return found[0]


def clip_tokenizer(vocab_file: str | Path | None = None, model_max_length: int = 77):
    """A ``CLIPTokenizer`` with CLIP's 49,408-token vocabulary from ``vocab_file`` (the .gz)."""
    from transformers import CLIPTokenizer

    path = Path(vocab_file) if vocab_file is not None else open_clip_vocab_file()
    lines = gzip.open(path).read().decode("utf-8").split("\n")[1:NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = sorted(byte_alphabet(), key=ord)  # GPT-2's bytes_to_unicode order: printable first
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length,
                         pad_token=PAD_TOKEN)
