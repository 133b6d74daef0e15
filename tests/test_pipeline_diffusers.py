"""AudioToVideoPipeline as a diffusers pipeline: save/load round trips (frozen parts referenced
or copied, and run folders of the older layouts), loading through DiffusionPipeline, the
settings it owns, the model card, .to(), CPU offload, progress bars, the output record, and
precomputed contexts."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from avlib.config import GenerationSettings, load_config
from avlib.run import Run
from avlib.pipeline.audio_to_video import AudioToVideoPipeline, AudioToVideoPipelineOutput

SETTINGS = dict(num_inference_steps=2, guidance_scale=5.0, num_frames=8, height=32, width=32)
AUDIO = np.random.default_rng(2).uniform(-0.3, 0.3, 16000).astype(np.float32)


@pytest.fixture(scope="module")
def pipe():
    """The dog experiment's pipeline on the random tiny twin, with a seeded fresh mapper."""
    from avlib.pipeline.assemble import assemble

    config = load_config("dog", "tiny", {"model.pretrained": "tiny"})
    with torch.random.fork_rng(devices=[]):
        pipeline = assemble(config, device="cpu", seed=0)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _frames(pipeline, **kwargs):
    return pipeline(AUDIO, prompt="a dog", generator=torch.Generator().manual_seed(5), **SETTINGS, **kwargs).frames


def test_components_are_registered_and_offload_order_names_them(pipe):
    assert set(pipe.components) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler",
                                    "audio_encoder", "mapper"}
    assert set(pipe.model_cpu_offload_seq.split("->")) == {"audio_encoder", "mapper", "text_encoder", "unet", "vae"}
    assert pipe.mapper.num_frames == 8 and pipe.audio_encoder.output_dim > 0   # read through the wrappers


def test_referenced_save_holds_only_what_the_source_does_not(pipe, tmp_path):
    before = _frames(pipe)
    pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_audio_to_video", "AudioToVideoPipeline"] and index["t2v_source"] == "tiny"
    assert "import AudioToVideoPipeline" in (tmp_path / "saved" / "pipeline_audio_to_video.py").read_text()
    assert index["settings"] == dataclasses.asdict(pipe.settings)
    assert "## Generation settings" in (tmp_path / "saved" / "README.md").read_text()
    for frozen in ("unet", "vae", "text_encoder", "audio_encoder"):
        assert index[frozen] == [None, None] and not (tmp_path / "saved" / frozen).exists()
    assert index["mapper"] == ["avlib.pipeline.components", "MapperModel"]
    assert (tmp_path / "saved" / "mapper" / "mapper.safetensors").is_file()
    assert (tmp_path / "saved" / "tokenizer").is_dir() and (tmp_path / "saved" / "scheduler").is_dir()
    assert pipe.config.unet[0] is not None  # the live pipeline's record is restored after saving
    loaded = AudioToVideoPipeline.from_pretrained(tmp_path / "saved")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_frames(loaded), before)


def test_copied_save_reloads_without_its_sources(pipe, tmp_path):
    before = _frames(pipe)
    pipe.save_pretrained(tmp_path / "copied", copy_frozen=True)
    index_file = tmp_path / "copied" / "model_index.json"
    index = json.loads(index_file.read_text())
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    assert (tmp_path / "copied" / "audio_encoder" / "encoder.safetensors").is_file()
    # Nothing may be read from the recorded source: point it nowhere.
    index_file.write_text(json.dumps({**index, "t2v_source": "nobody/no-such-model"}))
    loaded = AudioToVideoPipeline.from_pretrained(tmp_path / "copied")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_frames(loaded), before)


def test_run_folders_of_the_older_layout_still_load(pipe, tmp_path):
    """Before the diffusers layout a run's pipeline/ held pipeline.json and mapper/; its
    settings come from the run's config beside it."""
    from avlib.io import write_json
    from avlib.mapper import save_mapper

    run = Run(tmp_path / "old_run")
    config = load_config("dog", "tiny", {"model.pretrained": "tiny"})
    run.write_config(config, seed=0)
    save_mapper(pipe.mapper.module, run.pipeline_dir / "mapper")
    encoder = dataclasses.asdict(config.encoder)
    write_json(run.pipeline_dir / "pipeline.json",
               {"t2v": "tiny", "encoder": encoder, "has_mapper": True, "unet": None})
    loaded = AudioToVideoPipeline.from_pretrained(run.pipeline_dir)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.settings == GenerationSettings.of(config)
    np.testing.assert_array_equal(_frames(loaded), _frames(pipe))


def test_folders_saved_before_settings_take_the_runs_or_the_defaults(pipe, tmp_path):
    run = Run(tmp_path / "run")
    config = load_config("dog", "tiny", {"model.pretrained": "tiny", "inference.guidance_scale": 3.0})
    pipe.save_pretrained(run.pipeline_dir)
    index_file = run.pipeline_dir / "model_index.json"
    index = json.loads(index_file.read_text())
    index_file.write_text(json.dumps({key: value for key, value in index.items() if key != "settings"}))
    assert AudioToVideoPipeline.from_pretrained(run.pipeline_dir).settings == GenerationSettings()
    run.write_config(config, seed=0)
    assert AudioToVideoPipeline.from_pretrained(run.pipeline_dir).settings == GenerationSettings.of(config)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder: config.json (settings unlike the defaults: 8 frames of 32x40 at 8 fps)
    and the pipeline saved as training saves it."""
    from avlib.pipeline.assemble import assemble

    run = Run(tmp_path_factory.mktemp("runs") / "dog_tiny")
    config = load_config("dog", "tiny", {"model.pretrained": "tiny", "inference.width": 40})
    run.write_config(config, seed=0)   # first, as training writes it
    with torch.random.fork_rng(devices=[]):
        assemble(config, device="cpu", seed=0).save_pretrained(run.pipeline_dir)
    return run.root


@pytest.mark.parametrize("loader", ["diffusers", "avlib"])
def test_a_run_pipeline_loads_through_diffusers_and_makes_the_runs_videos(run_dir, loader):
    from diffusers import DiffusionPipeline

    folder = Run(run_dir).pipeline_dir
    if loader == "diffusers":   # the hub's convention for a pipeline whose code is not diffusers'
        loaded = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    else:
        loaded = AudioToVideoPipeline.from_pretrained(folder)
    assert isinstance(loaded, AudioToVideoPipeline) and loaded.mapper is not None
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"   # the tiny profile's inference.scheduler
    loaded.set_progress_bar_config(disable=True)
    out = loaded(AUDIO)
    assert out.frames.shape == (1, 8, 32, 40, 3) and out.fps == 8.0
    assert out.conditioning["source"] == "audio" and out.conditioning["num_inference_steps"] == 4
    np.testing.assert_array_equal(out.frames, loaded(AUDIO).frames)   # seeded by the run's inference.seed


def test_from_run_applies_the_run_config_and_overrides(run_dir):
    loaded = AudioToVideoPipeline.from_run(run_dir, ["inference.guidance_scale=2.5",
                                                     "inference.scheduler=dpm-multistep"])
    assert loaded.settings.guidance_scale == 2.5 and loaded.settings.width == 40
    assert type(loaded.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert loaded.vae_slicing is False   # the tiny profile's model.vae_slicing


def test_the_model_card_names_the_run_and_its_metrics(run_dir):
    from avlib.pipeline.model_card import write_model_card

    run = Run(run_dir)
    card = (run.pipeline_dir / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: diffusers") and "experiment: `dog`" in card
    assert "trust_remote_code=True" in card and "## Metrics" not in card
    run.write_metrics({"metrics": {"av_align": {"value": 0.25, "ci95": [0.2, 0.3], "n": 4}}, "notes": []})
    card = write_model_card(run.pipeline_dir).read_text()
    assert "| av_align | 0.25 | [0.2, 0.3] | 4 |" in card


def test_to_moves_every_component(pipe):
    assert pipe.to("cpu") is pipe and pipe.device == torch.device("cpu")
    modules = [pipe.unet, pipe.vae, pipe.text_encoder, pipe.audio_encoder, pipe.mapper]
    assert {p.device.type for m in modules for p in m.parameters()} == {"cpu"}


def test_model_cpu_offload_on_a_cpu(pipe):
    from avlib.pipeline.assemble import assemble

    config = load_config("dog", "tiny", {"model.pretrained": "tiny"})
    with torch.random.fork_rng(devices=[]):
        offloaded = assemble(config, device="cpu", seed=0)
    offloaded.set_progress_bar_config(disable=True)
    if not torch.cuda.is_available():
        # diffusers' own answer without an accelerator, when no device is named
        with pytest.raises(RuntimeError, match="accelerator"):
            offloaded.enable_model_cpu_offload()
    offloaded.enable_model_cpu_offload(device="cpu")   # the CPU as the "accelerator": a no-op move
    assert offloaded._execution_device.type == "cpu" and offloaded._all_hooks  # accelerate hooks in place
    np.testing.assert_array_equal(_frames(offloaded), _frames(pipe))


def test_progress_bar_config_is_diffusers_own(pipe, capsys):
    pipe.set_progress_bar_config(disable=False)
    try:
        pipe(prompt="rain", **SETTINGS)
    finally:
        pipe.set_progress_bar_config(disable=True)
    assert "2/2" in capsys.readouterr().err
    pipe(prompt="rain", **SETTINGS)
    assert "2/2" not in capsys.readouterr().err


def test_settings_give_size_fps_window_and_the_record(pipe):
    config = load_config("dog", "tiny", {"model.pretrained": "tiny"})
    settings = pipe.settings                                        # assemble gives the run's
    assert settings == GenerationSettings.of(config)
    long_audio = np.tile(AUDIO, 3)                                  # 3 s; the window is 1 s
    out = pipe(long_audio, "a dog", generator=torch.Generator().manual_seed(0))
    assert isinstance(out, AudioToVideoPipelineOutput)
    assert out.frames.shape == (1, settings.num_frames, settings.height, settings.width, 3)
    assert out.fps == settings.fps
    assert out.audio.shape == (1, round(settings.num_frames / settings.fps * 16000))
    np.testing.assert_array_equal(out.audio[0], long_audio[:out.audio.shape[1]])
    assert out.conditioning["source"] == "audio" and out.conditioning["prompt"] == "a dog"
    assert out.conditioning["num_inference_steps"] == settings.num_inference_steps
    assert out.conditioning["scheduler"] == "DDIMScheduler"   # the tiny profile's inference.scheduler
    # a keyword argument overrides a setting for that call only
    assert pipe(prompt="x", num_frames=4, num_inference_steps=1).frames.shape[1] == 4
    assert pipe.settings == settings


def test_set_settings_switches_the_scheduler_and_calls_do_not(pipe):
    from avlib.errors import ConfigError

    before = pipe.settings
    try:
        chosen = pipe.set_settings(scheduler="dpm-multistep", guidance_scale=2.0)
        assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
        assert pipe.settings == chosen and chosen.guidance_scale == 2.0 and chosen.num_frames == before.num_frames
        assert pipe.config.settings["scheduler"] == "dpm-multistep"      # what save_pretrained records
        with pytest.raises(ConfigError, match="set_settings"):
            pipe(prompt="x", scheduler="ddim")
        with pytest.raises(ConfigError, match="unknown generation setting.*framez"):
            pipe(prompt="x", framez=3)
        with pytest.raises(ConfigError, match="audio_window='padded'"):
            pipe.set_settings(audio_window="padded")
        with pytest.raises(ConfigError, match="height=30 is not a multiple of 4"):
            pipe(prompt="x", height=30)
    finally:
        pipe.set_settings(before)
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.settings == before


def test_precomputed_contexts_give_the_audio_path_frames(pipe):
    waveform = torch.from_numpy(AUDIO)[None]
    context = pipe.encode_conditioning(waveform, "a dog", 8, 1)          # (1, 8*77, D)
    from_embeds = pipe(prompt_embeds=context, generator=torch.Generator().manual_seed(5), **SETTINGS)
    assert from_embeds.conditioning["source"] == "prompt_embeds"
    np.testing.assert_array_equal(from_embeds.frames, _frames(pipe))
    from avlib.errors import ConfigError

    with pytest.raises(ConfigError, match="prompt_embeds must be"):
        pipe(prompt_embeds=context[0], **SETTINGS)


def test_a_missing_pipeline_is_one_clear_error(tmp_path, monkeypatch):
    from avlib.errors import CheckpointError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="no pipeline at .*nope"):
        AudioToVideoPipeline.from_pretrained(tmp_path / "nope")


def test_a_pipeline_without_a_source_saves_copies(pipe, tmp_path):
    sourceless = AudioToVideoPipeline(**pipe.components)      # built from modules: nothing to reference
    sourceless.save_pretrained(tmp_path / "alone")
    index = json.loads((tmp_path / "alone" / "model_index.json").read_text())
    assert index["t2v_source"] == "" and all(index[name][0] for name in ("unet", "vae", "text_encoder"))
