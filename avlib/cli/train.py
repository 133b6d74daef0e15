"""``avlib train``: train an experiment's mapper into a run folder (or resume one)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Mapping

from avlib.cli.args import check_device
from avlib.config import PROFILES, list_experiments, load_config
from avlib.errors import ConfigError
from avlib.run import Run, experiment_run_dir

# What a resumed run may change: how long it goes on, how often it saves, where the clips
# now live, and how it will be sampled. Anything else (lr, data, model...) is baked into the
# saved weights, optimizer state or data order, so changing it would silently not apply.
RESUMABLE = ("train.epochs", "train.max_steps", "train.checkpoint_every", "train.cache_features", "data.root",
             "inference.")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a mapper (one of the report's experiments)",
        description="Train the mapper of a named experiment with everything else frozen. "
                    f"Experiments: {', '.join(list_experiments())}.")
    p.add_argument("--experiment", default=None, help="experiment name (default: dog)")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="tiny (CPU, offline, synthetic clips; default) or paper (real sizes, GPU)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-5 (repeatable)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/EXPERIMENT_PROFILE at the checkout root, or $AVLIB_RUNS)")
    p.add_argument("--resume", type=Path, default=None, metavar="DIR",
                   help="continue the run in DIR from its last checkpoint")
    p.add_argument("--no-cache", action="store_true",
                   help="neither read nor write cached audio features and latents (same as --set train.cache_features=false)")
    p.set_defaults(func=run)


def changed_keys(saved: Mapping[str, Any], asked: Mapping[str, Any], prefix: str = "") -> list[tuple]:
    """(dotted key, saved value, asked value) for every setting that differs."""
    changes = []
    for key, value in asked.items():
        if isinstance(value, Mapping):
            changes += changed_keys(saved[key], value, f"{prefix}{key}.")
        elif saved[key] != value:
            changes.append((f"{prefix}{key}", saved[key], value))
    return changes


def refuse_changes_on_resume(saved: Mapping[str, Any], asked: Mapping[str, Any]) -> None:
    fixed = [c for c in changed_keys(saved, asked) if not c[0].startswith(RESUMABLE)]
    if fixed:
        listed = ", ".join(f"{key} (run: {old!r}, asked: {new!r})" for key, old, new in fixed)
        raise ConfigError(f"--resume cannot change {listed}: the saved weights and optimizer keep "
                          "the run's values; drop that --set, or train a new run with --out "
                          f"(a resumed run may change {', '.join(RESUMABLE).replace('inference.', 'inference.*')})")


def run(args: argparse.Namespace) -> int:
    from avlib.data.splits import training_clips
    from avlib.train import latest_checkpoint, train

    if args.no_cache:
        args.overrides = [*args.overrides, "train.cache_features=false"]
    if args.resume is not None:
        given = [flag for flag, value in (("--experiment", args.experiment), ("--profile", args.profile),
                                          ("--out", args.out)) if value is not None]
        if given:
            raise ConfigError(f"--resume {args.resume} continues that run's own experiment, profile and folder; "
                              f"drop {' and '.join(given)} (or train a new run without --resume)")
        run = Run(args.resume)
        config = run.read_config(args.overrides)
        refuse_changes_on_resume(run.read_config().to_dict(), config.to_dict())
        run_dir = args.resume
    else:
        config = load_config(args.experiment or "dog", args.profile or "tiny", args.overrides)
        run_dir = args.out or experiment_run_dir(config)
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; give a folder for the run (it is created)")
    check_device(config.model.device, "model.device")
    clips = training_clips(config)
    fresh = not run_dir.exists() or not any(run_dir.iterdir())
    try:
        summary = train(config, clips, run_dir, resume=args.resume is not None)
    except BaseException:
        if fresh and latest_checkpoint(run_dir) is None:  # nothing to resume: leave no half-made run
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    print(f"trained {config.name} ({config.profile}) for {summary['steps']} steps; "
          f"final loss {summary['final_loss']}; run folder {run_dir}")
    return 0
