"""Atomic file writing, provenance records, and where avlib's folders are.

Every output avlib writes goes through :func:`atomic_path`: the data lands in a temporary
file beside the target and is renamed into place only when complete, so a crash or a bad
input never leaves a half-written file under the final name. A temporary file orphaned by
a killed process (SIGKILL skips every cleanup) is removed by the next write of that output.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import gc
import glob
import json
import os
import platform
import re
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from avlib.errors import AvlibError

CLIP_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-.]*$")  # a clip id is a safe file name stem

TRACKED_PACKAGES = (
    "avlib", "torch", "torchaudio", "diffusers", "transformers", "accelerate",
    "numpy", "scipy", "librosa", "opencv-python-headless", "safetensors",
)


@functools.cache  # once per process, however often it is called
def skip_final_collection() -> None:
    """At exit, leave every object then alive out of the interpreter's last garbage collection
    (``gc.freeze`` as an exit handler; handlers run last-registered first, so call this early).

    After torch and diffusers are imported that collection walks millions of objects: 1.5-2.5 s
    of every CLI command and notebook kernel's exit (a kernel's shutdown went from 2.6 s to
    0.4 s). Objects in reference cycles are then not finalised; the process is ending and
    avlib closes its files explicitly. Called by the processes avlib owns: the CLI's ``main``
    and notebook kernels (on import of :mod:`avlib.notebook`), not by the library's other modules.
    """
    atexit.register(gc.freeze)


def cache_dir() -> Path:
    """Where avlib keeps what it builds or caches: tiny twin, features, synthetic clips,
    downloaded metric weights (``AVLIB_CACHE`` overrides ``~/.cache/avlib``)."""
    return Path(os.environ.get("AVLIB_CACHE", Path.home() / ".cache" / "avlib"))


def runs_dir() -> Path:
    """Where run folders go: ``runs/`` at the root of the source checkout, whatever the working
    folder (JupyterLab's kernels start in ``notebooks/``, the CLI wherever it is called), so
    notebooks, ``avlib train`` and ``make demo`` share one place. ``AVLIB_RUNS`` overrides it;
    an installed (non-checkout) avlib uses ``./runs``."""
    if os.environ.get("AVLIB_RUNS"):
        return Path(os.environ["AVLIB_RUNS"]).resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "notebooks").is_dir():
        return checkout / "runs"
    return Path.cwd() / "runs"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    ``suffix`` defaults to the target's suffix so tools that infer the format from the
    extension (ffmpeg, numpy, safetensors) write the right thing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temps(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f"{_temp_prefix(target)}{os.getpid()}.",
        suffix=suffix if suffix is not None else target.suffix, dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's 0600 would make outputs private
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as exc:
        if exc.filename not in (None, str(tmp_path), tmp_path):
            raise
        # A full disk names no file (or our hidden temporary one): name the output instead.
        raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.tmp"


def remove_orphaned_temps(target: str | os.PathLike) -> list[Path]:
    """Delete temporary files of ``target`` left by writers that no longer run.

    Temporary names carry the writer's process id, so a live writer's file is never touched.
    """
    target = Path(target)
    prefix = _temp_prefix(target)
    removed = []
    for candidate in target.parent.glob(f"{glob.escape(prefix)}*"):
        pid = candidate.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def remove_orphaned_temps_in(folder: str | os.PathLike) -> list[Path]:
    """Delete every temporary file in ``folder`` whose writer no longer runs (a killed
    ``sample`` leaves one per video it was encoding)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.glob(".*.tmp*"):
        found = re.fullmatch(r"\.(.+)\.tmp(\d+)\.[^.]+(\..*)?", candidate.name)
        if found and candidate.is_file() and not _process_alive(int(found.group(2))):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def as_os_error(exc: BaseException, path: str | os.PathLike | None = None) -> BaseException:
    """``exc``, or the OSError inside a safetensors error (which reports a full disk only as
    text: ``IoError(Os { code: 28, ... })``), so it is named and explained like any other."""
    found = re.search(r"Os \{ code: (\d+)", str(exc)) if type(exc).__name__ == "SafetensorError" else None
    if found is None:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code), None if path is None else str(path))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """A text file's contents, failing with one line that names it when it holds binary data."""
    from avlib.errors import AvlibError

    path = Path(path)
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise AvlibError(f"{path} is binary, not a {what}: check the path") from None


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a JSON file, failing with one line that names it when it is damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AvlibError(f"{path} is not valid JSON ({getattr(exc, 'msg', 'binary data')}): the {what} "
                         "is truncated or damaged; write it again") from exc


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        return dataclasses.asdict(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change avlib's numbers."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_record(config: Any = None, seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The provenance block every result file carries: config, seed, versions, time."""
    record: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": seed,
        "versions": package_versions(),
    }
    if config is not None:
        record["config"] = config.to_dict() if hasattr(config, "to_dict") else config
    record.update(extra)
    return record
