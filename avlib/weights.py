"""Reading weight files safely, and saying what was wrong with one that does not load.

Pickled checkpoints are read with ``torch.load(weights_only=True)`` only. When a file or a
diffusers/transformers folder does not load, the error names what was found: an empty
file, a truncated one, something that is not a checkpoint at all, or a pickle holding a
Python object (``posix.system``...) that avlib refuses to unpickle. torch's own text is
never quoted, because it advises re-running with ``weights_only=False``, which would
execute whatever the file holds.
"""
from __future__ import annotations

import contextlib
import pickletools
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

from avlib.errors import CheckpointError

# Both torch wordings: "Unsupported global: GLOBAL x.y" and "unsupported GLOBAL x.y whose ...".
_PICKLED_OBJECT = re.compile(r"GLOBAL ([\w.]+)")
# torch.save writes a zip archive; older files and plain pickles start with the PROTO opcode.
_CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")
# Damage reports of safetensors, torch's zip reader and a pickle cut short.
_DAMAGED = re.compile(r"incomplete metadata|deserializ|PytorchStreamReader|central directory|"
                      r"ran out of input|unexpected end|truncated|EOF", re.IGNORECASE)
_FILE_IN_MESSAGE = re.compile(r"(?:file for|file at|file) '([^']+)'")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def pickled_object(exc: BaseException) -> str | None:
    """The Python object a refused pickle holds (e.g. ``posix.system``), if that was the failure."""
    for link in _chain(exc):
        found = _PICKLED_OBJECT.search(str(link))
        if found:
            return found.group(1)
    return None


def plain_pickle_object(path: Path, limit: int = 1 << 26) -> str | None:
    """The first Python object a plain (non-zip) pickle names, read by listing its opcodes
    (:func:`pickletools.genops` executes nothing); None when it names none or is no pickle.

    torch reports such a file only as an "unsupported operand", which names nothing.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit)
        if not data.startswith(b"\x80"):
            return None
        strings: list[str] = []
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):
                return str(argument).replace(" ", ".")
            if opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(argument, str):
                strings.append(argument)
    except Exception:  # cut short or not a pickle: the caller says so
        return None
    return None


def file_problem(path: Path, exc: BaseException) -> str:
    """What is wrong with a weight file that failed to load: a phrase after its name."""
    refused = pickled_object(exc) or plain_pickle_object(path)
    if refused:
        return f"holds the Python object {refused}, which avlib never unpickles"
    try:
        with open(path, "rb") as handle:
            head = handle.read(9)
    except OSError:
        return "cannot be read"
    if not head:
        return "is empty"
    # safetensors: an 8-byte header length, then the JSON header.
    if head.startswith(_CHECKPOINT_MAGIC) or head[8:9] == b"{":
        return "is truncated or damaged"
    return "is not a PyTorch checkpoint"


@contextlib.contextmanager
def quiet_unpickler() -> Iterator[None]:
    """Silence torch's weights-only unpickler's remarks on pickle protocols (a UserWarning per
    file): whether the file loads or is refused, avlib says so itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\._weights_only_unpickler")
        yield


def torch_load_weights(path: str | Path, expected: str) -> Any:
    """``torch.load(path, weights_only=True)``; a failure is one :class:`CheckpointError`
    naming what the file holds and pointing at ``expected`` (e.g. "i3d_pretrained_400.pt")."""
    import torch  # a ground-floor module: importing it loads no torch

    path = Path(path)
    try:
        with quiet_unpickler():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, zip and EOF errors share no base class
        problem = file_problem(path, exc)
        fix = ("re-save only its tensors (torch.save(model.state_dict())) or check it is the right file"
               if "Python object" in problem else f"pass {expected}")
        raise CheckpointError(f"cannot load {path}: it {problem} ({fix})") from exc


def folder_problem(folder: str | Path, exc: BaseException) -> str:
    """What is wrong inside a diffusers/transformers folder whose ``from_pretrained`` failed."""
    refused = pickled_object(exc)
    where = None  # the file the loader names, relative to the folder when inside it
    for link in _chain(exc):
        named = _FILE_IN_MESSAGE.search(str(link))
        if named:
            path = Path(named.group(1))
            where = path.relative_to(folder) if path.is_relative_to(folder) else path
            break
    if not refused:  # a plain pickle, which torch reports without naming what it holds
        candidates = [where if where.is_absolute() else Path(folder) / where] if where is not None else \
            sorted(p for suffix in ("bin", "pt", "pth", "ckpt") for p in Path(folder).rglob(f"*.{suffix}"))
        for candidate in candidates:
            refused = plain_pickle_object(candidate)
            if refused:
                where = where or candidate.relative_to(folder)
                break
    if refused:
        return f"{where or 'a weight file'} holds the Python object {refused}, which avlib never unpickles"
    for link in _chain(exc):
        if type(link).__name__ == "JSONDecodeError":
            return f"{where or 'a config file'} is not valid JSON (truncated?)"
        if _DAMAGED.search(str(link)) or type(link).__name__ == "SafetensorError":
            return f"{where or 'a weight file'} is truncated or damaged"
    first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if "weights_only" in first:  # torch's advice to unpickle anyway is never passed on
        return f"{where or 'a weight file'} is not plain tensors, so avlib does not unpickle it"
    return first.strip()[:200]
