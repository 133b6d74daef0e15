"""``avlib embed``: one audio file -> CAVP or BEATs embeddings (or front-end features) as .npy.

    avlib embed clip.wav --encoder cavp --checkpoint SimianLuo/Diff-Foley::diff_foley_ckpt/cavp_epoch66.ckpt -o cavp.npy
    avlib embed clip.mp4 --encoder beats --checkpoint BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt --layers all -o beats.npy
    avlib embed clip.wav --encoder cavp --frontend-only -o mel.npy
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avlib.config import ENCODER_LAYERS, ENCODERS, EncoderConfig
from avlib.errors import ConfigError
from avlib.cli.args import check_output
from avlib.io import atomic_path, run_record, write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed", help="audio file -> CAVP / BEATs embeddings (.npy)",
        description="Encode one audio file (wav/flac/mp3, or a video's audio track; any rate, "
                    "mono or stereo) and write float32 OUT.npy without the batch axis: CAVP "
                    "(T/16, 512), 4 vectors per second; BEATs (N, 768) with --layers last or "
                    "(N, 9216) with --layers all, N = 8 per 160 ms. --frontend-only writes the "
                    "features the network sees instead: CAVP log-mel (128, T), BEATs normalised "
                    "fbank (T, 128). A JSON sidecar OUT.json records how it was made.")
    p.add_argument("audio", help="audio or video file")
    p.add_argument("--encoder", choices=ENCODERS, required=True)
    p.add_argument("--checkpoint",
                   help="official weights (cavp_epoch66.ckpt, BEATs_*.pt) or an avlib .safetensors: "
                        "a local path or a hub id repo_id::filename (not needed with --frontend-only)")
    p.add_argument("--layers", choices=ENCODER_LAYERS, default=None,
                   help="BEATs only: the last layer or all 12 concatenated (default: all, as TempoTokens)")
    p.add_argument("--frontend-only", action="store_true",
                   help="write the front end's features (mel / fbank) instead of embeddings")
    p.add_argument("-o", "--output", required=True, help="OUT.npy")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avlib.audio import FRONTENDS, build_audio_encoder, embed_waveform
    from avlib.generate import read_conditioning_audio

    check_output(args.output, ".npy")
    if args.layers and args.encoder != "beats":
        raise ConfigError(f"--layers applies to --encoder beats only (drop it for {args.encoder})")
    waveform = read_conditioning_audio(args.audio)  # before loading weights: bad input fails fast
    config = EncoderConfig(name=args.encoder, checkpoint=args.checkpoint)
    if args.layers:
        config.layers = args.layers
    if args.frontend_only:
        model = FRONTENDS[args.encoder]()
    elif args.checkpoint:
        model = build_audio_encoder(config)
    else:
        raise ConfigError("--checkpoint is required to embed (a file or repo_id::filename); "
                          "or pass --frontend-only for the front-end features alone")
    array = embed_waveform(model, waveform)

    with atomic_path(args.output) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    sidecar = Path(args.output).with_suffix(".json")
    write_json(sidecar, {
        "audio": args.audio,
        "encoder": args.encoder,
        "checkpoint": args.checkpoint,
        "layers": config.layers if args.encoder == "beats" and not args.frontend_only else None,
        "frontend_only": args.frontend_only,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "run_record": run_record(),
    })
    print(f"wrote {args.output} {array.shape} {array.dtype} and {sidecar}")
    return 0
