"""Denoising networks shared by every generative core: ``net(x, noise_level, tokens) -> (B, Ta, A)``.

Two architectures, picked by :attr:`NetworkConfig.kind`:

- ``"transformer"``: a GPT-style transformer as in BESO. The sequence is one noise-level token, the
  conditioning tokens and one token per action step::

      [ noise | cond_1 … cond_Tc | act_1 … act_Ta ]  ->  pre-LN blocks (full or causal attention)  ->  head on act_*

  With causal attention (BESO's choice) an action token sees the noise level, every condition and the earlier
  actions only; full attention (the default) lets every step see the whole chunk.
- ``"unet"``: diffusion_policy's 1-D convolutional UNet over the action horizon, conditioned by FiLM
  (per-channel scale and bias) on the noise-level embedding concatenated with the pooled condition tokens.

What the output means (denoised estimate, velocity, noise) is the generator's business, not the network's.
``noise_level`` is a (B,) scalar of order one that each generator picks: BESO passes EDM's c_noise = ln(σ)/4,
flow matching the time t ∈ [0, 1], DDPM the timestep over the number of training timesteps.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from tiers.core.config import Config
from tiers.core.errors import ContractError

# Sinusoidal embeddings expect positions spread over hundreds of units (like diffusers' Timesteps on
# integer timesteps); noise levels of order one are stretched by this factor first.
NOISE_LEVEL_SCALE = 1000.0


@dataclass
class TransformerConfig(Config):
    """Widths of the GPT-style denoiser."""

    width: int = 256  # token width (d_model)
    depth: int = 4  # transformer blocks
    heads: int = 4  # attention heads; must divide width
    dropout: float = 0.0  # dropout on attention weights, residual branches and embeddings
    # causal self-attention over [noise, conditions, actions] as BESO's GPT. Off by default: on a bimodal toy
    # (tests/policies/low/test_generators.py) causal chunks mixed modes step by step (72-80% of chunks in one
    # mode after training, against 95-99% with full attention), as an early step cannot see the later ones.
    causal: bool = False

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1 or self.heads < 1:
            raise ValueError(f"width, depth and heads must be >= 1, got {self.width}, {self.depth}, {self.heads}")
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class UnetConfig(Config):
    """Widths of the 1-D conv UNet (diffusion_policy's ConditionalUnet1D)."""

    channels: tuple[int, ...] = (64, 128, 256)  # channels per resolution level; the horizon halves per level
    kernel_size: int = 5  # temporal kernel of the conv blocks (odd)
    groups: int = 8  # GroupNorm groups; must divide every channel count
    cond_width: int = 128  # width of the FiLM input (noise embedding + pooled tokens, projected)

    def __post_init__(self) -> None:
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be a non-empty tuple of positive ints, got {self.channels}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {self.kernel_size}")
        if self.groups < 1 or any(c % self.groups for c in self.channels):
            raise ValueError(f"groups ({self.groups}) must divide every entry of channels {self.channels}")
        if self.cond_width < 1:
            raise ValueError(f"cond_width must be >= 1, got {self.cond_width}")


@dataclass
class NetworkConfig(Config):
    """Shapes of the chunks and conditions, and the architecture of the denoiser."""

    kind: Literal["transformer", "unet"] = "transformer"  # which denoiser to build
    action_dim: int = 7  # A, width of one action step (normalised)
    horizon: int = 16  # Ta, the most action steps per chunk (the transformer's action positions)
    cond_dim: int = 256  # D, width of one conditioning token
    max_cond_tokens: int = 8  # the most conditioning tokens Tc (their positional embeddings)
    noise_embed_dim: int = 128  # width of the sinusoidal noise-level embedding (even)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)  # used when kind="transformer"
    unet: UnetConfig = field(default_factory=UnetConfig)  # used when kind="unet"

    def __post_init__(self) -> None:
        for name in ("action_dim", "horizon", "cond_dim", "max_cond_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.noise_embed_dim < 2 or self.noise_embed_dim % 2:
            raise ValueError(f"noise_embed_dim must be an even int >= 2, got {self.noise_embed_dim}")


def build_network(config: NetworkConfig) -> nn.Module:
    """The denoiser named by ``config.kind``."""
    if config.kind == "transformer":
        return DenoisingTransformer(config)
    if config.kind == "unet":
        return ConditionalUnet1D(config)
    raise ValueError(f"NetworkConfig.kind must be 'transformer' or 'unet', got {config.kind!r}")


class SinusoidalEmbedding(nn.Module):
    """(B,) noise levels of order one -> (B, dim) sin/cos features (transformer positional-encoding style)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.frequencies: torch.Tensor
        half = dim // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("frequencies", frequencies, persistent=False)

    def forward(self, noise_level: torch.Tensor) -> torch.Tensor:
        angles = NOISE_LEVEL_SCALE * noise_level.float()[:, None] * self.frequencies[None, :]  # (B, dim/2)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _check_inputs(config: NetworkConfig, x: torch.Tensor, noise_level: torch.Tensor, tokens: torch.Tensor) -> None:
    """Shape errors here name the expectation; deep inside a matmul they would not."""
    if x.ndim != 3 or x.shape[2] != config.action_dim or x.shape[1] > config.horizon:
        raise ContractError(
            f"denoiser expects x of shape (B, Ta<={config.horizon}, {config.action_dim}), got {tuple(x.shape)}"
        )
    if noise_level.shape != x.shape[:1]:
        raise ContractError(f"noise_level must have shape ({x.shape[0]},), got {tuple(noise_level.shape)}")
    if (
        tokens.ndim != 3
        or tokens.shape[0] != x.shape[0]
        or tokens.shape[2] != config.cond_dim
        or not 1 <= tokens.shape[1] <= config.max_cond_tokens
    ):
        raise ContractError(
            f"conditioning tokens must have shape ({x.shape[0]}, 1..{config.max_cond_tokens}, {config.cond_dim}), "
            f"got {tuple(tokens.shape)}"
        )


class _Block(nn.Module):
    """Pre-LayerNorm transformer block (nanoGPT): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.dropout = config.dropout
        self.causal = config.causal
        self.norm_attention = nn.LayerNorm(config.width)
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.projection = nn.Linear(config.width, config.width)
        self.norm_mlp = nn.LayerNorm(config.width)
        self.mlp = nn.Sequential(
            nn.Linear(config.width, 4 * config.width),
            nn.GELU(),
            nn.Linear(4 * config.width, config.width),
        )
        self.residual_dropout = nn.Dropout(config.dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        batch, length, width = h.shape
        q, k, v = self.qkv(self.norm_attention(h)).split(width, dim=2)
        # (B, heads, T, width / heads)
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, is_causal=self.causal, dropout_p=self.dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch, length, width)
        h = h + self.residual_dropout(self.projection(attended))
        out: torch.Tensor = h + self.residual_dropout(self.mlp(self.norm_mlp(h)))
        return out


class DenoisingTransformer(nn.Module):
    """BESO's GPT-style denoiser: (x (B, Ta, A), noise_level (B,), tokens (B, Tc, D)) -> (B, Ta, A)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        width = config.transformer.width
        self.noise_embedding = nn.Sequential(
            SinusoidalEmbedding(config.noise_embed_dim),
            nn.Linear(config.noise_embed_dim, width),
            nn.GELU(),
            nn.Linear(width, width),
        )
        self.cond_projection = nn.Linear(config.cond_dim, width)
        self.action_projection = nn.Linear(config.action_dim, width)
        # one learned position per slot kind: the noise token, the condition slots, the action steps
        self.noise_position = nn.Parameter(torch.zeros(1, 1, width))
        self.cond_positions = nn.Parameter(torch.zeros(1, config.max_cond_tokens, width))
        self.action_positions = nn.Parameter(torch.zeros(1, config.horizon, width))
        for positions in (self.noise_position, self.cond_positions, self.action_positions):
            nn.init.normal_(positions, std=0.02)
        self.embedding_dropout = nn.Dropout(config.transformer.dropout)
        self.blocks = nn.ModuleList([_Block(config.transformer) for _ in range(config.transformer.depth)])
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, config.action_dim)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        _check_inputs(self.config, x, noise_level, tokens)
        n_cond, n_actions = tokens.shape[1], x.shape[1]
        noise_token = self.noise_embedding(noise_level)[:, None, :] + self.noise_position  # (B, 1, W)
        cond_tokens = self.cond_projection(tokens) + self.cond_positions[:, :n_cond]  # (B, Tc, W)
        action_tokens = self.action_projection(x) + self.action_positions[:, :n_actions]  # (B, Ta, W)
        h = self.embedding_dropout(torch.cat([noise_token, cond_tokens, action_tokens], dim=1))
        for block in self.blocks:
            h = block(h)
        out: torch.Tensor = self.head(self.final_norm(h[:, -n_actions:]))  # (B, Ta, A)
        return out


class _ConvBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length-preserving."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, groups: int) -> None:
        super().__init__(
            nn.Conv1d(channels_in, channels_out, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(groups, channels_out),
            nn.Mish(),
        )


class _FilmResidualBlock(nn.Module):
    """Two conv blocks with a FiLM (scale, bias) from the global condition between them, plus a skip."""

    def __init__(self, channels_in: int, channels_out: int, cond_width: int, config: UnetConfig) -> None:
        super().__init__()
        self.first = _ConvBlock(channels_in, channels_out, config.kernel_size, config.groups)
        self.second = _ConvBlock(channels_out, channels_out, config.kernel_size, config.groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_width, 2 * channels_out))
        self.skip = nn.Conv1d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.first(x)  # (B, C, T)
        scale, bias = self.film(cond)[:, :, None].chunk(2, dim=1)  # (B, C, 1) each
        h = self.second(scale * h + bias)
        out: torch.Tensor = h + self.skip(x)
        return out


class _UnetLevel(nn.Module):
    """Two FiLM residual blocks, then a stride-2 conv (down), a transposed conv (up) or nothing."""

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        cond_width: int,
        config: UnetConfig,
        *,
        resample: Literal["down", "up", "none"],
    ) -> None:
        super().__init__()
        self.first = _FilmResidualBlock(channels_in, channels_out, cond_width, config)
        self.second = _FilmResidualBlock(channels_out, channels_out, cond_width, config)
        self.resample: nn.Module
        if resample == "down":
            self.resample = nn.Conv1d(channels_out, channels_out, 3, stride=2, padding=1)
        elif resample == "up":
            self.resample = nn.ConvTranspose1d(channels_out, channels_out, 4, stride=2, padding=1)
        else:
            self.resample = nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C_in, T) -> features (B, C_out, T) before resampling, and the resampled (B, C_out, T') output."""
        features = self.second(self.first(x, cond), cond)
        return features, self.resample(features)


class ConditionalUnet1D(nn.Module):
    """diffusion_policy's 1-D UNet with FiLM: (x (B, Ta, A), noise_level (B,), tokens (B, Tc, D)) -> (B, Ta, A).

    The tokens get a learned position each and are mean-pooled into one vector, so the pooled condition
    still knows which slot a token came from. A horizon that is not a multiple of 2^(levels-1) is padded
    by repeating the last step and cropped back, so any Ta works.
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        unet = config.unet
        self.noise_embedding = nn.Sequential(
            SinusoidalEmbedding(config.noise_embed_dim),
            nn.Linear(config.noise_embed_dim, unet.cond_width),
            nn.Mish(),
            nn.Linear(unet.cond_width, unet.cond_width),
        )
        self.cond_projection = nn.Linear(config.cond_dim, unet.cond_width)
        self.cond_positions = nn.Parameter(torch.zeros(1, config.max_cond_tokens, unet.cond_width))
        nn.init.normal_(self.cond_positions, std=0.02)
        film_width = 2 * unet.cond_width  # noise embedding ++ pooled tokens

        channels = (config.action_dim, *unet.channels)
        levels = list(itertools.pairwise(channels))
        self.down = nn.ModuleList(
            [
                _UnetLevel(c_in, c_out, film_width, unet, resample="down" if index < len(levels) - 1 else "none")
                for index, (c_in, c_out) in enumerate(levels)
            ]
        )
        deepest = unet.channels[-1]
        self.middle = _UnetLevel(deepest, deepest, film_width, unet, resample="none")
        # going up, each level takes its input concatenated with the down path's output at that resolution
        self.up = nn.ModuleList(
            [_UnetLevel(2 * c_out, c_in, film_width, unet, resample="up") for c_in, c_out in reversed(levels[1:])]
        )
        first = unet.channels[0]
        self.final = nn.Sequential(
            _ConvBlock(first, first, unet.kernel_size, unet.groups), nn.Conv1d(first, config.action_dim, 1)
        )
        self.stride = 2 ** (len(unet.channels) - 1)  # total down-sampling of the horizon

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        _check_inputs(self.config, x, noise_level, tokens)
        n_actions = x.shape[1]
        pooled = (self.cond_projection(tokens) + self.cond_positions[:, : tokens.shape[1]]).mean(dim=1)
        cond = torch.cat([self.noise_embedding(noise_level), pooled], dim=-1)  # (B, 2 * cond_width)

        h = x.transpose(1, 2)  # (B, A, Ta)
        padding = (-n_actions) % self.stride
        if padding:
            h = nn.functional.pad(h, (0, padding), mode="replicate")
        skips = []
        for level in self.down:
            features, h = level(h, cond)
            skips.append(features)
        _, h = self.middle(h, cond)
        for level in self.up:
            _, h = level(torch.cat([h, skips.pop()], dim=1), cond)
        out: torch.Tensor = self.final(h)[:, :, :n_actions].transpose(1, 2)  # (B, Ta, A)
        return out
