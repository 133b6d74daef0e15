"""CLIPSIM: how well a video's frames match a text, by CLIP.

For each frame, the cosine similarity between CLIP's image embedding and the text
embedding (of the class name or prompt); the video's score is the mean over its frames.
The scale is the raw cosine, the report's "0-1" convention (0.23 in its Table 2), not the
x100 convention of some papers, and it is not clipped at zero. Model and scale are
recorded in every output because both change the number. The default model is the
report's OpenAI CLIP ViT-B/32; any CLIP id or local folder loads through transformers.

Two protocols (:data:`PROTOCOLS`), recorded in every output:

- ``clip`` (default, the correct use of CLIP): RGB frames, CLIP's own preprocessing
  (shortest side resized, centre crop, CLIP's mean and std), the text as given.
- ``report``: reproduces the report repository's ``evaluation/CLIP_Score.py``, which its
  Table 2 came from: frames as OpenCV decodes them (BGR) handed to PIL as if RGB, squashed
  to the model's input size (PIL bilinear, aspect not kept), mean = std = 0.5, and the
  report's texts (``eval.ipynb`` scores dog videos against "Dog Barking").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from avlib.errors import CheckpointError, ConfigError
from avlib.media import iter_videos, read_video
from avlib.metrics.av_align import read_bgr_frames
from avlib.metrics.stats import mean_with_ci
from avlib.named_weights import METRIC_NETS_DIR, TOY_CLIP_SUBDIR
from avlib.tokenizers import tiny_clip_tokenizer
from avlib.weights import folder_problem, quiet_unpickler

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
PROTOCOLS = {
    "clip": "RGB frames, CLIP's preprocessing (shortest side, centre crop, CLIP mean/std), text as given",
    "report": ("the report repository's evaluation/CLIP_Score.py: OpenCV's BGR frames read as RGB, "
               "squashed to the input size (PIL bilinear), mean = std = 0.5, the report's texts"),
}
DEFAULT_PROTOCOL = "clip"
TOY_CLIP_NAME = "TOY CLIP (trained on the synthetic world; not comparable to published CLIPSIM)"
# The texts the report's eval.ipynb scored against, by class; other classes keep their name.
REPORT_TEXTS = {"dog": "Dog Barking"}


def get_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown CLIPSIM protocol '{name}' (choose from: {', '.join(PROTOCOLS)})")
    return name


def protocol_text(protocol: str, label: str) -> str:
    """The text a video of class ``label`` is scored against under ``protocol``."""
    return REPORT_TEXTS.get(label, label) if protocol == "report" else label


def report_pixels(bgr_frames: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """(F, 3, size, size): CLIP_Score.py's transform of OpenCV frames.

    ``Image.fromarray`` on a BGR array, ``Resize((size, size))`` (PIL bilinear),
    ``ToTensor`` and ``Normalize(0.5, 0.5)``, written out without torchvision.
    """
    squashed = np.stack([np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR))
                         for frame in bgr_frames])                       # (F, size, size, 3)
    x = torch.from_numpy(squashed).permute(0, 3, 1, 2).float().div(255)  # (F, 3, size, size)
    return (x - 0.5) / 0.5
SCALE = ("cosine similarity x1 (the report's 0-1 convention; papers on the x100 scale "
         "would print 23 for 0.23), frames averaged, not clipped at 0")


def frame_averaged_cosine(image_embeds: torch.Tensor, text_embed: torch.Tensor) -> float:
    """Mean over frames of cos(image_f, text): image_embeds (F, D), text_embed (D,)."""
    image = F.normalize(image_embeds.double(), dim=-1)
    text = F.normalize(text_embed.double(), dim=-1)
    return float((image @ text).mean())


class ClipScorer:
    """A CLIP model with its tokenizer and image preprocessing, scoring frames against text."""

    def __init__(self, model, tokenizer, image_processor, model_id: str, device: str = "cpu",
                 batch_size: int = 32, protocol: str = DEFAULT_PROTOCOL):
        self.protocol = get_protocol(protocol)
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.model_id = model_id
        self.device = device
        self.batch_size = batch_size
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_MODEL, device: str | None = None,
                        protocol: str = DEFAULT_PROTOCOL) -> "ClipScorer":
        """Any CLIP on the hub (or a local folder) in transformers' layout."""
        # transformers takes seconds to import: only building a scorer pays for it
        from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

        try:
            with quiet_unpickler():
                model = CLIPModel.from_pretrained(model_id)
            tokenizer = AutoTokenizer.from_pretrained(model_id)
            # The PIL processor: the default one would need torchvision.
            image_processor = CLIPImageProcessorPil.from_pretrained(model_id)
        except Exception as exc:  # OSError, ValueError, UnpicklingError... from transformers
            raise CheckpointError(
                f"cannot load CLIP model '{model_id}': {folder_problem(model_id, exc)} (give a "
                "local folder in transformers' CLIP layout or a hub id available offline)") from exc
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, tokenizer, image_processor, model_id, device, protocol=protocol)

    @classmethod
    def tiny(cls, seed: int = 0, protocol: str = DEFAULT_PROTOCOL) -> "ClipScorer":
        """A seeded random CLIP at 32x32 for the tiny profile; its scores mean nothing semantic."""
        from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel  # seconds: see above

        tokenizer = tiny_clip_tokenizer()
        layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
        config = CLIPConfig(
            text_config=dict(**layers, vocab_size=len(tokenizer), max_position_embeddings=77,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id),
            vision_config=dict(**layers, image_size=32, patch_size=8),
            projection_dim=16,
        )
        torch.manual_seed(seed)
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32},
                                                crop_size={"height": 32, "width": 32})
        return cls(CLIPModel(config), tokenizer, image_processor,
                   model_id=f"TINY RANDOM CLIP (seed {seed}; not a trained CLIP)", protocol=protocol)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_id, "scale": SCALE, "protocol": self.protocol,
                "preprocessing": PROTOCOLS[self.protocol]}

    @torch.no_grad()
    def text_embedding(self, text: str) -> torch.Tensor:
        """(D,) projected text embedding, computed once per distinct text."""
        if text not in self._text_cache:
            tokens = self.tokenizer([text], padding=True, truncation=True, return_tensors="pt")
            output = self.model.get_text_features(**tokens.to(self.device))
            self._text_cache[text] = output.pooler_output[0].cpu()
        return self._text_cache[text]

    @torch.no_grad()
    def image_embeddings(self, frames: np.ndarray) -> torch.Tensor:
        """(F, D) projected image embeddings of uint8 frames (F, H, W, 3) as the protocol reads
        them (RGB for ``clip``, OpenCV's BGR for ``report``)."""
        size = self.model.config.vision_config.image_size
        embeds = []
        for start in range(0, len(frames), self.batch_size):
            chunk = list(frames[start:start + self.batch_size])
            pixels = (report_pixels(chunk, size) if self.protocol == "report" else
                      self.image_processor(images=chunk, return_tensors="pt")["pixel_values"])
            output = self.model.get_image_features(pixel_values=pixels.to(self.device))
            embeds.append(output.pooler_output.cpu())
        return torch.cat(embeds)

    def score_video(self, video: str | Path, text: str, frames: np.ndarray | None = None) -> float:
        """CLIPSIM of ``video`` against ``text``; ``frames``: its RGB frames (F, H, W, 3), already
        decoded by :func:`avlib.media.read_video` (the ``clip`` protocol's pixels)."""
        if self.protocol == "report":
            frames, _ = read_bgr_frames(Path(video))  # OpenCV's pixels, as the report
        elif frames is None:
            frames, _ = read_video(video)
        return frame_averaged_cosine(self.image_embeddings(frames), self.text_embedding(text))


def toy_clip_scorer(folder: str | Path = METRIC_NETS_DIR, protocol: str = DEFAULT_PROTOCOL) -> ClipScorer:
    """The toy world's trained TOY CLIP (``avlib toyworld metrics``), named TOY in every output."""
    scorer = ClipScorer.from_pretrained(str(Path(folder) / TOY_CLIP_SUBDIR), device="cpu", protocol=protocol)
    scorer.model_id = TOY_CLIP_NAME
    return scorer


def clipsim_videos(videos: Sequence[str | Path], texts: Sequence[str], scorer: ClipScorer,
                   progress: bool = True) -> list[float]:
    """Per-video CLIPSIM, each video against its own text."""
    pairs = tqdm(list(zip(videos, texts)), desc="CLIPSIM", unit="video", disable=not progress)
    if scorer.protocol == "report":  # OpenCV decodes each video
        return [scorer.score_video(video, text) for video, text in pairs]
    return [scorer.score_video(video, text, frames)        # many files per ffmpeg process
            for (video, text), (frames, _) in zip(pairs, iter_videos(videos))]


def summarize(videos: Sequence[str | Path], texts: Sequence[str], scores: Sequence[float],
              scorer: ClipScorer, seed: int = 0) -> dict[str, Any]:
    """The CLIPSIM JSON: per-video scores and texts, mean, 95% bootstrap CI, N, model, scale."""
    per_video = {Path(v).stem: {"score": s, "text": t} for v, t, s in zip(videos, texts, scores)}
    return {**scorer.describe(), "videos": per_video, **mean_with_ci(scores, seed=seed)}
