"""Argument types and checks shared by the commands: a bad value fails at parse time, naming
the flag and what it accepts, before any model is loaded or any file written."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from avlib.errors import AvlibError


def _number(kind: type, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _bounded(kind: type, accepts, wanted: str):
    """An argparse ``type``: parse a ``kind`` and refuse values ``accepts`` rejects."""
    def parse(text: str):
        value = _number(kind, text)
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value
    return parse


positive_int = _bounded(int, lambda v: v >= 1, "a whole number >= 1")
nonnegative_int = _bounded(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = _bounded(float, lambda v: v > 0, "a number > 0")
nonnegative_float = _bounded(float, lambda v: v >= 0, "a number >= 0")
finite_float = _bounded(float, lambda v: True, "a finite number")
# Seeds reach torch.Generator.manual_seed and numpy, which take at most 64 bits.
seed_int = _bounded(int, lambda v: 0 <= v < 2**63, "a whole number >= 0 and below 2**63")


def nonblank_text(text: str) -> str:
    """An argparse ``type`` for text that must say something."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty or only spaces")
    return text


def check_device(device: str, what: str = "--device") -> str:
    """``device`` if torch can use it here; otherwise one line saying what to pass instead."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise AvlibError(f"{what} {device!r} is not a device (use cpu or cuda)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise AvlibError(f"{what} {device}: no CUDA GPU is visible on this machine "
                         "(use cpu, or the tiny profile)")
    if kind not in ("cpu", "cuda", "mps"):
        raise AvlibError(f"{what} {device!r} is not supported (use cpu or cuda)")
    return device


def output_folder(text: str) -> Path:
    """An argparse ``type`` for a folder a command writes into (created if missing), refused at
    parse time where a file stands in its place or in place of a folder above it."""
    path = Path(text)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, not a folder (give a folder; it is created if missing)")
    return path


def check_output(path: str | Path, suffix: str | None = None) -> Path:
    """An output path that can be written: not a folder, in a folder we may write to.

    Checked before any work, so a bad ``-o`` costs nothing and leaves nothing behind.
    """
    import os

    path = Path(path)
    if path.is_dir():
        raise AvlibError(f"output {path} is a folder; give a file name such as {path / ('out' + (suffix or ''))}")
    if suffix is not None and path.suffix.lower() != suffix:
        raise AvlibError(f"output {path} must end in {suffix}")
    existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not existing.is_dir():
        raise AvlibError(f"cannot write {path}: {existing} is a file, not a folder (check the path)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AvlibError(f"cannot write {path}: the folder {existing} is not writable "
                         "(choose a folder you can write to)")
    return path
