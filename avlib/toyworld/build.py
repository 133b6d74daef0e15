"""Build the toy world's stand-in models on the synthetic world, on a CPU, in minutes.

1. **VAE** (``AutoencoderKL``, zeroscope's class at the tiny twin's size: 32x32 frames ->
   4x8x8 latents) trained for reconstruction (MSE + a small KL term); its
   ``scaling_factor`` is then set to 1 / std of the latents, as Stable Diffusion did.
2. **UNet** (``UNet3DConditionModel``, the tiny twin's) trained with the epsilon objective
   on the toy clips' latents, each frame conditioned on its own caption through avlib's
   per-frame cross-attention processor; 10% of clips train the unconditional (empty) prompt
   for guidance. By default the CLIP text encoder stays as the tiny twin built it (frozen,
   random): the UNet learns to read its outputs. With ``text_encoder_lr`` > 0 it trains with
   the UNet instead, and with ``wordings`` > 1 each frame's caption is drawn among other
   wordings of its state; either way each batch's captions are encoded per step.
3. **CAVP** (:class:`~avlib.audio.cavp.CAVPEncoder` at width 8, 64-d output) pretrained with
   CAVP's objective against a small video encoder (:class:`VideoEncoder`): symmetric InfoNCE
   between time-pooled audio and video embeddings plus an intra-video temporal InfoNCE over
   the 4 Hz time steps.

The result is a diffusers folder ``t2v/`` (loads through :func:`avlib.pipeline.t2v.load_t2v`)
and ``cavp.safetensors`` (loads through ``encoder.checkpoint``). Everything is seeded.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet3DConditionModel
from diffusers.utils import CONFIG_NAME
from torch import nn
from tqdm.auto import tqdm
from transformers import CLIPTextModel, CLIPTokenizer

from avlib.audio.cavp import CAVPEncoder
from avlib.audio.checkpoints import save_encoder
from avlib.data.synthetic import synth_clip
from avlib.errors import CheckpointError, ConfigError
from avlib.io import read_json, run_record, write_json
from avlib.pipeline.assemble import assemble
from avlib.pipeline.conditioning import enable_frame_conditioning, encode_text
from avlib.pipeline.tiny import build_tiny_t2v
from avlib.train import sample_timesteps
from avlib.toyworld import CAVP_FILE, T2V_SUBDIR
from avlib.toyworld.data import MAX_WORDINGS, ToySpec, reword, toy_clips, toyworld_config

CAVP_WIDTH, CAVP_DIM = 8, 64
UNCOND_FRACTION = 0.1


@dataclass
class BuildConfig:
    """What ``avlib toyworld build`` trains, and for how long (steps per stage; the build times are in RESULTS.md)."""

    seed: int = 0
    clips_per_class: int = 32
    vae_steps: int = 200
    unet_steps: int = 600
    cavp_steps: int = 100
    batch_size: int = 8
    lr: float = 1e-3
    timestep_power: float = 1.0  # UNet timesteps t = T * u**p, u ~ U(0, 1): p < 1 favours high noise
    context_noise: float = 0.0   # S: each frame's caption context + Gaussian noise of up to S x its RMS (0: none)
    text_encoder_lr: float = 0.0  # > 0: the CLIP text encoder trains with the UNet at this learning rate (0: frozen)
    wordings: int = 1            # N > 1: each frame's caption drawn per step among N wordings of its state (1: the caption)
    init: str = ""            # continue from this earlier build's weights ("": from scratch)

    def __post_init__(self):
        if not (math.isfinite(self.context_noise) and self.context_noise >= 0):
            raise ConfigError(f"context_noise must be a finite number >= 0 (got {self.context_noise}); "
                              "pass e.g. 0.5, or 0 (the default) to train on the captions' contexts alone")
        if not (math.isfinite(self.text_encoder_lr) and self.text_encoder_lr >= 0):
            raise ConfigError(f"text_encoder_lr must be a finite number >= 0 (got {self.text_encoder_lr}); "
                              "pass e.g. 0.0003, or 0 (the default) to keep the text encoder frozen")
        if not 1 <= self.wordings <= MAX_WORDINGS:
            raise ConfigError(f"wordings must be between 1 and {MAX_WORDINGS} (got {self.wordings}); "
                              "pass 1 (the default) to train on the captions alone")


# -- 1. VAE ----------------------------------------------------------------------------------
def train_vae(vae, frames: torch.Tensor, cfg: BuildConfig, generator: torch.Generator,
              progress: bool = True) -> list[float]:
    """Reconstruction training on frames (N, 3, H, W) in [-1, 1]; returns the losses."""
    vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    losses = []
    for _ in tqdm(range(cfg.vae_steps), desc="toyworld: VAE", disable=not progress):
        batch = frames[torch.randint(len(frames), (4 * cfg.batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        reconstruction = vae.decode(latents).sample
        loss = F.mse_loss(reconstruction, batch) + 1e-6 * posterior.kl().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    vae.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def encode_latents(vae, clips: list[dict]) -> torch.Tensor:
    """Unscaled VAE means of every clip: (N, C, F, h, w)."""
    frames = torch.stack([c["frames"] for c in clips])                       # (N, F, 3, H, W)
    n, f = frames.shape[:2]
    means = vae.encode(frames.flatten(0, 1)).latent_dist.mean              # (N*F, C, h, w)
    return means.unflatten(0, (n, f)).transpose(1, 2)                        # (N, C, F, h, w)


# -- 2. UNet ---------------------------------------------------------------------------------
def encode_frame_captions(text_encoder, tokenizer, captions: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame contexts (B, F*77, D) of B clips' F captions each, and the empty prompt's
    (F*77, D); every distinct caption is encoded once, in one batch (with gradients, when
    the text encoder trains)."""
    unique = sorted({c for clip in captions for c in clip}) + [""]
    table = dict(zip(unique, encode_text(text_encoder, tokenizer, unique)))   # caption -> (77, D)
    contexts = torch.stack([torch.cat([table[c] for c in clip]) for clip in captions])
    return contexts, table[""].repeat(len(captions[0]), 1)


@torch.no_grad()
def caption_contexts(text_encoder, tokenizer, clips: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame caption contexts (N, F*77, D) of the clips and the empty prompt's (F*77, D)."""
    return encode_frame_captions(text_encoder, tokenizer, [clip["captions"] for clip in clips])


def perturb_contexts(contexts: torch.Tensor, num_frames: int, scale: float,
                     generator: torch.Generator) -> torch.Tensor:
    """Contexts (B, F*77, D) with each frame's (77, D) context c moved to c + s * rms(c) * n,
    n ~ N(0, I), s ~ U(0, scale) per frame: the UNet learns to draw the caption's frame from
    contexts around it, out to where an audio mapper's tokens land (RESULTS.md)."""
    per_frame = contexts.unflatten(1, (num_frames, -1))                       # (B, F, 77, D)
    rms = per_frame.pow(2).mean(dim=(2, 3), keepdim=True).sqrt()              # (B, F, 1, 1)
    relative = scale * torch.rand(rms.shape, generator=generator)            # (B, F, 1, 1)
    noise = torch.randn(per_frame.shape, generator=generator)
    return (per_frame + relative * rms * noise).flatten(1, 2)                 # (B, F*77, D)


def train_unet(unet, scheduler_config, latents: torch.Tensor, contexts: torch.Tensor | None,
               uncond: torch.Tensor | None, cfg: BuildConfig, generator: torch.Generator,
               progress: bool = True, text: tuple | None = None) -> list[float]:
    """Epsilon-prediction training: latents (N, C, F, h, w), contexts (N, F*77, D) and the
    empty prompt's uncond (F*77, D), precomputed by the frozen text encoder. Or, with
    ``text = (text_encoder, tokenizer, captions)`` (captions: N lists of F strings; contexts
    and uncond None), each batch's captions are encoded per step, reworded when
    ``cfg.wordings`` > 1, and the text encoder trains with the UNet at ``cfg.text_encoder_lr``
    (> 0) or stays frozen (0)."""
    if (text is None) == bool(cfg.text_encoder_lr or cfg.wordings > 1):
        raise ValueError("train_unet needs text=(text_encoder, tokenizer, captions) exactly when "
                         "cfg trains the text encoder or varies the wordings")
    text_encoder, tokenizer, captions = text or (None, None, None)
    noise_schedule = DDPMScheduler.from_config(scheduler_config)
    unet.train().requires_grad_(True)
    enable_frame_conditioning(unet, tokenizer.model_max_length if text else contexts.shape[1] // latents.shape[2])
    optimizer, schedule, trained = unet_optimizer(unet, text_encoder, cfg)
    losses = []
    bar = tqdm(range(cfg.unet_steps), desc="toyworld: UNet", disable=not progress)
    for _ in bar:
        index = torch.randint(len(latents), (cfg.batch_size,), generator=generator)
        x0 = latents[index]                                                   # (B, C, F, h, w)
        if text:  # the wordings, or the encoder, change every step: encode the batch's captions now
            context, uncond = step_contexts(text, [captions[i] for i in index], cfg, generator)
        else:
            context = contexts[index].clone()                                 # (B, F*77, D)
        drop = torch.rand(cfg.batch_size, generator=generator) < UNCOND_FRACTION
        if cfg.context_noise:  # off: no draws, so a default build is today's, bit for bit
            context = perturb_contexts(context, x0.shape[2], cfg.context_noise, generator)
        context[drop] = uncond  # the empty prompt stays exact: guidance samples with it
        noise = torch.randn(x0.shape, generator=generator)
        t = sample_timesteps(cfg.batch_size, noise_schedule.config.num_train_timesteps, cfg.timestep_power,
                             generator)
        predicted = unet(noise_schedule.add_noise(x0, noise, t), t, encoder_hidden_states=context).sample
        loss = F.mse_loss(predicted, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
    unet.eval().requires_grad_(False)
    if cfg.text_encoder_lr:
        text_encoder.eval().requires_grad_(False)
    return losses


def unet_optimizer(unet, text_encoder, cfg: BuildConfig):
    """AdamW over the UNet (and the text encoder at ``cfg.text_encoder_lr`` when it trains,
    which it is then set to), its warm-up + cosine schedule, and the trained parameters."""
    groups = [{"params": list(unet.parameters())}]
    if cfg.text_encoder_lr:
        text_encoder.train().requires_grad_(True)
        groups.append({"params": list(text_encoder.parameters()), "lr": cfg.text_encoder_lr})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=0.01)
    warmup = max(1, cfg.unet_steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (
        0.5 * (1 + math.cos(math.pi * min(s, cfg.unet_steps) / cfg.unet_steps))))
    return optimizer, schedule, [p for group in groups for p in group["params"]]


def step_contexts(text: tuple, batch_captions: list[list[str]], cfg: BuildConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's contexts (B, F*77, D) of ``batch_captions`` (B lists of F strings), reworded
    when ``cfg.wordings`` > 1, and the empty prompt's; with gradients when the encoder trains."""
    text_encoder, tokenizer, _ = text
    if cfg.wordings > 1:
        batch_captions = reword(batch_captions, cfg.wordings, generator)
    with torch.set_grad_enabled(bool(cfg.text_encoder_lr)):
        return encode_frame_captions(text_encoder, tokenizer, batch_captions)


# -- 3. CAVP ---------------------------------------------------------------------------------
class VideoEncoder(nn.Module):
    """The video side of the toy CAVP: frames (B, F, 3, H, W) -> (B, F // 2, dim).

    Each frame is seen with its difference to the previous one (so a change registers), a
    small CNN embeds it, and pairs of frames are averaged to the audio's 4 Hz (at 8 fps).
    """

    def __init__(self, dim: int = CAVP_DIM, width: int = 16, frames_per_step: int = 2):
        super().__init__()
        self.frames_per_step = frames_per_step
        self.net = nn.Sequential(
            nn.Conv2d(6, width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, dim))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, num_frames = frames.shape[:2]
        change = frames - torch.cat([frames[:, :1], frames[:, :-1]], dim=1)   # (B, F, 3, H, W)
        x = self.net(torch.cat([frames, change], dim=2).flatten(0, 1))        # (B*F, dim)
        x = x.view(batch, num_frames // self.frames_per_step, self.frames_per_step, -1)
        return x.mean(2)                                                      # (B, F/2, dim)


def info_nce(a: torch.Tensor, v: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over the rows of a and v (..., N, D): row i of a matches row i of v."""
    logits = F.normalize(a, dim=-1) @ F.normalize(v, dim=-1).transpose(-1, -2) / temperature
    target = torch.arange(a.shape[-2]).expand(logits.shape[:-1])
    return 0.5 * (F.cross_entropy(logits.flatten(0, -2), target.flatten())
                  + F.cross_entropy(logits.transpose(-1, -2).flatten(0, -2), target.flatten()))


def cavp_loss(audio: torch.Tensor, video: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """CAVP's objective on (B, T, D) audio and video embeddings: the clip-level symmetric
    InfoNCE of the time means plus the intra-video temporal InfoNCE over the T steps."""
    return info_nce(audio.mean(1), video.mean(1), temperature) + info_nce(audio, video, temperature)


def train_cavp(clips: list[dict], cfg: BuildConfig, generator: torch.Generator,
               progress: bool = True) -> tuple[nn.Module, list[float]]:
    """Pretrain a width-8 CAVP encoder against :class:`VideoEncoder`; returns (encoder, losses)."""
    audio_encoder, video_encoder = CAVPEncoder(width=CAVP_WIDTH, embed_dim=CAVP_DIM), VideoEncoder()
    parameters = [*audio_encoder.parameters(), *video_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=0.01)
    waveforms = torch.stack([c["waveform"] for c in clips])                  # (N, samples)
    frames = torch.stack([c["frames"] for c in clips])                       # (N, F, 3, H, W)
    audio_encoder.train()
    losses = []
    for _ in tqdm(range(cfg.cavp_steps), desc="toyworld: CAVP", disable=not progress):
        index = torch.randperm(len(clips), generator=generator)[: 2 * cfg.batch_size]
        loss = cavp_loss(audio_encoder(waveforms[index]), video_encoder(frames[index]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return audio_encoder.eval().requires_grad_(False), losses


# -- all together ---------------------------------------------------------------------------
def build_toyworld(out_dir: str | Path, cfg: BuildConfig = BuildConfig(), progress: bool = True) -> Path:
    """Train the stand-ins and write ``out_dir/t2v`` + ``out_dir/cavp.safetensors`` +
    ``out_dir/build.json``. The folder appears only when complete."""
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    if cfg.init:  # continue training an earlier build
        t2v_dir = Path(shutil.copytree(Path(cfg.init) / T2V_SUBDIR, staging / T2V_SUBDIR))
    else:         # the tiny twin's classes and sizes, random weights
        t2v_dir = build_tiny_t2v(staging / T2V_SUBDIR, seed=cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    timings, started = {}, time.perf_counter()
    lap = lambda name: timings.__setitem__(name, time.perf_counter() - started - sum(timings.values()))

    clips = toy_clips(per_class=cfg.clips_per_class, seed=cfg.seed)
    lap("data_s")
    latents, scaling, vae_losses = build_vae(t2v_dir, clips, cfg, generator, progress)
    lap("vae_s")
    unet_losses = build_unet(t2v_dir, latents * scaling, clips, cfg, generator, progress)
    lap("unet_s")
    if cfg.init and not cfg.cavp_steps:
        cavp_losses = []
        shutil.copy(Path(cfg.init) / CAVP_FILE, staging / CAVP_FILE)
    else:
        cavp, cavp_losses = train_cavp(clips, cfg, generator, progress)
        save_encoder(cavp, staging / CAVP_FILE)
    lap("cavp_s")

    summary = lambda losses: {"first": losses[0], "last20_mean": sum(losses[-20:]) / len(losses[-20:])} if losses else None
    write_json(staging / "build.json", run_record(
        {**asdict(cfg), "init": Path(cfg.init).name}, seed=cfg.seed, spec=asdict(ToySpec()), latent_scaling=scaling, timings=timings,
        losses={"vae": summary(vae_losses), "unet": summary(unet_losses), "cavp": summary(cavp_losses)},
        init_build=read_json(Path(cfg.init) / "build.json", "toy world build record") if cfg.init else None))
    for config_file in (staging / T2V_SUBDIR).glob(f"*/{CONFIG_NAME}"):  # no staging paths in the output
        config = json.loads(config_file.read_text())
        if "_name_or_path" in config:
            config["_name_or_path"] = T2V_SUBDIR
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


def build_vae(t2v_dir: Path, clips: list[dict], cfg: BuildConfig, generator: torch.Generator,
              progress: bool) -> tuple[torch.Tensor, float, list[float]]:
    """Train the VAE in ``t2v_dir`` on the clips' frames and save it with its latent scaling;
    returns the clips' latents (N, C, F, h, w), that scaling and the losses."""
    vae = AutoencoderKL.from_pretrained(t2v_dir, subfolder="vae")
    frames = torch.cat([c["frames"] for c in clips])                          # (N*F, 3, H, W)
    vae_losses = train_vae(vae, frames, cfg, generator, progress)
    latents = encode_latents(vae, clips)
    scaling = 1.0 / latents.std().item() if vae_losses else vae.config.scaling_factor
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(t2v_dir / "vae")
    return latents, scaling, vae_losses


def build_unet(t2v_dir: Path, latents: torch.Tensor, clips: list[dict], cfg: BuildConfig,
               generator: torch.Generator, progress: bool) -> list[float]:
    """Train the UNet in ``t2v_dir`` on the scaled ``latents`` and the clips' captions (the text
    encoder with it when ``cfg.text_encoder_lr``) and save what trained; returns the losses."""
    tokenizer = CLIPTokenizer.from_pretrained(t2v_dir, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(t2v_dir, subfolder="text_encoder").eval()
    unet = UNet3DConditionModel.from_pretrained(t2v_dir, subfolder="unet")
    scheduler = DDIMScheduler.from_pretrained(t2v_dir, subfolder="scheduler")
    if cfg.text_encoder_lr or cfg.wordings > 1:
        unet_losses = train_unet(unet, scheduler.config, latents, None, None, cfg, generator, progress,
                                 text=(text_encoder, tokenizer, [clip["captions"] for clip in clips]))
        if cfg.text_encoder_lr:
            text_encoder.save_pretrained(t2v_dir / "text_encoder")
    else:
        contexts, uncond = caption_contexts(text_encoder, tokenizer, clips)
        unet_losses = train_unet(unet, scheduler.config, latents, contexts, uncond, cfg, generator, progress)
    unet.save_pretrained(t2v_dir / "unet")
    return unet_losses


def check_toyworld(weights: str | Path) -> dict:
    """Load the toy world from ``weights`` and generate from text and from audio (random mapper)."""
    weights, started = Path(weights), time.perf_counter()
    if not (weights / T2V_SUBDIR).is_dir() or not (weights / CAVP_FILE).is_file():
        raise CheckpointError(f"{weights} holds no toy world ({T2V_SUBDIR}/ and {CAVP_FILE}); "
                              "build one with `avlib toyworld build --out DIR`")
    spec = ToySpec()
    pipeline = assemble(toyworld_config(weights, classes=["dog"]), device="cpu")
    pipeline.set_progress_bar_config(disable=True)
    waveform = synth_clip("dog", 0, seconds=spec.seconds, fps=spec.fps, size=spec.size).wave
    size = dict(num_inference_steps=4, guidance_scale=5.0, num_frames=spec.num_frames, height=spec.size,
                width=spec.size, generator=torch.Generator().manual_seed(0))
    videos = [pipeline(prompt="dog", **size).frames, pipeline(waveform, **size).frames]
    if not all(np.isfinite(v).all() for v in videos):
        raise CheckpointError(f"the toy world at {weights} generated non-finite frames: rebuild it")
    return {"frames_shape": list(videos[0].shape), "seconds": time.perf_counter() - started}
