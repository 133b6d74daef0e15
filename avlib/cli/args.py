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


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(float, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def finite_float(text: str) -> float:
    return _number(float, text)


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
