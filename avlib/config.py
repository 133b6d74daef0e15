"""Experiment configs: the report's experiments as named YAML files, validated into dataclasses.

Resolution order (later wins)::

    dataclass defaults < profile (tiny | paper) < experiment YAML
                       < the experiment's own ``profiles: {tiny: ...}`` block < overrides

Overrides are dotted keys (``train.lr=1e-5``) from ``--set`` on the CLI or from papermill
parameters; a few short aliases (``lr``, ``epochs``, ``encoder``...) name common ones.
Unknown experiments, profiles and keys raise :class:`ConfigError` listing what exists.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from avlib.errors import ConfigError

PROFILES = ("tiny", "paper")
# How a training example's audio relates to its frames (data.audio_window):
#   aligned        the audio under the frames, the same seconds (and the same at inference)
#   report_padded  the report repo's quirk: that audio zero-padded to 10 s before CAVP
#                  (train_cavp.py: get_spectrogram(audio, 160000)), so the 24 frames are
#                  regrouped from mostly padding. For reproducing the repo only.
AUDIO_WINDOWS = ("aligned", "report_padded")
REPORT_PADDED_SECONDS = 10.0
SCHEDULERS = ("dpm-multistep", "ddim")   # inference.scheduler
LONG_MODES = ("diagonal", "independent")  # avlib.pipeline.long_video: how audio longer than a window is made
# The allowed values of every setting that has a fixed list: validated here, once; the CLI,
# notebooks and builders use these lists instead of spelling their own.
REPORT_DATASETS = ("dog", "thunder", "volleyball", "multiclass")  # multiclass: dog + thunder merged
DATASETS = (*REPORT_DATASETS, "synth")
ENCODERS = ("cavp", "beats")
ENCODER_LAYERS = ("last", "all")         # beats: the last layer's output, or all layers' (TempoTokens)
MAPPER_KINDS = ("audiovisgen", "tempotokens")
SPLIT_SCHEMES = ("repo", "report")       # the report repository's split, or the report's 400/100
SYNTH_LAYOUTS = ("random", "canonical")  # synthetic world: random clips, or the toy world's layout
CHOICES = {
    "data.dataset": DATASETS,
    "data.split": SPLIT_SCHEMES,
    "data.short_clips": ("pad", "reject"),
    "data.synth_layout": SYNTH_LAYOUTS,
    "data.audio_window": AUDIO_WINDOWS,
    "encoder.name": ENCODERS,
    "encoder.layers": ENCODER_LAYERS,
    "mapper.kind": MAPPER_KINDS,
    "model.dtype": ("float32", "float16", "bfloat16"),
    "train.mixed_precision": ("no", "fp16", "bf16"),
    "inference.scheduler": SCHEDULERS,
}
VAE_FACTOR = 8                           # zeroscope's VAE and UNet need sizes divisible by 8

# Short names accepted as overrides (papermill parameters use these).
ALIASES = {
    "lr": "train.lr",
    "epochs": "train.epochs",
    "seed": "train.seed",
    "encoder": "encoder.name",
    "text_prompt": "prompt",
    "steps": "inference.num_inference_steps",
    "guidance": "inference.guidance_scale",
}


@dataclass
class DataConfig:
    dataset: str = "dog"                 # dog | thunder | volleyball | multiclass | synth
    classes: list[str] = field(default_factory=lambda: ["dog"])
    manifest: str | None = None          # CSV in data_manifests/ (None: the dataset's default)
    root: str | None = None              # folder holding the clips (mp4 + wav)
    split: str = "repo"                  # repo: the report repository's split | report: 400/100
    split_seed: int = 0                  # report split: seeded hash of the clip id (avlib.data.manifests)
    clip_seconds: float = 2.0            # seconds per example: its frames and its audio (aligned)
    num_frames: int = 24
    fps: float = 12.0                    # rate at which frames are sampled: 24 frames over 2 s
    height: int = 512                    # report repo configs/v2 (train_data 512x512)
    width: int = 512
    audio_window: str = "aligned"        # aligned | report_padded (see AUDIO_WINDOWS)
    short_clips: str = "pad"             # pad | reject
    synth_clips_per_class: int = 24      # synth with no data.root: clips generated per class
    synth_test_clips: int | None = None  # synth: how many of them are the test split (None: a fifth)
    synth_layout: str = "random"         # synth: random | canonical (the toy world's, tiny profile)


@dataclass
class EncoderConfig:
    name: str = "cavp"                   # cavp | beats
    checkpoint: str | None = None        # local file, or hub "repo_id::filename"; tiny: None
    layers: str = "all"                  # beats only: last | all (TempoTokens uses all)
    width: int | None = None             # tiny profile: narrower network (None = official)


@dataclass
class MapperConfig:
    kind: str = "audiovisgen"            # audiovisgen (the report repo's) | tempotokens
    hidden_dim: int = 2304               # the report repo's and TempoTokens' fc1/fc2 width
    token_dim: int = 1024                # = the text encoder's hidden size
    num_frames: int = 24
    windows: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    tokens_per_vector: int | None = None  # rows fc3 emits per audio vector (None: audiovisgen 3, tempotokens 1)
    frame_attention: bool = False        # audiovisgen: add the report text's self-attention over frames
    attention_heads: int = 8
    checkpoint: str | None = None        # upstream mapper weights (learned_embeds.pth, at_embedder_N.pth)
    upstream_dropout: bool = False       # the class-token attention's dropout left on at inference


@dataclass
class ModelConfig:
    pretrained: str = "cerspense/zeroscope_v2_576w"   # hub id or local diffusers folder
    dtype: str = "float16"               # float32 | float16 | bfloat16 (CPU always float32)
    device: str = "cuda"
    vae_slicing: bool = True


@dataclass
class TrainConfig:
    lr: float = 1e-5
    weight_decay: float = 0.01
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    batch_size: int = 1
    epochs: int = 10
    max_steps: int | None = None         # stop early (tiny runs); None = all epochs
    seed: int = 64
    temporal_reg: float = 0.01           # TempoTokens' 0.01 x mean|temporal tokens|
    timestep_power: float = 1.0          # t = T * u**p: 1 uniform (the report), < 1 favours high noise
    gradient_checkpointing: bool = True
    checkpoint_every: int = 500
    train_unet: bool = False             # the report tried it and found it worse
    cache_features: bool = True
    mixed_precision: str = "no"          # no | fp16 | bf16 (accelerate)


@dataclass
class InferenceConfig:
    num_inference_steps: int = 25        # report Table 1
    guidance_scale: float = 25.0         # report Table 1
    num_frames: int = 24
    height: int = 512                    # report repo inference_cavp.py default
    width: int = 512
    fps: float = 12.0                    # report repo / TempoTokens write videos at 12 fps
    audio_seconds: float = 2.0           # = num_frames / fps = the training window
    scheduler: str = "dpm-multistep"     # dpm-multistep (report repo, TempoTokens) | ddim
    negative_prompt: str = ""            # the unconditional branch's text
    seed: int | None = 64                # report Table 1


@dataclass
class GenerationSettings(InferenceConfig):
    """What a pipeline generates with: the inference settings and the audio window
    (``data.audio_window``) its mapper was trained on. ``AudioToVideoPipeline`` saves them in
    its folder and uses them unless a call overrides them."""

    audio_window: str = DataConfig.audio_window

    @classmethod
    def of(cls, config: "ExperimentConfig") -> "GenerationSettings":
        """A run's settings: ``config.inference`` with ``config.data.audio_window``."""
        return cls(**dataclasses.asdict(config.inference), audio_window=config.data.audio_window)


@dataclass
class ExperimentConfig:
    name: str = "custom"
    description: str = ""
    profile: str = "tiny"
    prompt: str | None = None            # text with the audio; None/"" = audio only
    eval_per_class: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mapper: MapperConfig = field(default_factory=MapperConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _read_yaml(*parts: str) -> dict[str, Any]:
    text = resources.files("avlib.configs").joinpath(*parts).read_text()
    return yaml.safe_load(text) or {}


def list_experiments() -> list[str]:
    folder = resources.files("avlib.configs").joinpath("experiments")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _merge(base: dict, update: Mapping, where: str) -> dict:
    out = dict(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"unknown config key '{where}{key}' (valid: {', '.join(sorted(base))})")
        if isinstance(base[key], dict) and isinstance(value, Mapping):
            out[key] = _merge(base[key], value, f"{where}{key}.")
        elif isinstance(base[key], dict):
            raise ConfigError(f"'{where}{key}' is a section, not a value: set one of its keys, e.g. "
                              f"{where}{key}.{next(iter(base[key]), 'key')}=VALUE")
        else:
            out[key] = value
    return out


def _from_dict(cls: type, data: dict, where: str = "") -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = data[f.name]
        sub = _SECTION_TYPES.get(f.name) if cls is ExperimentConfig else None
        kwargs[f.name] = _from_dict(sub, value, f"{f.name}.") if sub else _check_type(
            value, f.type, f"{where}{f.name}")
    return cls(**kwargs)


def _check_type(value: Any, annotation: str, key: str) -> Any:
    """Light validation of the YAML/override value against the field's annotation."""
    kinds = {"int": int, "float": (int, float), "str": str, "bool": bool}
    allowed = [k.strip() for k in str(annotation).split("|")]
    if value is None:
        if "None" in allowed:
            return None
        raise ConfigError(f"config key '{key}' may not be empty")
    if "float" in allowed and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-5" (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    for kind in allowed:
        if kind.startswith("list"):
            if isinstance(value, list):
                return value
        elif kind in kinds and isinstance(value, kinds[kind]) and not (
                kind in ("int", "float") and isinstance(value, bool)):
            return float(value) if kind == "float" else value
    raise ConfigError(f"config key '{key}' should be {annotation}, got {value!r}")


_SECTION_TYPES = {"data": DataConfig, "encoder": EncoderConfig, "mapper": MapperConfig,
                  "model": ModelConfig, "train": TrainConfig, "inference": InferenceConfig}


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["train.lr=1e-5", ...]`` or a mapping -> ``{"train.lr": 1e-05}`` (values parsed as YAML)."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        keys = [key for key in items if not isinstance(key, str)]
        if keys:
            raise ConfigError(f"override key {keys[0]!r} is not a config key: name one as text, e.g. "
                              "{'train.max_steps': 5}")
        return dict(items)
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not KEY=VALUE (e.g. --set train.lr=1e-5)")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or "not valid YAML"
            raise ConfigError(f"override '{item}': the value is not valid YAML ({problem}); quote "
                              "the whole --set in the shell, e.g. --set 'data.classes=[dog, thunder]'") from None
    return out


def _nest(dotted: Mapping[str, Any]) -> dict:
    nested: dict = {}
    for key, value in dotted.items():
        parts = ALIASES.get(key, key).split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def load_config(experiment: str = "dog", profile: str = "tiny",
                overrides: Iterable[str] | Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The named experiment of the report, in a profile, with overrides applied."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile '{profile}' (choose from: {', '.join(PROFILES)})")
    if experiment not in list_experiments():
        raise ConfigError(
            f"unknown experiment '{experiment}' (choose from: {', '.join(list_experiments())})")
    spec = _read_yaml("experiments", f"{experiment}.yaml")
    per_profile = spec.pop("profiles", {}) or {}
    data = ExperimentConfig().to_dict()
    data = _merge(data, _read_yaml("profiles", f"{profile}.yaml"), "")
    data = _merge(data, spec, "")
    data = _merge(data, per_profile.get(profile, {}), "")
    data = _merge(data, _nest(parse_overrides(overrides)), "")
    data["name"], data["profile"] = experiment, profile
    config = _from_dict(ExperimentConfig, data)
    validate(config)
    return config


# Keys older runs wrote that nothing ever read; dropped when such a run's config is read back.
RETIRED_KEYS = ("model.cpu_offload", "train.lr_grid")


def config_from_record(record: Mapping[str, Any],
                       overrides: Iterable[str] | Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Rebuild the config saved in a result file (``{"config": {...}}``), then apply overrides."""
    saved = record.get("config") if isinstance(record, Mapping) else None
    if not isinstance(saved, Mapping) or not {"name", "profile"} <= saved.keys():
        raise ConfigError("the run record holds no experiment config (no 'config' with a name and "
                          "profile); pass a config.json written by `avlib train`")
    kept = {key: value for key, value in _flatten(saved).items() if key not in RETIRED_KEYS}
    return load_config(saved["name"], saved["profile"], {**kept, **parse_overrides(overrides)})


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if not prefix and key in ("name", "profile"):
            continue
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_path(name: str, value: Any) -> Path:
    """A file or folder parameter as a :class:`Path`; anything but non-empty text or a path (a
    number, a list: papermill passes values of any type) is refused, naming the parameter."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ConfigError(f"{name}={value!r} must be a path: text naming a file or folder")
    return Path(value)


def check_writable_path(name: str, value: Any, folder: bool = True) -> Path:
    """A path something will be written to (a folder, created if missing; or a file when
    ``folder`` is False), refused where the disk holds the wrong kind of thing: a file in place
    of the folder or of a folder above it, or a folder in place of the file."""
    path = check_path(name, value)
    if path.is_dir() and not folder:
        raise ConfigError(f"{name}={str(value)!r} is a folder: give a file name")
    existing = next((p for p in ((path,) if folder else ()) + tuple(path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        fix = "give a folder (it is created if missing)" if existing == path else "check the path"
        raise ConfigError(f"{name}={str(value)!r}: {existing} is a file, not a folder; {fix}")
    return path


def check_positive_number(name: str, value: Any, note: str = "") -> None:
    """Refuse a parameter that is not a finite number > 0, naming it (as :func:`check_whole_number`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}={value!r} must be a number > 0{' ' + note if note else ''}")


def check_whole_number(name: str, value: Any, minimum: int = 1, note: str = "", maximum: int | None = None) -> None:
    """Refuse a parameter that is not a whole number >= ``minimum`` (and <= ``maximum`` if given;
    papermill and Python callers pass values of any type), naming it: ``limit=-1 must be a whole
    number >= 1 {note}``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be a whole number >= {minimum}{' ' + note if note else ''}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value!r} must be at most {maximum}{' ' + note if note else ''}")


def validate(config: ExperimentConfig) -> None:
    """Cross-field checks that a typo would otherwise turn into a confusing crash later."""
    flat = _flatten(config.to_dict())
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key}='{flat[key]}' is not one of: {', '.join(allowed)}")
    check_ranges(config)
    check_epochs_and_lr(config.train.epochs, config.train.lr)
    positive = {"train.batch_size": config.train.batch_size, "inference.num_frames": config.inference.num_frames,
                "inference.num_inference_steps": config.inference.num_inference_steps,
                "data.clip_seconds": config.data.clip_seconds}
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if any(w < 1 for w in config.mapper.windows) or not config.mapper.windows:
        raise ConfigError(f"mapper.windows must be positive integers, got {config.mapper.windows}")
    if not config.train.timestep_power > 0:
        raise ConfigError(f"train.timestep_power must be > 0 (got {config.train.timestep_power}); "
                          "1 draws training timesteps uniformly, 0.5 favours high noise")
    data = config.data
    if data.synth_test_clips is not None and data.synth_test_clips >= data.synth_clips_per_class:
        raise ConfigError(f"data.synth_test_clips={data.synth_test_clips} leaves no training clip of "
                          f"data.synth_clips_per_class={data.synth_clips_per_class}: make it smaller")
    check_windows(config)


def check_epochs_and_lr(epochs: Any, lr: Any, names: tuple[str, str] = ("train.epochs", "train.lr")) -> None:
    """A positive whole number of epochs and a positive learning rate (``None``: not given);
    ``names``: how the caller's user spells them (``("epochs", "lr")`` in notebook 04)."""
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"{names[0]}={epochs!r} must be a positive whole number (the report trains 5-20)")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise ConfigError(f"{names[1]}={lr!r} must be a positive number (the report's grid: 1e-4, 1e-5, 1e-6)")


def check_windows(config: ExperimentConfig) -> None:
    """Frames and audio must describe the same seconds everywhere, and sizes fit the VAE.

    A mismatch would not crash: it would train frame ``f`` on the audio of another time, or
    generate from a time scale the mapper never saw. So each is one clear error here.
    """
    data, mapper, inference = config.data, config.mapper, config.inference
    if not data.num_frames == mapper.num_frames == inference.num_frames:
        raise ConfigError(
            f"frame counts differ: data.num_frames={data.num_frames}, mapper.num_frames="
            f"{mapper.num_frames}, inference.num_frames={inference.num_frames}; the mapper makes "
            "one token set per frame, so set all three to the same number")
    for section, frames, fps, key, seconds in (
            ("data", data.num_frames, data.fps, "clip_seconds", data.clip_seconds),
            ("inference", inference.num_frames, inference.fps, "audio_seconds", inference.audio_seconds)):
        if not math.isclose(frames / fps, seconds, rel_tol=1e-6):
            raise ConfigError(
                f"{section}: {frames} frames at {fps:g} fps span {frames / fps:g} s, but "
                f"{section}.{key} is {seconds:g}; frames and audio cover the same seconds: set "
                f"{section}.{key}={frames / fps:g} or change {section}.fps")
    if not math.isclose(inference.audio_seconds, data.clip_seconds, rel_tol=1e-6):
        raise ConfigError(
            f"inference.audio_seconds={inference.audio_seconds:g} differs from the training "
            f"window data.clip_seconds={data.clip_seconds:g}: the mapper was trained on "
            f"{data.num_frames} frames over {data.clip_seconds:g} s of audio; generate from the same "
            f"window length (frames and fps: {data.num_frames} at {data.fps:g})")
    check_frame_size([(f"{key}={value}", value) for key, value in (
        ("data.height", data.height), ("data.width", data.width),
        ("inference.height", inference.height), ("inference.width", inference.width))])


def check_frame_size(sizes: Iterable[tuple[str, int]], factor: int = VAE_FACTOR) -> None:
    """Each ``(label, pixels)`` must be a positive multiple of the VAE's downsampling
    ``factor``: other sizes would come out cropped. ``label`` names the value as the
    user gave it (``"data.height=30"``, ``"--height 30"``)."""
    for label, value in sizes:
        if value < factor or value % factor:
            lower = max(factor, value // factor * factor)
            raise ConfigError(f"{label} is not a multiple of {factor} (the VAE and UNet downsample "
                              f"by {factor}): use {lower} or {lower + factor}")


# Range checks, one line each: a value out of range would otherwise crash deep inside a run
# (checkpoint_every=0 divides by zero) or quietly do nothing (max_steps=-5 trains no step).
AT_LEAST_ONE = ("data.num_frames", "data.height", "data.width", "data.synth_clips_per_class", "data.synth_test_clips",
                "mapper.num_frames", "mapper.hidden_dim", "mapper.token_dim", "mapper.attention_heads",
                "train.checkpoint_every", "inference.height", "inference.width")
AT_LEAST_ZERO = ("train.max_steps", "train.seed", "train.weight_decay", "train.temporal_reg",
                 "inference.guidance_scale", "inference.seed", "data.split_seed")
ABOVE_ZERO = ("data.fps", "inference.fps", "inference.audio_seconds", "train.adam_eps")


def check_ranges(config: ExperimentConfig) -> None:
    """Every number finite, counts and sizes >= 1, rates > 0; None stays allowed where it is."""
    flat = _flatten(config.to_dict())
    for key, value in flat.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value} is not a finite number; give a real value")
    limits = [(AT_LEAST_ONE, lambda v: v >= 1, ">= 1"), (AT_LEAST_ZERO, lambda v: v >= 0, ">= 0"),
              (ABOVE_ZERO, lambda v: v > 0, "> 0")]
    for keys, ok, wanted in limits:
        for key in keys:
            if flat[key] is not None and not ok(flat[key]):
                raise ConfigError(f"{key}={flat[key]} must be {wanted} (set it with --set {key}=VALUE)")
