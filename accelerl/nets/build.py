"""Build the networks a config asks for."""

from __future__ import annotations

import functools

from torch import nn

from accelerl.config import TrainConfig
from accelerl.nets.encoders import LastObsEncoder, LSTMEncoder, TransformerEncoder
from accelerl.nets.heads import DeterministicActor, GaussianActor, TwinCritic


def _actor_cls(cfg: TrainConfig) -> type[nn.Module]:
    return GaussianActor if cfg.algo == "sac" else DeterministicActor


def _accelerator_encoder(cfg: TrainConfig, obs_dim: int) -> nn.Module:
    if cfg.accelerator_kind == "lstm":
        return LSTMEncoder(obs_dim, cfg.context_len, cfg.hidden_size)
    return LastObsEncoder(obs_dim)


def build_accelerator_actor(cfg: TrainConfig, obs_dim: int, act_dim: int) -> nn.Module:
    """MLP: 3x256 on o_t (reference code). LSTM: Linear-LSTM 256 over the window, one hidden layer."""
    layers = cfg.hidden_layers if cfg.accelerator_kind == "mlp" else 1
    return _actor_cls(cfg)(_accelerator_encoder(cfg, obs_dim), act_dim, cfg.hidden_size, layers)


def build_transformer_actor(cfg: TrainConfig, obs_dim: int, act_dim: int) -> nn.Module:
    """Transformer over the window; the action is a linear read-out of the last token."""
    enc = TransformerEncoder(obs_dim, cfg.context_len, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff,
                             cfg.dropout, cfg.positions)
    return _actor_cls(cfg)(enc, act_dim, cfg.hidden_size, 0)


def build_critic(cfg: TrainConfig, obs_dim: int, act_dim: int) -> TwinCritic:
    """The accelerator's twin critic; stage 2 and scratch mode use the same architecture."""
    layers = cfg.hidden_layers if cfg.accelerator_kind == "mlp" else 1
    return TwinCritic(functools.partial(_accelerator_encoder, cfg, obs_dim), act_dim, cfg.hidden_size, layers)
