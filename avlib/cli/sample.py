"""``avlib sample``: generate the test split of a trained run (what ``avlib evaluate`` scores)."""
from __future__ import annotations

import argparse
from pathlib import Path

from avlib.cli.args import positive_int, seed_int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help="generate a video for every test clip of a trained run",
        description="Generates a video (its audio muxed in, and that audio beside it) for every "
                    "test clip of the run, indexes them and keeps the real clips beside them, plus the "
                    "shuffled-audio control (each clip generated from another test clip's audio with the "
                    "same noise): what `avlib evaluate --run RUN` reads.")
    p.add_argument("--run", type=Path, required=True, help="run folder written by `avlib train`")
    p.add_argument("--limit", type=positive_int, default=None, help="at most this many test clips")
    p.add_argument("--seed", type=seed_int, default=None, help="noise seed of the first clip (default: config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an inference setting of the run, e.g. --set inference.scheduler=ddim "
                        "(repeatable; the run's config.json is not changed)")
    p.add_argument("--no-shuffled-control", dest="shuffled_control", action="store_false",
                   help="skip the shuffled-audio control (every test clip again with another clip's audio; it doubles the sampling time)")
    p.set_defaults(func=run)


# Baked into the run's weights when it trained: a --set of these would change nothing.
TRAINED = ("train.", "mapper.", "encoder.")


def refuse_trained_settings(overrides: list[str]) -> None:
    from avlib.config import ALIASES, parse_overrides
    from avlib.errors import ConfigError

    for key in parse_overrides(overrides):
        if ALIASES.get(key, key).startswith(TRAINED):
            raise ConfigError(f"--set {key}: sampling cannot change how the run was trained (train.*, "
                              "mapper.* and encoder.* are in its weights); set inference.*, model.* or data.* settings, or train "
                              "a new run with `avlib train --set`")


def run(args: argparse.Namespace) -> int:
    from avlib.generate import sample_test_set

    from avlib.io import remove_orphaned_temps_in
    from avlib.run import Run

    refuse_trained_settings(args.overrides)
    run = Run(args.run)
    for folder in (run.root, run.samples_dir, run.shuffled_dir, run.reference_dir):  # a killed sample's
        remove_orphaned_temps_in(folder)
    out = sample_test_set(args.run, limit=args.limit, seed=args.seed, overrides=args.overrides,
                          shuffled_control=args.shuffled_control)
    print(f"wrote samples to {out}")
    return 0
