"""The toy world's metric networks: a toy CLIP for CLIPSIM and a toy video network for FVD.

The tiny profile used to score CLIPSIM and FVD with seeded *random* networks, whose numbers
measure nothing. These two are trained on the synthetic world (``avlib toyworld metrics``, about
a minute on one core) and are what the tiny profile scores with; every output names them TOY.
This module trains them; :func:`avlib.metrics.clipsim.toy_clip_scorer` and
:func:`avlib.metrics.fvd.toy_backbone` load them:

* **toy CLIP** -- the tiny CLIP of :meth:`avlib.metrics.clipsim.ClipScorer.tiny` (same config),
  trained with CLIP's contrastive objective over the toy world's closed set of texts: a frame's
  embedding must be nearest its class name (``dog``) among the class names, and nearest its
  per-frame caption (``dog jumps`` after the event) among all captions. Toy CLIPSIM (cosine of
  frame and class name, frames averaged) then measures whether a video shows its class.
* **toy video network** -- the tiny I3D of :func:`avlib.metrics.i3d.tiny_i3d` (same layout),
  trained to name a clip's class and its event frame, where a *frozen* clip (one frame repeated)
  has no event. Its output is FVD's feature, so toy FVD separates classes and motion.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from avlib.data.synthetic import CLASSES
from avlib.io import run_record, write_json
from avlib.metrics.clipsim import ClipScorer, frame_averaged_cosine, toy_clip_scorer
from avlib.metrics.fvd import frechet_distance, toy_backbone
from avlib.metrics.i3d import tiny_i3d
from avlib.named_weights import TOY_CLIP_SUBDIR, TOY_VIDEO_FILE
from avlib.toyworld.data import STATE_WORDS, rgb_frames, toy_clips

RECORD_FILE = "build.json"
VIDEO_FEATURES = 16                   # the toy I3D's output: FVD's feature dimension
PIXEL_NOISE = 0.1                     # generated frames are noisy: judge content, not grain


@dataclass(frozen=True)
class MetricNetsConfig:
    """How the toy metric networks are trained (seeded: the same config gives the same weights)."""

    seed: int = 0
    clips_per_class: int = 32
    clip_steps: int = 300
    video_steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    validity_per_class: int = 40  # held-out clips per class and set for the recorded validity checks


def toy_texts() -> list[str]:
    """The class names, then each class's after-event caption (``dog jumps``)."""
    return list(CLASSES) + [f"{label} {STATE_WORDS[label]}" for label in CLASSES]


def frozen(videos: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, T, H, W) -> each video's frame at a random time, repeated T times."""
    t = torch.randint(videos.shape[2], (len(videos),), generator=generator)
    still = videos[torch.arange(len(videos)), :, t]                    # (B, 3, H, W)
    return still[:, :, None].expand_as(videos).contiguous()


def _optimise(parameters, loss_of_step, steps: int, lr: float, desc: str, progress: bool) -> float:
    """AdamW for ``steps`` steps on ``loss_of_step()``; returns the mean loss of the last 20."""
    optimizer = torch.optim.AdamW(parameters, lr=lr)
    losses = []
    for _ in tqdm(range(steps), desc=desc, disable=not progress):
        loss = loss_of_step()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return sum(losses[-20:]) / len(losses[-20:])


def train_toy_clip(clips: list[dict], cfg: MetricNetsConfig, progress: bool = True):
    """(ClipScorer of the trained toy CLIP, final loss) from the clips' frames and captions."""
    scorer = ClipScorer.tiny(cfg.seed)
    model, texts = scorer.model.train(), toy_texts()
    tokens = scorer.tokenizer(texts, padding=True, return_tensors="pt")
    frames = torch.cat([c["frames"] for c in clips]) / 2 + 0.5                # (N*F, 3, H, W) in [0, 1]
    mean = torch.tensor(scorer.image_processor.image_mean)[:, None, None]
    std = torch.tensor(scorer.image_processor.image_std)[:, None, None]
    per_frame = [(CLASSES.index(c["label"]), texts.index(caption)) for c in clips for caption in c["captions"]]
    class_target, caption_target = torch.tensor(per_frame).T
    generator = torch.Generator().manual_seed(cfg.seed)

    def loss() -> torch.Tensor:
        index = torch.randint(len(frames), (cfg.batch_size,), generator=generator)
        x = frames[index] + PIXEL_NOISE * torch.randn(frames[index].shape, generator=generator)
        image = F.normalize(model.get_image_features(pixel_values=(x - mean) / std).pooler_output, dim=-1)
        text = F.normalize(model.get_text_features(**tokens).pooler_output, dim=-1)
        logits = model.logit_scale.exp() * image @ text.T                    # (B, texts)
        return (F.cross_entropy(logits[:, :len(CLASSES)], class_target[index])
                + F.cross_entropy(logits, caption_target[index]))

    final = _optimise(model.parameters(), loss, cfg.clip_steps, cfg.lr, "toy CLIP", progress)
    model.eval().requires_grad_(False)
    return scorer, final


def train_toy_video_net(clips: list[dict], cfg: MetricNetsConfig, progress: bool = True):
    """(the trained toy I3D, final loss): class and event frame (or none, for frozen clips)."""
    num_frames = clips[0]["frames"].shape[0]
    net = tiny_i3d(cfg.seed, num_classes=VIDEO_FEATURES).train()
    heads = torch.nn.ModuleDict({"class": torch.nn.Linear(VIDEO_FEATURES, len(CLASSES)),
                                 "event": torch.nn.Linear(VIDEO_FEATURES, num_frames + 1)})
    videos = torch.stack([c["frames"].permute(1, 0, 2, 3) for c in clips])   # (N, 3, T, H, W)
    labels = torch.tensor([CLASSES.index(c["label"]) for c in clips])
    events = torch.tensor([int(c["event_frames"][0]) for c in clips])        # one event per toy clip
    generator = torch.Generator().manual_seed(cfg.seed)

    def loss() -> torch.Tensor:
        index = torch.randint(len(videos), (cfg.batch_size,), generator=generator)
        still = torch.rand(cfg.batch_size, generator=generator) < 0.25
        x = torch.where(still[:, None, None, None, None], frozen(videos[index], generator), videos[index])
        x = x + PIXEL_NOISE * torch.randn(x.shape, generator=generator)
        features = net(x)
        return (F.cross_entropy(heads["class"](features), labels[index])
                + F.cross_entropy(heads["event"](features), torch.where(still, num_frames, events[index])))

    final = _optimise([*net.parameters(), *heads.parameters()], loss, cfg.video_steps, cfg.lr,
                      "toy video network", progress)
    return net.eval().requires_grad_(False), final


def _uint8(clip: dict) -> np.ndarray:
    return (rgb_frames(clip) * 255).round().astype(np.uint8)                  # (F, H, W, 3), as decoded


@torch.no_grad()
def _video_features(backbone, clips: list[dict], still: bool = False) -> np.ndarray:
    x = torch.stack([backbone.preprocessing(_uint8(c))[0] for c in clips])    # (N, 3, T, R, R)
    if still:
        x = frozen(x, torch.Generator().manual_seed(0))
    return backbone.model(x).double().numpy()


def validity(scorer, backbone, per_class: int = 40, seed: int = 11) -> dict:
    """The known answers of the synthetic world, on two disjoint held-out sets (seeds ``seed`` and
    ``seed + 1``; the networks train on seed 0's training clips):

    * CLIPSIM: the fraction of clips whose own class name scores highest, and the mean CLIPSIM
      with the own and with the other class names;
    * FVD per class: set A vs set B of the same class, vs each other class, and A frozen (one frame
      repeated) vs B moving.
    """
    a, b = (toy_clips(per_class=per_class, split="test", seed=s) for s in (seed, seed + 1))
    labels = np.array([c["label"] for c in a])
    scores = np.array([[frame_averaged_cosine(scorer.image_embeddings(_uint8(c)), scorer.text_embedding(k))
                        for k in CLASSES] for c in a])                       # (N, classes)
    own = labels[:, None] == np.array(CLASSES)[None]
    fa, fb, still = _video_features(backbone, a), _video_features(backbone, b), _video_features(backbone, a, True)
    fvd = {label: {"same_class": frechet_distance(fa[labels == label], fb[labels == label]),
                   "other_class": {k: frechet_distance(fa[labels == label], fb[labels == k])
                                   for k in CLASSES if k != label},
                   "frozen_vs_moving": frechet_distance(still[labels == label], fb[labels == label])}
           for label in CLASSES}
    return {"n_per_set": len(a), "clipsim_class_accuracy": float((scores.argmax(1) == own.argmax(1)).mean()),
            "clipsim_own_class": float(scores[own].mean()), "clipsim_other_class": float(scores[~own].mean()),
            "fvd": fvd, "clip": scorer.model_id, "video_network": backbone.name}


def build_metric_nets(out: str | Path, cfg: MetricNetsConfig = MetricNetsConfig(),
                      progress: bool = True) -> Path:
    """Train both networks on training clips of the toy world and write them into ``out``."""
    out = Path(out)
    timings, started = {}, time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        clips = toy_clips(per_class=cfg.clips_per_class, seed=cfg.seed)
        scorer, clip_loss = train_toy_clip(clips, cfg, progress)
        timings["clip_s"] = time.perf_counter() - started
        net, video_loss = train_toy_video_net(clips, cfg, progress)
        timings["video_s"] = time.perf_counter() - started - timings["clip_s"]
    scorer.model.save_pretrained(out / TOY_CLIP_SUBDIR)
    scorer.tokenizer.save_pretrained(out / TOY_CLIP_SUBDIR)
    scorer.image_processor.save_pretrained(out / TOY_CLIP_SUBDIR)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / TOY_VIDEO_FILE),
              metadata={"config": json.dumps(net.config)})
    write_json(out / RECORD_FILE, run_record(asdict(cfg), seed=cfg.seed, timings=timings,
                                             final_loss={"clip": clip_loss, "video": video_loss},
                                             validity=validity(toy_clip_scorer(out), toy_backbone(folder=out),
                                                               cfg.validity_per_class)))
    return out
