"""Build the networks a config asks for, for a task described by an ``EnvSpec``."""

from __future__ import annotations

import functools

from torch import nn

from accelerl.config import TrainConfig
from accelerl.envs.factory import EnvSpec
from accelerl.nets.encoders import (
    DetachedEncoder,
    FrameCNN,
    FrameStackEncoder,
    LastObsEncoder,
    LSTMEncoder,
    TransformerEncoder,
)
from accelerl.nets.heads import DeterministicActor, GaussianActor, TwinCritic


def _actor_cls(cfg: TrainConfig) -> type[nn.Module]:
    return GaussianActor if cfg.algo == "sac" else DeterministicActor


def frame_cnn(cfg: TrainConfig, spec: EnvSpec) -> FrameCNN:
    return FrameCNN(spec.pixel_shape, spec.state_dim, cfg.cnn_features, cfg.augment == "shift")


def _accelerator_encoder(cfg: TrainConfig, spec: EnvSpec) -> nn.Module:
    if cfg.accelerator_kind == "lstm":
        return LSTMEncoder(spec.obs_dim, cfg.context_len, cfg.hidden_size)
    if cfg.accelerator_kind == "cnn":
        return FrameStackEncoder(frame_cnn(cfg, spec), cfg.frame_stack)
    return LastObsEncoder(spec.obs_dim)


def build_critic(cfg: TrainConfig, spec: EnvSpec) -> TwinCritic:
    """The accelerator's twin critic; stage 2 and scratch mode use the same architecture. A CNN
    critic's two heads share one encoder, an LSTM critic's with --lstm-critic shared (the MLP's
    encoder is the observation itself)."""
    shared = cfg.accelerator_kind == "cnn" or (cfg.accelerator_kind == "lstm" and cfg.lstm_critic == "shared")
    return TwinCritic(functools.partial(_accelerator_encoder, cfg, spec), spec.act_dim, cfg.hidden_size,
                      cfg.hidden_layers, shared_encoder=shared)


def build_accelerator_actor(cfg: TrainConfig, spec: EnvSpec, critic: TwinCritic | None = None) -> nn.Module:
    """MLP: 3x256 on o_t (reference code). LSTM: Linear-LSTM 256 over the window, then the same
    3x256 head (a 1-layer head made TD3's critic too coarse in the action: the actor saturated at
    the bounds and never learned Pendulum, even fully observed). CNN: reads the critic's encoder
    without training it (pass ``critic``; without one, as when loading a saved policy, it gets
    its own copy of that encoder's architecture)."""
    if cfg.accelerator_kind == "cnn":
        inner = critic.enc1 if critic is not None else _accelerator_encoder(cfg, spec)
        encoder: nn.Module = DetachedEncoder(inner)
    else:
        encoder = _accelerator_encoder(cfg, spec)
    return _actor_cls(cfg)(encoder, spec.act_dim, cfg.hidden_size, cfg.hidden_layers)


def _transformer_encoder(cfg: TrainConfig, spec: EnvSpec) -> TransformerEncoder:
    frame = frame_cnn(cfg, spec) if spec.pixels else None
    return TransformerEncoder(spec.obs_dim, cfg.context_len, cfg.d_model, cfg.n_heads, cfg.n_layers, cfg.d_ff,
                              cfg.dropout, cfg.positions, frame=frame, variant=cfg.transformer)


def build_transformer_critic(cfg: TrainConfig, spec: EnvSpec) -> TwinCritic:
    """``--critic transformer``: both Q heads (``--hidden-layers`` deep, like the accelerator's)
    read one transformer encoder of the window, the same architecture as the actor's."""
    return TwinCritic(functools.partial(_transformer_encoder, cfg, spec), spec.act_dim, cfg.hidden_size,
                      cfg.hidden_layers, shared_encoder=True)


def build_transformer_actor(cfg: TrainConfig, spec: EnvSpec) -> nn.Module:
    """Transformer over the window; the action is a linear read-out of the last token. With
    pixels, each token is the transformer's own per-frame CNN features (+ state)."""
    return _actor_cls(cfg)(_transformer_encoder(cfg, spec), spec.act_dim, cfg.hidden_size, 0)
