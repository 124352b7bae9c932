"""TD3 / SAC / BC updates on known inputs."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
from torch import nn

from accelerl.algos import SAC, TD3, Distiller, make_algo
from accelerl.algos.base import evaluating, polyak
from accelerl.algos.steps import AdamStep
from accelerl.config import build_config
from accelerl.envs import EnvSpec
from accelerl.nets.encoders import LastObsEncoder, TransformerEncoder
from accelerl.nets.heads import DeterministicActor, GaussianActor, TwinCritic
from accelerl.replay import Batch

OBS, ACT, C, B = 3, 2, 3, 4


def cfg(**kw):
    base = {"env": "Pendulum-v1", "gamma": 0.9, "tau": 0.1, "policy_delay": 2, "init_alpha": 0.5}
    return build_config({**base, **kw})


def critic() -> TwinCritic:
    return TwinCritic(functools.partial(LastObsEncoder, OBS), ACT, 16, 1)


def batch(seed=0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, C, dtype=torch.bool)
    return Batch(obs=torch.randn(B, C, OBS, generator=g), mask=mask, act=torch.rand(B, ACT, generator=g) * 2 - 1,
                 rew=torch.tensor([1.0, 2.0, -1.0, 0.5]), term=torch.tensor([0.0, 1.0, 0.0, 1.0]),
                 next_obs=torch.randn(B, C, OBS, generator=g), next_mask=mask.clone())


class ConstCritic(nn.Module):
    """Q1 = 10 + first feature of the last *next* observation, Q2 = Q1 + 1 (so min = Q1)."""

    def forward(self, window, mask, action):
        q1 = 10.0 + window[:, -1, 0]
        return q1, q1 + 1.0


class ZeroActor(nn.Module):
    def forward(self, window, mask):
        return torch.zeros(window.shape[0], ACT)


def spy_critic_target(algo) -> dict:
    captured = {}
    original = algo.td_target

    def spy(b):
        target = original(b)
        captured["target"] = target.detach().clone()
        return target

    algo.td_target = spy
    return captured


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------------------
def test_td3_critic_target_bootstraps_through_truncation_only():
    torch.manual_seed(0)
    algo = TD3(DeterministicActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), cfg())
    algo.critic_target, algo.actor_target = ConstCritic(), ZeroActor()
    captured = spy_critic_target(algo)
    b = batch()
    algo.update(b)  # first update: no actor step, no Polyak (policy_delay 2)
    q_next = 10.0 + b.next_obs[:, -1, 0]
    expected = b.rew + 0.9 * (1.0 - b.term) * q_next
    assert torch.allclose(captured["target"], expected, atol=1e-5)
    # term=0 (truncated or running): r + gamma * min Q'; term=1: r alone
    assert torch.allclose(captured["target"][1], b.rew[1]) and torch.allclose(captured["target"][3], b.rew[3])
    assert torch.allclose(captured["target"][0], b.rew[0] + 0.9 * q_next[0], atol=1e-5)


def test_sac_critic_target_includes_entropy_and_stops_at_termination(monkeypatch):
    monkeypatch.setattr("accelerl.algos.sac.polyak", lambda *a: None)  # the constant target has no weights
    torch.manual_seed(0)
    actor = GaussianActor(LastObsEncoder(OBS), ACT, 16, 1)
    algo = SAC(actor, critic(), cfg(algo="sac"), act_dim=ACT)
    algo.critic_target = ConstCritic()
    captured = spy_critic_target(algo)
    calls = []
    original_sample = actor.sample

    def sample(window, mask):
        out = original_sample(window, mask)
        calls.append((window, out[1].detach().clone()))
        return out

    actor.sample = sample
    b = batch()
    algo.update(b)
    next_window, next_logp = calls[0]
    assert torch.equal(next_window, b.next_obs)
    expected = b.rew + 0.9 * (1.0 - b.term) * (10.0 + b.next_obs[:, -1, 0] - 0.5 * next_logp)
    assert torch.allclose(captured["target"], expected, atol=1e-5)


def test_sac_target_action_comes_from_the_actor_without_dropout():
    """The TD target's next action must not carry dropout noise (a transformer actor trains with
    dropout on), while the actor's own loss must (it is a training pass)."""
    torch.manual_seed(0)
    encoder = TransformerEncoder(OBS, C, 16, 2, 1, 32, dropout=0.5, positions="sinusoidal")
    actor = GaussianActor(encoder, ACT, 16, 1)
    algo = SAC(actor, critic(), cfg(algo="sac"), act_dim=ACT)
    modes = []

    def record(module, args, kwargs):
        if kwargs.get("sample"):
            modes.append((args[0], module.training, encoder.drop.training))

    actor.register_forward_pre_hook(record, with_kwargs=True)
    b = batch()
    algo.update(b)
    assert [(w is b.next_obs, t, d) for w, t, d in modes] == [(True, False, False), (False, True, True)]
    assert actor.training and encoder.drop.training  # restored after the target


def test_evaluating_turns_every_dropout_off_and_restores_each_submodules_own_mode():
    """Acting and labelling run in eval mode: every nested module, not only the one handed over,
    and afterwards (even after an error) each submodule gets back the mode it had."""
    torch.manual_seed(0)
    actor = DeterministicActor(TransformerEncoder(OBS, C, 16, 2, 2, 32, dropout=0.5, positions="sinusoidal"), ACT, 16, 1)
    critic_net = critic()
    frozen = actor.encoder.blocks[1].eval()  # one block already in eval mode (a frozen part)
    before = {name: m.training for name, m in [*actor.named_modules(), *critic_net.named_modules()]}
    assert before[""] and not before["encoder.blocks.1"]
    window, mask = torch.randn(4, C, OBS), torch.ones(4, C, dtype=torch.bool)
    with pytest.raises(RuntimeError), evaluating(actor, critic_net):
        assert not any(m.training for m in [*actor.modules(), *critic_net.modules()])
        assert torch.equal(actor(window, mask), actor(window, mask))  # no dropout noise
        raise RuntimeError
    after = {name: m.training for name, m in [*actor.named_modules(), *critic_net.named_modules()]}
    assert after == before and not frozen.training
    assert not torch.equal(actor(window, mask), actor(window, mask))  # train mode: dropout is back


def test_td3_actor_and_targets_update_every_policy_delay_critic_updates():
    torch.manual_seed(0)
    algo = TD3(DeterministicActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), cfg(policy_delay=3))
    b = batch()
    for i in range(1, 7):
        actor0, critic0 = params(algo.actor), params(algo.critic)
        atarget0, ctarget0 = params(algo.actor_target), params(algo.critic_target)
        out = algo.update(b)
        assert not same(params(algo.critic), critic0), "the critic learns at every update"
        delayed = i % 3 == 0
        assert set(out) == {"critic_loss", *(["actor_loss"] if delayed else [])}  # the names metrics.csv logs
        assert same(params(algo.actor), actor0) != delayed, f"update {i}"
        assert same(params(algo.actor_target), atarget0) != delayed
        assert same(params(algo.critic_target), ctarget0) != delayed
        if delayed:  # Polyak: target <- target + tau * (online - target)
            for t0, s, t1 in zip(ctarget0, params(algo.critic), params(algo.critic_target), strict=True):
                assert torch.allclose(t1, t0 + 0.1 * (s - t0), atol=1e-6)
            for t0, s, t1 in zip(atarget0, params(algo.actor), params(algo.actor_target), strict=True):
                assert torch.allclose(t1, t0 + 0.1 * (s - t0), atol=1e-6)
    assert algo.updates == 6


def test_polyak_moves_targets_by_tau():
    target, source = nn.Linear(3, 2), nn.Linear(3, 2)
    t0, s0 = params(target), params(source)
    polyak(target, source, 0.25)
    for a, b, c in zip(t0, s0, params(target), strict=True):
        assert torch.allclose(c, 0.75 * a + 0.25 * b, atol=1e-7)
    assert same(params(source), s0)
    polyak(target, source, 1.0)
    assert same(params(target), s0)


@pytest.mark.parametrize("target_entropy,direction", [(-100.0, -1), (100.0, +1)])
def test_sac_alpha_moves_toward_the_entropy_target(target_entropy, direction):
    """Entropy above the target -> alpha decreases; below -> it increases."""
    torch.manual_seed(0)
    algo = SAC(GaussianActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), cfg(algo="sac", alpha_lr=0.01), act_dim=ACT)
    assert algo.target_entropy == -ACT
    algo.target_entropy = target_entropy
    before = float(algo.alpha)
    assert before == pytest.approx(0.5)
    for _ in range(5):
        algo.update(batch())
    assert (float(algo.alpha) - before) * direction > 0


def test_sac_log_alpha_carries_over_to_a_new_agent():
    torch.manual_seed(0)
    old = SAC(GaussianActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), cfg(algo="sac"), act_dim=ACT)
    with torch.no_grad():
        old.log_alpha.fill_(math.log(0.037))
    student = GaussianActor(TransformerEncoder(OBS, C, 16, 2, 1, 32, 0.0, "sinusoidal"), ACT, 16, 0)
    new = SAC(student, old.critic, cfg(algo="sac"), critic_target=old.critic_target, log_alpha=old.log_alpha,
              act_dim=ACT)
    assert float(new.alpha) == pytest.approx(0.037)
    assert new.critic is old.critic and new.critic_target is old.critic_target
    assert new.log_alpha.requires_grad and new.log_alpha.is_leaf
    assert not new.actor_opt.state and not new.alpha_opt.state  # optimisers restart
    new.update(batch())
    assert float(new.alpha) != pytest.approx(0.037, abs=1e-9)  # the new agent's alpha is trainable
    assert float(old.alpha) == pytest.approx(0.037)


@pytest.mark.parametrize("gaussian", [False, True])
def test_bc_loss_decreases_on_a_fixed_batch(gaussian):
    torch.manual_seed(0)
    head = GaussianActor if gaussian else DeterministicActor
    teacher = head(LastObsEncoder(OBS), ACT, 32, 2)
    student = head(TransformerEncoder(OBS, C, 32, 2, 1, 64, 0.0, "sinusoidal"), ACT, 32, 0)
    bc = Distiller(student, teacher, lr=3e-3)
    b = batch(seed=3)
    window = torch.cat([b.obs, b.next_obs] * 8)
    mask = torch.ones(window.shape[:2], dtype=torch.bool)
    labels = bc.labels(window, mask)
    expected = torch.tanh(teacher(window, mask)[0]) if gaussian else teacher(window, mask)
    assert torch.allclose(labels[:, :ACT], expected.detach())
    first = float(bc.loss(window, mask, labels).detach())
    for _ in range(150):
        bc.update(window, mask, labels)
    assert float(bc.loss(window, mask, labels).detach()) < 0.1 * first
    assert bc.updates == 150


@pytest.mark.parametrize("gaussian", [False, True])
def test_bc_loss_is_the_formula(gaussian):
    """By hand: the squared gap of the student's action to the teacher's, summed over action
    components and averaged over windows; SAC adds 0.1 times the same for the log-stds."""
    torch.manual_seed(0)
    head = GaussianActor if gaussian else DeterministicActor
    student = head(TransformerEncoder(OBS, C, 16, 2, 1, 32, 0.0, "sinusoidal"), ACT, 16, 0)
    bc = Distiller(student, head(LastObsEncoder(OBS), ACT, 16, 1), lr=1e-3)
    b = batch(seed=4)
    mask = torch.ones(b.obs.shape[:2], dtype=torch.bool)
    labels = torch.randn(len(b.obs), 2 * ACT if gaussian else ACT)
    with torch.no_grad():
        out = student(b.obs, mask)
        if gaussian:
            mean, log_std = out
            expected = (((torch.tanh(mean) - labels[:, :ACT]) ** 2).sum(-1).mean()
                        + 0.1 * ((log_std - labels[:, ACT:]) ** 2).sum(-1).mean())
        else:
            expected = ((out - labels) ** 2).sum(-1).mean()
    assert float(bc.loss(b.obs, mask, labels)) == pytest.approx(float(expected), rel=1e-6)


class _SumCritic(nn.Module):
    """Q1 = Q2 = sum(a), through the interface the actor and BC losses use: ascent on it pushes
    every action component up (a weight, so that an optimiser has a parameter)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, window, mask, action, with_features=False):
        q = action.sum(-1) + 0.0 * self.w
        return ((q, q), (q[:, None], q[:, None])) if with_features else (q, q)

    def action_value(self, window, mask, action, both=True):
        q = action.sum(-1) + 0.0 * self.w
        return (q, q) if both else q


@pytest.mark.parametrize("ascent", [0.0, 1.0])
def test_bc_actor_ascent_moves_the_student_towards_higher_q(ascent):
    torch.manual_seed(0)
    obs_dim, act_dim = 4, 2
    enc = TransformerEncoder(obs_dim, 3, 16, 2, 1, 32, 0.0, "sinusoidal")
    student = DeterministicActor(enc, act_dim, 16, 0)
    teacher = lambda w, m: torch.zeros(len(w), act_dim)  # noqa: E731 - labels are all zero
    distiller = Distiller(student, nn.Identity(), 1e-2, _SumCritic(), ascent)
    window, mask = torch.randn(64, 3, obs_dim), torch.ones(64, 3, dtype=torch.bool)
    labels = teacher(window, mask)
    for _ in range(200):
        distiller.update(window, mask, labels)
    mean_action = float(student(window, mask).detach().mean())
    if ascent == 0.0:
        assert abs(mean_action) < 0.05  # pure imitation of zeros
    else:
        assert mean_action > 0.2  # the Q term pulls actions up against the BC term


class _WindowCritic(nn.Module):
    """A Q of about 0.1 in size that reads the action, the window and its mask."""

    def action_value(self, window, mask, action, both=True):
        q = 0.1 * action.sum(-1) + 0.01 * (window * mask[..., None]).sum((1, 2))
        return (q, q) if both else q


def test_the_bc_ascent_term_is_q_over_its_mean_size():
    """By hand: loss = BC - lambda * mean Q / mean |Q| (TD3+BC's normalisation), Q read on the
    windows with their masks; a Q smaller than 1 is divided by its size, not clamped to 1."""
    torch.manual_seed(0)
    student = DeterministicActor(TransformerEncoder(OBS, C, 16, 2, 1, 32, 0.0, "sinusoidal"), ACT, 16, 0)
    critic = _WindowCritic()
    window, mask = torch.randn(16, C, OBS), torch.rand(16, C) < 0.7
    mask[:, -1] = True
    labels = torch.rand(16, ACT) * 2 - 1
    plain = Distiller(student, nn.Identity(), 1e-3, critic, 0.0).loss(window, mask, labels)
    with torch.no_grad():
        q = critic.action_value(window, mask, student(window, mask), both=False)
    assert 0.01 < float(q.abs().mean()) < 0.5
    expected = plain - 0.5 * q.mean() / q.abs().mean()
    got = Distiller(student, nn.Identity(), 1e-3, critic, 0.5).loss(window, mask, labels)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "lstm"])
def test_action_value_equals_forward_and_leaves_the_encoder_without_gradient(kind):
    """The actor's loss reads Q through ``action_value``: same values as the critic's forward, a
    gradient for the action, none for the critic's encoder (so backward skips it)."""
    from accelerl.config import build_config
    from accelerl.envs import probe_for
    from accelerl.nets.build import build_critic

    torch.manual_seed(0)
    cfg = build_config({"env": "Pendulum-v1", "accelerator": kind, "context": 4, "hidden_size": 16})
    critic = build_critic(cfg, probe_for(cfg))
    window, mask = torch.randn(5, 4, 3), torch.ones(5, 4, dtype=torch.bool)
    action = torch.rand(5, 1, requires_grad=True)
    q1, q2 = critic(window, mask, action)
    v1, v2 = critic.action_value(window, mask, action)
    # (equal up to float rounding: kernels may differ with and without autograd)
    assert torch.allclose(q1, v1, atol=1e-6) and torch.allclose(q2, v2, atol=1e-6)
    assert torch.allclose(critic.action_value(window, mask, action, both=False), q1, atol=1e-6)
    v1.sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.enc1.parameters())


# ------------------------------------------------------------------------------------------------
def _lstm_agent(algo: str, lstm_critic: str = "shared"):
    from accelerl.envs import probe_for
    from accelerl.nets.build import build_accelerator_actor, build_critic

    config = build_config({"env": "Pendulum-v1", "obs_mask": "velocities", "context": 4, "hidden_size": 16,
                           "algo": algo, "policy_delay": 1, "lstm_critic": lstm_critic})
    spec = probe_for(config)
    torch.manual_seed(0)
    crit = build_critic(config, spec)
    return make_algo(algo, build_accelerator_actor(config, spec, crit), crit, config, act_dim=spec.act_dim)


def _lstm_batch() -> Batch:
    g = torch.Generator().manual_seed(5)
    mask = torch.ones(6, 4, dtype=torch.bool)
    obs = torch.randn(6, 5, 2, generator=g)
    return Batch(obs[:, :-1], mask, torch.rand(6, 1, generator=g) * 2 - 1, torch.randn(6, generator=g),
                 torch.zeros(6), obs[:, 1:], mask)


def test_the_lstm_critic_has_one_trunk_that_both_q_losses_train():
    crit = _lstm_agent("td3").critic
    assert crit.enc1 is crit.enc2
    trunk = list(crit.enc1.parameters())
    assert len({id(p) for p in crit.parameters()}) == len(list(crit.parameters()))  # each weight once
    b = _lstm_batch()
    (q1, q2), (f1, f2) = crit(b.obs, b.mask, b.act, with_features=True)
    assert q1.shape == q2.shape == (6,) and f1 is f2 and f1.shape == (6, 16)
    for q in (q1, q2):
        grads = torch.autograd.grad(q.pow(2).mean(), trunk, retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("lstm_critic", ["separate", "shared"])
@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_the_actor_loss_trains_the_actor_and_not_the_critic(algo, lstm_critic):
    agent = _lstm_agent(algo, lstm_critic)
    assert agent.reuse_features == (lstm_critic == "shared") and agent.critic.shared == (lstm_critic == "shared")
    b = _lstm_batch()
    _, feats = agent._critic_update(AdamStep.eager, b)
    critic_before, actor_before = params(agent.critic), params(agent.actor)
    agent._actor_update(AdamStep.eager, b, feats)
    assert same(critic_before, params(agent.critic))
    assert not same(actor_before, params(agent.actor))


def test_a_checkpoint_with_two_lstm_critic_trunks_is_refused():
    """accelerl 0.1 saved an LSTM critic with one LSTM per Q head: loading it into one shared
    trunk would silently keep one of them."""
    from accelerl.errors import CheckpointError

    crit = _lstm_agent("td3").critic
    state = crit.state_dict()
    assert not any(k.startswith("enc2.") for k in state)
    same_twin = {**state, **{"enc2." + k[5:]: v.clone() for k, v in state.items() if k.startswith("enc1.")}}
    crit.load_state_dict(same_twin)  # a shared encoder listed twice (0.1's CNN critic) loads
    other = {**same_twin, **{k: v + 1 for k, v in same_twin.items() if k.startswith("enc2.")}}
    with pytest.raises(CheckpointError) as refused:
        crit.load_state_dict(other)
    assert str(refused.value) == ("this checkpoint's critic has two encoders; this accelerl's LSTM critic shares one "
                                  "trunk between its Q heads (checkpoints of LSTM runs from accelerl 0.1 cannot be "
                                  "loaded)")  # the user's one line says why and what cannot be done


# ------------------------------------------------------------------------------------------------
class _ConstActor(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, window, mask):
        return torch.full((window.shape[0], ACT), self.value)


class _ActionCritic(nn.Module):
    """Q1 = 10 + sum(a), Q2 = Q1 + 1; records the actions it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, window, mask, action):
        self.seen.append(action.detach().clone())
        q1 = 10.0 + action.sum(-1)
        return q1, q1 + 1.0


def _td3_target(target_value: float, policy_noise: float, noise_clip: float, n: int = 256):
    """(TD target, next actions the target critic saw, batch) for a target actor that outputs
    ``target_value`` everywhere; the online actor outputs something else."""
    torch.manual_seed(0)
    algo = TD3(DeterministicActor(LastObsEncoder(OBS), ACT, 16, 1), critic(),
               cfg(policy_noise=policy_noise, noise_clip=noise_clip))
    algo.actor_target, algo.critic_target = _ConstActor(target_value), _ActionCritic()
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(n, C, dtype=torch.bool)
    b = Batch(obs=torch.randn(n, C, OBS, generator=g), mask=mask, act=torch.zeros(n, ACT), rew=torch.randn(n, generator=g),
              term=(torch.rand(n, generator=g) < 0.3).float(), next_obs=torch.randn(n, C, OBS, generator=g),
              next_mask=mask)
    target = algo.td_target(b)
    return target, algo.critic_target.seen[0], b, algo


def test_td3_target_action_comes_from_the_target_actor_with_clipped_noise():
    """Kills: the next action taken from the online actor, no smoothing noise, no noise clip, no
    clamp to the action bounds (the target critic's value depends on the action)."""
    target, next_act, b, algo = _td3_target(0.3, policy_noise=0.0, noise_clip=0.5)
    assert torch.equal(next_act, torch.full_like(next_act, 0.3)), "the target actor's action, noise 0"
    online = algo.actor(b.next_obs, b.next_mask).detach()
    assert not torch.allclose(online, next_act)
    expected = b.rew + 0.9 * (1.0 - b.term) * (10.0 + next_act.sum(-1))  # min(Q1, Q2) = Q1
    assert torch.allclose(target, expected, atol=1e-5)

    # moderate noise: present, unbiased, of the configured scale (clip far away)
    _, noisy, _, _ = _td3_target(0.0, policy_noise=0.2, noise_clip=0.9)
    assert 0.17 < float(noisy.std()) < 0.23 and abs(float(noisy.mean())) < 0.03

    # huge noise: clipped to +-noise_clip around the target action, so the clip shows
    _, clipped, _, _ = _td3_target(0.3, policy_noise=100.0, noise_clip=0.5)
    offsets = (clipped - 0.3).abs()
    assert float(offsets.max()) <= 0.5 + 1e-6 and float((offsets > 0.5 - 1e-6).float().mean()) > 0.95

    # near the bound: target action + clipped noise is clamped into [-1, 1]
    _, bounded, _, _ = _td3_target(0.9, policy_noise=100.0, noise_clip=0.5)
    assert float(bounded.max()) == pytest.approx(1.0) and float(bounded.min()) == pytest.approx(0.4)


@pytest.mark.parametrize("algo_name", ["td3", "sac"])
def test_the_actor_step_climbs_q(algo_name):
    """Against Q = sum(a), actor steps must raise the (deterministic) action; a sign flip of Q in
    the actor loss, or a loss on the wrong Q, lowers it."""
    torch.manual_seed(0)
    actor_cls = GaussianActor if algo_name == "sac" else DeterministicActor
    actor = actor_cls(LastObsEncoder(OBS), ACT, 16, 1)
    algo = make_algo(algo_name, actor, _SumCritic(), cfg(algo=algo_name, init_alpha=0.01, actor_lr=1e-2),
                     act_dim=ACT)
    b = batch(seed=2)
    before = actor.act(b.obs, b.mask).detach()
    for _ in range(20):
        algo._actor_update(AdamStep.eager, b, None)
    after = actor.act(b.obs, b.mask).detach()
    assert bool((after > before).all()) and float((after - before).mean()) > 0.1, (before, after)


def test_td3_exploration_stays_inside_the_action_bounds():
    """Noisy actions are clamped to [-1, 1] (the envs' rescaled bounds): the replay never holds an
    action the env did not take."""
    torch.manual_seed(0)
    algo = TD3(DeterministicActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), cfg(exploration_noise=10.0))
    b = batch()
    actions = torch.cat([algo.explore(b.obs, b.mask) for _ in range(50)])
    assert float(actions.min()) == -1.0 and float(actions.max()) == 1.0


@pytest.mark.parametrize("algo,lstm_critic,encodes", [("td3", "shared", 1), ("td3", "separate", 3),
                                                      ("sac", "shared", 1), ("sac", "separate", 4)])
def test_the_critic_encoder_runs_once_per_update_with_a_shared_lstm_trunk(algo, lstm_critic, encodes):
    """--lstm-critic shared: the actor loss reads Q through the critic step's features (one pass
    of the online critic's trunk per update); separate: each Q head encodes, then again for the
    actor loss (TD3 reads Q1, SAC both)."""
    agent = _lstm_agent(algo, lstm_critic)
    calls = []
    for enc in {id(agent.critic.enc1): agent.critic.enc1, id(agent.critic.enc2): agent.critic.enc2}.values():
        enc.register_forward_hook(lambda *_: calls.append(1))
    out = agent.update(_lstm_batch())  # policy_delay 1: critic and actor step
    assert "actor_loss" in out and len(calls) == encodes


def test_sac_losses_are_the_formulas():
    """The actor loss is mean(alpha * log pi(a|W) - min(Q1, Q2)) on a reparameterised sample, the
    temperature loss -mean(log_alpha * (log pi + target entropy)); update() reports both losses
    and the alpha it used, and counts its updates."""
    torch.manual_seed(0)
    actor = GaussianActor(LastObsEncoder(OBS), ACT, 16, 1)
    algo = SAC(actor, _SumCritic(), cfg(algo="sac", init_alpha=0.3), act_dim=ACT)
    b = batch(seed=4)
    torch.manual_seed(5)
    loss, logp = algo._actor_loss(None, b, None)
    torch.manual_seed(5)
    action, expected_logp = actor(b.obs, b.mask, sample=True)
    assert torch.allclose(loss, (0.3 * expected_logp - action.sum(-1)).mean(), atol=1e-6)
    assert torch.allclose(logp, expected_logp.detach()) and not logp.requires_grad
    alpha_loss, _ = algo._alpha_loss(None, logp)
    assert torch.allclose(alpha_loss, -(math.log(0.3) * (logp - ACT)).mean(), atol=1e-6)
    for i in range(1, 4):
        alpha = float(algo.alpha)
        out = algo.update(b)
        assert set(out) == {"critic_loss", "actor_loss", "alpha"} and float(out["alpha"]) == pytest.approx(alpha)
        assert algo.updates == i


def test_a_loaded_td3_agent_keeps_its_update_count_and_policy_delay():
    torch.manual_seed(0)
    make = lambda: TD3(DeterministicActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), cfg(policy_delay=2))  # noqa: E731
    algo, b = make(), batch()
    for _ in range(3):
        algo.update(b)
    loaded = make()
    loaded.load_state_dict(algo.state_dict())
    assert loaded.updates == 3
    assert "actor_loss" in loaded.update(b)  # the 4th update is a delayed actor step, as it would have been


def test_the_critic_loss_is_both_heads_squared_errors():
    torch.manual_seed(0)
    algo = TD3(DeterministicActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), cfg())
    b, target = batch(), torch.tensor([1.0, -2.0, 0.5, 3.0])
    loss, feats = algo._critic_loss(None, b, target)
    q1, q2 = algo.critic(b.obs, b.mask, b.act)
    assert torch.allclose(loss, ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean(), atol=1e-6)
    assert all(not f.requires_grad for f in feats)


def _running_compile_step(calls: list):
    """A stand-in for steps.compile_step that records (function name, device, prepare) and runs
    the step uncompiled, calling ``prepare`` once first as the real one does."""

    def fake_compile_step(fn, device, prepare=None):
        calls.append((getattr(fn, "func", fn).__name__, device, prepare))

        def run(*args):
            if prepare is not None and not getattr(run, "prepared", False):
                prepare()
                run.prepared = True
            return fn(*args)

        return run

    return fake_compile_step


@pytest.mark.parametrize("algo_name", ["td3", "sac"])
def test_compile_on_routes_every_step_through_the_functional_path(algo_name, monkeypatch):
    """--compile on hands each step, with its parameters substituted (AdamStep.functional), to
    compile_step (here a stand-in that only runs it, so this stays fast; tests/test_compile.py
    compiles for real) after preparing the optimiser state; the result equals the eager agent's.
    --compile off never reaches compile_step."""
    import accelerl.algos.base as base

    compiled_calls = []
    monkeypatch.setattr(base, "compile_step", _running_compile_step(compiled_calls))
    actor_cls = GaussianActor if algo_name == "sac" else DeterministicActor

    def agent(mode: str):
        torch.manual_seed(0)
        config = cfg(algo=algo_name, compile=mode, policy_delay=1, policy_noise=0.0)
        return make_algo(algo_name, actor_cls(LastObsEncoder(OBS), ACT, 16, 1), critic(), config, act_dim=ACT)

    eager, functional = agent("off"), agent("on")
    assert not eager.compiled and functional.compiled
    for _ in range(3):
        torch.manual_seed(1)
        eager.update(batch())
        torch.manual_seed(1)
        functional.update(batch())
    assert {name for name, _, _ in compiled_calls} == {"_critic_update", "_actor_update"}
    assert all(device == functional.device and prepare == functional._prepare_compiled
               for _, device, prepare in compiled_calls)
    assert not eager._steps
    for module in ("actor", "critic", "critic_target"):
        for p, q in zip(getattr(eager, module).parameters(), getattr(functional, module).parameters(), strict=True):
            assert torch.allclose(p, q, atol=1e-5), module
    if algo_name == "sac":  # the temperature's step, too
        assert float(functional.alpha) != pytest.approx(0.5, abs=1e-6)
        assert float(functional.alpha) == pytest.approx(float(eager.alpha), abs=1e-6)


def test_a_sac_checkpoint_resumes_the_same_updates():
    """state_dict/load_state_dict carry everything an update reads: networks, targets, all three
    optimisers, log_alpha and the count; the loaded agent's next updates equal the original's."""
    def make():
        return SAC(GaussianActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), cfg(algo="sac", alpha_lr=0.01),
                   act_dim=ACT)

    torch.manual_seed(0)
    algo, b = make(), batch()
    for _ in range(2):
        algo.update(b)
    torch.manual_seed(9)  # other initial weights
    loaded = make()
    loaded.load_state_dict(copy.deepcopy(algo.state_dict()))  # (a checkpoint file holds copies)
    assert loaded.updates == 2 and float(loaded.alpha) == pytest.approx(float(algo.alpha))
    for agent in (algo, loaded):
        torch.manual_seed(3)
        for _ in range(2):
            agent.update(b)
    assert float(loaded.alpha) == pytest.approx(float(algo.alpha), abs=1e-7)
    for module in ("actor", "critic", "critic_target"):
        assert same(params(getattr(algo, module)), params(getattr(loaded, module))), module


def test_compile_auto_means_on_cuda_only():
    from accelerl.algos.steps import resolve_compile

    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # (a device object needs no GPU)
    assert [resolve_compile(m, cpu) for m in ("auto", "on", "off")] == [False, True, False]
    assert [resolve_compile(m, cuda) for m in ("auto", "on", "off")] == [True, True, False]


def test_each_optimiser_uses_its_configured_learning_rate():
    config = cfg(algo="sac", actor_lr=1e-4, critic_lr=2e-4, alpha_lr=5e-4)
    algo = SAC(GaussianActor(LastObsEncoder(OBS), ACT, 16, 1), critic(), config, act_dim=ACT)
    assert [o.param_groups[0]["lr"] for o in (algo.actor_opt, algo.critic_opt, algo.alpha_opt)] == [1e-4, 2e-4, 5e-4]


@pytest.mark.parametrize("gaussian", [False, True])
def test_compiled_distillation_routes_both_steps_through_the_functional_path(gaussian, monkeypatch):
    """The Distiller's BC and critic-distillation steps under --compile on: each handed to
    compile_step with its parameters substituted, on the student's device, after its own optimiser
    state is prepared; the result equals the eager Distiller's."""
    from test_compile import _comparable  # the key half of the attention bias: Adam on float noise

    import accelerl.algos.bc as bc
    from accelerl.nets import build_critic, build_transformer_critic

    calls, functional_steps = [], []
    monkeypatch.setattr(bc, "compile_step", _running_compile_step(calls))
    functional_step = AdamStep.functional
    monkeypatch.setattr(AdamStep, "functional", lambda *a: functional_steps.append(a[1]) or functional_step(*a))
    head = GaussianActor if gaussian else DeterministicActor
    spec = EnvSpec("test", OBS, ACT, None, None)
    config = cfg(algo="sac" if gaussian else "td3", critic="transformer", d_model=16, d_ff=32, dropout=0.0)

    def distiller(compiled: bool) -> Distiller:
        torch.manual_seed(0)
        student = head(TransformerEncoder(OBS, C, 16, 2, 1, 32, 0.0, "sinusoidal"), ACT, 16, 0)
        return Distiller(student, head(LastObsEncoder(OBS), ACT, 16, 1), 1e-3, build_critic(config, spec),
                         student_critic=build_transformer_critic(config, spec), compiled=compiled)

    eager, functional = distiller(False), distiller(True)
    b = batch(seed=5)
    mask = torch.ones(b.obs.shape[:2], dtype=torch.bool)
    labels = eager.labels(b.obs, mask)
    for agent in (eager, functional):
        for _ in range(3):
            agent.update(b.obs, mask, labels)
            agent.update_critic(b.obs, mask, labels, b.act)
    assert [(name, prepare) for name, _, prepare in calls] == [
        ("_bc_update", functional.step.prepare), ("_critic_bc_update", functional.critic_step.prepare)]
    assert all(device == torch.device("cpu") for _, device, _ in calls)
    assert functional_steps == [functional._loss, functional._critic_loss] * 3  # parameters substituted
    assert Distiller(functional.student, functional.teacher, 1e-3, compiled=True)._update_critic is None
    assert functional.opt.state and functional.critic_opt.state  # the optimisers stepped
    for net in ("student", "student_critic"):
        pairs = zip(getattr(eager, net).named_parameters(), getattr(functional, net).parameters(), strict=True)
        assert all(torch.allclose(_comparable(name, p), _comparable(name, q), atol=1e-6) for (name, p), q in pairs), net
