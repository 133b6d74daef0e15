"""CLIPSIM: the frame-averaged cosine, a tiny CLIP end to end, model id and scale recorded."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avlib.cli import main
from avlib.errors import CheckpointError
from avlib.media import write_video
from avlib.metrics.clipsim import ClipScorer, clipsim_videos, frame_averaged_cosine, summarize


@pytest.fixture(scope="module")
def scorer():
    return ClipScorer.tiny(seed=0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clipsim")
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(folder / f"v{i}.mp4", rng.integers(0, 256, (4, 40, 48, 3), dtype=np.uint8), fps=8)
    return sorted(folder.glob("*.mp4"))


def test_identical_embeddings_score_one():
    text = torch.randn(16)
    frames = text.repeat(5, 1) * torch.tensor([[1.0], [2.0], [0.5], [3.0], [7.0]])  # any positive scale
    assert frame_averaged_cosine(frames, text) == pytest.approx(1.0, abs=1e-12)
    assert frame_averaged_cosine(-frames, text) == pytest.approx(-1.0, abs=1e-12)


def test_average_is_over_frames():
    text = torch.tensor([1.0, 0.0])
    frames = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosines 1 and 0
    assert frame_averaged_cosine(frames, text) == pytest.approx(0.5)


def test_scores_videos_in_range_and_records_the_model(scorer, videos):
    scores = clipsim_videos(videos, ["a dog barking"] * len(videos), scorer, progress=False)
    assert len(scores) == 3 and all(-1.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) == 3  # different frames, different scores
    summary = summarize(videos, ["a dog barking"] * 3, scores, scorer)
    assert summary["model"] == scorer.model_id and "TINY RANDOM CLIP" in summary["model"]
    assert "0-1" in summary["scale"]
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(np.mean(scores))
    assert set(summary["videos"]) == {"v0", "v1", "v2"}


def test_the_text_matters(scorer, videos):
    dog = scorer.score_video(videos[0], "a dog barking")
    thunder = scorer.score_video(videos[0], "thunder and lightning")
    assert dog != thunder


def test_unloadable_model_is_a_user_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot load CLIP model .*hub id available offline"):
        ClipScorer.from_pretrained(str(tmp_path))  # a folder without a CLIP in it


def test_cli_writes_model_and_scale(videos, tmp_path):
    out = tmp_path / "clip.json"
    code = main(["metrics", "clipsim", "--videos", str(videos[0].parent), "--text", "a dog",
                 "--model", "tiny", "--quiet", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"model", "scale", "mean", "ci95", "n", "videos"} <= set(data)
    assert data["n"] == 3 and data["ci95"][0] <= data["mean"] <= data["ci95"][1]
    assert data["videos"]["v1"]["text"] == "a dog"


# --- the report's protocol -------------------------------------------------------------------

def report_repository_score(video, text: str, scorer: ClipScorer) -> float:
    """The report repository's ``CLIPScoreCalculator.calculate_clip_score_video``, written out.

    Its transform is torchvision's Compose([Resize((S, S)), CenterCrop((S, S)), ToTensor(),
    Normalize(0.5, 0.5)]) on ``Image.fromarray`` of OpenCV's BGR frame (torchvision is not
    installed here: Resize on a PIL image is PIL's bilinear resize, CenterCrop of an S x S
    image is the identity); every frame is scored alone and the cosines averaged in Python.
    """
    import cv2
    from PIL import Image

    size = scorer.model.config.vision_config.image_size
    tokens = scorer.tokenizer([text], padding=True, return_tensors="pt")
    with torch.no_grad():
        text_features = scorer.model.get_text_features(**tokens).pooler_output
    capture, total, count = cv2.VideoCapture(str(video)), 0.0, 0
    while True:
        is_read, frame = capture.read()
        if not is_read:
            break
        image = Image.fromarray(frame).resize((size, size), Image.BILINEAR)
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
        tensor = ((tensor - 0.5) / 0.5).unsqueeze(0)
        with torch.no_grad():
            image_features = scorer.model.get_image_features(pixel_values=tensor).pooler_output
        total += torch.nn.functional.cosine_similarity(image_features, text_features).item()
        count += 1
    return total / count


def test_report_protocol_reproduces_the_report_repository(tmp_path):
    video = tmp_path / "dog.mp4"
    frames = np.zeros((4, 40, 64, 3), np.uint8)
    frames[..., 0], frames[:, :20, :, 2] = 230, 40  # red: its BGR reading differs from RGB
    write_video(video, frames, fps=8)
    report = ClipScorer.tiny(seed=0, protocol="report")
    ours = report.score_video(video, "Dog Barking")
    assert ours == pytest.approx(report_repository_score(video, "Dog Barking", report), abs=1e-6)
    assert abs(ours - ClipScorer.tiny(seed=0).score_video(video, "Dog Barking")) > 1e-4
    assert report.describe()["protocol"] == "report"


def test_report_texts_and_unknown_protocols():
    from avlib.errors import ConfigError
    from avlib.metrics.clipsim import protocol_text

    assert protocol_text("report", "dog") == "Dog Barking"
    assert protocol_text("report", "thunder") == "thunder"
    assert protocol_text("clip", "dog") == "dog"
    with pytest.raises(ConfigError, match="clip, report"):
        ClipScorer.tiny(protocol="bgr")


def test_cli_report_protocol_accepts_files(videos, tmp_path):
    out = tmp_path / "clip.json"
    code = main(["metrics", "clipsim", "--videos", str(videos[0]), str(videos[1]), "--text", "Dog Barking",
                 "--model", "tiny", "--protocol", "report", "--quiet", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["protocol"] == "report" and data["n"] == 2 and "BGR" in data["preprocessing"]
