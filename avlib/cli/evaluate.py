"""``avlib evaluate`` (metrics of a run folder) and ``avlib report`` (Table 2 from runs).

    avlib evaluate --run RUN_DIR [--metrics fvd,clipsim,av-align] [--i3d PATH_OR_URL] [--clip-model ID]
    avlib report --runs RUN_DIR... -o table.csv table.md
"""
from __future__ import annotations

from avlib.cli.args import check_output, positive_int, seed_int
from avlib.metrics import AV_ALIGN_VERSIONS, CLIPSIM_PROTOCOLS, FVD_PROTOCOLS


def register(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "evaluate", help="FVD, CLIPSIM and AV-Align of a run folder, written into it",
        description="Evaluate a run's generated samples (and its shuffled-audio control) against its "
                    "reference clips; every value comes with N and a seeded 95% bootstrap CI. In the "
                    "tiny profile, unless --i3d/--clip-model are given, FVD and CLIPSIM use the toy "
                    "world's TOY networks (trained on the synthetic world; their numbers compare "
                    "toy-world runs only). Samples longer than one window (inference.num_frames), "
                    "made from whole audio, are scored whole by AV-Align, by their first frames by FVD, "
                    "and get a seam score (1.0 = seamless) with its CI.")
    evaluate.add_argument("--run", required=True, metavar="RUN_DIR",
                          help="run folder written by `avlib train` and sampled by `avlib sample`")
    evaluate.add_argument("--metrics", type=metric_list, default=None, metavar="fvd,clipsim,av-align",
                          help="metrics to compute (default: all available; one whose network "
                               "does not load is skipped, with its reason in metrics.json)")
    evaluate.add_argument("--i3d", metavar="PATH_OR_URL",
                          help="Kinetics-400 I3D (i3d_pretrained_400.pt or i3d_torchscript.pt)")
    evaluate.add_argument("--clip-model", metavar="ID",
                          help="CLIP hub id or folder (default: openai/clip-vit-base-patch32)")
    evaluate.add_argument("--av-align-version", choices=AV_ALIGN_VERSIONS, default="2025",
                          help="AV-Align definition (default: 2025)")
    evaluate.add_argument("--fvd-frames", type=positive_int, default=None,
                          help="frames per video for FVD (default: 16, tiny profile 8)")
    evaluate.add_argument("--fvd-protocol", choices=FVD_PROTOCOLS, default="avlib",
                          help="FVD conventions to reproduce (see `avlib metrics fvd --help`; default: avlib)")
    evaluate.add_argument("--clipsim-protocol", choices=CLIPSIM_PROTOCOLS, default="clip",
                          help="clip (default): CLIP's preprocessing; report: the report repository's "
                               "CLIP_Score.py (BGR, squash, 0.5/0.5, its texts)")
    evaluate.add_argument("--workers", type=positive_int, default=None, help="AV-Align threads (default: one per CPU)")
    evaluate.add_argument("--seed", type=seed_int, default=0, help="bootstrap seed (default: 0)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.add_argument("--no-cache", action="store_true", help="do not read or write cached FVD features")
    evaluate.set_defaults(func=run_evaluate)

    report = subparsers.add_parser(
        "report", help="Table 2: published values beside reproduced ones, with CIs",
        description="Build the report's Table 2 from evaluated run folders; the outputs' "
                    "suffixes choose the formats (.csv, .md).")
    report.add_argument("--runs", nargs="+", required=True, metavar="RUN_DIR",
                        help="run folders holding metrics.json")
    report.add_argument("-o", "--output", nargs="+", required=True, metavar="OUT",
                        help="table files: *.csv and/or *.md")
    report.set_defaults(func=run_report)


def metric_list(text: str) -> list[str]:
    """``--metrics fvd,av-align`` -> ["fvd", "av-align"], each checked at parse time."""
    import argparse

    from avlib.errors import ConfigError
    from avlib.evaluate import metric_keys

    names = [name.strip() for name in text.split(",") if name.strip()]
    try:
        metric_keys(names)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return names


def run_evaluate(args) -> int:
    from avlib.evaluate import evaluate_run
    from avlib.run import Run

    result = evaluate_run(args.run, i3d=args.i3d, clip_model=args.clip_model,
                          av_align_version=args.av_align_version, fvd_frames=args.fvd_frames,
                          workers=args.workers, seed=args.seed, progress=not args.quiet,
                          fvd_protocol=args.fvd_protocol, clipsim_protocol=args.clipsim_protocol,
                          metrics=args.metrics, use_cache=not args.no_cache)
    values = ", ".join(f"{name} {entry['value']:.4g}" for name, entry in result["metrics"].items()
                       if entry["value"] is not None)
    print(f"{result['experiment']}: {values} -> {Run(args.run).metrics_file}")
    for name, reason in result["skipped"].items():
        print(f"skipped {name}: {reason}")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0


def run_report(args) -> int:
    from avlib.report import table_rows, write_table

    for output in args.output:
        check_output(output)
    for path in write_table(table_rows(args.runs), args.output):
        print(f"wrote {path}")
    return 0
