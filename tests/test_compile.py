"""--compile: each update traced as one graph (fullgraph) computes what the eager update does.

The tests trace with the ``aot_eager`` backend: the same Dynamo capture, functionalisation and
autograd graph as inductor, without minutes of C++ kernel builds on 2 cores (inductor's own
kernels are PyTorch's to test; one slow test runs them)."""

from __future__ import annotations

import copy

import pytest
import torch

import accelerl.algos.steps as steps
from accelerl.algos import Distiller, make_algo
from accelerl.config import build_config
from accelerl.envs import probe_for
from accelerl.errors import ConfigError
from accelerl.nets import build_accelerator_actor, build_critic, build_transformer_actor
from accelerl.replay import Batch

B = 8


@pytest.fixture(autouse=True)
def fast_backend(monkeypatch):
    monkeypatch.setattr(steps, "COMPILE_BACKEND", "aot_eager")


def _config(kind: str, algo: str, compile_mode: str):
    over = {"env": "Pendulum-v1", "algo": algo, "hidden_size": 32, "hidden_layers": 2, "d_model": 32, "d_ff": 64,
            "dropout": 0.0, "policy_noise": 0.0, "compile": compile_mode, "actor_lr": 1e-3, "critic_lr": 1e-3}
    if kind.startswith("lstm"):
        over.update(obs_mask="velocities", context=4, lstm_critic="shared" if kind == "lstm-shared" else "separate")
    if kind == "gtrxl":
        over.update(transformer="gtrxl", n_layers=2)
    if kind == "cnn":
        over.update(env="Hopper-v5", pixels="rgb", image_size=32, augment="none", frame_stack=2, context=2)
    return build_config(over)


def _batches(spec, context: int, n: int, pixels: bool) -> list[Batch]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        obs = torch.rand(B, context + 1, spec.obs_dim, generator=g) * (255.0 if pixels else 2.0)
        mask = torch.ones(B, context, dtype=torch.bool)
        mask[: B // 2, 0] = False  # some windows start mid-way (episode starts)
        out.append(Batch(obs[:, :-1], mask, torch.rand(B, spec.act_dim, generator=g) * 2 - 1,
                         torch.randn(B, generator=g), (torch.rand(B, generator=g) < 0.3).float(), obs[:, 1:],
                         torch.ones(B, context, dtype=torch.bool)))
    return out


def _agent(kind: str, algo: str, compile_mode: str, device: str = "cpu"):
    cfg = _config(kind, algo, compile_mode)
    spec = probe_for(cfg)
    torch.manual_seed(0)
    critic = build_critic(cfg, spec).to(device)
    actor = (build_transformer_actor(cfg, spec) if kind in ("transformer", "gtrxl")
             else build_accelerator_actor(cfg, spec, critic)).to(device)
    return make_algo(algo, actor, critic, cfg, act_dim=spec.act_dim), spec, cfg


def _comparable(name: str, value: torch.Tensor) -> torch.Tensor:
    """The key half of an attention layer's kv bias has an exactly zero gradient (softmax ignores a
    constant added to every score), so Adam moves it by float noise, differently in each graph."""
    return value[value.shape[0] // 2:] if name.endswith("kv.bias") else value


def _weights(agent) -> dict[str, torch.Tensor]:
    nets = {"actor": agent.actor, "critic": agent.critic, "critic_target": agent.critic_target}
    if hasattr(agent, "actor_target"):
        nets["actor_target"] = agent.actor_target
    out = {f"{n}.{k}": _comparable(k, v.detach().clone()) for n, m in nets.items() for k, v in m.state_dict().items()}
    if hasattr(agent, "log_alpha"):
        out["log_alpha"] = agent.log_alpha.detach().clone()
    return out


def _to(batch: Batch, device: str) -> Batch:
    return Batch(*(getattr(batch, f).to(device) for f in ("obs", "mask", "act", "rew", "term", "next_obs", "next_mask")))


@pytest.mark.parametrize("algo", ["td3", "sac"])
@pytest.mark.parametrize("kind", ["mlp", "lstm", "lstm-shared", "transformer", "cnn"])
def test_compiled_update_equals_eager(kind, algo, device="cpu"):
    eager, spec, cfg = _agent(kind, algo, "off", device)
    compiled, _, _ = _agent(kind, algo, "on", device)
    assert not eager.compiled and compiled.compiled
    start = _weights(eager)
    assert all(torch.equal(v, _weights(compiled)[k]) for k, v in start.items())
    for batch in (_to(b, device) for b in _batches(spec, cfg.window_len, 4, kind == "cnn")):
        # SAC samples actions: the same noise on both sides, whatever the graph does with RNG
        torch.manual_seed(7)
        out_e = eager.update(batch)
        torch.manual_seed(7)
        out_c = compiled.update(batch)
        assert out_e.keys() == out_c.keys()
        for name in out_e:
            assert torch.allclose(out_e[name], out_c[name], rtol=1e-4, atol=1e-5), name
    moved = 0
    for key, value in _weights(eager).items():
        assert torch.allclose(value, _weights(compiled)[key], rtol=1e-4, atol=1e-5), key
        moved += not torch.equal(value, start[key])
    assert moved > 0
    # the optimiser state is PyTorch's Adam layout either way (a checkpoint resumes under both)
    se, sc = eager.critic_opt.state_dict(), compiled.critic_opt.state_dict()
    assert se["state"].keys() == sc["state"].keys()
    for idx, state in se["state"].items():
        assert torch.allclose(state["exp_avg_sq"], sc["state"][idx]["exp_avg_sq"], rtol=1e-4, atol=1e-7)
        assert float(state["step"]) == float(sc["state"][idx]["step"]) == 4.0


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_compiled_bc_and_critic_distillation_equal_eager(algo):
    cfg = _config("mlp", algo, "off")
    spec = probe_for(cfg)
    torch.manual_seed(0)
    teacher_critic = build_critic(cfg, spec)
    teacher = build_accelerator_actor(cfg, spec, teacher_critic)
    from accelerl.nets import build_transformer_critic

    students = []
    for compiled in (False, True):
        torch.manual_seed(1)
        student, student_critic = build_transformer_actor(cfg, spec), build_transformer_critic(cfg, spec)
        students.append((Distiller(student, teacher, 1e-2, teacher_critic, actor_ascent=0.5,
                                   student_critic=student_critic, compiled=compiled), student, student_critic))
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        window, mask = torch.randn(B, cfg.context_len, spec.obs_dim, generator=g), torch.ones(B, cfg.context_len,
                                                                                             dtype=torch.bool)
        labels = students[0][0].labels(window, mask)
        behaviour = torch.rand(B, spec.act_dim, generator=g) * 2 - 1
        losses = [(d.update(window, mask, labels), d.update_critic(window, mask, labels, behaviour))
                  for d, _, _ in students]
        assert torch.allclose(losses[0][0], losses[1][0], rtol=1e-3, atol=1e-5)
        assert torch.allclose(losses[0][1], losses[1][1], rtol=1e-3, atol=1e-5)
    for net_e, net_c in ((students[0][1], students[1][1]), (students[0][2], students[1][2])):
        for (k, a), b in zip(net_e.state_dict().items(), net_c.state_dict().values(), strict=True):
            assert torch.allclose(_comparable(k, a), _comparable(k, b), rtol=1e-4, atol=1e-5), k


def test_a_graph_break_is_one_config_error(monkeypatch):
    """fullgraph=True: a step that cannot be one graph stops at its first call with one line."""
    agent, spec, cfg = _agent("mlp", "td3", "on")
    original = agent.td_target

    def breaking(batch):
        torch._dynamo.graph_break()
        return original(batch)

    monkeypatch.setattr(agent, "td_target", breaking)
    with pytest.raises(ConfigError, match=r"^--compile on: .* cannot be compiled .*; use --compile off$"):
        agent.update(_batches(spec, cfg.window_len, 1, False)[0])


def test_compile_auto_means_eager_on_cpu():
    agent, _, _ = _agent("mlp", "td3", "auto")
    assert not agent.compiled
    assert steps.resolve_compile("auto", torch.device("cuda")) and not steps.resolve_compile("off", torch.device("cuda"))


def test_a_resumed_optimizer_state_feeds_the_compiled_step():
    """A checkpoint's Adam state (written eagerly) continues under --compile on exactly as eagerly."""
    eager, spec, cfg = _agent("mlp", "td3", "off")
    batches = _batches(spec, cfg.window_len, 4, False)
    for b in batches[:2]:
        eager.update(b)
    state = copy.deepcopy(eager.state_dict())
    compiled, _, _ = _agent("mlp", "td3", "on")
    compiled.load_state_dict(state)
    for b in batches[2:]:
        eager.update(b)
        compiled.update(b)
    for key, value in _weights(eager).items():
        assert torch.allclose(value, _weights(compiled)[key], rtol=1e-4, atol=1e-5), key


def test_compiled_gtrxl_update_equals_eager():
    """GTrXL's gated blocks through the compiled path (TD3; SAC differs only in the heads, which
    the transformer rows above cover for both algorithms)."""
    test_compiled_update_equals_eager("gtrxl", "td3")


@pytest.mark.slow
def test_inductor_compiled_td3_equals_eager(monkeypatch):
    """The real kernels (inductor: minutes of C++ builds on 2 cores, so marked slow)."""
    monkeypatch.setattr(steps, "COMPILE_BACKEND", "inductor")
    test_compiled_update_equals_eager("mlp", "td3")


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_compiled_acting_equals_eager(kind):
    """The acting forward pass for N envs is one compiled graph too (TD3 with noise 0: the
    deterministic action of the actor in eval mode)."""
    from dataclasses import replace

    eager, spec, cfg = _agent(kind, "td3", "off")
    compiled, _, _ = _agent(kind, "td3", "on")
    for agent in (eager, compiled):
        agent.cfg = replace(agent.cfg, exploration_noise=0.0)
    window = torch.randn(5, cfg.window_len, spec.obs_dim)
    mask = torch.ones(5, cfg.window_len, dtype=torch.bool)
    with torch.inference_mode():
        a_eager, a_compiled = eager.explore(window, mask), compiled.explore(window, mask)
    assert "explore" in compiled._steps and compiled.actor.training  # compiled, and train mode restored
    assert torch.allclose(a_eager, a_compiled, atol=1e-6)


def test_a_compiled_run_goes_through_both_stages(tmp_path, monkeypatch):
    """accelerl train --compile on end to end: compiled acting, RL and BC steps (SAC's sampling
    and temperature, the transformer critic's distillation), the switch (a new agent, compiled
    afresh), checkpoints and the summary. One run: each step's equality with eager, for TD3 and
    SAC and every network kind, is checked above (through AOTAutograd); this is about the steps
    working together, so Dynamo's capture (one graph per step, fullgraph) is enough here and
    AOTAutograd's half of the compile time (8 graphs) is saved."""
    import json

    from conftest import PENDULUM_SHORT

    from accelerl import cli

    monkeypatch.setattr(steps, "COMPILE_BACKEND", "eager")
    run = tmp_path / "run"
    extra = ["--algo", "sac", "--critic", "transformer"]
    assert cli.main(["train", *PENDULUM_SHORT, *extra, "--compile", "on", "--run-dir", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 600 and summary["switch_step"] == 300 and summary["bc_updates"] > 0
    assert all(v == v for v in summary["final_return"].values())  # finite, not NaN
