"""--critic transformer: a transformer critic distilled toward the accelerator's in stage 1 and
trained by TD in stage 2 (or from step 0 in scratch mode)."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY, read_metrics, train_ok
from test_resume import assert_same_run

from accelerl import checkpoint
from accelerl.algos import Distiller
from accelerl.config import build_config
from accelerl.envs import EnvSpec
from accelerl.nets import build_accelerator_actor, build_critic, build_transformer_actor, build_transformer_critic
from accelerl.replay import Batch

SPEC = EnvSpec("test", 5, 2, None, None)


def _distilling(algo: str = "td3", batch: int = 256):
    """A transformer critic distilled toward a small accelerator critic, and a batch of windows,
    masks and stored (behaviour) actions."""
    torch.manual_seed(0)
    cfg = build_config({"env": "Pendulum-v1", "algo": algo, "critic": "transformer", "hidden_size": 32,
                        "d_model": 32, "d_ff": 64, "dropout": 0.0})
    teacher_critic, student_critic = build_critic(cfg, SPEC), build_transformer_critic(cfg, SPEC)
    distiller = Distiller(build_transformer_actor(cfg, SPEC), build_accelerator_actor(cfg, SPEC), 1e-3,
                          teacher_critic, student_critic=student_critic)
    g = torch.Generator().manual_seed(1)
    window, mask = torch.randn(batch, 3, 5, generator=g), torch.ones(batch, 3, dtype=torch.bool)
    behaviour = torch.rand(batch, 2, generator=g) * 2 - 1
    return distiller, teacher_critic, student_critic, window, mask, behaviour


def test_distillation_pulls_the_transformer_critic_onto_the_accelerator_critic():
    distiller, teacher_critic, student_critic, window, mask, behaviour = _distilling()
    assert student_critic.enc1 is student_critic.enc2 and student_critic.enc1.context == 3
    labels = distiller.labels(window, mask)
    with torch.no_grad():
        teacher_critic.q1[-1].bias.fill_(5.0)  # a teacher far from the student's initial outputs
        teacher_critic.q2[-1].bias.fill_(-3.0)
    before = float(distiller.critic_loss(window, mask, labels).detach())
    teacher_before = [p.clone() for p in teacher_critic.parameters()]
    for _ in range(300):
        distiller.update_critic(window, mask, labels, behaviour)
    assert float(distiller.critic_loss(window, mask, labels).detach()) < 0.02 * before
    assert float(distiller.critic_loss(window, mask, behaviour).detach()) < 0.02 * before
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, teacher_critic.parameters(), strict=True))


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_critic_distillation_is_both_heads_squared_error_on_the_teachers_and_the_stored_actions(algo):
    """The loss, by hand: sum over the two Q heads of the mean squared gap to the teacher critic,
    on the teacher's own actions (SAC: tanh of its mean, not its log-std) and the stored ones."""
    distiller, teacher_critic, student_critic, window, mask, behaviour = _distilling(algo, batch=64)
    labels = distiller.labels(window, mask)
    assert labels.shape == (64, 4 if algo == "sac" else 2)

    def by_hand(w, m, a):
        with torch.no_grad():
            (t1, t2), (s1, s2) = teacher_critic(w, m, a), student_critic(w, m, a)
        return float(((s1 - t1) ** 2).mean() + ((s2 - t2) ** 2).mean())

    teacher_actions = labels[:, :2]
    assert float(distiller.critic_loss(window, mask, behaviour)) == pytest.approx(by_hand(window, mask, behaviour))
    both = by_hand(torch.cat([window, window]), torch.cat([mask, mask]), torch.cat([teacher_actions, behaviour]))
    assert float(distiller.update_critic(window, mask, labels, behaviour)) == pytest.approx(both, rel=1e-5)
    alone = by_hand(window, mask, teacher_actions)  # after one step: without stored actions, the teacher's alone
    assert float(distiller.update_critic(window, mask, labels)) == pytest.approx(alone, rel=1e-5)


def test_a_distillers_state_carries_its_count_and_both_optimisers_into_a_fresh_one():
    """A resumed run rebuilds the Distiller and loads its state: the next BC and critic steps must
    be the ones the uninterrupted Distiller takes (Adam's moments restored, not restarted)."""
    import copy

    before, _, _, window, mask, behaviour = _distilling(batch=32)
    labels = before.labels(window, mask)
    for _ in range(3):
        before.update(window, mask, labels)
        before.update_critic(window, mask, labels, behaviour)
    after, _, _, _, _, _ = _distilling(batch=32)
    after.student.load_state_dict(before.student.state_dict())
    after.student_critic.load_state_dict(before.student_critic.state_dict())
    after.load_state_dict(copy.deepcopy(before.state_dict()))
    assert after.updates == 3
    for distiller in (before, after):
        distiller.update(window, mask, labels)
        distiller.update_critic(window, mask, labels, behaviour)
    for net in ("student", "student_critic"):
        pairs = zip(getattr(before, net).parameters(), getattr(after, net).parameters(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs), net


def test_the_actor_loss_reads_the_transformer_critic_with_the_windows_mask():
    """Windows at an episode's start are padded: the Q the actor climbs must be the critic's Q on
    the same masked windows (a mask dropped would let padding attend)."""
    from accelerl.algos import make_algo

    torch.manual_seed(0)
    cfg = build_config({"env": "Pendulum-v1", "critic": "transformer", "mode": "scratch", "hidden_size": 32,
                        "d_model": 32, "d_ff": 64, "dropout": 0.0})
    critic = build_transformer_critic(cfg, SPEC)
    agent = make_algo("td3", build_transformer_actor(cfg, SPEC), critic, cfg, act_dim=2)
    g = torch.Generator().manual_seed(2)
    window = torch.randn(6, 3, 5, generator=g)
    mask = torch.tensor([[False, False, True], [False, True, True], [True, True, True]] * 2)
    action = torch.rand(6, 2, generator=g) * 2 - 1
    batch = Batch(obs=window, mask=mask, act=action, rew=torch.zeros(6), term=torch.zeros(6), next_obs=window,
                  next_mask=mask)
    q1, q2 = agent._actor_q(batch, None, action, both=True)
    e1, e2 = critic(window, mask, action)
    assert torch.allclose(q1, e1, atol=1e-6) and torch.allclose(q2, e2, atol=1e-6)
    target = torch.ones(6)  # and the critic's own loss reads the same masked windows
    loss, _ = agent._critic_loss(None, batch, target)
    assert torch.allclose(loss, ((e1 - target) ** 2).mean() + ((e2 - target) ** 2).mean(), atol=1e-6)


RUN = ["--env", "Pendulum-v1", "--critic", "transformer", "--total-steps", "600", "--learning-starts", "200",
       "--stage1-steps", "300", "--eval-every", "150", "--eval-episodes", "1", "--checkpoint-every", "150",
       "--bc-every", "100", "--bc-updates", "5", *TINY]


def test_accelerate_with_a_transformer_critic_distils_then_fine_tunes_it_and_resumes_exactly(tmp_path):
    straight = tmp_path / "straight"
    train_ok([*RUN, "--run-dir", straight])
    rows = read_metrics(straight)
    stage1 = [r for r in rows if r["stage"] == "stage1" and r["critic_bc_loss"]]
    assert stage1 and all(float(r["critic_bc_loss"]) >= 0 for r in stage1)
    assert not any(r["critic_bc_loss"] for r in rows if r["stage"] == "stage2")
    state = checkpoint.load(straight / "checkpoints" / "latest.pt")
    assert state["stage"] == "stage2"
    assert state["rl"]["critic"].keys() == state["nets"]["transformer_critic"].keys()  # stage 2 trains it
    assert any("blocks" in k for k in state["rl"]["critic"])
    # A run that ended in stage 2 and is resumed to the full budget equals the straight run.
    short = tmp_path / "short"
    args = list(RUN)
    args[args.index("--total-steps") + 1] = "450"
    train_ok([*args, "--run-dir", short])
    train_ok(["--resume", short, "--total-steps", "600"])
    assert_same_run(short, straight)


def test_scratch_with_a_transformer_critic(tmp_path):
    run = tmp_path / "scratch"
    args = [a for a in RUN if a not in ("--stage1-steps", "300")]
    train_ok([*args, "--mode", "scratch", "--total-steps", "300", "--run-dir", run])
    nets = checkpoint.load(run / "checkpoints" / "latest.pt")["nets"]
    assert any("blocks" in k for k in nets["critic"])
