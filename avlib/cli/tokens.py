"""``avlib tokens``: an upstream mapper's six audio tokens for audio features or a clip.

TempoTokens (BEATs features) or the report repo's mapper (``--mapper audiovisgen``, CAVP
features), loaded from their released / saved weights::

    avlib tokens feats.npy --checkpoint models/vggsound/learned_embeds.pth -o tokens.npz
    avlib tokens clip.wav --checkpoint learned_embeds.pth --encoder-checkpoint BEATs.pt -o t.npz
    avlib tokens cavp.npy --mapper audiovisgen --checkpoint at_embedder_1000.pth -o t.npz
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avlib.errors import ConfigError, MediaError
from avlib.cli.args import check_output, seed_int
from avlib.io import atomic_path, run_record, write_json

# The encoder each mapper's weights expect: (name, BEATs layers, feature width).
MAPPER_ENCODERS = {"tempotokens": ("beats", "all", 9216), "audiovisgen": ("cavp", "last", 512)}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tokens", help="an upstream mapper's audio tokens for audio features or a clip",
        description="Map audio features (B, S, D) or (S, D), or an audio file, through an "
                    "upstream mapper: TempoTokens' released one (BEATs 12-layer features, D = 9216) "
                    "or the report repo's (--mapper audiovisgen, CAVP features, D = 512). Writes "
                    "temporal_token, local_window_1..4 and audio_token (batch axis kept) to "
                    "OUT.npz and a JSON sidecar OUT.json.")
    p.add_argument("input", help="features .npy (from `avlib embed`: --encoder beats --layers all "
                                 "for tempotokens, --encoder cavp for audiovisgen) or an audio/video file")
    p.add_argument("--mapper", choices=sorted(MAPPER_ENCODERS), default="tempotokens",
                   help="mapper design (default: %(default)s)")
    p.add_argument("--checkpoint", required=True,
                   help="mapper weights: models/vggsound/learned_embeds.pth (tempotokens), "
                        "at_embedder_<step>.pth (audiovisgen)")
    p.add_argument("--encoder-checkpoint",
                   help="encoder weights, needed when INPUT is an audio file: BEATs_iter3_plus_"
                        "AS2M_finetuned_on_AS2M_cpt2.pt (tempotokens), cavp_epoch66.ckpt (audiovisgen)")
    p.add_argument("--upstream-dropout", action="store_true",
                   help="keep upstream's dropout in the class-token attention at inference "
                        "(random audio_token, as TempoTokens samples)")
    p.add_argument("--seed", type=seed_int, default=0, help="seeds the upstream dropout draw")
    p.add_argument("-o", "--output", required=True, help="OUT.npz")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from avlib.mapper import MAPPERS

    check_output(args.output, ".npz")
    is_npy = args.input.lower().endswith(".npy")
    features = read_features(args.input, args.mapper) if is_npy else encode_audio(args)
    mapper = MAPPERS[args.mapper].from_checkpoint(args.checkpoint,
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


def read_features(path: str, mapper: str = "tempotokens") -> np.ndarray:
    """A features .npy, (S, D) or (B, S, D) -> float32 (B, S, D)."""
    encoder, layers, dim = MAPPER_ENCODERS[mapper]
    if not Path(path).is_file():
        raise MediaError(f"features file not found: {path} (write it with `avlib embed`)")
    try:
        features = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:  # numpy's own text advises unpickling: never shown
        what = ("holds pickled Python objects, which avlib never unpickles" if "pickle" in str(exc)
                else "is not a .npy array (truncated or another format)")
        raise MediaError(f"cannot read {path}: it {what}; write it again with `avlib embed`") from exc
    if not np.issubdtype(features.dtype, np.number) or not np.all(np.isfinite(features)):
        raise MediaError(f"{path} holds NaN, infinite or non-numeric values; write it again with "
                         "`avlib embed --encoder beats --layers all`")
    if features.ndim not in (2, 3) or 0 in features.shape:
        raise MediaError(f"{path} has shape {features.shape}; expected (S, {dim}) or (B, S, {dim}) "
                         f"from `avlib embed --encoder {encoder}`")
    features = features.astype(np.float32)
    return features[None] if features.ndim == 2 else features


def encode_audio(args: argparse.Namespace) -> np.ndarray:
    """An audio (or video) file -> the mapper's encoder features (1, S, D)."""
    encoder_name, layers, _ = MAPPER_ENCODERS[args.mapper]
    if not args.encoder_checkpoint:
        raise ConfigError(f"{args.input} is not a .npy features file: pass --encoder-checkpoint "
                          f"with the {encoder_name.upper()} weights to encode it, or give features "
                          f"from `avlib embed --encoder {encoder_name}`")
    from avlib.audio import build_audio_encoder, embed_waveform
    from avlib.config import EncoderConfig
    from avlib.generate import read_conditioning_audio

    waveform = read_conditioning_audio(args.input)  # before loading weights: bad input fails fast
    encoder = build_audio_encoder(
        EncoderConfig(name=encoder_name, checkpoint=args.encoder_checkpoint, layers=layers))
    return embed_waveform(encoder, waveform)[None]
