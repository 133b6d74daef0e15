"""``avlib toyworld``: build the toy world's stand-in models, check them, run the acceptance experiment.

    avlib toyworld build --out DIR [--seed N] [--unet-steps N ...]
    avlib toyworld build --check [--weights DIR]                     # shipped weights load and generate
    avlib toyworld metrics [--out DIR] [--seed N]                     # toy CLIP + toy video network
    avlib toyworld evaluate --out DIR [--test-per-class N] [--classes C ...] [--set K=V]  # trained vs shuffled vs untrained
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from avlib.cli.args import nonnegative_int, output_folder, positive_float, positive_int, seed_int


def register(subparsers) -> None:
    from avlib.toyworld import METRIC_NETS_DIR, WEIGHTS_DIR
    from avlib.toyworld.build import BuildConfig
    from avlib.toyworld.metric_nets import MetricNetsConfig

    parser = subparsers.add_parser(
        "toyworld", help="the toy world: stand-in models trained on the synthetic world",
        description="Stand-in text-to-video model and CAVP encoder, trained locally on the synthetic "
                    "audio-visual world, so the tiny profile shows the method learning on a CPU.")
    commands = parser.add_subparsers(dest="toyworld_command", metavar="SUBCOMMAND", required=True)

    build = commands.add_parser("build", help="train the stand-ins into --out (or --check the shipped ones)",
                                description="Train the stand-in t2v (diffusers layout) and CAVP encoder.")
    build.add_argument("--out", type=output_folder, help=f"output folder (to update the shipped weights: {WEIGHTS_DIR})")
    build.add_argument("--check", action="store_true",
                       help="instead of building: load --weights and generate one video from text and one from audio")
    build.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="weights to --check (default: shipped)")
    for field in dataclasses.fields(BuildConfig):  # 0 steps: keep that part as --init left it
        build.add_argument(f"--{field.name.replace('_', '-')}", type=_field_type(field, zero_steps=True),
                           default=field.default, help=f"(default: {field.default})")
    _common(build)
    build.set_defaults(func=run_build)

    metrics = commands.add_parser(
        "metrics", help="train the toy CLIP and toy video network (the tiny profile's CLIPSIM and FVD)",
        description="Train the toy metric networks on the synthetic world (about a minute on one core).")
    metrics.add_argument("--out", type=output_folder, default=METRIC_NETS_DIR,
                         help=f"output folder (default: the shipped {METRIC_NETS_DIR})")
    for field in dataclasses.fields(MetricNetsConfig):
        metrics.add_argument(f"--{field.name.replace('_', '-')}", type=_field_type(field, zero_steps=False),
                             default=field.default, help=f"(default: {field.default})")
    _common(metrics)
    metrics.set_defaults(func=run_metrics)

    evaluate = commands.add_parser(
        "evaluate", help="train the multiclass mapper on the toy world and score it against baselines",
        description="AV-Align (2025) with 95% bootstrap CIs of videos from the trained mapper, the same "
                    "model fed shuffled audio, and an untrained mapper; class match by a frame classifier. "
                    "Writes OUT/toyworld_eval.json.")
    evaluate.add_argument("--out", type=output_folder, required=True, help="output folder")
    evaluate.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="toy world weights (default: shipped)")
    evaluate.add_argument("--test-per-class", type=positive_int, default=10, help="held-out clips per class (default: 10; "
                          "two or more in all: the shuffled-audio condition needs another clip)")
    evaluate.add_argument("--mapper-steps", type=positive_int, default=1000, help="mapper training steps (default: 1000)")
    evaluate.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                          help="dog / thunder / volleyball: one class trains that class's experiment "
                               "(default: all three, the multiclass mapper)")
    evaluate.add_argument("--seed", type=seed_int, default=0)
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a config value, e.g. --set mapper.frame_attention=true (repeatable)")
    _common(evaluate)
    evaluate.set_defaults(func=run_evaluate)


def _field_type(field: dataclasses.Field, zero_steps: bool):
    """The argparse type of a build setting: seeds, counts, steps and rates in range (the
    config's own checks cover the rest)."""
    name = field.name
    if name == "seed":
        return seed_int
    if name.endswith("_steps"):
        return nonnegative_int if zero_steps else positive_int
    if name.endswith("_per_class") or name == "batch_size":
        return positive_int
    if name in ("lr", "timestep_power"):
        return positive_float
    return type(field.default)


def _common(parser) -> None:
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch CPU threads (default 1: on a small shared CPU, more threads "
                             "spend their time waiting for each other)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _set_threads(args) -> None:
    import torch

    torch.set_num_threads(args.threads)


def run_build(args) -> int:
    from avlib.errors import AvlibError
    from avlib.toyworld.build import BuildConfig, build_toyworld, check_toyworld

    _set_threads(args)
    if args.check:
        report = check_toyworld(args.weights)
        print(f"toy world at {args.weights}: loads and generates "
              f"({report['frames_shape']} frames in {report['seconds']:.1f} s)")
        return 0
    if args.out is None:
        raise AvlibError("pass --out DIR to build, or --check to test the shipped weights")
    cfg = BuildConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BuildConfig)})
    out = build_toyworld(args.out, cfg, progress=not args.quiet)
    print(f"toy world written to {out}")
    return 0


def run_metrics(args) -> int:
    from avlib.toyworld.metric_nets import MetricNetsConfig, build_metric_nets

    _set_threads(args)
    cfg = MetricNetsConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(MetricNetsConfig)})
    print(f"toy metric networks written to {build_metric_nets(args.out, cfg, progress=not args.quiet)}")
    return 0


def run_evaluate(args) -> int:
    from avlib.config import parse_overrides
    from avlib.data.synthetic import CLASSES
    from avlib.toyworld.evaluate import evaluate_toyworld

    _set_threads(args)
    result = evaluate_toyworld(args.out, args.weights, test_per_class=args.test_per_class,
                               mapper_steps=args.mapper_steps, seed=args.seed,
                               overrides=parse_overrides(args.overrides),
                               classes=args.classes or CLASSES, progress=not args.quiet)
    for name, entry in result["av_align"].items():
        print(f"AV-Align {result['av_align_version']} {name}: {entry['mean']:.3f} "
              f"[{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}] (n={entry['n']})")
    for name, entry in result["class_match"].items():
        print(f"class match {name}: {entry['mean']:.2f} [{entry['ci95'][0]:.2f}, {entry['ci95'][1]:.2f}] "
              f"(chance {result['class_chance']:.2f})")
    print(f"acceptance {'passed' if result['acceptance']['passed'] else 'FAILED'} -> {args.out}/toyworld_eval.json")
    return 0
