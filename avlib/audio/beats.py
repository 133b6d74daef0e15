"""BEATs audio encoder (Microsoft, iter3+), as TempoTokens uses it for its baseline.

Normalised Kaldi fbank ``(B, T, 128)`` -> 16x16 patches (the last ``T % 16`` frames are
dropped; patches ordered time-major, 8 frequency patches per 160 ms step) -> LayerNorm
-> Linear 512->768 -> convolutional position embedding -> 12 post-LN transformer layers
with deep-norm residual scaling and a T5-style relative position bias, gated per query.

Outputs the last layer ``(B, N, 768)`` or, as TempoTokens feeds its mapper, all layers
concatenated ``(B, N, 12 * 768)``, with ``N = (T // 16) * 8``.

Differences from upstream that do not change outputs: dropouts and layer drop (training
only; BEATs stays frozen here) are left out, so unlike upstream a forward pass does not
draw from numpy's global RNG, the shared relative position bias lives once
on the transformer instead of being tied across layers, and attention uses PyTorch's fused
kernel instead of upstream's max-subtracted, rescaled softmax (identical up to rounding).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from avlib.audio.encoder import AudioEncoder
from avlib.audio.frontends import BEATsFbank
from avlib.config import ENCODER_LAYERS



@dataclass(frozen=True)
class BEATsConfig:
    """The architecture fields of BEATs' ``cfg``; defaults are the released iter3+ models."""

    input_patch_size: int = 16
    embed_dim: int = 512                 # patch embedding width
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    conv_pos: int = 128                  # kernel of the convolutional position embedding
    conv_pos_groups: int = 16
    num_buckets: int = 320               # relative position buckets (half per direction)
    max_distance: int = 800
    deep_norm: bool = True


class ConvPositionalEmbedding(nn.Module):
    """Grouped Conv1d over the sequence, weight-normalised per kernel tap, then GELU.

    Weight norm is kept as its two parameters (``weight_g`` (1, 1, K), ``weight_v``) because
    that is how checkpoints store it: weight = g * v / ||v||, the norm taken over all
    output and input channels of each kernel position.
    """

    def __init__(self, dim: int, kernel_size: int, groups: int):
        super().__init__()
        self.groups = groups
        self.weight_v = nn.Parameter(torch.randn(dim, dim // groups, kernel_size)
                                     * math.sqrt(4.0 / (kernel_size * dim)))
        self.weight_g = nn.Parameter(self.weight_v.detach().norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel_size = self.weight_v.shape[-1]
        weight = self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)
        y = F.conv1d(x.transpose(1, 2), weight, self.bias, padding=kernel_size // 2,
                     groups=self.groups)                   # (B, C, N + 1) for an even kernel
        y = y[..., : x.shape[1]]                           # "same" length: drop the extra step
        return F.gelu(y).transpose(1, 2)                   # (B, N, C)


class RelativePositionBias(nn.Module):
    """T5-style bucketed relative positions -> one learned bias per head, ``(H, N, N)``.

    Half the buckets are for keys after the query, half for keys before; within a half,
    distances below a quarter of ``num_buckets`` get a bucket each and longer ones share
    log-spaced buckets up to ``max_distance``.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def bucket(self, relative: torch.Tensor) -> torch.Tensor:
        half = self.num_buckets // 2
        max_exact = half // 2
        distance = relative.abs()
        # Same float32 arithmetic as upstream, so distances land in the same buckets.
        log_ratio = torch.log(distance.clamp(min=max_exact).float() / max_exact)
        far = max_exact + (log_ratio / math.log(self.max_distance / max_exact)
                           * (half - max_exact)).long()
        far = far.clamp(max=half - 1)
        return (relative > 0).long() * half + torch.where(distance < max_exact, distance, far)

    def forward(self, length: int) -> torch.Tensor:
        position = torch.arange(length, device=self.embedding.weight.device)
        relative = position[None, :] - position[:, None]   # (N, N): key - query
        return self.embedding(self.bucket(relative)).permute(2, 0, 1)  # (H, N, N)


class GatedRelativeSelfAttention(nn.Module):
    """Multi-head self-attention whose position bias is scaled per query by a learned gate.

    The gate (BEATs' ``gru_rel_pos``) reads each query: two sigmoids a, b from
    ``grep_linear`` give ``a * (b * grep_a - 1) + 2`` (between 1 and 2 while the learned
    per-head ``grep_a`` is 1), so each query decides how much position matters to it.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.grep_linear = nn.Linear(dim // num_heads, 8)
        self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:        # (B, N, C) -> (B, H, N, C / H)
            return t.view(batch, length, self.num_heads, -1).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        gates = self.grep_linear(q).view(batch, self.num_heads, length, 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(gates).chunk(2, dim=-1)           # (B, H, N, 1) each
        gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=gate * position_bias)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class TransformerLayer(nn.Module):
    """Post-LN layer; deep-norm scales each residual by ``residual_scale`` before adding."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, residual_scale: float):
        super().__init__()
        self.residual_scale = residual_scale
        self.self_attn = GatedRelativeSelfAttention(dim, num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor) -> torch.Tensor:
        x = self.self_attn_layer_norm(x * self.residual_scale + self.self_attn(x, position_bias))
        return self.final_layer_norm(x * self.residual_scale + self.fc2(F.gelu(self.fc1(x))))


class BEATsTransformer(nn.Module):
    def __init__(self, config: BEATsConfig):
        super().__init__()
        dim = config.encoder_embed_dim
        self.pos_conv = ConvPositionalEmbedding(dim, config.conv_pos, config.conv_pos_groups)
        self.layer_norm = nn.LayerNorm(dim)
        self.rel_pos_bias = RelativePositionBias(config.num_buckets, config.max_distance,
                                                 config.encoder_attention_heads)
        residual_scale = (2 * config.encoder_layers) ** 0.25 if config.deep_norm else 1.0
        self.layers = nn.ModuleList(
            TransformerLayer(dim, config.encoder_ffn_embed_dim, config.encoder_attention_heads,
                             residual_scale)
            for _ in range(config.encoder_layers)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, N, C)`` -> every layer's output, first layer first."""
        x = self.layer_norm(x + self.pos_conv(x))
        position_bias = self.rel_pos_bias(x.shape[1])      # shared by all layers
        outputs = []
        for layer in self.layers:
            x = layer(x, position_bias)
            outputs.append(x)
        return outputs


class BEATsEncoder(AudioEncoder):
    """Waveform ``(B, samples)`` at 16 kHz -> ``(B, N, D)``: ``N = (T // 16) * 8`` patches.

    ``output_layers="last"`` gives D = ``encoder_embed_dim`` (768); ``"all"`` concatenates
    every layer's output, first layer first (D = 12 * 768 = 9216, TempoTokens' input).
    """

    name = "beats"

    def __init__(self, config: BEATsConfig = BEATsConfig(), output_layers: str = "all"):
        super().__init__()
        self.config = config
        self.output_layers = output_layers
        self.frontend = BEATsFbank()
        patch = config.input_patch_size
        self.patch_embedding = nn.Conv2d(1, config.embed_dim, patch, stride=patch,
                                         bias=config.conv_bias)
        self.layer_norm = nn.LayerNorm(config.embed_dim)
        self.post_extract_proj = (nn.Linear(config.embed_dim, config.encoder_embed_dim)
                                  if config.embed_dim != config.encoder_embed_dim else nn.Identity())
        self.encoder = BEATsTransformer(config)

    @property
    def output_layers(self) -> str:
        """Which layers :meth:`embed` returns: "last" or "all" (concatenated)."""
        return self._output_layers

    @output_layers.setter
    def output_layers(self, value: str) -> None:
        if value not in ENCODER_LAYERS:
            raise ValueError(f"output_layers must be one of {ENCODER_LAYERS}, got {value!r}")
        self._output_layers = value

    @property
    def embed_dim(self) -> int:
        return self.config.encoder_embed_dim

    @property
    def output_dim(self) -> int:
        layers = self.config.encoder_layers if self.output_layers == "all" else 1
        return layers * self.embed_dim

    @property
    def patches_per_step(self) -> int:
        """Frequency patches per time step (8): the vectors come in groups of this size."""
        return self.frontend.num_mel_bins // self.config.input_patch_size

    @property
    def vectors_per_step(self) -> int:
        return self.patches_per_step

    @property
    def frame_rate(self) -> float:
        """Vectors per second: 100 fbank frames/s / 16 per step * 8 bands = 50.

        That is 6.25 time steps per second (160 ms each), each step 8 consecutive vectors.
        """
        frames_per_second = 1000.0 / self.frontend.frame_shift_ms
        return frames_per_second / self.config.input_patch_size * self.patches_per_step

    def architecture(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @classmethod
    def from_architecture(cls, architecture: dict[str, Any]) -> "BEATsEncoder":
        return cls(BEATsConfig(**architecture))

    def num_vectors(self, num_samples: int) -> int:
        steps = self.frontend.num_frames(num_samples) // self.config.input_patch_size
        return steps * self.patches_per_step

    def layer_outputs(self, fbank: torch.Tensor) -> list[torch.Tensor]:
        """Normalised fbank ``(B, T, 128)`` -> each layer's ``(B, N, encoder_embed_dim)``."""
        x = self.patch_embedding(fbank.unsqueeze(1))       # (B, 512, T // 16, 8)
        x = x.flatten(2).transpose(1, 2)                   # (B, N, 512), patch = step * 8 + band
        x = self.post_extract_proj(self.layer_norm(x))     # (B, N, 768)
        return self.encoder(x)

    def embed(self, fbank: torch.Tensor) -> torch.Tensor:
        outputs = self.layer_outputs(fbank)
        return torch.cat(outputs, dim=-1) if self.output_layers == "all" else outputs[-1]
