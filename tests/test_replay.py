"""ReplayBuffer windows against ground truth, and the acting-time WindowTracker against it.

Observations encode (env, episode, step), so every sampled window, mask, next window, action,
reward and termination flag is checked exactly against the episodes the test generated."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import SynthEnvs, buffer_add, decode, synth_obs, tracker_step

from accelerl.errors import CheckpointError
from accelerl.replay import ReplayBuffer, WindowTracker

OBS_DIM, ACT_DIM = 4, 3


def make_buffer(capacity: int, num_envs: int) -> ReplayBuffer:
    return ReplayBuffer(capacity, num_envs, (OBS_DIM,), ACT_DIM, "cpu")


def expected_window(e: int, k: int, t: int, context: int) -> tuple[list[tuple[int, int, int]], list[bool]]:
    """Window ending at step t of episode k: earlier steps of the episode, padded (masked) with
    the episode's first observation before its start."""
    codes, mask = [], []
    for back in range(context - 1, -1, -1):
        if t - back >= 0:
            codes.append((e, k, t - back))
            mask.append(True)
        else:
            codes.append((e, k, 0))
            mask.append(False)
    return codes, mask


def sampleable_set(stored: list[list[tuple[int, int, int]]], context: int) -> set:
    """Transitions whose window is complete and whose next observation is stored."""
    out = set()
    for rows in stored:
        have = set(rows)
        for (ee, k, t) in rows:
            if (ee, k, t + 1) not in have:
                continue  # a final row, or the newest row (its next observation does not exist yet)
            if all((ee, k, t - b) in have for b in range(min(t, context - 1) + 1)):
                out.add((ee, k, t))
    return out


def check_batch(batch, synth: SynthEnvs, allowed: set, context: int) -> set:
    obs, mask = batch.obs.tolist(), batch.mask.tolist()
    nobs, nmask = batch.next_obs.tolist(), batch.next_mask.tolist()
    acts, rews, terms = batch.act.tolist(), batch.rew.tolist(), batch.term.tolist()
    seen = set()
    for i in range(len(obs)):
        e, k, t = (int(v) for v in obs[i][-1][:3])
        assert (e, k, t) in allowed, f"sampled a transition that should not be sampleable: {(e, k, t)}"
        seen.add((e, k, t))
        codes, m = expected_window(e, k, t, context)
        assert [tuple(int(v) for v in o[:3]) for o in obs[i]] == codes, f"window of {(e, k, t)}: {obs[i]}"
        assert mask[i] == m, f"mask of {(e, k, t)}: {mask[i]}"
        codes, m = expected_window(e, k, t + 1, context)
        assert [tuple(int(v) for v in o[:3]) for o in nobs[i]] == codes, f"next window of {(e, k, t)}: {nobs[i]}"
        assert nmask[i] == m
        assert [int(a) for a in acts[i]] == [e, k, t]
        assert rews[i] == pytest.approx(1000.0 * k + t + 0.25)
        ended_here = synth.length.get((e, k)) == t + 1
        assert terms[i] == (1.0 if ended_here and synth.terminated[(e, k)] else 0.0), (e, k, t)
    return seen


def stored_suffix(synth: SynthEnvs, rows: int) -> list[list[tuple[int, int, int]]]:
    return [w[-rows:] for w in synth.written]


# ------------------------------------------------------------------------------------------------
def test_episode_boundaries_truncation_and_termination(gen):
    """Env 0: episode 0 truncated after 3 steps, episode 1 terminated after 2 steps, episode 2 runs on."""
    buf = make_buffer(100, 1)

    def add(ep, t, end=None):
        obs = torch.tensor([synth_obs(0, ep, t)])
        act = torch.tensor([[0.0, ep, t]])
        rew = torch.tensor([1000.0 * ep + t + 0.25])
        term = torch.tensor([1.0 if end == "term" else 0.0])
        trunc = torch.tensor([1.0 if end == "trunc" else 0.0])
        ended = np.array([end is not None])
        final = torch.tensor([synth_obs(0, ep, t + 1)]) if end else None
        buffer_add(buf, obs, act, rew, term, trunc, ended, final)

    add(0, 0), add(0, 1), add(0, 2, "trunc")
    add(1, 0), add(1, 1, "term")
    add(2, 0), add(2, 1), add(2, 2)
    C = 4
    codes = [decode(buf.obs[r, 0]) for r in range(int(buf.size[0]))]
    # one row per step plus the true final observation of each finished episode
    assert codes == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3), (0, 1, 0), (0, 1, 1), (0, 1, 2),
                     (0, 2, 0), (0, 2, 1), (0, 2, 2)]
    row = {c: r for r, c in enumerate(codes)}

    def window(c):
        w, m = buf.gather(torch.tensor([row[c]]), torch.tensor([0]), C)
        return [decode(o) for o in w[0]], m[0].tolist()

    # first step of an episode: everything before it is masked and padded with *its* first obs
    assert window((0, 1, 0)) == ([(0, 1, 0)] * 4, [False, False, False, True])
    assert window((0, 2, 1)) == ([(0, 2, 0), (0, 2, 0), (0, 2, 0), (0, 2, 1)], [False, False, True, True])
    assert window((0, 0, 3)) == ([(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)], [True] * 4)

    synth = SynthEnvs(1)
    synth.length = {(0, 0): 3, (0, 1): 2}
    synth.terminated = {(0, 0): False, (0, 1): True}
    allowed = {(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 2, 0), (0, 2, 1)}
    seen = set()
    for _ in range(30):
        seen |= check_batch(buf.sample(32, C, gen), synth, allowed, C)
    assert seen == allowed  # includes the truncated (0,0,2) -> final (0,0,3) and the terminated (0,1,1)

    # the truncated transition bootstraps from its real final observation, not the reset one
    rows, envs = torch.tensor([row[(0, 0, 2)], row[(0, 1, 1)]]), torch.tensor([0, 0])
    nxt, _ = buf.gather((rows + 1) % buf.rows, envs, C)
    assert decode(nxt[0, -1]) == (0, 0, 3) and decode(nxt[1, -1]) == (0, 1, 2)
    assert buf.term[rows, envs].tolist() == [False, True]


@pytest.mark.parametrize(
    "num_envs,capacity,context,max_len,steps",
    [
        (1, 1000, 4, 12, 200),  # no wrap-around
        (3, 3 * 17, 5, 25, 400),  # ring wraps many times; some episodes are longer than the ring
        (2, 2 * 9, 1, 6, 150),  # C = 1 (MLP)
        (3, 3 * 30, 10, 40, 300),  # POMDP-sized window
    ],
)
def test_sampled_windows_match_ground_truth(num_envs, capacity, context, max_len, steps, gen):
    buf = make_buffer(capacity, num_envs)
    synth = SynthEnvs(num_envs, seed=num_envs * 7 + context, max_len=max_len)
    seen, allowed = set(), set()
    for step in range(steps):
        obs, act, rew, term, trunc, ended, final, _ = synth.step()
        buffer_add(buf, obs, act, rew, term, trunc, ended, final)
        if step >= 3 and step % 7 == 0:
            allowed = sampleable_set(stored_suffix(synth, buf.rows), context)
            for _ in range(3):
                seen |= check_batch(buf.sample(64, context, gen), synth, allowed, context)
    allowed = sampleable_set(stored_suffix(synth, buf.rows), context)
    assert len(allowed) >= 10  # the scenario leaves plenty to sample
    seen = set()
    for _ in range(80):
        seen |= check_batch(buf.sample(128, context, gen), synth, allowed, context)
    assert seen == allowed, f"never sampled: {sorted(allowed - seen)[:10]}"
    # every stream contributes
    assert {e for (e, _, _) in seen} == set(range(num_envs))


def test_sampling_stays_valid_when_few_rows_are_sampleable(gen):
    """16 envs, a 256-transition buffer (16 rows per env, e.g. a stage-2 buffer) and C = 10:
    once the ring wraps inside long episodes only ~40% of the rows have a complete window."""
    num_envs, C = 16, 10
    buf = make_buffer(256, num_envs)
    synth = SynthEnvs(num_envs, fixed_len=[10**6] * num_envs)
    for _ in range(100):
        buffer_add(buf, *synth.step()[:7])
    allowed = sampleable_set(stored_suffix(synth, buf.rows), C)
    assert 0.3 < len(allowed) / buf.capacity < 0.5
    for _ in range(5):
        check_batch(buf.sample(256, C, gen), synth, allowed, C)


def test_newest_transition_waits_for_its_next_observation(gen):
    buf = make_buffer(100, 1)
    synth = SynthEnvs(1, max_len=1000)
    for _ in range(5):
        buffer_add(buf, *synth.step()[:7])
    rows, _ = buf.sample_index(4000, 3, gen)
    drawn = {decode(buf.obs[r, 0]) for r in rows.tolist()}
    assert drawn == {(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)}  # (0,0,4) has no next observation yet
    buffer_add(buf, *synth.step()[:7])
    rows, _ = buf.sample_index(4000, 3, gen)
    assert (0, 0, 4) in {decode(buf.obs[r, 0]) for r in rows.tolist()}


def test_episodes_ending_at_different_times_in_different_envs(gen):
    """Three envs with fixed, different episode lengths (2, 3, 5): windows never cross streams
    or episodes, and every env's final observations land in its own stream."""
    buf = make_buffer(3 * 50, 3)
    lengths = [2, 3, 5]
    synth = SynthEnvs(3, seed=3, fixed_len=lengths)
    for _ in range(40):
        buffer_add(buf, *synth.step()[:7])
    C = 4
    allowed = sampleable_set(stored_suffix(synth, buf.rows), C)
    seen = set()
    for _ in range(40):
        seen |= check_batch(buf.sample(64, C, gen), synth, allowed, C)
    assert seen == allowed
    for e in range(3):
        assert all(synth.length[(e, k)] == lengths[e] for (ee, k) in synth.length if ee == e)


@pytest.mark.parametrize("dst_rows", [12, 60])
def test_copy_recent_into_keeps_windows_correct(dst_rows, gen):
    """Stage-2 warm start: a fresh buffer (smaller or larger) filled with the last rows of a full
    one keeps exact windows, including after new steps are added to it and it wraps around."""
    num_envs, C, src_rows = 3, 5, 40
    src = make_buffer(num_envs * src_rows, num_envs)
    synth = SynthEnvs(num_envs, seed=11, max_len=15)
    for _ in range(130):  # wraps the source ring
        buffer_add(src, *synth.step()[:7])
    dst = make_buffer(num_envs * dst_rows, num_envs)
    src.copy_recent_into(dst)
    keep = min(dst_rows, src_rows) - 1
    kept = [min(len(w), keep) for w in synth.written]
    mark = [len(w) for w in synth.written]

    def stored():
        return [w[-min(kept[e] + len(w) - mark[e], dst.rows):] for e, w in enumerate(synth.written)]

    for e in range(num_envs):
        got = [decode(dst.obs[r, e]) for r in range(kept[e])]
        assert got == synth.written[e][-kept[e]:]
    allowed, seen = sampleable_set(stored(), C), set()  # right after the copy: every copied transition
    for _ in range(40):
        seen |= check_batch(dst.sample(64, C, gen), synth, allowed, C)
    assert seen == allowed
    for _ in range(70 if dst_rows > src_rows else 40):
        allowed = sampleable_set(stored(), C)
        if allowed:
            for _ in range(3):
                check_batch(dst.sample(32, C, gen), synth, allowed, C)
        buffer_add(dst, *synth.step()[:7])
    allowed = sampleable_set(stored(), C)
    seen = set()
    for _ in range(40):
        seen |= check_batch(dst.sample(64, C, gen), synth, allowed, C)
    assert seen == allowed


def _steps(buf: ReplayBuffer, n: int) -> None:
    """``n`` vector steps of one continuing episode per env; step t of env e observes
    100 e + t + 1 in every component (never the buffer's initial zeros)."""
    envs = buf.num_envs
    for t in range(n):
        obs = (100.0 * torch.arange(envs) + t + 1)[:, None].expand(envs, OBS_DIM)
        buf.add(obs, torch.zeros(envs, ACT_DIM), torch.zeros(envs), torch.zeros(envs), torch.zeros(envs),
                np.zeros(envs, dtype=bool))


def test_a_buffer_of_one_step_copies_and_cuts_every_env():
    """The edge of a switch or a resume one step into a run: each env stream holds one row."""
    src = make_buffer(2 * 8, 2)
    _steps(src, 1)
    dst = make_buffer(2 * 4, 2)
    src.copy_recent_into(dst)
    assert dst.size.tolist() == [1, 1] and dst.obs[0, :, 0].tolist() == [1.0, 101.0]
    src.cut_episodes()  # the only row of each env becomes a final row: counted in the sampler's bound
    assert not src.is_transition[0].any() and src.max_unsampleable(3) == 2 + 2 * 4


def test_observations_arrive_as_float32():
    from accelerl.replay import as_obs_tensor

    x = as_obs_tensor(np.arange(6, dtype=np.float64).reshape(2, 3), torch.device("cpu"))
    assert x.dtype == torch.float32 and x.device.type == "cpu" and x.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_sampling_starts_with_the_first_complete_transition():
    one_step = make_buffer(8, 2)
    _steps(one_step, 1)  # two rows, but no row has its next observation yet
    with pytest.raises(ValueError, match="no complete transition yet"):
        one_step.sample_index(4, 1, torch.Generator().manual_seed(0))
    two_steps = make_buffer(8, 1)
    _steps(two_steps, 2)
    rows, envs = two_steps.sample_index(4, 1, torch.Generator().manual_seed(0))
    assert rows.tolist() == [0, 0, 0, 0] and envs.tolist() == [0, 0, 0, 0]


def test_the_run_generator_alone_decides_the_draw():
    """Resume exactness: the batch depends on the replay's generator, not on torch's global RNG."""
    buf = make_buffer(2 * 200, 2)
    _steps(buf, 150)
    assert buf.max_unsampleable(4) <= 300 // 4  # the fast path
    torch.manual_seed(1)
    first = buf.sample_index(32, 4, torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    second = buf.sample_index(32, 4, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def _fixed_candidates(valid_per_call: list[int], n_rows: int):
    """A stand-in for ReplayBuffer._candidates: call k offers ``valid_per_call[k]`` sampleable
    candidates (rows 0, 1, ...) followed by rejects."""
    calls = iter(valid_per_call)

    def candidates(n, context, generator):
        k = next(calls)
        rows = torch.arange(n) % n_rows
        return rows, torch.zeros(n, dtype=torch.long), torch.arange(n) < k

    return candidates


def test_a_fast_path_draw_that_falls_short_is_counted(monkeypatch):
    buf = make_buffer(400, 1)
    _steps(buf, 300)
    monkeypatch.setattr(buf, "_candidates", _fixed_candidates([10, 20], 300))
    buf.sample_index(32, 1, torch.Generator())
    buf.sample_index(32, 1, torch.Generator())
    assert int(buf.invalid_draws) == (32 - 10) + (32 - 20)


@pytest.mark.parametrize("context,fast", [(4, True), (5, False)])
def test_the_fast_path_runs_only_where_the_bound_proves_three_quarters_sampleable(context, fast, monkeypatch):
    """20 rows of one env: at most final rows + (C + 1) are unsampleable, 5 for C = 4 (a quarter
    of 20: the fast path, whose shortfall is counted), 6 for C = 5 (the slow path redraws)."""
    buf = make_buffer(40, 1)
    _steps(buf, 20)
    monkeypatch.setattr(buf, "_candidates", _fixed_candidates([3, 40], 20))
    rows, _ = buf.sample_index(8, context, torch.Generator())
    assert len(rows) == 8 and int(buf.invalid_draws) == (8 - 3 if fast else 0)


def test_the_slow_path_gathers_exactly_the_batch_over_several_draws(monkeypatch):
    buf = make_buffer(40, 1)  # 40 rows, context 12: the bound sends every draw down the slow path
    _steps(buf, 30)
    monkeypatch.setattr(buf, "_candidates", _fixed_candidates([31, 5], 30))
    rows, _ = buf.sample_index(32, 12, torch.Generator())
    assert rows.tolist() == [*range(30), 0, 0]  # 31 from the first draw (the 31st is row 0 again), 1 more


def test_a_ring_too_short_for_the_context_is_refused():
    """Every window of a long episode in a 4-row ring reaches into overwritten rows."""
    buf = make_buffer(4, 1)
    _steps(buf, 10)
    with pytest.raises(ValueError, match="no window of length 5"):
        buf.sample_index(8, 5, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("final_obs", [None, torch.zeros(2, OBS_DIM)])
def test_an_ended_env_needs_exactly_its_final_observation(final_obs):
    buf = make_buffer(8, 2)
    zeros = torch.zeros(2)
    with pytest.raises(ValueError, match="one observation per ended env"):
        buf.add(torch.zeros(2, OBS_DIM), torch.zeros(2, ACT_DIM), zeros, zeros, zeros, np.array([True, False]),
                final_obs)


@pytest.mark.parametrize("obs_shape,pixel_dims", [((4, 4), 2), ((4,), 5)])
def test_pixel_dims_that_do_not_fit_a_flat_observation_are_refused(obs_shape, pixel_dims):
    with pytest.raises(ValueError, match="does not fit a flat observation"):
        ReplayBuffer(16, 1, obs_shape, ACT_DIM, "cpu", pixel_dims=pixel_dims)


def test_a_buffer_holds_observations_of_any_shape_and_one_pixel_byte():
    shaped = ReplayBuffer(16, 1, (2, 3), ACT_DIM, "cpu")
    assert shaped.obs.shape[2:] == (2, 3)
    one_pixel = ReplayBuffer(16, 1, (4,), ACT_DIM, "cpu", pixel_dims=1)
    assert one_pixel.pixels.shape[2:] == (1,) and one_pixel.obs.shape[2:] == (3,)


def test_tracker_windows_equal_buffer_windows():
    """The acting path (WindowTracker) and the training path (ReplayBuffer.gather) give the
    same window and mask for every step of every env, across episode ends and ring wraps."""
    num_envs, C = 3, 4
    buf = make_buffer(num_envs * 13, num_envs)
    synth = SynthEnvs(num_envs, seed=5, max_len=9)
    tracker = WindowTracker(num_envs, (OBS_DIM,), C, "cpu")
    tracker.reset(synth.obs())
    envs = torch.arange(num_envs)
    for _ in range(120):
        win, mask = tracker.window()
        win, mask = win.clone(), mask.clone()
        rows = buf.ptr.clone()
        obs, act, rew, term, trunc, ended, final, next_obs = synth.step()
        assert torch.equal(win[:, -1], obs)
        buffer_add(buf, obs, act, rew, term, trunc, ended, final)
        bwin, bmask = buf.gather(rows, envs, C)
        assert torch.equal(bwin, win), (bwin, win)
        assert torch.equal(bmask, mask), (bmask, mask)
        tracker_step(tracker, next_obs, ended)


@pytest.mark.parametrize("state_dim", [0, 17])
def test_pixel_frames_cost_their_bytes_whatever_the_context(gen, state_dim):
    """A 64x64 RGB frame is stored once as uint8: bytes per stored row stay within a few percent
    of H*W*3 (+ the state's floats), and gathering windows of any length allocates no storage."""
    pixel_dims, act_dim = 3 * 64 * 64, 6
    buf = ReplayBuffer(600, 2, (pixel_dims + state_dim,), act_dim, "cpu", pixel_dims=pixel_dims)
    budget = pixel_dims + 4 * state_dim
    assert budget <= buf.bytes_per_row <= 1.01 * budget + 4 * act_dim + 20
    before = buf.nbytes
    g = torch.Generator().manual_seed(0)
    frames = []
    for i in range(400):
        frame = torch.randint(0, 256, (2, pixel_dims), generator=g).float()
        obs = torch.cat([frame, torch.randn(2, state_dim, generator=g)], 1)
        frames.append(obs)
        ended = np.array([i % 50 == 49, False])
        final = obs[:1] + 0 if ended.any() else None
        buffer_add(buf, obs, torch.zeros(2, act_dim), torch.zeros(2), torch.zeros(2), torch.zeros(2), ended, final)
    for context in (1, 3, 10):
        batch = buf.sample(16, context, gen)
        assert batch.obs.shape == (16, context, pixel_dims + state_dim)
        assert batch.obs.dtype == torch.float32 and buf.nbytes == before
    # Frames and state come back exactly as written (uint8 holds 0..255 exactly); env 1 never
    # ends an episode, so after 400 steps its ring row r holds step r + 300 (r < 100) or r.
    rows = torch.tensor([5, 120]), torch.tensor([1, 1])
    window, mask = buf.gather(*rows, 3)
    assert torch.equal(window[:, -1], torch.stack([frames[305][1], frames[120][1]]))
    assert torch.equal(window[0, 0], frames[303][1])
    assert mask[0].all()


def assert_same_buffer(a: ReplayBuffer, b: ReplayBuffer) -> None:
    """Every stored tensor and every host-side mirror equal (sampling and adds read both)."""
    for name, value in a._tensors().items():
        assert torch.equal(value, getattr(b, name)), name
    for name in ("_ptr_host", "_size_host", "_final_host"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a._n_final, a._written) == (b._n_final, b._written)


@pytest.mark.parametrize("steps", [8, 60], ids=["before-wrap", "wrapped"])
def test_state_dict_round_trip_samples_identically(steps):
    synth = SynthEnvs(2, seed=9)
    a = make_buffer(2 * 20, 2)
    for _ in range(steps):
        buffer_add(a, *synth.step()[:7])
    state = a.state_dict()
    # a checkpoint holds the rows written so far, not the whole allocation
    assert len(state["obs"]) == (a.rows if steps > a.rows else int(a.size.max())) and len(state["obs"]) <= a.rows
    if steps > a.rows:  # a full CPU replay is not copied a second time to be saved (it may be most of the RAM)
        assert state["obs"].data_ptr() == a.obs.data_ptr()
    b = make_buffer(2 * 20, 2)
    other = SynthEnvs(2, seed=10)
    for _ in range(50):  # a used buffer: loading must leave nothing of its old rows behind
        buffer_add(b, *other.step()[:7])
    b.load_state_dict(state)
    assert_same_buffer(a, b)
    ga, gb = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    x, y = a.sample(64, 4, ga), b.sample(64, 4, gb)
    for name in ("obs", "mask", "act", "rew", "term", "next_obs", "next_mask"):
        assert torch.equal(getattr(x, name), getattr(y, name)), name
    # and both keep going identically
    step = synth.step()
    buffer_add(a, *step[:7])
    buffer_add(b, *step[:7])
    assert torch.equal(a.sample(32, 4, ga).next_obs, b.sample(32, 4, gb).next_obs)


def test_checkpoint_of_a_young_buffer_is_small():
    """torch.save of the state holds the written rows, not the allocation (nor a view of it)."""
    synth = SynthEnvs(2, seed=3)
    buf = make_buffer(2 * 5000, 2)
    for _ in range(50):
        buffer_add(buf, *synth.step()[:7])
    saved = io.BytesIO()
    torch.save(buf.state_dict(), saved)
    assert saved.tell() < 0.05 * buf.nbytes


def test_round_trip_of_a_buffer_started_mid_episode():
    """A stage-2 buffer without warm start continues the episodes in flight (its step counters
    are copied, not zero): its first rows have no predecessor, and nothing unwritten is flagged,
    so a checkpoint of the written rows restores it exactly."""
    synth = SynthEnvs(2, seed=4)
    a = make_buffer(2 * 30, 2)
    a._cur_step.copy_(torch.tensor([5, 2]))
    for _ in range(6):
        buffer_add(a, *synth.step()[:7])
    b = make_buffer(2 * 30, 2)
    b.load_state_dict(a.state_dict())
    assert_same_buffer(a, b)


def test_a_replay_of_another_size_is_refused_before_anything_is_overwritten():
    synth = SynthEnvs(2, seed=5)
    small = make_buffer(2 * 20, 2)
    for _ in range(60):  # wrapped: its oldest row is not row 0, so a bigger ring cannot take it as is
        buffer_add(small, *synth.step()[:7])
    big = make_buffer(2 * 200, 2)
    for _ in range(10):
        buffer_add(big, *synth.step()[:7])
    before = {name: value.clone() for name, value in big._tensors().items()}
    with pytest.raises(CheckpointError, match="rows per env"):
        big.load_state_dict(small.state_dict())
    for name, value in before.items():
        assert torch.equal(value, getattr(big, name)), name
    with pytest.raises(CheckpointError, match="does not fit"):
        make_buffer(3 * 20, 3).load_state_dict(small.state_dict())  # as many rows, one env more


@pytest.mark.parametrize("corrupt", ["ptr past the last row", "negative size", "size past the rows", "ptr of 3 envs",
                                     "rows of another obs width", "more rows than the ring"])
def test_a_corrupted_replay_state_is_refused_before_anything_is_overwritten(corrupt):
    synth = SynthEnvs(2, seed=7)
    source, target = make_buffer(2 * 20, 2), make_buffer(2 * 20, 2)
    for _ in range(30):
        buffer_add(source, *synth.step()[:7])
    for _ in range(5):
        buffer_add(target, *synth.step()[:7])
    state = dict(source.state_dict())
    rows = target.rows
    if corrupt == "ptr past the last row":
        state["ptr"] = torch.tensor([0, rows])  # ptr points at the next row to write: at most rows - 1
    elif corrupt == "negative size":
        state["size"] = torch.tensor([-1, 3])
    elif corrupt == "size past the rows":
        state["size"] = torch.tensor([rows + 1, 3])
    elif corrupt == "ptr of 3 envs":
        state["ptr"] = torch.tensor([0, 1, 2])
    elif corrupt == "rows of another obs width":
        state["obs"] = torch.zeros(rows, 2, target.obs.shape[-1] + 1)
    else:
        state["obs"] = torch.zeros(rows + 1, *target.obs.shape[1:])
    state.pop("rows", None)  # as in the first prefix-saving checkpoints: the fields alone must be checked
    before = {name: value.clone() for name, value in target._tensors().items()}
    with pytest.raises(CheckpointError, match="does not fit"):
        target.load_state_dict(state)
    for name, value in before.items():
        assert torch.equal(value, getattr(target, name)), name
    edge = dict(source.state_dict())  # the largest legal values load
    edge["ptr"], edge["size"] = torch.tensor([rows - 1, 0]), torch.tensor([rows, 0])
    target.load_state_dict(edge)


def test_the_window_tracker_state_round_trips():
    a, b = WindowTracker(2, (3,), 4, "cpu"), WindowTracker(2, (3,), 4, "cpu")
    a.reset(torch.arange(6, dtype=torch.float32).view(2, 3))
    a.hist[:, -1] += 10.0
    a.ep_step += 5
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.hist, a.hist) and torch.equal(b.ep_step, a.ep_step)
    assert b.hist.device == a.hist.device
