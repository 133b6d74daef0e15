"""The toy world: its clips and captions, the CAVP objective, the build command, the shipped weights."""
import json

import numpy as np
import pytest
import torch

from avlib.data.synthetic import CLASSES
from avlib.toyworld import CAVP_FILE, T2V_SUBDIR, WEIGHTS_DIR
from avlib.pipeline.tiny import build_tiny_t2v
from avlib.toyworld.build import BuildConfig, build_toyworld, cavp_loss
from avlib.toyworld.data import frame_captions, toy_clip
from avlib.data.synthetic import derangement
from avlib.run import Run
from avlib.toyworld.evaluate import separated


def test_captions_name_the_state_and_toggle_at_each_event():
    assert frame_captions("dog", 8, np.array([3])) == ["dog"] * 3 + ["dog jumps"] * 5
    assert frame_captions("thunder", 8, np.array([2, 6])) == (
        ["thunder"] * 2 + ["thunder lightning"] * 4 + ["thunder"] * 2)


@pytest.mark.parametrize("label", CLASSES)
def test_a_frames_state_fixes_what_it_shows(label):
    """Canonical layout: clips of a class differ in when the event happens (and, for thunder,
    the bolt's jags and the rain), not in where things are, so a caption describes its frame."""
    clips = [toy_clip(label, index) for index in range(6)]
    for clip in clips:
        k = clip["event_frames"][0]
        assert clip["captions"][k - 1] == label and clip["captions"][k] != label
        assert clip["frames"].shape == (8, 3, 32, 32) and clip["waveform"].shape == (16000,)
    before = torch.stack([c["frames"][0] for c in clips])                  # (N, 3, H, W)
    after = torch.stack([c["frames"][-1] for c in clips])
    if label == "thunder":  # the rain stays random: the bolt arrives near the centre every time
        change = (after - before).abs().mean(dim=(1, 2))                  # (N, W)
        assert ((change.argmax(1) - 16).abs() <= 6).all()
    else:                   # the same two pictures in every clip
        assert (before - before[0]).abs().max() == 0 and (after - after[0]).abs().max() == 0
        assert (before[0] - after[0]).abs().mean() > 0.02


def test_cavp_loss_is_lower_for_matching_pairs():
    torch.manual_seed(0)
    video = torch.randn(6, 4, 16)
    matched = cavp_loss(video + 0.1 * torch.randn_like(video), video)
    shuffled = cavp_loss(video[torch.tensor([1, 2, 3, 4, 5, 0])], video)
    within_clip = cavp_loss(video.flip(1), video)                 # right clips, wrong time order
    assert matched < within_clip < shuffled


def test_derangement_and_ci_separation():
    for seed in range(5):
        perm = derangement(30, seed)
        assert sorted(perm) == list(range(30)) and (perm != np.arange(30)).all()
    assert separated({"ci95": [0.5, 0.7]}, {"ci95": [0.2, 0.4]})
    assert not separated({"ci95": [0.3, 0.7]}, {"ci95": [0.2, 0.4]})


def test_build_a_few_steps_then_load_and_generate(tmp_path):
    """The build command's code path end to end, at a handful of steps."""
    from avlib.cli import main

    cfg = BuildConfig(clips_per_class=1, vae_steps=2, unet_steps=2, cavp_steps=2, batch_size=2, context_noise=0.3)
    out = build_toyworld(tmp_path / "world", cfg, progress=False)
    assert (out / T2V_SUBDIR / "unet").is_dir() and (out / CAVP_FILE).is_file()
    assert not (tmp_path / "world.building").exists()
    assert json.loads((out / "build.json").read_text())["config"]["context_noise"] == 0.3
    assert main(["toyworld", "build", "--check", "--weights", str(out), "--quiet"]) == 0


def unet_training_contexts(context_noise: float, contexts, uncond, steps: int = 3, seed: int = 0):
    """The contexts the shipped UNet is fed in ``steps`` steps of :func:`train_unet`: (steps, B, F*77, D)."""
    from diffusers import DDIMScheduler, UNet3DConditionModel

    from avlib.toyworld.build import train_unet

    t2v = WEIGHTS_DIR / T2V_SUBDIR
    unet = UNet3DConditionModel.from_pretrained(t2v, subfolder="unet")
    fed = []
    unet.register_forward_pre_hook(lambda _, args, kwargs: fed.append(kwargs["encoder_hidden_states"].clone()),
                                   with_kwargs=True)
    latents = torch.randn(len(contexts), 4, 8, 8, 8, generator=torch.Generator().manual_seed(1))  # (N, C, F, h, w)
    cfg = BuildConfig(unet_steps=steps, batch_size=16, context_noise=context_noise)
    train_unet(unet, DDIMScheduler.load_config(t2v, subfolder="scheduler"), latents, contexts, uncond, cfg,
               torch.Generator().manual_seed(seed), progress=False)
    return torch.stack(fed)


@pytest.mark.skipif(not (WEIGHTS_DIR / CAVP_FILE).is_file(), reason="toy world weights not built")
def test_context_noise_is_off_by_default_and_perturbs_by_its_relative_scale():
    """--context-noise 0 feeds the UNet today's contexts (the captions', the empty prompt's for
    dropped clips, drawn as before); S > 0 moves each captioned frame's context by Gaussian noise
    of RMS s x the context's RMS, s ~ U(0, S), from the build's generator."""
    from avlib.toyworld.build import UNCOND_FRACTION
    from avlib.train import sample_timesteps

    frame_scale = torch.arange(1.0, 9.0)[None, :, None, None]                       # (1, F, 1, 1)
    contexts = (torch.randn(6, 8, 77, 32, generator=torch.Generator().manual_seed(2)) * frame_scale).flatten(1, 2)
    uncond = torch.randn(77, 32, generator=torch.Generator().manual_seed(3)).repeat(8, 1)   # (F*77, D)
    clean = unet_training_contexts(0.0, contexts, uncond)                             # (steps, B, F*77, D)

    generator, expected = torch.Generator().manual_seed(0), []  # the loop's draws, as before the option
    for _ in range(3):
        index = torch.randint(len(contexts), (16,), generator=generator)             # which clips
        drop = torch.rand(16, generator=generator) < UNCOND_FRACTION                  # which train the empty prompt
        torch.randn(16, 4, 8, 8, 8, generator=generator)                              # the noise
        sample_timesteps(16, 1000, 1.0, generator)                                    # the timesteps
        expected.append(contexts[index].clone())
        expected[-1][drop] = uncond
    assert torch.equal(clean, torch.stack(expected))

    generator = torch.Generator().manual_seed(0)  # step 1 with the noise on: the same clips and drops
    index, drop = torch.randint(len(contexts), (16,), generator=generator), torch.rand(16, generator=generator)
    drop = drop < UNCOND_FRACTION
    assert drop.any() and not drop.all()
    expected = contexts[index].clone()
    expected[drop] = uncond

    noised = unet_training_contexts(0.5, contexts, uncond)                           # (steps, B, F*77, D)
    assert torch.equal(noised, unet_training_contexts(0.5, contexts, uncond))        # same seed, same contexts
    assert not torch.equal(noised, unet_training_contexts(0.5, contexts, uncond, seed=1))
    assert torch.equal(noised[0][drop], expected[drop])                              # the empty prompt stays exact
    kept = noised[0][~drop].unflatten(1, (8, 77))                                    # (K, F, 77, D)
    original = expected[~drop].unflatten(1, (8, 77))
    relative = ((kept - original).pow(2).mean((2, 3)) / original.pow(2).mean((2, 3))).sqrt()   # (K, F)
    assert relative.min() > 0 and relative.max() < 0.5 * 1.1                        # up to S x the RMS ...
    assert relative.mean().item() == pytest.approx(0.25, abs=0.05)                   # ... U(0, S): S / 2 on average
    assert relative.std(1).mean() > 0.05                                              # drawn per frame, not per clip
    # the scale follows each frame's own RMS (frames 1..8 differ by 8x): no trend over frames
    assert relative.mean(0).max() / relative.mean(0).min() < 3


@pytest.mark.parametrize("value", ["-0.1", "nan", "inf"])
def test_bad_context_noise_is_refused_in_one_line(tmp_path, capsys, value):
    from avlib.cli import main

    out = tmp_path / "world"
    assert main(["toyworld", "build", "--out", str(out), "--context-noise", value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "context_noise must be a finite number >= 0" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "world.building").exists()


def test_every_caption_wording_is_made_of_single_tiny_tokens():
    """--wordings draws among these: a word outside the tiny vocabulary would reach the text
    encoder as byte pieces, not as a word. (The captions themselves are as the t2v was
    trained on them: "volleyball" is two tokens.)"""
    from avlib.tokenizers import tiny_clip_tokenizer
    from avlib.toyworld.data import CAPTION_WORDINGS, MAX_WORDINGS, reword

    tokenizer = tiny_clip_tokenizer()
    states = {c for label in CLASSES for c in frame_captions(label, 2, np.array([1]))}
    assert set(CAPTION_WORDINGS) == states and MAX_WORDINGS >= 3
    for caption, wordings in CAPTION_WORDINGS.items():
        assert wordings[0] == caption and len(set(wordings)) == len(wordings)
        for wording in wordings[1:]:
            tokens = tokenizer.tokenize(wording)
            assert tokens == [f"{word}</w>" for word in wording.split()], wording   # whole words, no pieces

    captions = [frame_captions("dog", 8, np.array([3]))] * 64
    reworded = reword(captions, 3, torch.Generator().manual_seed(0))
    drawn = {w for clip in reworded for w in clip}
    assert drawn == set(CAPTION_WORDINGS["dog"][:3] + CAPTION_WORDINGS["dog jumps"][:3])
    assert all(w in CAPTION_WORDINGS[c][:3] for clip in reworded for c, w in zip(captions[0], clip))
    assert len({tuple(clip) for clip in reworded}) > 32                     # drawn per frame, per clip
    assert reword(captions, 1, torch.Generator().manual_seed(0)) == captions


def contexts_fed_while_training(cfg: BuildConfig, generator: torch.Generator):
    """The contexts (steps, B, F*77, D) a tiny random UNet is fed by :func:`train_unet` under
    ``cfg``, on 6 toy clips, and the text encoder afterwards."""
    from avlib.pipeline.tiny import random_t2v_components
    from avlib.toyworld.build import caption_contexts, train_unet

    parts = random_t2v_components("tiny", seed=0)
    clips = [toy_clip(label, i) for i in range(2) for label in CLASSES]
    fed = []
    parts["unet"].register_forward_pre_hook(
        lambda _, args, kwargs: fed.append(kwargs["encoder_hidden_states"].detach().clone()), with_kwargs=True)
    latents = torch.randn(len(clips), 4, 8, 8, 8, generator=torch.Generator().manual_seed(1))   # (N, C, F, h, w)
    if cfg.text_encoder_lr or cfg.wordings > 1:
        inputs = dict(contexts=None, uncond=None,
                      text=(parts["text_encoder"], parts["tokenizer"], [c["captions"] for c in clips]))
    else:
        contexts, uncond = caption_contexts(parts["text_encoder"], parts["tokenizer"], clips)
        inputs = dict(contexts=contexts, uncond=uncond)
    train_unet(parts["unet"], parts["scheduler"].config, latents, cfg=cfg, generator=generator, progress=False,
               **inputs)
    return torch.stack(fed), parts["text_encoder"]


def test_text_encoder_trains_with_the_unet_on_the_same_draws():
    """--text-encoder-lr encodes each batch's captions per step: at the first step exactly the
    frozen encoder's contexts, on the same clips, drops and noise (no extra draws), and later
    the updated encoder's; --wordings draws the wordings from the build's generator."""
    from avlib.pipeline.tiny import random_t2v_components

    settings = dict(unet_steps=3, batch_size=4)
    generators = {name: torch.Generator().manual_seed(0) for name in ("frozen", "trained", "worded")}
    frozen, frozen_encoder = contexts_fed_while_training(BuildConfig(**settings), generators["frozen"])
    trained, trained_encoder = contexts_fed_while_training(BuildConfig(**settings, text_encoder_lr=1e-2),
                                                           generators["trained"])
    worded, _ = contexts_fed_while_training(BuildConfig(**settings, wordings=3), generators["worded"])

    initial = random_t2v_components("tiny", seed=0)["text_encoder"].state_dict()
    assert all(torch.equal(frozen_encoder.state_dict()[k], v) for k, v in initial.items())
    assert any(not torch.equal(trained_encoder.state_dict()[k], v) for k, v in initial.items())
    assert not trained_encoder.training and not any(p.requires_grad for p in trained_encoder.parameters())
    assert torch.equal(generators["frozen"].get_state(), generators["trained"].get_state())
    assert not torch.equal(generators["frozen"].get_state(), generators["worded"].get_state())
    torch.testing.assert_close(trained[0], frozen[0])                     # (B, F*77, D): same clips, same encoder
    assert (trained[1:] - frozen[1:]).abs().amax() > 1e-3                 # the encoder has moved
    assert (worded[0] - frozen[0]).abs().amax() > 1e-3                    # other words, same frozen encoder


def test_text_encoder_build_saves_it_and_loads(tmp_path):
    """Off (the default) the built text encoder is the init's, bit for bit; on, it is saved
    trained into t2v/text_encoder, recorded in build.json, and loads as before."""
    from safetensors.torch import load_file

    from avlib.cli import main
    from avlib.pipeline.t2v import load_t2v

    tiny = dict(clips_per_class=1, vae_steps=2, unet_steps=2, cavp_steps=2, batch_size=2)
    base = build_toyworld(tmp_path / "off", BuildConfig(**tiny), progress=False)
    on = build_toyworld(tmp_path / "on", BuildConfig(**tiny, init=str(base), text_encoder_lr=1e-2, wordings=2),
                        progress=False)
    weights = {name: load_file(folder / T2V_SUBDIR / "text_encoder" / "model.safetensors")
               for name, folder in (("off", base), ("on", on))}
    twin = build_tiny_t2v(tmp_path / "twin", seed=0)
    assert (base / T2V_SUBDIR / "text_encoder" / "model.safetensors").read_bytes() == (
        twin / "text_encoder" / "model.safetensors").read_bytes()
    assert any(not torch.equal(weights["on"][k], v) for k, v in weights["off"].items())
    built = json.loads((on / "build.json").read_text())["config"]
    assert (built["text_encoder_lr"], built["wordings"]) == (1e-2, 2)
    assert json.loads((base / "build.json").read_text())["config"]["text_encoder_lr"] == 0
    loaded = load_t2v(str(on / T2V_SUBDIR)).text_encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in weights["on"].items())
    assert main(["toyworld", "build", "--check", "--weights", str(on), "--quiet"]) == 0


@pytest.mark.parametrize("flag, value, message", [
    ("--text-encoder-lr", "-0.001", "text_encoder_lr must be a finite number >= 0"),
    ("--text-encoder-lr", "nan", "text_encoder_lr must be a finite number >= 0"),
    ("--wordings", "0", "wordings must be between 1 and"),
    ("--wordings", "99", "wordings must be between 1 and"),
])
def test_bad_text_options_are_refused_in_one_line(tmp_path, capsys, flag, value, message):
    from avlib.cli import main

    out = tmp_path / "world"
    assert main(["toyworld", "build", "--out", str(out), flag, value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "world.building").exists()


@pytest.mark.skipif(not (WEIGHTS_DIR / CAVP_FILE).is_file(), reason="toy world weights not built")
def test_shipped_weights_load_through_the_profile_names():
    from avlib.audio import build_audio_encoder
    from avlib.config import EncoderConfig
    from avlib.pipeline.t2v import load_t2v
    from avlib.toyworld.build import check_toyworld

    t2v = load_t2v("toyworld")
    assert t2v.unet.config.cross_attention_dim == t2v.text_encoder.config.hidden_size
    encoder = build_audio_encoder(EncoderConfig(name="cavp", checkpoint=str(WEIGHTS_DIR / CAVP_FILE)))
    assert encoder.encode(torch.zeros(1, 16000)).shape == (1, 4, encoder.output_dim)
    assert check_toyworld(WEIGHTS_DIR)["frames_shape"] == [1, 8, 32, 32, 3]


def test_evaluate_one_class_end_to_end(tmp_path, capsys):
    """`avlib toyworld evaluate --classes thunder` at a handful of steps: every condition is
    generated, scored and recorded; the record loads as notebook 09 reads it."""
    from avlib.cli import main
    from avlib.toyworld.evaluate import CONDITION_NOTES, evaluation_rows, load_evaluation

    out = tmp_path / "eval"
    assert main(["toyworld", "evaluate", "--out", str(out), "--test-per-class", "2", "--mapper-steps", "2",
                 "--classes", "thunder", "--set", "mapper.frame_attention=true", "--quiet"]) == 0
    assert "AV-Align 2025 trained" in capsys.readouterr().out
    record = load_evaluation(out)
    assert record["config"]["name"] == "thunder" and record["config"]["data"]["classes"] == ["thunder"]
    assert record["config"]["mapper"]["frame_attention"] is True
    assert set(record["av_align"]) == set(CONDITION_NOTES) and record["n_test_clips"] == 2
    assert record["av_align"]["real"]["mean"] == 1.0 and record["class_chance"] == pytest.approx(1 / 3)
    assert [row["condition"] for row in evaluation_rows(record)] == list(CONDITION_NOTES)
    # The trained and the untrained mapper are runs like any other: sampled, controlled, scored.
    trained, untrained = Run(out / "mapper_run"), Run(out / "untrained_run")
    clip_ids = [s.clip_id for s in trained.samples()]
    assert [s.clip_id for s in untrained.samples()] == clip_ids and untrained.shuffled_samples() is None
    assert [s.clip_id for s in trained.shuffled_samples()] == clip_ids
    assert {name: list(scores) for name, scores in record["per_video"].items()} == {
        name: clip_ids for name in ("trained", "shuffled", "untrained", "captions", "real")}
    for run, name in ((trained, "trained"), (untrained, "untrained")):
        per_video = run.read_metrics()["per_video"]
        assert [per_video[c]["score"] for c in clip_ids] == [record["per_video"][name][c] for c in clip_ids]
    assert all((out / "captions" / f"{c}.mp4").is_file() for c in clip_ids)
    assert json.loads((out / "mapper_run" / "config.json").read_text())["config"]["train"]["timestep_power"] == 0.5
    assert record["weights_build"] == json.loads((WEIGHTS_DIR / "build.json").read_text())["config"]

    assert main(["toyworld", "evaluate", "--out", str(tmp_path / "bad"), "--classes", "cat"]) == 2
    assert "toy world classes must be among" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(["toyworld", "evaluate", "--out", str(tmp_path / "one"), "--classes", "dog", "--test-per-class", "1"]) == 2
    assert "the shuffled-audio condition feeds each clip another clip's audio" in capsys.readouterr().err
    assert not (tmp_path / "one").exists()


def test_shipped_evaluation_records_are_complete():
    from avlib.toyworld.evaluate import OLD_MAPPER_EVALUATIONS, evaluation_summary, shipped_evaluations

    records = shipped_evaluations()
    assert "thunder" in records
    for name, record in records.items():
        assert name.startswith(record["config"]["name"]) and record["n_test_clips"] >= 40
        assert record["config"]["mapper"]["tokens_per_vector"] == 2  # the report's mapper (#13), not the old one
        assert record["av_align_version"] == "2025" and {"seed", "versions"} <= set(record)
        assert set(record["acceptance"]) == {"av_align_trained_above_shuffled", "av_align_trained_above_untrained",
                                             "class_match_above_chance", "passed"}
    rows = evaluation_summary(records)
    assert [row["experiment"] for row in rows] == list(records)
    assert all(row["real AV-Align"] == 1.0 for row in rows)
    assert {row["seed"] for row in rows} == {0, 1}
    assert [row["experiment"] for row in rows if row["frame attention"]] == ["thunder_frame_attention"]
    old = evaluation_summary(shipped_evaluations(OLD_MAPPER_EVALUATIONS))  # notebook 09 shows them too
    assert len(old) >= 4 and all(row["frame attention"] is None for row in old)


@pytest.mark.parametrize("folder, option", [("ROBUST_T2V_EVALUATIONS", "context_noise"),
                                            ("TEXT_ENCODER_EVALUATIONS", "text_encoder_lr")])
def test_shipped_variant_t2v_records_are_labelled(folder, option):
    """The records of #18's variant t2vs (trained on noised caption contexts; with its text
    encoder trained along, on varied wordings): the three single-class experiments, each naming
    the build it ran on; kept apart from the shipped weights' records."""
    from avlib.toyworld import evaluate
    from avlib.toyworld.evaluate import evaluation_summary, shipped_evaluations

    records = shipped_evaluations(getattr(evaluate, folder))
    assert {"dog", "volleyball", "thunder"} <= set(records)
    for name, record in records.items():
        build = record["weights_build"]
        assert name.startswith(record["config"]["name"]) and record["n_test_clips"] == 40 and record["seed"] == 0
        assert build[option] > 0 and build["init"] == "weights" and build["vae_steps"] == build["cavp_steps"] == 0
        assert record["av_align_version"] == "2025" and {"versions", "timings"} <= set(record)
    assert all(row["real AV-Align"] == 1.0 for row in evaluation_summary(records))
    for record in shipped_evaluations().values():  # the main records: made on the shipped t2v, option off
        assert (record.get("weights_build") or {}).get(option, 0) == 0


@pytest.mark.parametrize("experiment", ["thunder", "dog", "dog_text", "volleyball", "multiclass"])
def test_tiny_experiments_sample_as_the_toy_world(experiment):
    """Every experiment samples the toy world with the tiny profile's settings (its evaluation
    records were made with them): the report's guidance 25 is for zeroscope, not the toy t2v."""
    from avlib.config import _read_yaml, load_config

    tiny = _read_yaml("profiles", "tiny.yaml")["inference"]
    inference = load_config(experiment, "tiny").inference
    assert (inference.guidance_scale, inference.scheduler) == (tiny["guidance_scale"], tiny["scheduler"])
    assert load_config(experiment, "paper").inference.guidance_scale == 25.0
