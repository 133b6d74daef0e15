"""Inception-v1 I3D (Kinetics-400), the feature network of FVD, and its weight loaders.

The module tree (names, shapes, TensorFlow "SAME" padding) is that of ``InceptionI3d(400,
in_channels=3)`` in piergiaj/pytorch-i3d and its VideoGPT copy, so the public
``i3d_pretrained_400.pt`` (a plain state dict converted from TF-Hub, used by VideoGPT,
TATS, MM-Diffusion, common_metrics and cd-fvd) loads into it unchanged. The output is
the 400 pre-softmax logits averaged over time, the feature FVD uses.

Choices, recorded in every FVD output through :func:`describe`:

- BatchNorm eps 1e-5 (VideoGPT's copy, whose FVD numbers the literature reports;
  piergiaj's original uses 1e-3);
- dropout before the logits is omitted: it is the identity in eval mode and we never train.

``width`` and ``final_pool`` exist only to build the tiny network of the tiny profile
and the tests from the same class; the official layout is ``width=1, final_pool=(2,7,7)``.
"""
from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avlib.errors import CheckpointError
from avlib.io import atomic_path
from avlib.weights import torch_load_weights

BN_EPS = 1e-5

# Inception-v1 branch widths per mixed block: (b0, b1a, b1b, b2a, b2b, b3b).
MIXED_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def same_padding(sizes: tuple[int, ...], kernel: tuple[int, ...],
                 stride: tuple[int, ...]) -> list[int]:
    """TensorFlow 'SAME' padding for (T, H, W), in ``F.pad`` order (W, W, H, H, T, T).

    The extra pixel of an odd total goes at the end, as TensorFlow does.
    """
    pads = []
    for size, k, s in zip(sizes, kernel, stride):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads.append((total // 2, total - total // 2))
    return [p for pair in reversed(pads) for p in pair]


class Unit3d(nn.Module):
    """Conv3d with 'SAME' padding, then BatchNorm and ReLU; ``head=True``: conv with bias only."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1),
                 bn_eps: float = BN_EPS, head: bool = False):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=head)
        self.bn = None if head else nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride)))
        return x if self.bn is None else F.relu(self.bn(x))


class SamePadMaxPool3d(nn.Module):
    """Max pooling with 'SAME' padding.

    Zero padding is exact here: every pooled tensor comes straight out of a ReLU.
    """

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.pool = nn.MaxPool3d(kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(x, same_padding(x.shape[2:], self.kernel, self.stride)))


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; maxpool->1x1), concatenated."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], bn_eps: float = BN_EPS):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        self.b0 = Unit3d(in_channels, b0, bn_eps=bn_eps)
        self.b1a = Unit3d(in_channels, b1a, bn_eps=bn_eps)
        self.b1b = Unit3d(b1a, b1b, (3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3d(in_channels, b2a, bn_eps=bn_eps)
        self.b2b = Unit3d(b2a, b2b, (3, 3, 3), bn_eps=bn_eps)
        self.b3a = SamePadMaxPool3d((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3d(in_channels, b3b, bn_eps=bn_eps)
        self.out_channels = b0 + b1b + b2b + b3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)


class InceptionI3d(nn.Module):
    """I3D: (B, C, T, H, W) video in [-1, 1] -> (B, num_classes) logits averaged over time.

    The official input is 224x224 with T >= 9 frames (the final 2x7x7 average pool needs
    a 2x7x7 map after the network's 8x temporal and 32x spatial downsampling).
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, width: float = 1.0,
                 bn_eps: float = BN_EPS, final_pool: tuple[int, int, int] = (2, 7, 7)):
        super().__init__()
        self.config = dict(num_classes=num_classes, in_channels=in_channels, width=width,
                           bn_eps=bn_eps, final_pool=tuple(final_pool))

        def scaled(channels: int) -> int:
            return max(1, round(channels * width))

        # Attribute names are the checkpoint's key prefixes; their order is the forward order.
        stem = [
            ("Conv3d_1a_7x7", Unit3d(in_channels, scaled(64), (7, 7, 7), (2, 2, 2), bn_eps)),
            ("MaxPool3d_2a_3x3", SamePadMaxPool3d((1, 3, 3), (1, 2, 2))),
            ("Conv3d_2b_1x1", Unit3d(scaled(64), scaled(64), bn_eps=bn_eps)),
            ("Conv3d_2c_3x3", Unit3d(scaled(64), scaled(192), (3, 3, 3), bn_eps=bn_eps)),
            ("MaxPool3d_3a_3x3", SamePadMaxPool3d((1, 3, 3), (1, 2, 2))),
        ]
        pools = {"Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3)), "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2))}
        self.endpoints = []
        for name, module in stem:
            self.add_module(name, module)
            self.endpoints.append(name)
        channels = scaled(192)
        for name, widths in MIXED_WIDTHS.items():
            if name in pools:
                pool_name, kernel = pools[name]
                self.add_module(pool_name, SamePadMaxPool3d(kernel, (2, 2, 2)))
                self.endpoints.append(pool_name)
            block = InceptionBlock(channels, tuple(scaled(w) for w in widths), bn_eps)
            self.add_module(name, block)
            self.endpoints.append(name)
            channels = block.out_channels
        self.avg_pool = nn.AvgPool3d(final_pool, stride=(1, 1, 1))
        self.logits = Unit3d(channels, num_classes, head=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.endpoints:
            x = getattr(self, name)(x)          # -> (B, 1024 * width, T/8, H/32, W/32)
        x = self.logits(self.avg_pool(x))       # (B, num_classes, T', 1, 1)
        return x.flatten(2).mean(dim=2)         # (B, num_classes)


class TorchScriptI3d(nn.Module):
    """StyleGAN-V's ``i3d_torchscript.pt``, called the way StyleGAN-V calls it.

    The caller has already resized to 224 and scaled to [-1, 1], so the detector's own
    rescaling and resizing are switched off.
    """

    def __init__(self, detector: torch.jit.ScriptModule):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.detector(x, rescale=False, resize=False, return_features=True)


def tiny_i3d(seed: int = 0, num_classes: int = 32) -> InceptionI3d:
    """A randomly initialised I3D at 1/16 width for 32x32 inputs (tiny profile, tests).

    Convolutions get He initialisation so that activations keep their scale through the
    ~20 ReLU layers (PyTorch's default init shrinks them until every video gets the same
    feature). Its features are NOT Kinetics features: its FVDs only compare tiny runs.
    """
    torch.manual_seed(seed)
    model = InceptionI3d(num_classes, width=1 / 16, final_pool=(1, 1, 1))
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


def fetch_weights(path_or_url: str | Path, cache_dir: Path) -> Path:
    """A local weights file: the path itself, or a URL downloaded once into ``cache_dir``."""
    text = str(path_or_url)
    if not re.match(r"https?://", text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"I3D weights not found: {path} (pass --i3d with the path of "
                "i3d_pretrained_400.pt or i3d_torchscript.pt, or an http(s) URL)")
        return path
    target = cache_dir / "weights" / Path(text.split("?")[0]).name
    if not target.is_file():
        with atomic_path(target) as tmp:
            try:
                torch.hub.download_url_to_file(text, str(tmp), progress=True)
            except OSError as exc:
                raise CheckpointError(f"cannot download {text}: {exc} (download it yourself "
                                      "and pass the local path)") from exc
    return target


def is_torchscript(path: Path) -> bool:
    """TorchScript archives carry compiled code (``*/code/``); torch.save files do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def load_i3d_state_dict(path: Path) -> InceptionI3d:
    """The Kinetics-400 I3D from a plain state dict (``i3d_pretrained_400.pt``).

    The converted public file has no ``num_batches_tracked`` entries; they only count
    training steps, so missing ones are filled with 0 before the strict load.
    """
    state = torch_load_weights(path, "a plain state dict such as i3d_pretrained_400.pt")
    if not isinstance(state, dict) or "logits.conv3d.weight" not in state:
        raise CheckpointError(f"{path} is not an InceptionI3d state dict (no "
                              "'logits.conv3d.weight'); pass i3d_pretrained_400.pt")
    num_classes = state["logits.conv3d.weight"].shape[0]
    model = InceptionI3d(num_classes)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, torch.zeros_like(value))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match the InceptionI3d layout: "
                              f"{str(exc).splitlines()[0]} (use i3d_pretrained_400.pt)") from exc
    return model.eval()


def load_i3d(path: Path) -> nn.Module:
    """A plain state dict or a StyleGAN-V TorchScript I3D, told apart by the file's content."""
    if not is_torchscript(path):
        return load_i3d_state_dict(path)
    try:
        with warnings.catch_warnings():
            # torch deprecates TorchScript, but the published file exists in no other format.
            warnings.simplefilter("ignore", FutureWarning)
            detector = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise CheckpointError(f"cannot load TorchScript I3D {path}: {exc}") from exc
    return TorchScriptI3d(detector).eval()


def describe(model: nn.Module) -> dict:
    """What the output must record about the network (layout, BatchNorm eps)."""
    if isinstance(model, TorchScriptI3d):
        return {"network": "StyleGAN-V TorchScript I3D", "call": "rescale=False, resize=False, "
                "return_features=True"}
    return {"network": "InceptionI3d (piergiaj/VideoGPT layout)", **model.config,
            "feature": "logits averaged over time, before softmax"}
