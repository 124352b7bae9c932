"""Actors and critics on top of any encoder. Actions live in [-1, 1] (envs are rescaled)."""

from __future__ import annotations

import math

import torch
from torch import nn

from accelerl.nets.encoders import mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class DeterministicActor(nn.Module):
    """TD3 actor: a = tanh(head(encoder(W)))."""

    def __init__(self, encoder: nn.Module, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = mlp(encoder.out_dim, hidden, layers, act_dim)

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.encoder(window, mask)))

    def act(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self(window, mask)


class GaussianActor(nn.Module):
    """SAC actor: tanh-squashed Gaussian; the deterministic action is tanh(mean)."""

    def __init__(self, encoder: nn.Module, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = mlp(encoder.out_dim, hidden, layers, 2 * act_dim)

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.encoder(window, mask)).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, window: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised squashed sample and its log-probability."""
        mean, log_std = self(window, mask)
        std = log_std.exp()
        pre = mean + std * torch.randn_like(mean)
        action = torch.tanh(pre)
        logp = (-0.5 * ((pre - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - torch.log(1 - action.pow(2) + 1e-6).sum(-1)
        return action, logp

    def act(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(window, mask)[0])


class TwinCritic(nn.Module):
    """Two Q(W, a) networks (clipped double-Q); with ``shared_encoder`` (CNN) the two heads read
    one encoder, as in image-based SAC."""

    def __init__(self, make_encoder, act_dim: int, hidden: int, layers: int, shared_encoder: bool = False) -> None:
        super().__init__()
        self.enc1 = make_encoder()
        self.enc2 = self.enc1 if shared_encoder else make_encoder()
        self.q1 = mlp(self.enc1.out_dim + act_dim, hidden, layers, 1)
        self.q2 = mlp(self.enc2.out_dim + act_dim, hidden, layers, 1)

    def forward(self, window: torch.Tensor, mask: torch.Tensor, action: torch.Tensor):
        feat1 = self.enc1(window, mask)
        feat2 = feat1 if self.enc2 is self.enc1 else self.enc2(window, mask)
        q1 = self.q1(torch.cat([feat1, action], -1)).squeeze(-1)
        q2 = self.q2(torch.cat([feat2, action], -1)).squeeze(-1)
        return q1, q2

    def action_value(self, window: torch.Tensor, mask: torch.Tensor, action: torch.Tensor, both: bool = True):
        """Q(W, a) for an actor's loss, which needs gradients with respect to the action only: the
        encoder runs without autograd, so backward skips the critic's encoder (a CNN, LSTM or
        transformer) and the unused head. Same values as ``forward``."""
        with torch.no_grad():
            feat1 = self.enc1(window, mask)
            feat2 = feat1 if self.enc2 is self.enc1 or not both else self.enc2(window, mask)
        q1 = self.q1(torch.cat([feat1, action], -1)).squeeze(-1)
        if not both:
            return q1
        return q1, self.q2(torch.cat([feat2, action], -1)).squeeze(-1)
