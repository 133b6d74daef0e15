"""``avlib`` command line: one module per command group, each with ``register(subparsers)``.

Commands are thin: parse, call the package, report. A user error (:class:`AvlibError`)
prints one line on stderr and exits with status 2; nothing half-written is left behind
because every writer in avlib is atomic.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from avlib import __version__
from avlib.errors import AvlibError

# Modules under avlib.cli, in the order their commands appear in --help.
COMMAND_MODULES = ("generate", "train", "sample", "tokens", "embed", "metrics", "evaluate", "data", "toyworld", "reproduce")


def build_parser(commands: tuple[str, ...] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The parser with ``commands`` registered (registering one imports its dependencies)."""
    parser = argparse.ArgumentParser(
        prog="avlib", description="Audio (optionally with text) in, video out: AudioVisGen, reproducibly.")
    parser.add_argument("--version", action="version", version=f"avlib {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands:
        importlib.import_module(f"avlib.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Register only the command being run, so it imports only what it uses (some commands'
    # options come from modules that import torch, seconds before a metric's first line).
    requested = argv[0] if argv else None
    parser = build_parser((requested,) if requested in COMMAND_MODULES else COMMAND_MODULES)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except AvlibError as exc:
        print(f"avlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avlib {args.command}: interrupted", file=sys.stderr)
        return 130
