"""The hand-over to stage 2 inside the Trainer (no training needed)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY

from accelerl.algos import SAC, TD3
from accelerl.config import build_config
from accelerl.stages import Trainer


def tiny_cfg(algo: str, tmp_path):
    flags = dict(zip((f[2:].replace("-", "_") for f in TINY[::2]), TINY[1::2], strict=True))
    values = {k: (v if k == "device" else int(v)) for k, v in flags.items()}
    return build_config({**values, "env": "Pendulum-v1", "algo": algo, "total_steps": 1000,
                         "learning_starts": 100, "stage1_steps": "500", "run_dir": str(tmp_path)})


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_enter_stage2_keeps_critic_targets_and_alpha(algo, tmp_path):
    trainer = Trainer(tiny_cfg(algo, tmp_path), tmp_path)
    try:
        old = trainer.rl
        assert old.actor is trainer.accelerator
        if algo == "sac":
            with torch.no_grad():
                old.log_alpha.fill_(math.log(0.123))
        critic, critic_target = old.critic, old.critic_target
        trainer._enter_stage2()
        new = trainer.rl
        assert isinstance(new, TD3 if algo == "td3" else SAC) and new is not old
        assert trainer.stage == "stage2" and trainer.acting_policy == "transformer"
        assert new.actor is trainer.transformer
        assert new.critic is critic and new.critic_target is critic_target
        assert not new.actor_opt.state and not new.critic_opt.state  # optimisers restart
        if algo == "sac":
            assert float(new.alpha) == pytest.approx(0.123)
            assert new.target_entropy == -trainer.act_dim
        else:  # a fresh target of the transformer, not of the accelerator
            for p, q in zip(new.actor_target.parameters(), trainer.transformer.parameters(), strict=True):
                assert torch.equal(p, q)
        assert trainer.buffer.capacity >= 500 and trainer.buffer.capacity < 2000  # the small stage-2 buffer
        assert trainer._stage1_buffer.capacity >= 2000
    finally:
        trainer.envs.close()
        trainer.eval_env.close()


def test_a_checkpoint_keeps_the_switch_rule_mid_decision(tmp_path):
    """Resume in the middle of an automatic switch decision: the streak, the BC-loss history and
    the random-policy baseline come back, so the resumed run switches when the original would."""
    cfg = tiny_cfg("td3", tmp_path)
    cfg.stage1_steps = "auto"
    cfg.switch_max_steps = 900
    trainer = Trainer(cfg, tmp_path)
    trainer.logger = type("Quiet", (), {"message": lambda *a: None})()
    obs, _ = trainer.envs.reset(seed=0)
    trainer.tracker.reset(torch.as_tensor(obs, dtype=torch.float32))
    rule = trainer.switch_rule
    rule.random_return = -1200.0
    assert not rule.observe(300, -300.0, -350.0, 0.5)[0]  # close (94%), BC loss history too short
    assert rule.streak == 1 and rule.bc_history == [0.5]
    trainer.save()
    from accelerl import checkpoint

    state = checkpoint.load(tmp_path / "checkpoints" / "latest.pt")
    resumed = Trainer(cfg, tmp_path)
    resumed._load_state(state)
    assert resumed.switch_rule.state_dict() == rule.state_dict()
    assert resumed.switch_rule.cap == 900
    for t in (trainer, resumed):
        t.envs.close()
        t.eval_env.close()
