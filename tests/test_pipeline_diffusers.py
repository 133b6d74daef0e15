"""AudioToVideoPipeline as a diffusers pipeline: save/load round trips (frozen parts referenced
or copied, and run folders of the older layout), .to(), CPU offload, progress bars, the output
record, and precomputed contexts."""
import json

import numpy as np
import pytest
import torch

from avlib.config import load_config
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
    assert index["_class_name"] == "AudioToVideoPipeline" and index["t2v_source"] == "tiny"
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
    """Before the diffusers layout a run's pipeline/ held pipeline.json and mapper/."""
    import dataclasses

    from avlib.io import write_json
    from avlib.mapper import save_mapper

    folder = tmp_path / "old_pipeline"
    save_mapper(pipe.mapper.module, folder / "mapper")
    encoder = dataclasses.asdict(load_config("dog", "tiny").encoder)
    write_json(folder / "pipeline.json", {"t2v": "tiny", "encoder": encoder, "has_mapper": True, "unet": None})
    loaded = AudioToVideoPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_frames(loaded), _frames(pipe))


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
    settings = load_config("dog", "tiny").inference
    long_audio = np.tile(AUDIO, 3)                                  # 3 s; the window is 1 s
    out = pipe(long_audio, "a dog", settings, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, AudioToVideoPipelineOutput)
    assert out.frames.shape == (1, settings.num_frames, settings.height, settings.width, 3)
    assert out.fps == settings.fps
    assert out.audio.shape == (1, round(settings.num_frames / settings.fps * 16000))
    np.testing.assert_array_equal(out.audio[0], long_audio[:out.audio.shape[1]])
    assert out.conditioning["source"] == "audio" and out.conditioning["prompt"] == "a dog"
    assert out.conditioning["num_inference_steps"] == settings.num_inference_steps
    assert out.conditioning["scheduler"] == "DDIMScheduler"   # the tiny profile's inference.scheduler
    # an explicit argument wins over the settings
    assert pipe(prompt="x", settings=settings, num_frames=4, num_inference_steps=1).frames.shape[1] == 4


def test_precomputed_contexts_give_the_audio_path_frames(pipe):
    waveform = torch.from_numpy(AUDIO)[None]
    context = pipe.encode_conditioning(waveform, "a dog", 8, 1)          # (1, 8*77, D)
    from_embeds = pipe(prompt_embeds=context, generator=torch.Generator().manual_seed(5), **SETTINGS)
    assert from_embeds.conditioning["source"] == "prompt_embeds"
    np.testing.assert_array_equal(from_embeds.frames, _frames(pipe))
    from avlib.errors import ConfigError

    with pytest.raises(ConfigError, match="prompt_embeds must be"):
        pipe(prompt_embeds=context[0], **SETTINGS)


def test_output_without_fps_cannot_be_written(pipe, tmp_path):
    from avlib.errors import ConfigError

    out = pipe(prompt="rain", **SETTINGS)
    with pytest.raises(ConfigError, match="no fps"):
        out.save(tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


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
