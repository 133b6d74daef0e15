"""``avlib data synth | curate | status | vggsound``: build, fetch and check datasets."""
from __future__ import annotations

import argparse
from pathlib import Path

from avlib.cli.args import check_output, finite_float, output_folder, positive_float, positive_int, seed_int
from avlib.config import SYNTH_LAYOUTS
from avlib.data import curate, manifests, synthetic
from avlib.errors import AvlibError
from avlib.io import run_record, write_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data", help="datasets: synthesise, curate clips from a manifest, check what is on disk",
        description="Manifests (data_manifests/*.csv) list a dataset's clips; a dataset folder "
                    "holds {clip_id}.mp4 + {clip_id}.wav per clip.")
    commands = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    synth = commands.add_parser(
        "synth", help="write a synthetic audio-visual dataset (offline, seconds on a CPU)",
        description="Deterministic clips with known events: dog barks (the dog hops), thunder "
                    "claps (a bolt strikes), volleyball thuds (the ball crosses the net). "
                    "Writes mp4 + wav per clip and manifest.csv with the event times.")
    synth.add_argument("--out", type=output_folder, required=True, metavar="DIR", help="dataset folder to write")
    synth.add_argument("--clips-per-class", type=positive_int, required=True, metavar="N")
    synth.add_argument("--classes", nargs="+", default=list(synthetic.CLASSES),
                       choices=synthetic.CLASSES, help="default: all three")
    synth.add_argument("--seed", type=seed_int, default=0, help="default: 0")
    synth.add_argument("--size", type=positive_int, default=64, help="frame height = width in pixels (default: 64)")
    synth.add_argument("--fps", type=positive_float, default=12.0, help="default: 12")
    synth.add_argument("--seconds", type=positive_float, default=2.0, help="clip length (default: 2)")
    synth.add_argument("--shift-s", type=finite_float, default=0.0, metavar="S",
                       help="delay every soundtrack by S seconds (out-of-sync clips; default: 0)")
    synth.add_argument("--layout", choices=SYNTH_LAYOUTS, default="random",
                       help="random: positions drawn per clip; canonical: every clip of a class starts "
                            "alike (the toy world's clips) (default: random)")
    synth.add_argument("--shuffle-pairs", action="store_true",
                       help="give each video the soundtrack of another clip of its class")
    synth.set_defaults(func=run_synth)

    cut = commands.add_parser(
        "curate", help="cut a manifest's clips from a local long video (or YouTube)",
        description="Writes {clip_id}.mp4 and a 16 kHz mono {clip_id}.wav for every row whose "
                    "time span fits in the source; clips already in --out are skipped. The "
                    "custom sets' source videos are unknown: any long video of the class works.")
    cut.add_argument("--manifest", required=True, metavar="CSV")
    cut.add_argument("--out", type=output_folder, required=True, metavar="DIR", help="dataset folder")
    source = cut.add_mutually_exclusive_group(required=True)
    source.add_argument("--source", metavar="VIDEO", help="local video every clip is cut from")
    source.add_argument("--download", action="store_true",
                        help='fetch each row\'s source_id from YouTube (needs pip install "avlib[download]")')
    cut.set_defaults(func=run_curate)

    status = commands.add_parser(
        "status", help="count a dataset's clips that are present, missing or corrupt",
        description="Checks each clip's mp4 header, duration and wav; missing clips are normal "
                    "(about 20% of VGGSound is gone from YouTube).")
    status.add_argument("--manifest", required=True, metavar="CSV")
    status.add_argument("--root", required=True, metavar="DIR", help="dataset folder")
    status.add_argument("--json", metavar="OUT", help="also write every clip's status to OUT (JSON)")
    status.set_defaults(func=run_status)

    vggsound = commands.add_parser(
        "vggsound", help="build a manifest of one class from the official VGGSound index",
        description="Reads vggsound.csv (ytid,start,label,split; no header) and writes the rows "
                    "of --label with VGGSound's own train/test split.")
    vggsound.add_argument("--index", required=True, metavar="CSV", help="the official vggsound.csv")
    vggsound.add_argument("--label", default="playing volleyball", help="default: playing volleyball")
    vggsound.add_argument("--out", required=True, metavar="CSV", help="manifest to write")
    vggsound.set_defaults(func=run_vggsound)


def run_synth(args: argparse.Namespace) -> int:
    if abs(args.shift_s) >= args.seconds:
        raise AvlibError(f"--shift-s {args.shift_s} moves every sound out of its {args.seconds} s clip "
                         f"(give a shift shorter than --seconds)")
    path = synthetic.write_synthetic_dataset(
        args.out, args.classes, args.clips_per_class, seed=args.seed, seconds=args.seconds,
        fps=args.fps, size=args.size, shift_s=args.shift_s, layout=args.layout, shuffle_pairs=args.shuffle_pairs)
    print(f"wrote {len(args.classes) * args.clips_per_class} clips and {path}")
    return 0


def run_curate(args: argparse.Namespace) -> int:
    rows = manifests.read_manifest(args.manifest)
    existed = Path(args.out).exists()
    report = curate.curate(rows, args.out, source=args.source, download=args.download)
    print("  ".join(f"{name.replace('_', ' ')} {n}" for name, n in report.counts().items()))
    if report.beyond_source:
        print(f"{len(report.beyond_source)} clips lie beyond the end of {args.source} "
              "(use a longer source video to get them)")
    if rows and not report.written and not report.skipped:
        if not existed and Path(args.out).is_dir() and not any(Path(args.out).iterdir()):
            Path(args.out).rmdir()  # made for clips that never came
        raise AvlibError(f"no clip of {args.manifest} was written to {args.out} (see the counts above: "
                         "use a source video that covers the manifest's times, or check the network)")
    return 0


def run_status(args: argparse.Namespace) -> int:
    if args.json:
        check_output(args.json)
    rows = manifests.read_manifest(args.manifest)
    statuses = curate.dataset_status(rows, args.root)
    counts = curate.count_states(statuses)
    print("  ".join(f"{state} {n}" for state, n in counts.items()) + f"  (of {len(statuses)} clips)")
    for status in statuses:
        if status.state == "corrupt":
            print(f"corrupt: {status.clip_id}: {status.reason}")
    if args.json:
        write_json(args.json, run_record(manifest=args.manifest, root=args.root, counts=counts,
                                         clips=statuses))
    return 0


def run_vggsound(args: argparse.Namespace) -> int:
    rows, counts = manifests.vggsound_manifest(args.index, args.label)
    manifests.write_manifest(args.out, rows, comments=[
        f"VGGSound '{args.label}' from {args.index}: " + ", ".join(f"{k} {v}" for k, v in counts.items())])
    print(f"{counts['rows']} '{args.label}' clips of {counts['index_rows']} index rows "
          f"({counts['train']} train / {counts['test']} test) -> {args.out}")
    return 0
