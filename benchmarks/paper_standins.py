"""Full-size random stand-ins for every paper-profile weight file, in the official layouts.

    python benchmarks/paper_standins.py --out DIR     (make paper-smoke runs it)

DIR/zeroscope_v2_576w/           zeroscope's diffusers folder: its architecture, random weights
                                 (float16 on disk, as the release), CLIP's real BPE tokenizer
DIR/cavp_epoch66.ckpt            Diff-Foley: {"state_dict": {"module.spec_encoder.*", video keys}}
DIR/BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt   {"cfg", "model"} with the predictor
DIR/learned_embeds.pth           TempoTokens' released mapper: a plain state dict
DIR/i3d_pretrained_400.pt        TATS' Kinetics-400 I3D: a plain state dict
DIR/clip-vit-base-patch32/       a CLIP ViT-B/32 folder in transformers' layout (random weights)

The audio, mapper and I3D files are the layout manifests of tests/fixtures filled by
:mod:`avlib.standin_weights` (the stand-ins the parity tests load), the audio files through the
same writers the audio tests use.
Every file is skipped when present, so a second run costs nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from avlib import standin_weights as weights

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
sys.path.insert(0, str(REPO / "tests"))

from audio_checkpoints import write_beats_checkpoint, write_cavp_checkpoint  # noqa: E402


def build_clip(folder: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from avlib.pipeline.clip_vocab import clip_tokenizer

    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).save_pretrained(folder)   # transformers' defaults are ViT-B/32's sizes
    clip_tokenizer().save_pretrained(folder)
    CLIPImageProcessorPil().save_pretrained(folder)


def build_all(out: Path) -> None:
    from avlib.pipeline.clip_vocab import clip_tokenizer
    from avlib.pipeline.tiny import build_random_t2v

    files = {
        "zeroscope_v2_576w": lambda p: build_random_t2v(p, "paper", tokenizer=clip_tokenizer(),
                                                        dtype=torch.float16),
        "cavp_epoch66.ckpt": lambda p: write_cavp_checkpoint(weights, FIXTURES, p),
        "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt": lambda p: write_beats_checkpoint(weights, FIXTURES, p),
        "learned_embeds.pth": lambda p: torch.save(weights.synth_from_manifest(
            FIXTURES / "tempotokens_mapper_state_dict_shapes.json", 0), p),
        "i3d_pretrained_400.pt": lambda p: torch.save(weights.synth_from_manifest(
            FIXTURES / "i3d_400_state_dict_shapes.json", 0), p),
        "clip-vit-base-patch32": build_clip,
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, build in files.items():
        target = out / name
        if target.exists():
            print(f"present: {target}")
            continue
        staging = out / f".{name}.tmp"
        build(staging)
        staging.rename(target)
        print(f"built {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    build_all(parser.parse_args().out)


if __name__ == "__main__":
    main()
