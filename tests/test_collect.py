"""The data path with real gymnasium envs, in process: what the training envs receive, what the
replay stores, which policy acts in which stage, evaluation seeds, and asymmetric action bounds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import close_envs
from conftest import tiny_config as config

from accelerl.algos.base import evaluating
from accelerl.envs import make_single_env
from accelerl.evaluation import eval_seeds
from accelerl.policy import Policy
from accelerl.stages import Trainer


def spy_actions(trainer: Trainer) -> list[np.ndarray]:
    """Records every action array the training envs are stepped with."""
    sent: list[np.ndarray] = []
    envs = trainer.collector.envs
    original = envs.step

    def step(action):
        sent.append(np.array(action, copy=True))
        return original(action)

    envs.step = step
    return sent


def spy_on_distillation(monkeypatch, distiller, copy: bool = False) -> tuple[list, list, list]:
    """Records the arguments of every BC step (window, mask, labels), of every critic
    distillation step (window, mask, labels, behaviour), and every BC loss returned. ``copy``
    records clones, for a caller that refills the tensors it passed; without it the records are
    the tensors themselves (to check which are shared)."""
    seen, seen_critic, losses = [], [], []
    real_update, real_update_critic = distiller.update, distiller.update_critic
    keep = (lambda t: t.clone()) if copy else (lambda t: t)

    def update(window, mask, labels):
        seen.append((keep(window), keep(mask), keep(labels)))
        losses.append(real_update(window, mask, labels))
        return losses[-1]

    def update_critic(window, mask, labels, behaviour=None):
        seen_critic.append((keep(window), keep(mask), keep(labels), behaviour))
        return real_update_critic(window, mask, labels, behaviour)

    monkeypatch.setattr(distiller, "update", update)
    monkeypatch.setattr(distiller, "update_critic", update_critic)
    return seen, seen_critic, losses


def env_rows(buffer, env: int) -> dict[str, np.ndarray]:
    """Env ``env``'s rows in the order written (the ring has not wrapped)."""
    n = int(buffer.size[env])
    assert n < buffer.rows, "the test needs a ring that has not wrapped"
    return {name: getattr(buffer, name)[:n, env].cpu().numpy()
            for name in ("obs", "act", "rew", "term", "trunc", "is_transition", "ep_step")}


# ------------------------------------------------------------------------------------------------
def test_a_real_vector_env_lands_in_the_replay_exactly(tmp_path):
    """Two Hopper envs under random actions end episodes at different steps; every stored
    observation (final observations from ``info['final_obs']`` included), action, reward and flag
    must match a replay of the stored actions in a fresh env on the same seed."""
    cfg = config(tmp_path, env="Hopper-v5", num_envs=2, learning_starts=1000, buffer_size=2000)
    trainer = Trainer(cfg, tmp_path)
    try:
        trainer.collector.reset()
        for _ in range(150):
            trainer._collect()
        buffer = trainer.buffer
        ends = []
        for e in range(2):
            rows = env_rows(buffer, e)
            replica = make_single_env(trainer.spec)
            obs, _ = replica.reset(seed=cfg.seed * 1000 + e)
            i, episode_ends = 0, []
            while i < len(rows["obs"]):
                assert rows["is_transition"][i]
                np.testing.assert_array_equal(rows["obs"][i], obs.astype(np.float32))
                obs, rew, term, trunc, _ = replica.step(rows["act"][i])
                assert rows["rew"][i] == np.float32(rew) and rows["term"][i] == term and rows["trunc"][i] == trunc
                i += 1
                if term or trunc:  # the final row holds the true final observation, then a new episode
                    if i == len(rows["obs"]):
                        break
                    assert not rows["is_transition"][i] and rows["ep_step"][i] == rows["ep_step"][i - 1] + 1
                    np.testing.assert_array_equal(rows["obs"][i], obs.astype(np.float32))
                    episode_ends.append(i)
                    obs, _ = replica.reset()  # the vector env's same-step autoreset (no seed)
                    i += 1
                    assert i == len(rows["obs"]) or rows["ep_step"][i] == 0
            replica.close()
            ends.append(episode_ends)
        assert len(ends[0]) >= 2 and len(ends[1]) >= 2 and ends[0] != ends[1], ends
        assert buffer.num_transitions == int(buffer.is_transition.sum()) - 2  # every row but the newest has its next
    finally:
        close_envs(trainer)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_stage2_explores_around_the_transformer(algo, tmp_path):
    """Stage 2 acts with the transformer plus exploration: for TD3 the action sent to the envs is
    the deterministic transformer action plus Gaussian noise of --exploration-noise; for SAC a
    sample of its squashed Gaussian (the reference code acted deterministically in stage 2)."""
    torch.manual_seed(0)
    trainer = Trainer(config(tmp_path, algo=algo, num_envs=8, exploration_noise=0.2), tmp_path)
    try:
        trainer.collector.reset()
        trainer._enter_stage2()
        sent = spy_actions(trainer)
        transformer = trainer.transformer
        offsets = []
        for _ in range(25):
            window, mask = trainer.tracker.window()
            with torch.no_grad(), evaluating(transformer):
                if algo == "td3":
                    centre, scale = transformer(window, mask), None
                else:
                    centre, log_std = transformer(window, mask)
                    scale = log_std.exp()
            trainer._collect()
            action = torch.as_tensor(sent[-1])
            inside = action.abs() < 0.999  # clamped or saturated entries carry no noise estimate
            if algo == "td3":
                offsets.append((action - centre)[inside])
            else:
                offsets.append(((torch.atanh(action) - centre) / scale)[inside])
        z = torch.cat(offsets)
        assert len(z) > 150
        expected_std = 0.2 if algo == "td3" else 1.0  # TD3: the noise itself; SAC: standardised
        assert abs(float(z.std()) - expected_std) < 0.15 * expected_std, float(z.std())
        assert abs(float(z.mean())) < 0.2 * expected_std
        assert trainer.acting_policy == "transformer"
    finally:
        close_envs(trainer)


def test_dagger_stores_the_transformers_actions_in_its_episodes(tmp_path):
    """With --dagger-fraction 1 and no exploration noise, every stored action of a student
    episode is the transformer's action on the stored window, every other one the accelerator's."""
    torch.manual_seed(0)
    cfg = config(tmp_path, num_envs=2, bc_data="dagger", dagger_fraction=1.0, exploration_noise=0.0,
                 learning_starts=10, buffer_size=2000)
    trainer = Trainer(cfg, tmp_path)
    try:
        trainer.collector.reset()
        written = []  # (row, env, student-driven) of every transition row
        for _ in range(450):
            driven = trainer.collector.student_driven.copy()
            rows = trainer.buffer.ptr.clone()
            trainer._collect()
            written += [(int(rows[e]), e, bool(driven[e])) for e in range(2)]
        buffer = trainer.buffer
        rows = torch.tensor([r for r, _, _ in written])
        envs = torch.tensor([e for _, e, _ in written])
        driven = torch.tensor([d for _, _, d in written])
        window, mask = buffer.gather(rows, envs, cfg.window_len)
        with torch.no_grad(), evaluating(trainer.transformer, trainer.accelerator):  # acting: no dropout
            student = trainer.transformer.act(window, mask)
            teacher = trainer.accelerator.act(window, mask)
        stored = buffer.act[rows, envs]
        after_warmup = torch.tensor([i // 2 >= 5 for i in range(len(written))])  # env steps >= learning_starts
        assert int(driven.sum()) > 200 and int((~driven & after_warmup).sum()) > 200
        assert trainer.collector.student_steps == int(driven.sum())
        torch.testing.assert_close(stored[driven], student[driven], atol=1e-5, rtol=0)
        torch.testing.assert_close(stored[~driven & after_warmup], teacher[~driven & after_warmup], atol=1e-5, rtol=0)
        assert not torch.allclose(student[driven], teacher[driven], atol=1e-2)  # the two policies differ
    finally:
        close_envs(trainer)


def test_a_dagger_run_hands_every_episode_back_at_the_switch(tmp_path):
    """Stage 2 has no DAgger: from the switch on no episode is the transformer's by a draw (a
    draw there would ask for the stage-1 student's exploration, which stage 2 does not give)."""
    torch.manual_seed(0)
    cfg = config(tmp_path, total_steps=600, stage1_steps="300", learning_starts=100, eval_every=600,
                 eval_episodes=1, bc_data="dagger", dagger_fraction=1.0, bc_every=100, bc_updates=2)
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.run()
    assert summary["env_steps"] == 600 and summary["switch_step"] == 300
    assert 0 < summary["student_steps"] < 300 and not trainer.collector.student_driven.any()


def test_dagger_draws_each_new_episodes_driver_per_env_from_learning_starts_on(tmp_path):
    """A new episode's driver is drawn when its predecessor ends, for each env on its own, from the
    first step the policies act (an episode that ends on that very step already gets a draw)."""
    cfg = config(tmp_path, num_envs=1, bc_data="dagger", dagger_fraction=1.0, learning_starts=199)
    trainer = Trainer(cfg, tmp_path)
    try:
        # the draws are the run's: a generator seeded with --seed (resumed from its checkpoint)
        fresh = np.random.default_rng(cfg.seed).bit_generator.state
        assert trainer.collector.np_rng.bit_generator.state == fresh
        trainer.collector.reset()
        for _ in range(200):  # Pendulum's first episode ends on step 200, the first after the warm-up
            assert not trainer.collector.student_driven.any()
            trainer._collect()
        assert trainer.collector.student_driven.all()
    finally:
        close_envs(trainer)
    cfg = config(tmp_path / "eight", num_envs=8, bc_data="dagger", dagger_fraction=0.5, learning_starts=8)
    trainer = Trainer(cfg, tmp_path / "eight")
    try:
        trainer.collector.reset()
        for _ in range(200):  # the eight first episodes all end on the same step
            trainer._collect()
        driven = trainer.collector.student_driven
        assert 0 < driven.sum() < 8, driven  # eight draws, not one shared (fixed seed: 4 of 8)
    finally:
        close_envs(trainer)


@pytest.mark.parametrize("critic", ["accelerator", "transformer"])
def test_replay_bc_relabels_the_run_generators_windows_and_distils_the_critic_on_their_stored_actions(
        tmp_path, monkeypatch, critic):
    """--bc-data replay (the default): each of --bc-updates steps draws its windows with the run's
    own generator (so a resumed run repeats them), labels them with the current accelerator, and
    with a transformer critic distils it on the same windows, labels and the stored actions; every
    loss is summed for metrics.csv and every step counted."""
    torch.manual_seed(0)
    cfg = config(tmp_path, bc_updates=3, learning_starts=1000, critic=critic)
    trainer = Trainer(cfg, tmp_path)
    try:
        learner, buffer, rollouts = trainer.learner, trainer.buffer, []
        monkeypatch.setattr(learner, "_distill_rollouts", lambda: rollouts.append(True))
        seen, seen_critic, losses = spy_on_distillation(monkeypatch, learner.distiller)
        trainer.collector.reset()
        for _ in range(150):
            trainer._collect()
        draw_gen = torch.Generator().set_state(learner.gen.get_state())
        learner.distill(buffer)
        assert not rollouts and learner.bc_updates == 3 == len(seen) == learner.loss_counts["bc_loss"]
        torch.testing.assert_close(learner.loss_sums["bc_loss"], torch.stack(losses).sum())
        for i, (window, mask, labels) in enumerate(seen):
            rows, envs = buffer.sample_index(cfg.bc_batch_size, learner.context, draw_gen)
            expected_window, expected_mask = buffer.gather(rows, envs, learner.context)
            assert torch.equal(window, expected_window) and torch.equal(mask, expected_mask)
            with torch.no_grad(), evaluating(trainer.accelerator):
                torch.testing.assert_close(labels, trainer.accelerator(window, mask))
            if critic == "transformer":
                c_window, c_mask, c_labels, behaviour = seen_critic[i]
                assert c_window is window and c_mask is mask and c_labels is labels
                assert torch.equal(behaviour, buffer.act[rows, envs])
        if critic == "transformer":
            assert len(seen_critic) == 3 == learner.loss_counts["critic_bc_loss"]
        else:
            assert not seen_critic and "critic_bc_loss" not in learner.loss_counts
        learner.cfg.bc_data = "rollouts"  # the other source goes its own way
        learner.distill(buffer)
        assert rollouts == [True] and len(seen) == 3
    finally:
        close_envs(trainer)


@pytest.mark.parametrize("critic", ["accelerator", "transformer"])
def test_rollouts_bc_clones_the_accelerators_own_episodes_every_window_once_per_epoch(tmp_path, monkeypatch, critic):
    """--bc-data rollouts: deterministic accelerator episodes on the round's fresh seeds, every
    window labelled with the accelerator's action and visited once per epoch in the order the
    run's own generator draws (so a resumed run repeats it), their env steps counted as teacher
    steps, and the losses (with a transformer critic, its distillation on the same minibatches)
    summed for metrics.csv."""
    from accelerl.envs import make_vector_env
    from accelerl.evaluation import deterministic, run_episodes, teacher_seeds

    torch.manual_seed(0)
    cfg = config(tmp_path, bc_data="rollouts", bc_rollout_episodes=2, bc_epochs=2, learning_starts=100,
                 critic=critic)
    trainer = Trainer(cfg, tmp_path)
    try:
        learner = trainer.learner
        seen, seen_critic, losses = spy_on_distillation(monkeypatch, learner.distiller, copy=True)
        env = make_vector_env(learner.spec, 2)
        try:
            for round_index in range(2):
                for record in (seen, seen_critic, losses):
                    record.clear()
                learner.loss_sums, learner.loss_counts = {}, {}
                order_gen = torch.Generator().set_state(learner.gen.get_state())
                updates_before = learner.bc_updates
                learner._distill_rollouts()
                assert learner.bc_round == round_index + 1
                assert learner.teacher_steps == (round_index + 1) * 2 * 200  # two Pendulum episodes of 200 steps
                replayed: list = []  # the accelerator's own episodes on this round's seeds, played again here
                run_episodes(env, deterministic(trainer.accelerator), teacher_seeds(cfg.seed, round_index, 2),
                             learner.context, trainer.device, windows=replayed)
                windows, masks = torch.cat([w for w, _ in replayed]), torch.cat([m for _, m in replayed])
                assert len(windows) == 400
                orders = [torch.randperm(400, generator=order_gen) for _ in range(cfg.bc_epochs)]
                expected = torch.cat([windows[o] for o in orders])
                torch.testing.assert_close(torch.cat([w for w, _, _ in seen]), expected, rtol=0, atol=0)
                torch.testing.assert_close(torch.cat([m for _, m, _ in seen]), torch.cat([masks[o] for o in orders]))
                with torch.no_grad(), evaluating(trainer.accelerator):
                    for window, mask, labels in seen:
                        torch.testing.assert_close(labels, trainer.accelerator(window, mask))
                batches = cfg.bc_epochs * -(-400 // cfg.bc_batch_size)
                assert learner.bc_updates - updates_before == batches == len(seen)
                assert learner.loss_counts["bc_loss"] == batches
                torch.testing.assert_close(learner.loss_sums["bc_loss"], torch.stack(losses).sum())
                if critic == "transformer":
                    assert learner.loss_counts["critic_bc_loss"] == batches and len(seen_critic) == batches
                    for (w, m, labels), (cw, cm, clabels, behaviour) in zip(seen, seen_critic, strict=True):
                        assert torch.equal(w, cw) and torch.equal(m, cm) and torch.equal(labels, clabels)
                        assert behaviour is None  # rollouts have no stored behaviour actions
                else:
                    assert "critic_bc_loss" not in learner.loss_counts and not seen_critic
        finally:
            env.close()
    finally:
        close_envs(trainer)
        trainer.learner.teacher_env.close()


def test_the_collector_puts_cpu_envs_back_exactly_where_a_checkpoint_left_them(tmp_path):
    """A gymnasium env's simulator state goes through the collector whole: after a restore the
    envs carry on with their episodes (the same observations for the same actions), with no
    fresh episode and nothing cut from the replay."""
    cfg = config(tmp_path, num_envs=2, learning_starts=1000)
    trainer = Trainer(cfg, tmp_path)
    try:
        collector = trainer.collector
        collector.reset()
        for _ in range(30):
            trainer._collect()
        blob, final_rows = collector.env_state(), int(trainer.buffer._n_final)
        actions = np.random.default_rng(0).uniform(-2.0, 2.0, (10, 2, 1)).astype(np.float32)
        first = [collector.envs.step(a)[0] for a in actions]
        collector.restore_env_state(blob)
        assert not collector.restarted_episodes and int(trainer.buffer._n_final) == final_rows
        np.testing.assert_array_equal(np.stack(first), np.stack([collector.envs.step(a)[0] for a in actions]))
    finally:
        close_envs(trainer)


def test_logged_losses_are_means_since_the_last_evaluation_and_train_returns_whole_episodes(tmp_path):
    """metrics.csv's losses: each the mean of the values summed since the last drain (a
    non-finite one stops the run, naming the step); train_return: empty until an episode ends,
    then the mean return of the last training episodes."""
    from accelerl.errors import NonFiniteError

    trainer = Trainer(config(tmp_path, learning_starts=1000), tmp_path)
    try:
        learner, collector = trainer.learner, trainer.collector
        learner.accumulate({"critic_loss": torch.tensor(1.0), "actor_loss": torch.tensor(4.0)})
        learner.accumulate({"critic_loss": torch.tensor(3.0)})
        assert learner.drain_losses(trainer.buffer, 100) == {"critic_loss": 2.0, "actor_loss": 4.0}
        assert learner.drain_losses(trainer.buffer, 200) == {}
        learner.accumulate({"bc_loss": torch.tensor(float("nan"))})
        with pytest.raises(NonFiniteError, match="bc_loss became nan before step 321"):
            learner.drain_losses(trainer.buffer, 321)
        collector.reset()
        for _ in range(199):
            trainer._collect()
        assert collector.mean_train_return() == ""
        trainer._collect()  # Pendulum's time limit ends the first episode at step 200
        episode = float(trainer.buffer.rew[:200, 0].double().sum())
        assert collector.mean_train_return() == pytest.approx(episode, rel=1e-5)
    finally:
        close_envs(trainer)


def test_evaluation_seeds_change_every_round_and_both_policies_share_them(tmp_path, monkeypatch):
    import accelerl.stages as stages

    calls: list[list[int]] = []
    original = stages.run_episodes

    def record(env, act, seeds, *args, **kwargs):
        calls.append(list(seeds))
        return original(env, act, seeds, *args, **kwargs)

    monkeypatch.setattr(stages, "run_episodes", record)
    cfg = config(tmp_path, total_steps=600, learning_starts=200, stage1_steps="300", eval_every=200,
                 eval_episodes=2, checkpoint_every=600, bc_every=100, bc_updates=2)
    Trainer(cfg, tmp_path).run()
    # step 0: random baseline, accelerator, transformer; 200: both; (switch at 300); 400, 600: transformer
    assert len(calls) == 3 + 2 + 1 + 1
    rounds = [calls[0:3], calls[3:5], calls[5:6], calls[6:7]]
    for same_round in rounds:
        assert all(seeds == same_round[0] for seeds in same_round)
    firsts = [set(r[0]) for r in rounds]
    assert all(len(s) == 2 for s in firsts)
    assert all(not firsts[i] & firsts[j] for i in range(4) for j in range(i + 1, 4)), firsts
    # round k is eval_seeds' round k: a resumed run, which carries on from the checkpointed round,
    # meets the seeds the uninterrupted run would have
    assert [r[0] for r in rounds] == [eval_seeds(cfg.seed, k, 2) for k in range(4)]


# ------------------------------------------------------------------------------------------------
TARGET = np.array([1.0, -0.5], np.float32)


class TargetEnv(gym.Env):
    """A one-step-per-episode bandit with bounds [0, 3] x [-1, 1]: reward -|a - (1, -0.5)|^2 in
    the env's own units, so only a correct rescaling learns (and predicts) the target."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(np.array([0.0, -1.0], np.float32), np.array([3.0, 1.0], np.float32))

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, np.float32)), action
        return np.zeros(2, np.float32), -float(np.sum((np.asarray(action) - TARGET) ** 2)), True, False, {}


def test_asymmetric_action_bounds_round_trip_through_training_and_predict(tmp_path):
    if "AccelerlTest/Target-v0" not in gym.registry:
        gym.register("AccelerlTest/Target-v0", entry_point=TargetEnv)
    torch.manual_seed(0)
    cfg = config(tmp_path, env="AccelerlTest/Target-v0", mode="accelerator", total_steps=1200, learning_starts=200,
                 eval_every=1200, eval_episodes=1, checkpoint_every=1200, buffer_size=1200)
    trainer = Trainer(cfg, tmp_path)
    sent = spy_actions(trainer)
    trainer.run()
    sent = np.concatenate(sent)
    assert sent.min() >= -1.0 and sent.max() <= 1.0  # the vector env takes [-1, 1] and rescales inside
    policy = Policy(trainer.accelerator, cfg, trainer.spec, torch.device("cpu"))
    action = policy.predict(np.zeros(2, np.float32))
    assert TargetEnv.action_space.contains(action.astype(np.float32))
    np.testing.assert_allclose(action, TARGET, atol=0.35)  # (a rescaling bug is off by 1 or more)
    unit = trainer.accelerator.act(torch.zeros(1, cfg.window_len, 2), torch.ones(1, cfg.window_len, dtype=torch.bool))
    np.testing.assert_allclose(action, np.array([0.0, -1.0]) + (unit[0].detach().numpy() + 1.0) * [1.5, 1.0], atol=1e-6)


def test_warm_up_actions_are_uniform_over_the_box_and_come_from_the_runs_generator(tmp_path):
    """Before learning starts the collector acts uniformly at random over the whole action box
    ([-1, 1] per dimension before rescaling to the env's bounds), with draws from the run's own
    generator: re-seeding torch's global RNG after the Trainer is built changes nothing."""
    stored = []
    for global_seed in (0, 1):
        run = tmp_path / f"g{global_seed}"
        trainer = Trainer(config(run, num_envs=2, learning_starts=1000), run)
        try:
            trainer.collector.reset()
            torch.manual_seed(global_seed)
            for _ in range(300):
                trainer._collect()
            rows = [env_rows(trainer.buffer, e) for e in range(2)]
            stored.append(np.concatenate([r["act"][r["is_transition"].astype(bool)] for r in rows]))
        finally:
            close_envs(trainer)
    assert np.array_equal(stored[0], stored[1])
    act = stored[0]
    assert act.shape == (600, 1) and -1 <= act.min() < -0.95 and 0.95 < act.max() <= 1
    assert abs(float(act.mean())) < 0.1 and 0.25 < float(act.var()) < 0.42  # uniform on [-1, 1]: variance 1/3


def test_the_replay_memory_check_counts_every_byte_of_a_row_and_allows_up_to_80_percent(monkeypatch):
    """The up-front memory check estimates what the replay will allocate, byte for byte (frames,
    floats, flags, episode step), and refuses the larger of the two buffers only past 80% of RAM."""
    import os
    from types import SimpleNamespace

    from accelerl.collect import check_replay_fits
    from accelerl.errors import ConfigError
    from accelerl.replay import ReplayBuffer

    spec = SimpleNamespace(pixel_dims=3 * 8 * 8, state_dim=5, act_dim=2)
    buf = ReplayBuffer(64, 1, (spec.pixel_dims + spec.state_dim,), spec.act_dim, pixel_dims=spec.pixel_dims)
    row = sum(getattr(buf, name)[0, 0].nbytes for name in ReplayBuffer._ROW_TENSORS)
    assert row == 236

    def sizes(buffer: int, stage2: int) -> SimpleNamespace:
        return SimpleNamespace(buffer_size=buffer, stage2_buffer_size=stage2)

    # A machine of 5000 pages of one row each: 80% is exactly 4000 rows.
    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_PAGE_SIZE": row, "SC_PHYS_PAGES": 5000}[name])
    check_replay_fits(sizes(4000, 100), spec)
    check_replay_fits(sizes(100, 4000), spec)
    gib = row * 5000 / 2**30
    for buffer, stage2 in ((4001, 100), (100, 4001)):
        expected = (f"a replay of 4001 transitions needs {row * 4001 / 2**30:.1f} GiB, more than this machine's "
                    f"{gib:.1f} GiB allows; lower --buffer-size")
        with pytest.raises(ConfigError) as err:
            check_replay_fits(sizes(buffer, stage2), spec)
        assert str(err.value) == expected
    # a machine in GiB, so that the message's figures show their units
    monkeypatch.setattr(os, "sysconf", lambda name: {"SC_PAGE_SIZE": 2**20, "SC_PHYS_PAGES": 3 * 2**10}[name])
    with pytest.raises(ConfigError, match=r"^a replay of 20000000 transitions needs 4\.4 GiB, more than this "
                                          r"machine's 3\.0 GiB allows; lower --buffer-size$"):
        check_replay_fits(sizes(20_000_000, 100), spec)
    # where the platform cannot say, nothing is refused
    def unknown(name):
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", unknown)
    check_replay_fits(sizes(10**12, 100), spec)


def test_train_return_is_the_mean_of_the_last_20_training_episodes(tmp_path):
    trainer = Trainer(config(tmp_path), tmp_path)
    try:
        collector = trainer.collector
        assert collector.mean_train_return() == ""  # before the first episode ends
        collector.train_returns.extend(float(r) for r in range(25))
        assert collector.mean_train_return() == pytest.approx(float(np.mean(range(5, 25))))
    finally:
        close_envs(trainer)
