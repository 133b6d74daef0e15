"""Train a mapper against a frozen text-to-video model: one loop, top to bottom.

    audio -> frozen encoder -> mapper (trained) -> per-frame tokens in the prompt
          -> frozen CLIP text encoder -> frozen UNet3D predicts the noise added to
             the clip's VAE latents -> MSE + temporal_reg * mean|temporal tokens|

Everything random in a run comes from the seed: the order of clips in each epoch is a
permutation seeded by (seed, epoch) and the diffusion noise comes from one generator whose
state is checkpointed, so a run stopped and resumed ends with exactly the weights of an
uninterrupted one. Frozen features (audio embeddings, VAE latents) are computed once per
clip and cached on disk, keyed by everything that changes them.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from accelerate import Accelerator
from diffusers import DDPMScheduler
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from avlib.audio.cache import EmbeddingCache
from avlib.cache import CachedModel
from avlib.config import ExperimentConfig
from avlib.data.window import AudioFrameWindow
from avlib.errors import AvlibError
from avlib.io import as_os_error, cache_dir, write_json
from avlib.pipeline.assemble import assemble
from avlib.pipeline.audio_to_video import AudioToVideoPipeline
from avlib.run import Run, resolve_run_paths

# Written by every save_checkpoint; a train_unet run adds unet.safetensors.
CHECKPOINT_FILES = ("state.json", "mapper.safetensors", "optimizer.safetensors", "rng.safetensors")
log = logging.getLogger(__name__)


# -- frozen features ----------------------------------------------------------------------------
class FrozenFeatures:
    """Audio embeddings and VAE latents of whole clips, computed by the frozen models (and cached).

    ``whole_audio=False`` (the ``report_padded`` window) skips the clip's audio: that mode
    encodes each window's padded audio at every step instead (:meth:`encode_audio`).
    """

    def __init__(self, config: ExperimentConfig, t2v, encoder: torch.nn.Module,
                 cache_root: Path | None, whole_audio: bool = True):
        # t2v: the pipeline (or T2VComponents): its VAE encodes, on its UNet's device
        self.t2v, self.encoder, self.whole_audio = t2v, encoder, whole_audio
        self.hits = self.misses = 0
        self.audio_cache = self.latent_cache = None
        if cache_root is not None:  # entries named by content, weights and settings (avlib.cache)
            self.audio_cache = EmbeddingCache(encoder, dataclasses.asdict(config.encoder), cache_root / "audio")
            self.latent_cache = CachedModel("latents", t2v.vae, {"scaling_factor": t2v.vae.config.scaling_factor},
                                            cache_root / "latents")

    @torch.no_grad()
    def encode_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(samples,)`` 16 kHz -> ``(T', D_audio)`` float32 on the CPU."""
        device = self.t2v.unet.device
        return self.encoder.encode(torch.as_tensor(waveform)[None].to(device))[0].float().cpu()

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [-1, 1] -> VAE latents ``(C, N, h, w)`` float32 on the CPU."""
        frames = torch.as_tensor(frames).to(self.t2v.unet.device, self.t2v.vae.dtype)
        latents = self.t2v.vae.encode(frames).latent_dist.mean                     # (N, C, h, w)
        latents = latents * self.t2v.vae.config.scaling_factor
        return latents.permute(1, 0, 2, 3).float().cpu()                           # (C, N, h, w)

    def __call__(self, clip: dict) -> tuple[torch.Tensor | None, torch.Tensor]:
        """One whole clip -> (audio features (T', D_audio) or None, latents (C, N, h, w))."""
        if self.latent_cache is None:
            self.misses += 1
            audio = self.encode_audio(clip["waveform"]) if self.whole_audio else None
            return audio, self.encode_frames(clip["frames"])
        latents, hit = self.latent_cache.get(clip["frames"], self.encode_frames)
        audio = None
        if self.whole_audio:
            audio, audio_hit = self.audio_cache.get(clip["waveform"], self.encode_audio)
            hit = hit and audio_hit
        self.hits, self.misses = self.hits + hit, self.misses + (not hit)
        return (None if audio is None else torch.from_numpy(audio)), torch.from_numpy(latents)


class FeatureDataset(Dataset):
    """Whole clips -> one aligned window per step: (audio features, latents) of the same seconds.

    The window's start is drawn from (seed, epoch, index) (:meth:`set_epoch`), so every epoch
    trains on new windows of long clips even when the features come from the cache.
    """

    def __init__(self, clips: Dataset, features: FrozenFeatures, window: AudioFrameWindow, seed: int):
        self.clips, self.features, self.window, self.seed = clips, features, window, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        audio, latents = self.features(clip)                                  # (T', D), (C, N, h, w)
        grid = self.window.frame_grid(self.features.encoder)
        start = self.window.draw_start(latents.shape[1], self.seed, self.epoch, index, grid)
        latents = latents[:, start:start + self.window.num_frames]            # (C, F, h, w)
        if audio is None:  # report_padded: this window's audio, padded, through the encoder
            wave = self.window.cut(clip["waveform"], start / self.window.fps)
            audio = self.features.encode_audio(self.window.encoder_input(wave))
        else:
            audio = self.window.crop_vectors(audio, start, self.features.encoder)  # (n, D)
        return {"audio": audio, "latents": latents, "start_frame": start}


class EpochPermutation(Sampler):
    """A fresh order every epoch, fixed by (seed, epoch): resumable without saved sampler state."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def checkpoint_unet_blocks(unet: torch.nn.Module) -> None:
    """Recompute each UNet block's activations in the backward pass instead of storing them.

    diffusers' ``UNet3DConditionModel`` refuses ``enable_gradient_checkpointing()``, yet the
    mapper's gradient flows back through the whole frozen UNet, whose stored activations
    dominate training memory at 24 frames. Wrapping the blocks' forwards does the same job.
    """
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        block.forward = functools.partial(_checkpointed, block.forward)


def _checkpointed(forward, *args, **kwargs):
    return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)


# -- checkpoints --------------------------------------------------------------------------------
def save_checkpoint(folder: Path, step: int, trainables: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer, noise_generator: torch.Generator,
                    losses: list[dict]) -> Path:
    """Weights, optimizer, RNG states and step, as safetensors + JSON, in one atomic rename."""
    target = folder / f"step_{step:07d}"
    staging = folder / f".step_{step:07d}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write_checkpoint(staging, step, trainables, optimizer, noise_generator, losses)
    except BaseException as exc:  # a full disk, Ctrl-C: no half-written folder stays behind
        shutil.rmtree(staging, ignore_errors=True)
        error = as_os_error(exc, target)
        if error is exc:
            raise
        raise error from exc
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def _write_checkpoint(staging: Path, step: int, trainables: dict[str, torch.nn.Module],
                      optimizer: torch.optim.Optimizer, noise_generator: torch.Generator,
                      losses: list[dict]) -> None:
    for name, module in trainables.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                  staging / f"{name}.safetensors")
    optim = optimizer.state_dict()
    tensors = {f"{index}.{key}": value.cpu() for index, state in optim["state"].items()
               for key, value in state.items()}
    save_file(tensors, staging / "optimizer.safetensors")
    save_file({"torch": torch.get_rng_state(), "noise": noise_generator.get_state()},
              staging / "rng.safetensors")
    write_json(staging / "state.json", {
        "step": step, "param_groups": optim["param_groups"], "losses": losses,
        "python_rng": _jsonable(random.getstate()), "numpy_rng": _jsonable(np.random.get_state()),
    })


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(Run(run_dir).checkpoints_dir.glob("step_*"))
    return found[-1] if found else None


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from; None when it is whole.

    The folder appears by one rename, but a disk that fails, a copy cut short or a hand
    edit can still leave it incomplete, so every file is opened before it is trusted.
    """
    for name in CHECKPOINT_FILES:
        if not (path / name).is_file():
            return f"{name} is missing"
    try:
        step = json.loads((path / "state.json").read_text())["step"]
    except (ValueError, KeyError, TypeError):
        return "state.json is truncated or damaged"
    if not isinstance(step, int):
        return "state.json records no step"
    for tensors in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(tensors), framework="pt"):
                pass
        except Exception:  # SafetensorError is not importable under one stable name
            return f"{tensors.name} is truncated or damaged"
    return None


def resumable_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of ``run_dir`` that is whole, warning about each newer one
    skipped; staging folders of saves that never finished are removed on the way."""
    folder = Run(run_dir).checkpoints_dir
    for staging in folder.glob(".step_*.tmp"):
        shutil.rmtree(staging, ignore_errors=True)
        log.warning("warning: removed %s, a checkpoint whose save never finished", staging)
    for candidate in sorted(folder.glob("step_*"), reverse=True):
        problem = checkpoint_problem(candidate)
        if problem is None:
            return candidate
        log.warning("warning: skipping checkpoint %s: %s; resuming from an earlier one", candidate, problem)
    return None


def load_checkpoint(path: Path, trainables: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer, noise_generator: torch.Generator) -> tuple[int, list]:
    """Restore what :func:`save_checkpoint` wrote; returns (step, losses so far)."""
    state = json.loads((path / "state.json").read_text())
    for name, module in trainables.items():
        module.load_state_dict(load_file(path / f"{name}.safetensors"))
    tensors = load_file(path / "optimizer.safetensors")
    optim_state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        optim_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": optim_state, "param_groups": state["param_groups"]})
    rng = load_file(path / "rng.safetensors")
    torch.set_rng_state(rng["torch"])
    noise_generator.set_state(rng["noise"])
    random.setstate(_tuples(state["python_rng"]))
    np_state = state["numpy_rng"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    return state["step"], state["losses"]


# -- the objective ------------------------------------------------------------------------------
def sample_timesteps(batch: int, num_train_timesteps: int, power: float,
                     generator: torch.Generator) -> torch.Tensor:
    """Training timesteps ``t = T * u**power``, ``u ~ U(0, 1)``: ``power`` 1 is the usual uniform
    draw, ``power`` < 1 favours high noise (``0.5``: density proportional to ``t``), where the
    conditioning decides the content and the loss is not dominated by low-noise steps. ``power``
    > 0 is checked where the config is validated (:func:`avlib.config.validate`)."""
    if power == 1.0:  # uniform, with the same draws as torch.randint always gave
        return torch.randint(0, num_train_timesteps, (batch,), generator=generator)
    u = torch.rand(batch, generator=generator) ** power
    return (u * num_train_timesteps).long().clamp(max=num_train_timesteps - 1)


def denoising_loss(pipeline: AudioToVideoPipeline, mapper: torch.nn.Module, noise_schedule, audio: torch.Tensor,
                   latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                   prompt: str | None, temporal_reg: float):
    """TempoTokens' objective: noise-prediction MSE + ``temporal_reg`` * mean|temporal tokens|.

    ``audio`` (B, T, D_audio) features, ``latents`` and ``noise`` (B, C, F, h, w).
    ``mapper`` is the one being trained (as accelerate prepared it); its tokens are placed
    into the prompt by the pipeline's conditioning, the path inference takes.
    Returns (loss, mse, regulariser), in float32 whatever the frozen models' dtype: the
    mapper runs in float32, its tokens and the UNet's inputs are cast to the frozen dtype
    (differentiably), and the prediction is cast back before the loss.
    """
    unet_dtype = pipeline.unet.dtype
    noisy = noise_schedule.add_noise(latents, noise, timesteps)
    tokens = mapper(audio)                                                     # tokens (B, F, L, D)
    batch, frames = tokens.frame_tokens.shape[:2]
    context = pipeline.encode_conditioning(None, prompt, frames, batch, frame_tokens=tokens.frame_tokens)  # (B, F*77, D)
    predicted = pipeline.unet(noisy.to(unet_dtype), timesteps, encoder_hidden_states=context.to(unet_dtype)).sample
    mse = F.mse_loss(predicted.float(), noise.float())
    regulariser = tokens.temporal_tokens.abs().mean()
    return mse + temporal_reg * regulariser, mse, regulariser


# -- the loop -----------------------------------------------------------------------------------
def train(config: ExperimentConfig, clips: Dataset, run_dir: str | Path, resume: bool = False,
          progress: bool = True) -> dict:
    """Train ``config``'s mapper on ``clips`` into ``run_dir``; returns a summary dict.

    ``clips[i]`` is a whole clip: a dict with ``frames`` (N, 3, H, W) in [-1, 1] at
    ``data.fps``, N >= ``data.num_frames``, ``waveform`` (samples,) at 16 kHz covering the same
    seconds, and ``clip_id``; each step trains on a random aligned window of it. The run folder
    (:class:`avlib.run.Run`) gets its config, losses, checkpoints and, at the end, the trained
    pipeline (loadable by ``avlib generate --mapper``).
    """
    run = Run(run_dir)
    config = resolve_run_paths(config)  # the run must work from any folder (avlib.run)
    if not resume and latest_checkpoint(run.root) is not None:
        raise AvlibError(f"{run_dir} already holds a run; pass --resume {run_dir} to continue it "
                         "or choose a new --out folder")
    tcfg = config.train
    accelerator = Accelerator(mixed_precision=tcfg.mixed_precision, cpu=config.model.device == "cpu")
    pipeline, trainables, optimizer = trainable_pipeline(config, str(accelerator.device))
    noise_schedule = DDPMScheduler.from_config(pipeline.scheduler.config)
    noise_generator = torch.Generator().manual_seed(tcfg.seed)
    step, losses = resumed_state(run, trainables, optimizer, noise_generator) if resume else (0, [])
    if accelerator.is_main_process:
        run.write_config(config, seed=tcfg.seed)
    windows, features, loader = training_data(config, clips, pipeline)
    mapper, optimizer, loader = accelerator.prepare(trainables["mapper"], optimizer, loader)
    # Batches per epoch of this process: with N processes (accelerate launch) each trains on its
    # 1/N shard of every epoch's permutation, so a step is N batches and ``step`` counts per process.
    steps_per_epoch = len(loader)
    total = total_steps(tcfg, steps_per_epoch, len(clips))
    bar = tqdm(total=total, initial=step, desc=f"train {config.name}", disable=not progress)
    while step < total:
        epoch, done_in_epoch = divmod(step, steps_per_epoch)
        for batch in epoch_batches(accelerator, loader, windows, epoch, done_in_epoch):
            loss, mse, regulariser = training_step(accelerator, pipeline, mapper, optimizer, noise_schedule,
                                                   noise_generator, batch, config)
            step += 1
            losses.append({"step": step, "epoch": epoch, "loss": loss.item(), "mse": mse.item(),
                           "regulariser": regulariser.item()})
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if (step % tcfg.checkpoint_every == 0 or step == total) and accelerator.is_main_process:
                save_checkpoint(run.checkpoints_dir, step, _unwrapped(accelerator, trainables, mapper),
                                optimizer, noise_generator, losses)
            if step >= total:
                break
    bar.close()
    return finish_run(run, config, accelerator, pipeline, losses, step, features)


def epoch_batches(accelerator, loader: DataLoader, windows: FeatureDataset, epoch: int, done_in_epoch: int):
    """The batches of ``epoch`` not yet trained on (a resumed run skips the first
    ``done_in_epoch``), in that epoch's seeded order and with its new window starts."""
    epoch_loader = accelerator.skip_first_batches(loader, done_in_epoch) if done_in_epoch else loader
    epoch_loader.set_epoch(epoch)  # accelerate would otherwise count epochs per loader object
    windows.set_epoch(epoch)       # new window starts each epoch
    return epoch_loader


def training_step(accelerator, pipeline: AudioToVideoPipeline, mapper, optimizer, noise_schedule,
                  noise_generator: torch.Generator, batch: dict,
                  config: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step on ``batch``: noise and timesteps drawn from ``noise_generator``, the
    denoising loss, its gradient; returns (loss, mse, regulariser)."""
    tcfg = config.train
    latents = batch["latents"]                                         # (B, C, F, h, w)
    noise = torch.randn(latents.shape, generator=noise_generator).to(latents)
    timesteps = sample_timesteps(latents.shape[0], noise_schedule.config.num_train_timesteps,
                                 tcfg.timestep_power, noise_generator).to(latents.device)
    # The <class> pooling's dropout draws from the global RNG, which the data loader
    # also consumes; seeding it from the checkpointed generator keeps resume exact.
    torch.manual_seed(int(torch.randint(0, 2**62, (), generator=noise_generator)))
    with accelerator.autocast():
        loss, mse, regulariser = denoising_loss(pipeline, mapper, noise_schedule, batch["audio"], latents, noise,
                                                timesteps, config.prompt, tcfg.temporal_reg)
    accelerator.backward(loss)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, mse, regulariser


def trainable_pipeline(config: ExperimentConfig,
                       device: str) -> tuple[AudioToVideoPipeline, dict, torch.optim.Optimizer]:
    """The experiment's pipeline on ``device`` (frozen parts in ``model.dtype``, float32 on the
    CPU; a fresh mapper from the seed alone), what trains in it ({"mapper": ..., "unet": ...}
    when ``train.train_unet``) and their AdamW."""
    tcfg = config.train
    pipeline = assemble(config, device=device, seed=tcfg.seed)
    trainables = {"mapper": pipeline.mapper.module.train()}
    if tcfg.gradient_checkpointing:
        checkpoint_unet_blocks(pipeline.unet)
    if tcfg.train_unet:  # trained, so in float32 like every trainable and its optimizer state
        pipeline.unet.float().requires_grad_(True).train()
        trainables["unet"] = pipeline.unet
    parameters = [p for module in trainables.values() for p in module.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=tcfg.lr, betas=tuple(tcfg.adam_betas),
                                  eps=tcfg.adam_eps, weight_decay=tcfg.weight_decay)
    return pipeline, trainables, optimizer


def resumed_state(run: Run, trainables: dict, optimizer, noise_generator: torch.Generator) -> tuple[int, list]:
    """Load the run's last complete checkpoint into ``trainables``, ``optimizer`` and the
    noise generator; returns (step, losses so far)."""
    checkpoint = resumable_checkpoint(run.root)
    if checkpoint is None:
        raise AvlibError(f"nothing to resume in {run.root}: no complete {run.checkpoints_dir}/step_* folder "
                         "(train it again without --resume)")
    return load_checkpoint(checkpoint, trainables, optimizer, noise_generator)


def training_data(config: ExperimentConfig, clips: Dataset,
                  pipeline) -> tuple[FeatureDataset, FrozenFeatures, DataLoader]:
    """The windows of ``clips`` (a new start each epoch) over their frozen features (cached
    unless ``train.cache_features`` is off), and their loader in each epoch's seeded order."""
    tcfg = config.train
    window = AudioFrameWindow.for_training(config.data)
    features = FrozenFeatures(config, pipeline, pipeline.audio_encoder,
                              cache_dir() / "features" if tcfg.cache_features else None,
                              whole_audio=window.mode == "aligned")
    windows = FeatureDataset(clips, features, window, tcfg.seed)
    loader = DataLoader(windows, batch_size=tcfg.batch_size, sampler=EpochPermutation(len(clips), tcfg.seed))
    return windows, features, loader


def total_steps(tcfg, steps_per_epoch: int, clips: int) -> int:
    """Steps the run trains in all: its epochs, or ``train.max_steps`` if fewer."""
    total = tcfg.epochs * steps_per_epoch
    if tcfg.max_steps is not None:  # 0 = no training: e.g. released weights (tempotokens_baseline)
        total = min(total, tcfg.max_steps)
    if tcfg.max_steps != 0 and clips == 0:
        raise AvlibError("the training set is empty: check data.root and the manifest's train split")
    return total


def finish_run(run: Run, config: ExperimentConfig, accelerator, pipeline, losses: list, step: int,
               features: FrozenFeatures) -> dict:
    """Write the losses, the trained pipeline and the summary (main process); return the summary."""
    if accelerator.is_main_process:
        run.write_losses(losses)
        # pipeline.mapper wraps the module accelerate trained (prepare wraps, never copies)
        pipeline.save_pretrained(run.pipeline_dir, save_unet=config.train.train_unet)
    summary = {"steps": step, "final_loss": losses[-1]["loss"] if losses else None,
               "processes": accelerator.num_processes,  # counts below: the main process's
               "cache_hits": features.hits, "cache_misses": features.misses}
    if accelerator.is_main_process:
        run.write_summary(config, seed=config.train.seed, **summary)
    accelerator.wait_for_everyone()
    return summary


def _unwrapped(accelerator, trainables: dict, mapper) -> dict:
    return {**trainables, "mapper": accelerator.unwrap_model(mapper)}


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, list)):
        return [_jsonable(x) for x in obj]
    return obj


def _tuples(obj):
    return tuple(_tuples(x) for x in obj) if isinstance(obj, list) else obj
