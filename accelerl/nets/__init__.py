"""Networks: encoders (MLP/LSTM/transformer), actors and critics, and their builders."""

from accelerl.nets.build import build_accelerator_actor, build_critic, build_transformer_actor, build_transformer_critic
from accelerl.nets.heads import DeterministicActor, GaussianActor, TwinCritic

__all__ = [
           "DeterministicActor",
           "GaussianActor",
           "TwinCritic",
           "build_accelerator_actor",
           "build_critic",
           "build_transformer_actor",
           "build_transformer_critic",
]
