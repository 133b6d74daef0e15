"""The toy world: its clips and captions, the CAVP objective, the build command, the shipped weights."""
import numpy as np
import pytest
import torch

from avlib.data.synthetic import CLASSES
from avlib.toyworld import CAVP_FILE, T2V_SUBDIR, WEIGHTS_DIR
from avlib.toyworld.build import BuildConfig, build_toyworld, cavp_loss
from avlib.toyworld.data import centre_of_change, class_backgrounds, frame_captions, rgb_frames, toy_clip
from avlib.toyworld.evaluate import derangement, separated


@pytest.fixture(scope="module")
def backgrounds():
    return class_backgrounds(n=8)


def test_captions_name_the_state_and_toggle_at_each_event():
    assert frame_captions("dog", 8, np.array([3])) == ["dog"] * 3 + ["dog jumps"] * 5
    assert frame_captions("thunder", 8, np.array([2, 6])) == (
        ["thunder"] * 2 + ["thunder lightning"] * 4 + ["thunder"] * 2)


@pytest.mark.parametrize("label", CLASSES)
def test_clips_are_mirrored_so_the_first_event_moves_rightwards(label, backgrounds):
    for index in range(4):
        clip = toy_clip(label, index, backgrounds)
        frames = rgb_frames(clip)                                         # (F, H, W, 3)
        k = clip["event_frames"][0]
        assert centre_of_change(frames[k], backgrounds[label]) > centre_of_change(frames[k - 1], backgrounds[label])
        assert clip["captions"][k - 1] == label and clip["captions"][k] != label
        assert clip["frames"].shape == (8, 3, 32, 32) and clip["waveform"].shape == (16000,)


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

    cfg = BuildConfig(clips_per_class=1, vae_steps=2, unet_steps=2, cavp_steps=2, batch_size=2)
    out = build_toyworld(tmp_path / "world", cfg, progress=False)
    assert (out / T2V_SUBDIR / "unet").is_dir() and (out / CAVP_FILE).is_file()
    assert not (tmp_path / "world.building").exists()
    assert main(["toyworld", "build", "--check", "--weights", str(out), "--quiet"]) == 0


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
