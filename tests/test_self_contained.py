"""Everything the tests and the benchmarks read lives in the repository."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Built from parts so this file does not match itself.
NEEDLES = tuple(part.encode() for part in ("../" + "shared", "AVLIB_" + "SHARED"))


def tracked_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listing.returncode != 0:
        pytest.skip("not a git checkout: no list of tracked files")
    return [ROOT / name for name in listing.stdout.decode().split("\0") if name]


def test_no_tracked_file_reads_the_folder_beside_the_repository():
    files = tracked_files()
    assert ROOT / "tests" / "fixtures" / "cavp_case_4s.npz" in files
    offenders = [str(path.relative_to(ROOT)) for path in files
                 if path.is_file() and any(needle in path.read_bytes() for needle in NEEDLES)]
    assert not offenders, f"these files name the folder beside the repository: {offenders}"
