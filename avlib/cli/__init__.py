"""``avlib`` command line: one module per command group, each with ``register(subparsers)``.

Commands are thin: parse, call the package, report. Bad input of any kind (an invalid
argument, an :class:`AvlibError`, an unreadable or unwritable file, a full disk, damaged
JSON) prints one line on stderr and exits with status 2; nothing half-written is left
behind because every writer in avlib is atomic. Commands import what does the work (torch,
diffusers, the models) inside their functions, on purpose: ``avlib --help`` and a bad
argument answer without loading them.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import json
import sys
import warnings

from avlib import __version__
from avlib.errors import AvlibError, AvlibWarning
from avlib.io import as_os_error, skip_final_collection

# Modules under avlib.cli, in the order their commands appear in --help.
COMMAND_MODULES = ("generate", "stream", "train", "sample", "tokens", "embed", "metrics", "evaluate", "data", "toyworld", "reproduce")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage text is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(commands: tuple[str, ...] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The parser with ``commands`` registered (registering one imports its dependencies)."""
    parser = OneLineParser(
        prog="avlib", description="Audio (optionally with text) in, video out: AudioVisGen, reproducibly.")
    parser.add_argument("--version", action="version", version=f"avlib {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        importlib.import_module(f"avlib.cli.{name}").register(subparsers)
    return parser


# What to do about an operating-system error, by errno.
OS_FIXES = {
    errno.ENOSPC: "free some disk space and run again",
    errno.EDQUOT: "free some disk space and run again",
    errno.EACCES: "choose a folder you can write to, or fix its permissions",
    errno.EPERM: "choose a folder you can write to, or fix its permissions",
    errno.EROFS: "choose a folder on a writable file system",
    errno.EISDIR: "give a file name, not a folder",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "check the path",
    errno.EEXIST: "a file stands where avlib needs a folder: choose another path or move the file",
}


def describe_error(exc: BaseException) -> str | None:
    """One line for an error caused by the user's input or machine; None for a bug."""
    exc = as_os_error(exc)
    if isinstance(exc, AvlibError):
        text = str(exc)
    elif isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        fix = OS_FIXES.get(exc.errno, "check the file and the disk")
        text = f"{exc.strerror or exc}{where} ({fix})"
    elif isinstance(exc, json.JSONDecodeError):
        text = f"a JSON file is damaged ({exc.msg} at line {exc.lineno}); write it again"
    elif isinstance(exc, UnicodeDecodeError):
        text = "a file that should be text is binary; check the paths you passed"
    else:
        return None
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    skip_final_collection()
    # Register only the command being run, so it imports only what it uses (some commands'
    # options come from modules that import torch, seconds before a metric's first line).
    requested = argv[0] if argv else None
    parser = build_parser((requested,) if requested in COMMAND_MODULES else COMMAND_MODULES)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings():  # restores the default format when the command ends
            warnings.formatwarning = _one_line_warnings(args.command, warnings.formatwarning)
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"avlib {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        line = describe_error(exc)
        if line is None:
            raise  # a bug: the traceback is what a report needs
        close_progress_bars()  # the error gets a line of its own, not the end of a bar's
        print(f"avlib {args.command}: error: {line}", file=sys.stderr)
        return 2


def close_progress_bars() -> None:
    """Close the tqdm bars an exception left open, so each ends its line."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()


def _one_line_warnings(command: str, default):
    """``warnings.formatwarning`` that shows avlib's own warnings as one line, no source line."""
    def format_warning(message, category, filename, lineno, line=None):
        if not issubclass(category, AvlibWarning):
            return default(message, category, filename, lineno, line)
        return f"avlib {command}: warning: {' '.join(str(message).split())}\n"
    return format_warning
