"""Flat replay storage with context windows gathered at sample time.

Layout: one ring of ``rows`` per env stream, shape ``[rows, num_envs, ...]``. A row holds an
observation o_t and, if it is a *transition row*, the action/reward/flags of the step taken from
it; its next observation is simply the following row. When an episode ends we write one extra
*final row* holding the true final observation (not the reset observation), so:

* every observation is stored once (memory O(N), not O(N*C); one extra row per episode),
* the next window W_{t+1} is the window of row t+1, gathered by the same code as W_t,
* truncated episodes bootstrap from their real final observation; terminated ones do not,
* with ``pixel_dims`` > 0, the first ``pixel_dims`` features of each observation (a frame with
  values 0..255) are stored as uint8 and the rest as float32, so a frame costs its H*W*C bytes.

A window of row t holds rows t-C+1..t; positions before the episode start (and only those) are
masked and padded by repeating the episode's first observation, exactly as ``WindowTracker``
does when acting, so training and acting see identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from accelerl.errors import CheckpointError


@dataclass
class Batch:
    """A minibatch of windows. ``obs[:, -1]`` is o_t; masks are True where a step is real."""

    obs: torch.Tensor  # [B, C, *obs_shape]
    mask: torch.Tensor  # [B, C] bool
    act: torch.Tensor  # [B, A]
    rew: torch.Tensor  # [B]
    term: torch.Tensor  # [B] float: 1 where the episode terminated (no bootstrap)
    next_obs: torch.Tensor  # [B, C, *obs_shape]
    next_mask: torch.Tensor  # [B, C]


def window_offsets(lookback: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row offsets (how far back) and validity mask for windows whose oldest real step is
    ``lookback`` rows back. Padded positions reuse the oldest real step."""
    back = torch.arange(context - 1, -1, -1, device=lookback.device)  # [C]: C-1 ... 0
    mask = back[None, :] <= lookback[:, None]
    offsets = torch.minimum(back[None, :], lookback[:, None])
    return offsets, mask


class ReplayBuffer:
    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        act_dim: int,
        device: torch.device | str = "cpu",
        pixel_dims: int = 0,
    ) -> None:
        self.num_envs = num_envs
        self.rows = max(2, -(-capacity // num_envs))
        self.capacity = self.rows * num_envs
        self.device = torch.device(device)
        shape = (self.rows, num_envs)
        kw = {"device": self.device}
        if pixel_dims and (len(obs_shape) != 1 or not 0 < pixel_dims <= obs_shape[0]):
            raise ValueError(f"pixel_dims {pixel_dims} does not fit a flat observation of shape {obs_shape}")
        self.pixel_dims = pixel_dims
        self.pixels = torch.zeros(*shape, pixel_dims, dtype=torch.uint8, **kw)
        state_shape = (obs_shape[0] - pixel_dims,) if pixel_dims else obs_shape
        self.obs = torch.zeros(*shape, *state_shape, **kw)
        self.act = torch.zeros(*shape, act_dim, **kw)
        self.rew = torch.zeros(*shape, **kw)
        self.term = torch.zeros(*shape, dtype=torch.bool, **kw)
        self.trunc = torch.zeros(*shape, dtype=torch.bool, **kw)
        self.is_transition = torch.zeros(*shape, dtype=torch.bool, **kw)
        self.has_next = torch.zeros(*shape, dtype=torch.bool, **kw)  # the following row is its o_{t+1}
        self.ep_step = torch.zeros(*shape, dtype=torch.long, **kw)  # index of the row within its episode
        self.ptr = torch.zeros(num_envs, dtype=torch.long, **kw)  # next row to write, per env
        self.size = torch.zeros(num_envs, dtype=torch.long, **kw)  # rows written, capped at self.rows
        self._cur_step = torch.zeros(num_envs, dtype=torch.long, **kw)  # ep_step of the next row
        self._envs = torch.arange(num_envs, **kw)
        self._written = 0  # host-side count of vector steps, so sampling needs no device sync
        # Host mirrors that bound the unsampleable rows without touching the device.
        self._final_host = np.zeros((self.rows, num_envs), dtype=bool)
        self._n_final = 0
        self._ptr_host = np.zeros(num_envs, dtype=np.int64)
        self._size_host = np.zeros(num_envs, dtype=np.int64)
        self.invalid_draws = torch.zeros((), dtype=torch.long, **kw)  # see sample_index

    # ---------------------------------------------------------------------------------------------
    @property
    def num_transitions(self) -> int:
        return int((self.is_transition & self.has_next).sum())

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in self._tensors().values())

    @property
    def bytes_per_row(self) -> float:
        """Storage per stored observation, everything included (the docs report it for frames)."""
        return self.nbytes / self.capacity

    def _tensors(self) -> dict[str, torch.Tensor]:
        names = (*self._ROW_TENSORS, "ptr", "size", "_cur_step", "invalid_draws")
        return {name: getattr(self, name) for name in names}

    _ROW_TENSORS = ("pixels", "obs", "act", "rew", "term", "trunc", "is_transition", "has_next", "ep_step")

    def state_dict(self) -> dict:
        """Only the rows written so far: until the ring wraps, every env's rows are a prefix, so a
        checkpoint early in a run (a 100k-frame pixel replay is 1.2 GB) holds what is there.

        Once the ring is full, a CPU buffer's row tensors are returned as they are rather than
        copied (a replay may be most of the RAM): save the dict before adding more."""
        filled = int(self._size_host.max())
        state: dict = {"rows": self.rows, "written": self._written}
        for name, value in self._tensors().items():
            if name in self._ROW_TENSORS and filled < self.rows:
                value = value[:filled]  # copied below: torch.save writes a view's whole storage
                state[name] = value.to("cpu", copy=True)
            elif name in self._ROW_TENSORS:
                state[name] = value.cpu()
            else:
                state[name] = value.to("cpu", copy=True)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict``; a state from a buffer of another layout raises before
        anything is overwritten."""
        self._check_state(state)
        for name, value in state.items():
            if name == "written":
                self._written = value
            elif name in self._ROW_TENSORS:
                tensor = getattr(self, name)
                tensor[:len(value)].copy_(value)
                tensor[len(value):].zero_()
            elif name != "rows":
                getattr(self, name).copy_(value)
        self._sync_host()

    def _check_state(self, state: dict) -> None:
        # Checkpoints of the first prefix-saving version have no "rows": their prefix must fit.
        rows = state.get("rows")
        if rows is not None and rows != self.rows:
            raise CheckpointError(f"the saved replay has {rows} rows per env, this buffer {self.rows} "
                                  f"(capacity {self.capacity} over {self.num_envs} envs): another buffer size")
        for name, value in state.items():
            if name in self._ROW_TENSORS:
                have = getattr(self, name).shape
                if value.shape[1:] != have[1:] or value.shape[0] > have[0]:
                    raise CheckpointError(f"the saved replay's {name} has shape {tuple(value.shape)}, which does "
                                          f"not fit this buffer's {tuple(have)}")
            elif name in ("ptr", "size"):
                top = self.rows - 1 if name == "ptr" else self.rows
                if value.shape != (self.num_envs,) or bool((value < 0).any() | (value > top).any()):
                    raise CheckpointError(f"the saved replay's {name} {value.tolist()} does not fit "
                                          f"{self.num_envs} envs of {self.rows} rows")

    def _sync_host(self) -> None:
        """Rebuild the host mirrors from the device tensors (after a load or a copy)."""
        self._ptr_host = self.ptr.cpu().numpy().copy()
        self._size_host = self.size.cpu().numpy().copy()
        filled = np.arange(self.rows)[:, None] < self._size_host[None, :]
        self._final_host = (~self.is_transition.cpu().numpy()) & filled
        self._n_final = int(self._final_host.sum())

    # ---------------------------------------------------------------------------------------------
    def _write_row(self, envs: torch.Tensor, obs: torch.Tensor, ep_step: torch.Tensor,
                   host_envs: np.ndarray, final: bool) -> torch.Tensor:
        host_rows = self._ptr_host[host_envs]
        self._n_final += final * len(host_envs) - int(self._final_host[host_rows, host_envs].sum())
        self._final_host[host_rows, host_envs] = final
        self._ptr_host[host_envs] = (host_rows + 1) % self.rows
        self._size_host[host_envs] = np.minimum(self._size_host[host_envs] + 1, self.rows)
        rows = self.ptr[envs]
        if self.pixel_dims:
            self.pixels[rows, envs] = obs[:, :self.pixel_dims].to(torch.uint8)
            obs = obs[:, self.pixel_dims:]
        self.obs[rows, envs] = obs.to(self.obs.dtype)
        self.ep_step[rows, envs] = ep_step
        self.is_transition[rows, envs] = False
        self.has_next[rows, envs] = False
        # A continuing episode: the previous row's next observation is this one.
        prev = (rows - 1) % self.rows
        cont = (ep_step > 0) & ((rows > 0) | (self.size[envs] == self.rows))  # prev row written (not an empty buffer)
        # (prev was the last row written, so nothing else has set its has_next; an assignment, not a
        # masked index, which would wait for the GPU to count the mask)
        self.has_next[prev, envs] = cont
        self.ptr[envs] = (rows + 1) % self.rows
        self.size[envs] = torch.clamp(self.size[envs] + 1, max=self.rows)
        return rows

    def add(self, obs: torch.Tensor, act: torch.Tensor, rew: torch.Tensor, term: torch.Tensor, trunc: torch.Tensor,
            ended: np.ndarray, final_obs: torch.Tensor | None = None) -> None:
        """Add one vector step (tensors with a leading num_envs axis, on this buffer's device).

        ``ended`` is the host-side ``term | trunc`` (no device sync needed to branch on it) and
        ``final_obs`` the true final observations of the envs that ended, in env order."""
        rows = self._write_row(self._envs, obs, self._cur_step, np.arange(self.num_envs), final=False)
        self.act[rows, self._envs] = act.to(self.act.dtype)
        self.rew[rows, self._envs] = rew.to(self.rew.dtype)
        self.term[rows, self._envs] = term.bool()
        self.trunc[rows, self._envs] = trunc.bool()
        self.is_transition[rows, self._envs] = True
        self._cur_step += 1
        self._written += 1
        if ended.any():
            if final_obs is None or len(final_obs) != int(ended.sum()):
                raise ValueError("final_obs must hold one observation per ended env")
            host_envs = np.flatnonzero(ended)
            envs = torch.as_tensor(host_envs, device=self.device)
            self._write_row(envs, final_obs, self._cur_step[envs], host_envs, final=True)
            self._cur_step[envs] = 0

    def cut_episodes(self) -> None:
        """End every env's running episode at its newest row, which becomes a final row: its step
        was taken but the observation after it was never stored (a resume whose simulator state
        was lost), so it is never sampled, while the transition into it still is (it bootstraps,
        like a time limit). The next row written starts an episode."""
        written = self.size > 0
        newest = (self.ptr - 1) % self.rows
        self.is_transition[newest[written], self._envs[written]] = False
        self._cur_step.zero_()
        self._sync_host()

    # ---------------------------------------------------------------------------------------------
    def _lookback(self, rows: torch.Tensor, envs: torch.Tensor) -> torch.Tensor:
        """How many earlier rows of the same episode are still stored before ``rows``."""
        oldest = torch.where(self.size[envs] < self.rows, torch.zeros_like(rows), self.ptr[envs])
        age = (rows - oldest) % self.rows
        return torch.minimum(self.ep_step[rows, envs], age)

    def gather(self, rows: torch.Tensor, envs: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows [B, C, ...] and masks [B, C] ending at ``rows`` of ``envs``."""
        offsets, mask = window_offsets(self._lookback(rows, envs), context)
        idx = (rows[:, None] - offsets) % self.rows
        window = self.obs[idx, envs[:, None]]
        if self.pixel_dims:
            window = torch.cat([self.pixels[idx, envs[:, None]].float(), window], dim=-1)
        return window, mask

    def _sampleable(self, rows: torch.Tensor, envs: torch.Tensor, context: int) -> torch.Tensor:
        # Windows must be complete: a row whose episode predecessors were overwritten by the
        # ring would get a window the actor never saw, so it is not sampled.
        ok = self.is_transition[rows, envs] & self.has_next[rows, envs] & (rows < self.size[envs])
        need = torch.clamp(self.ep_step[rows, envs], max=context - 1)
        return ok & (self._lookback(rows, envs) >= need)

    def max_unsampleable(self, context: int) -> int:
        """Host-side upper bound on unsampleable stored rows: final rows, the newest row of each
        env, and up to C rows per env whose window reaches into overwritten (or never copied) rows."""
        return self._n_final + self.num_envs * (context + 1)

    def sample_index(self, batch_size: int, context: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform over sampleable transitions.

        Fast path (no host-device sync): when at least 3/4 of the stored rows are provably
        sampleable, draw 2B+64 candidates and keep the first B sampleable ones (a stable sort
        moves rejects to the back); falling short would take a ~17-sigma event, and
        ``invalid_draws`` counts it anyway (the trainer checks it at every evaluation).
        Otherwise (a small ring, long contexts) reject and redraw until B are found."""
        filled = int(self._size_host.sum())
        if self._written < 2 or filled < 2:
            raise ValueError("replay buffer holds no complete transition yet")
        if self.max_unsampleable(context) <= filled // 4:
            rows, envs, ok = self._candidates(2 * batch_size + 64, context, generator)
            pick = torch.argsort((~ok).to(torch.int8), stable=True)[:batch_size]
            self.invalid_draws += (~ok[pick]).sum()
            return rows[pick], envs[pick]
        picked_rows, picked_envs, have = [], [], 0
        for _ in range(1000):
            rows, envs, ok = self._candidates(2 * batch_size + 64, context, generator)
            picked_rows.append(rows[ok])
            picked_envs.append(envs[ok])
            have += int(ok.sum())
            if have >= batch_size:
                return torch.cat(picked_rows)[:batch_size], torch.cat(picked_envs)[:batch_size]
        raise ValueError(f"replay buffer holds no window of length {context} to sample; use a larger buffer")

    def _candidates(self, n: int, context: int, generator: torch.Generator):
        envs = torch.randint(self.num_envs, (n,), device=self.device, generator=generator)
        rows = (torch.rand(n, device=self.device, generator=generator) * self.size[envs]).long()
        return rows, envs, self._sampleable(rows, envs, context)

    def sample(self, batch_size: int, context: int, generator: torch.Generator) -> Batch:
        rows, envs = self.sample_index(batch_size, context, generator)
        obs, mask = self.gather(rows, envs, context)
        next_obs, next_mask = self.gather((rows + 1) % self.rows, envs, context)
        return Batch(
            obs=obs,
            mask=mask,
            act=self.act[rows, envs],
            rew=self.rew[rows, envs],
            term=self.term[rows, envs].float(),
            next_obs=next_obs,
            next_mask=next_mask,
        )

    def copy_recent_into(self, other: ReplayBuffer) -> None:
        """Warm-start ``other`` with the most recent rows of each env stream, in order (the newest
        row has no successor yet, so its has_next is already False)."""
        keep = min(other.rows, self.rows) - 1
        for e in range(self.num_envs):
            n = min(int(self.size[e]), keep)
            if n == 0:
                continue
            src = (self.ptr[e] - n + torch.arange(n, device=self.device)) % self.rows
            for name in ("pixels", "obs", "act", "rew", "term", "trunc", "is_transition", "has_next", "ep_step"):
                getattr(other, name)[:n, e] = getattr(self, name)[src, e].to(other.device)
            other.ptr[e], other.size[e] = n % other.rows, n
            other._cur_step[e] = self._cur_step[e]
            other._written = max(other._written, n)
        other._sync_host()


class WindowTracker:
    """The acting-time twin of ``ReplayBuffer.gather``: the last C observations of each env."""

    def __init__(self, num_envs: int, obs_shape: tuple[int, ...], context: int, device: torch.device | str) -> None:
        self.context = context
        self.hist = torch.zeros(num_envs, context, *obs_shape, device=device)
        self.ep_step = torch.zeros(num_envs, dtype=torch.long, device=device)

    def reset(self, obs: torch.Tensor, envs: torch.Tensor | None = None) -> None:
        """Start new episodes: the window is the first observation repeated (masked)."""
        if envs is None:
            envs = torch.arange(self.hist.shape[0], device=self.hist.device)
        self.hist[envs] = obs.float()[:, None].expand(-1, self.context, *obs.shape[1:])
        self.ep_step[envs] = 0

    def push(self, obs: torch.Tensor) -> None:
        """Append the observation after a step of every env (episodes continue)."""
        self.hist = torch.cat([self.hist[:, 1:], obs.float()[:, None]], dim=1)
        self.ep_step += 1

    def step(self, next_obs: torch.Tensor, ended: np.ndarray) -> None:
        """After a vector step: continuing envs append, ended envs (host bool array) start over
        with their reset observation."""
        self.push(next_obs)
        if ended.any():
            envs = torch.as_tensor(np.flatnonzero(ended), device=self.hist.device)
            self.reset(next_obs[envs], envs)

    def window(self) -> tuple[torch.Tensor, torch.Tensor]:
        _, mask = window_offsets(self.ep_step, self.context)
        return self.hist, mask

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"hist": self.hist.cpu(), "ep_step": self.ep_step.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.hist = state["hist"].to(self.hist.device)
        self.ep_step = state["ep_step"].to(self.ep_step.device)


def as_obs_tensor(obs: np.ndarray, device: torch.device) -> torch.Tensor:
    """Observations as float32 on ``device`` (MuJoCo's are float64: twice the bytes to copy)."""
    return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)
