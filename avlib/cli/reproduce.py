"""``avlib reproduce``: the notebooks, run headless with papermill, and a refreshed ``figures/``."""
from __future__ import annotations

import argparse
from pathlib import Path

from avlib.cli.args import output_folder, positive_int
from avlib.config import PROFILES, parse_overrides


def register(subparsers) -> None:
    from avlib.reproduce import DEFAULT_EXPERIMENTS

    p = subparsers.add_parser(
        "reproduce", help="run the notebooks for the report's experiments and refresh figures/",
        description="Runs notebooks/00-08 through papermill (04-06 once per experiment) into "
                    "OUT/notebooks and OUT/runs, then replaces figures/*.PROFILE.* and the results table.")
    p.add_argument("--profile", choices=PROFILES, default="tiny", help="tiny (CPU, minutes; default) or paper (GPU)")
    p.add_argument("--experiments", nargs="+", default=list(DEFAULT_EXPERIMENTS), metavar="NAME",
                   help=f"experiments to run (default: all of Table 2: {' '.join(DEFAULT_EXPERIMENTS)})")
    p.add_argument("--out", type=output_folder, default=None,
                   help="output folder (default: runs/reproduce_PROFILE at the checkout root, or $AVLIB_RUNS)")
    p.add_argument("--figures", type=output_folder, default=Path("figures"), help="figures folder to refresh")
    p.add_argument("--limit", type=positive_int, default=None, help="generate at most this many test clips per run")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="notebooks run at once, each lane of them in one kernel "
                        "(default: 2 on 2+ CPUs; each kernel gets a share of the threads)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every training run, e.g. --set train.max_steps=5")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avlib.reproduce import reproduce

    record = reproduce(args.profile, args.experiments, args.out, args.figures,
                       parse_overrides(args.overrides), args.limit, args.jobs)
    slowest = max(record["notebooks"], key=record["notebooks"].get)
    print(f"reproduced {', '.join(record['experiments'])} ({record['profile']}) in {record['total_s']:.0f} s "
          f"(slowest: {slowest}, {record['notebooks'][slowest]:.0f} s); {len(record['figures'])} files in "
          f"{args.figures}/")
    return 0
