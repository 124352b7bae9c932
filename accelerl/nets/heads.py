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

    def forward(self, window: torch.Tensor, mask: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """``features``: the encoder's output for ``window``, when the caller has it already (a
        CNN actor reads its critic's encoder: its loss encodes one augmented view for both)."""
        return torch.tanh(self.head(self.encoder(window, mask) if features is None else features))

    def act(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self(window, mask)


class GaussianActor(nn.Module):
    """SAC actor: tanh-squashed Gaussian; the deterministic action is tanh(mean)."""

    def __init__(self, encoder: nn.Module, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = mlp(encoder.out_dim, hidden, layers, 2 * act_dim)

    def forward(self, window: torch.Tensor, mask: torch.Tensor, sample: bool = False,
                features: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std); with ``sample``, a reparameterised squashed sample and its log-probability
        (a flag of forward, so a functional call with substituted parameters can draw samples).
        ``features`` as for ``DeterministicActor``."""
        mean, log_std = self.head(self.encoder(window, mask) if features is None else features).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        if not sample:
            return mean, log_std
        std = log_std.exp()
        pre = mean + std * torch.randn_like(mean)
        action = torch.tanh(pre)
        logp = (-0.5 * ((pre - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - torch.log(1 - action.pow(2) + 1e-6).sum(-1)
        return action, logp

    def sample(self, window: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised squashed sample and its log-probability."""
        return self(window, mask, sample=True)

    def act(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(window, mask)[0])


class TwinCritic(nn.Module):
    """Two Q(W, a) networks (clipped double-Q). With ``shared_encoder`` the two heads read one
    encoder (one trunk, two heads): image-based SAC does this for its CNN, and recurrent
    off-policy agents (pomdp-baselines) for their LSTM, where the encoder is most of the cost.
    Actor and critic never share an encoder (that hurts recurrent off-policy RL, Ni et al. 2022)."""

    def __init__(self, make_encoder, act_dim: int, hidden: int, layers: int, shared_encoder: bool = False) -> None:
        super().__init__()
        self.shared = shared_encoder
        self.enc1 = make_encoder()
        if not shared_encoder:
            self._modules["enc2"] = make_encoder()  # (add_module would trip over the enc2 property)
        self.q1 = mlp(self.enc1.out_dim + act_dim, hidden, layers, 1)
        self.q2 = mlp(self.enc2.out_dim + act_dim, hidden, layers, 1)
        if shared_encoder:
            self._register_load_state_dict_pre_hook(_drop_twin_encoder)

    @property
    def enc2(self) -> nn.Module:
        """Q2's encoder. A shared one is not registered twice: tied submodules break a functional
        (compiled) call with substituted parameters, and the checkpoint holds one copy."""
        return self.enc1 if self.shared else self._modules["enc2"]

    def features(self, window: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat1 = self.enc1(window, mask)
        return feat1, feat1 if self.shared else self.enc2(window, mask)

    def heads(self, feats: tuple[torch.Tensor, torch.Tensor], action: torch.Tensor, both: bool = True):
        """Q values from encoder features; ``both=False`` gives Q1 alone (TD3's actor loss)."""
        q1 = self.q1(torch.cat([feats[0], action], -1)).squeeze(-1)
        if not both:
            return q1
        return q1, self.q2(torch.cat([feats[1], action], -1)).squeeze(-1)

    def forward(self, window: torch.Tensor, mask: torch.Tensor, action: torch.Tensor, with_features: bool = False):
        """(Q1, Q2); with ``with_features`` also the encoder features, which an actor loss of the
        same windows can reuse (``heads``) instead of running the encoder again."""
        feats = self.features(window, mask)
        q = self.heads(feats, action)
        return (q, feats) if with_features else q

    def action_value(self, window: torch.Tensor, mask: torch.Tensor, action: torch.Tensor, both: bool = True):
        """Q(W, a) for an actor's loss, which needs gradients with respect to the action only: the
        encoder runs without autograd, so backward skips the critic's encoder (a CNN, LSTM or
        transformer) and the unused head. Same values as ``forward``."""
        with torch.no_grad():
            feat1 = self.enc1(window, mask)
            feat2 = feat1 if self.shared or not both else self.enc2(window, mask)
        return self.heads((feat1, feat2), action, both)


def _drop_twin_encoder(state_dict, prefix, *_args) -> None:
    """Checkpoints of accelerl 0.1 list a shared encoder twice (enc1.* and enc2.*): drop the
    copy. Two encoders that differ come from a critic with two trunks (0.1's LSTM critic);
    loading that into one shared trunk would silently drop one, so it is refused."""
    from accelerl.errors import CheckpointError

    for key in [k for k in state_dict if k.startswith(prefix + "enc2.")]:
        twin = prefix + "enc1." + key[len(prefix + "enc2."):]
        if twin not in state_dict or not torch.equal(state_dict[key], state_dict[twin]):
            raise CheckpointError("this checkpoint's critic has two encoders; this accelerl's LSTM critic shares one "
                                  "trunk between its Q heads (checkpoints of LSTM runs from accelerl 0.1 cannot be "
                                  "loaded)")
        del state_dict[key]
