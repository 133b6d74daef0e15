"""``avlib train``: train an experiment's mapper into a run folder (or resume one)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from avlib.config import PROFILES, config_from_record, list_experiments, load_config
from avlib.errors import AvlibError
from avlib.io import runs_dir


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a mapper (one of the report's experiments)",
        description="Train the mapper of a named experiment with everything else frozen. "
                    f"Experiments: {', '.join(list_experiments())}.")
    p.add_argument("--experiment", default="dog", help="experiment name (default: dog)")
    p.add_argument("--profile", choices=PROFILES, default="tiny",
                   help="tiny (CPU, offline, synthetic clips; default) or paper (real sizes, GPU)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-5 (repeatable)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/EXPERIMENT_PROFILE at the checkout root, or $AVLIB_RUNS)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the run in DIR from its last checkpoint")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avlib.data.splits import load_split
    from avlib.train import train

    if args.resume is not None:
        record = args.resume / "config.json"
        if not record.is_file():
            raise AvlibError(f"{args.resume} is not a training run (no config.json); "
                             "pass the folder a previous `avlib train` wrote")
        config = config_from_record(json.loads(record.read_text()), args.overrides)
        run_dir = args.resume
    else:
        config = load_config(args.experiment, args.profile, args.overrides)
        run_dir = args.out or runs_dir() / f"{config.name}_{config.profile}"
    # Cached features are computed once per clip, so examples start at 0 s; without the
    # cache every epoch draws new random starts (TempoTokens' augmentation).
    clips = load_split(config, "train", start="zero" if config.train.cache_features else "random")
    summary = train(config, clips, run_dir, resume=args.resume is not None)
    print(f"trained {config.name} ({config.profile}) for {summary['steps']} steps; "
          f"final loss {summary['final_loss']}; run folder {run_dir}")
    return 0
