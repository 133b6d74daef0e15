"""``avlib tokens``: the TempoTokens baseline's six audio tokens for BEATs features or a clip.

    avlib tokens feats.npy --checkpoint models/vggsound/learned_embeds.pth -o tokens.npz
    avlib tokens clip.wav --checkpoint learned_embeds.pth --encoder-checkpoint BEATs.pt -o t.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avlib.errors import ConfigError, MediaError
from avlib.cli.args import check_output
from avlib.io import atomic_path, run_record, write_json

BEATS_ALL_LAYERS_DIM = 9216  # 12 layers x 768


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tokens", help="TempoTokens' audio tokens for BEATs features or an audio clip",
        description="Map BEATs 12-layer features (B, S, 9216) or (S, 9216), or an audio file, "
                    "through TempoTokens' released mapper. Writes temporal_token, "
                    "local_window_1..4 and audio_token (batch axis kept) to OUT.npz and a "
                    "JSON sidecar OUT.json.")
    p.add_argument("input", help="features .npy (from `avlib embed --encoder beats --layers all`) "
                                 "or an audio/video file")
    p.add_argument("--mapper", choices=["tempotokens"], default="tempotokens",
                   help="mapper design (default: %(default)s)")
    p.add_argument("--checkpoint", required=True,
                   help="released mapper weights, e.g. models/vggsound/learned_embeds.pth")
    p.add_argument("--encoder-checkpoint",
                   help="BEATs weights (BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt), "
                        "needed when INPUT is an audio file")
    p.add_argument("--upstream-dropout", action="store_true",
                   help="keep upstream's dropout in the class-token attention at inference "
                        "(random audio_token, as TempoTokens samples)")
    p.add_argument("--seed", type=int, default=0, help="seeds the upstream dropout draw")
    p.add_argument("-o", "--output", required=True, help="OUT.npz")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from avlib.mapper import TempoTokensMapper

    check_output(args.output, ".npz")
    is_npy = args.input.lower().endswith(".npy")
    features = read_features(args.input) if is_npy else encode_audio(args)
    mapper = TempoTokensMapper.from_checkpoint(args.checkpoint,
                                               upstream_dropout=args.upstream_dropout)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        outputs = mapper(torch.as_tensor(features)).extras
    arrays = {name: t.numpy() for name, t in outputs.items()}

    with atomic_path(args.output) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    sidecar = Path(args.output).with_suffix(".json")
    write_json(sidecar, {
        "input": args.input,
        "mapper": args.mapper,
        "checkpoint": args.checkpoint,
        "encoder_checkpoint": args.encoder_checkpoint,
        "upstream_dropout": args.upstream_dropout,
        "arrays": {name: list(a.shape) for name, a in arrays.items()},
        # frame f's prompt gets each placeholder's row f; <class> is one vector for all frames
        "placeholders": dict(zip(mapper.placeholder_names, mapper.output_names)),
        "run_record": run_record(seed=args.seed),
    })
    print(f"wrote {args.output} ({', '.join(arrays)}) and {sidecar}")
    return 0


def read_features(path: str) -> np.ndarray:
    """A features .npy, (S, D) or (B, S, D) -> float32 (B, S, D)."""
    if not Path(path).is_file():
        raise MediaError(f"features file not found: {path} (write it with `avlib embed`)")
    try:
        features = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise MediaError(f"cannot read {path} as a .npy array ({exc}); "
                         "write it again with `avlib embed`") from exc
    if not np.issubdtype(features.dtype, np.number) or not np.all(np.isfinite(features)):
        raise MediaError(f"{path} holds NaN, infinite or non-numeric values; write it again with "
                         "`avlib embed --encoder beats --layers all`")
    if features.ndim not in (2, 3) or 0 in features.shape:
        raise MediaError(f"{path} has shape {features.shape}; expected (S, {BEATS_ALL_LAYERS_DIM}) "
                         f"or (B, S, {BEATS_ALL_LAYERS_DIM}) from `avlib embed --layers all`")
    features = features.astype(np.float32)
    return features[None] if features.ndim == 2 else features


def encode_audio(args: argparse.Namespace) -> np.ndarray:
    """An audio (or video) file -> BEATs 12-layer features (1, S, 9216)."""
    if not args.encoder_checkpoint:
        raise ConfigError(f"{args.input} is not a .npy features file: pass --encoder-checkpoint "
                          "with the BEATs weights to encode it, or give features from "
                          "`avlib embed --encoder beats --layers all`")
    from avlib.audio import build_audio_encoder, embed_waveform
    from avlib.config import EncoderConfig
    from avlib.generate import read_conditioning_audio

    waveform = read_conditioning_audio(args.input)  # before loading weights: bad input fails fast
    encoder = build_audio_encoder(
        EncoderConfig(name="beats", checkpoint=args.encoder_checkpoint, layers="all"))
    return embed_waveform(encoder, waveform)[None]
