"""The clip loader: example shapes and ranges, audio handling, short and corrupt clips, config."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile
import torch

from avlib.config import DataConfig
from avlib.data.dataset import ClipDataset, ClipSampler
from avlib.data.manifests import ClipRow
from avlib.data.synthetic import write_synthetic_dataset
from avlib.errors import ConfigError, MediaError
from avlib.media import load_audio, write_video

SAMPLER = ClipSampler(num_frames=8, fps=8.0, height=24, width=24, clip_seconds=1.0)
VIDEO_FPS = 24


def ramp_video(seconds: float, height: int = 48, width: int = 64) -> np.ndarray:
    """(F, H, W, 3) uint8 whose frame i is grey level 4 * i: the frame index can be read back."""
    n = round(seconds * VIDEO_FPS)
    return np.broadcast_to((4 * np.arange(n, dtype=np.uint8))[:, None, None, None],
                           (n, height, width, 3)).copy()


def write_clip(root, clip_id: str, seconds: float, *, wav_rate: int | None = 44100) -> ClipRow:
    """An mp4 of :func:`ramp_video` plus, unless ``wav_rate`` is None, a stereo wav at that rate."""
    write_video(root / f"{clip_id}.mp4", ramp_video(seconds), VIDEO_FPS,
                audio=0.1 * np.ones(round(seconds * 16000)))
    if wav_rate:
        t = np.arange(round(seconds * wav_rate)) / wav_rate
        stereo = np.stack([0.5 * np.sin(2 * np.pi * 3 * t), 0.25 * np.ones_like(t)], axis=1)
        soundfile.write(root / f"{clip_id}.wav", stereo, wav_rate)
    return ClipRow(clip_id, "dog", "train", "", 0.0, seconds)


def frame_indices(frames: torch.Tensor) -> np.ndarray:
    """Undo :func:`ramp_video` on loader output [F, 3, H, W] in [-1, 1]."""
    grey = (frames.mean(dim=(1, 2, 3)) + 1) * 127.5
    return np.round(grey.numpy() / 4).astype(int)


def test_sampler_picks_frames_at_its_rate_and_covers_the_size():
    video = ramp_video(2.0)
    video[:, :, :8] = 255                          # a bar the centre crop must cut away
    frames = SAMPLER.frames(video, VIDEO_FPS, start_s=0.5)
    assert frames.shape == (8, 3, 24, 24) and frames.dtype == torch.float32
    assert frames.min() >= -1 and frames.max() <= 1
    np.testing.assert_array_equal(frame_indices(frames), 12 + 3 * np.arange(8))   # 24 fps -> 8 fps
    wide = SAMPLER.frames(ramp_video(1.0, height=24, width=96), VIDEO_FPS, 0.0)
    assert wide.shape == (8, 3, 24, 24)


def test_sampler_pads_audio_with_zeros():
    audio = SAMPLER.audio(np.ones(8000, np.float32), start_s=0.25)
    assert audio.shape == (16000,)
    assert torch.all(audio[:4000] == 1) and torch.all(audio[4000:] == 0)


def test_example_shapes_ranges_and_aligned_audio(tmp_path):
    row = write_clip(tmp_path, "clip", 2.0)
    example = ClipDataset([row], tmp_path, ["dog"], SAMPLER, prompt="a dog barking")[0]
    assert example["frames"].shape == (8, 3, 24, 24)
    assert -1 <= example["frames"].min() and example["frames"].max() <= 1
    np.testing.assert_array_equal(frame_indices(example["frames"]), 3 * np.arange(8))
    expected = load_audio(tmp_path / "clip.wav")                   # 44.1 kHz stereo -> 16 kHz mono
    assert example["waveform"].shape == (16000,)
    np.testing.assert_allclose(example["waveform"].numpy(), expected[:16000], atol=1e-6)
    assert abs(example["waveform"].mean() - 0.125) < 0.01                 # the channels' mean
    assert (example["label"], example["label_id"], example["prompt"], example["clip_id"]) == \
        ("dog", 0, "a dog barking", "clip")


def test_without_a_wav_the_mp4_soundtrack_is_used(tmp_path):
    row = write_clip(tmp_path, "clip", 1.0, wav_rate=None)
    waveform = ClipDataset([row], tmp_path, ["dog"], SAMPLER)[0]["waveform"]
    assert waveform.shape == (16000,)
    assert abs(float(waveform[2000:14000].mean()) - 0.1) < 0.01


def test_random_starts_are_seeded_per_epoch_and_keep_audio_aligned(tmp_path):
    rows = [write_clip(tmp_path, f"clip{i}", 3.0) for i in range(3)]
    dataset = ClipDataset(rows, tmp_path, ["dog"], SAMPLER, start="random", seed=7)
    starts = [dataset[i]["start_s"] for i in range(3)]
    assert starts == [ClipDataset(rows, tmp_path, ["dog"], SAMPLER, start="random", seed=7)[i]["start_s"]
                      for i in range(3)]
    assert all(0 <= s <= 2.0 for s in starts) and len(set(starts)) > 1
    dataset.set_epoch(1)
    assert [dataset[i]["start_s"] for i in range(3)] != starts

    example = dataset[0]
    first_frame = round(example["start_s"] * VIDEO_FPS)
    assert example["start_s"] * VIDEO_FPS == pytest.approx(first_frame)        # on the frame grid
    np.testing.assert_array_equal(frame_indices(example["frames"]), first_frame + 3 * np.arange(8))
    sample = round(example["start_s"] * 16000)
    np.testing.assert_allclose(example["waveform"].numpy(),
                               load_audio(tmp_path / "clip0.wav")[sample:sample + 16000], atol=1e-6)
    assert ClipDataset(rows, tmp_path, ["dog"], SAMPLER)[0]["start_s"] == 0.0


def test_short_clips_are_padded_or_rejected(tmp_path):
    row = write_clip(tmp_path, "short", 0.5)
    padded = ClipDataset([row], tmp_path, ["dog"], SAMPLER)[0]
    np.testing.assert_array_equal(frame_indices(padded["frames"]), [0, 3, 6, 9, 11, 11, 11, 11])
    assert torch.all(padded["waveform"][8000:] == 0) and padded["waveform"][:8000].abs().max() > 0.2
    strict = dataclasses.replace(SAMPLER, short_clips="reject")
    with pytest.raises(MediaError, match="short.mp4 lasts 0.50 s.*data.short_clips=pad"):
        ClipDataset([row], tmp_path, ["dog"], strict)[0]


def test_corrupt_files_are_named(tmp_path):
    row = write_clip(tmp_path, "broken", 1.0)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(MediaError, match="broken.mp4"):
        ClipDataset([row], tmp_path, ["dog"], SAMPLER)[0]
    write_clip(tmp_path, "badwav", 1.0)
    (tmp_path / "badwav.wav").write_bytes(b"RIFF????WAVEjunk")
    with pytest.raises(MediaError, match="badwav.wav"):
        ClipDataset([ClipRow("badwav", "dog", "train", "", 0, 1)], tmp_path, ["dog"], SAMPLER)[0]


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(root, ["dog", "thunder"], 3, seed=0, seconds=1.5, fps=8.0, size=32)
    return root


def synth_config(root, **changes) -> DataConfig:
    return dataclasses.replace(DataConfig(dataset="synth", classes=["dog", "thunder"], root=root and str(root),
                                          num_frames=8, fps=8.0, clip_seconds=1.0, height=32, width=32), **changes)


def test_from_config_builds_a_split_that_batches(synth_root):
    train = ClipDataset.from_config(synth_config(synth_root), "train", start="random", seed=1)
    test = ClipDataset.from_config(synth_config(synth_root, classes=["thunder"]), "test")
    assert (len(train), len(test)) == (4, 1)
    assert [r.clip_id for r in test.rows] == ["synth_thunder_0002"]
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    assert batch["frames"].shape == (4, 8, 3, 32, 32)
    assert batch["waveform"].shape == (4, 16000)
    assert batch["label_id"].tolist() == [0, 0, 1, 1]


def test_from_config_leaves_out_missing_clips_and_checks_its_input(synth_root, tmp_path):
    for path in synth_root.iterdir():
        if path.name != "synth_dog_0001.mp4":
            (tmp_path / path.name).symlink_to(path)
    with pytest.warns(UserWarning, match="1 of 4 train clips"):
        dataset = ClipDataset.from_config(synth_config(tmp_path), "train")
    assert len(dataset) == 3
    with pytest.raises(ConfigError, match="data.root is not set"):
        ClipDataset.from_config(synth_config(None), "train")
    with pytest.raises(ConfigError, match="class 'cat' not in the manifest"):
        ClipDataset.from_config(synth_config(synth_root, classes=["cat"]), "train")
    with pytest.raises(MediaError, match="none of the 4 train clips.*avlib data status"):
        ClipDataset.from_config(synth_config(tmp_path / "empty", manifest=str(synth_root / "manifest.csv")),
                                "train")


def test_report_manifest_warns_about_its_leak(tmp_path):
    with pytest.warns(UserWarning, match="200 clips are in both train and test"), \
            pytest.raises(MediaError, match="none of the 200 test clips"):
        ClipDataset.from_config(DataConfig(dataset="thunder", classes=["thunder"], root=str(tmp_path)), "test")


def test_whole_clips_hold_every_frame_and_the_audio_under_them(synth_root):
    """start="whole" (training): 1.5 s clips at 8 fps give 12 frames and 1.5 s of audio, from
    which training crops its 1 s windows; the first window equals a start-0 example."""
    whole = ClipDataset.from_config(synth_config(synth_root), "train", start="whole")[0]
    window = ClipDataset.from_config(synth_config(synth_root), "train", start="zero")[0]
    assert whole["frames"].shape == (12, 3, 32, 32) and whole["waveform"].shape == (24000,)
    assert torch.equal(whole["frames"][:8], window["frames"])
    assert torch.equal(whole["waveform"][:16000], window["waveform"])
