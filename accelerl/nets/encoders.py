"""Observation encoders: (window [B, C, D], mask [B, C]) -> features [B, F].

Every network in accelerl takes the same window and mask, whatever it looks at: the MLP reads
only the last observation, the LSTM the whole window, the transformer attends over it. One
replay buffer and one acting path then serve all of them; each encoder takes the tail of the
window it needs (``self.context``).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    dims = [in_dim] + [hidden] * layers
    mods: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        mods += [nn.Linear(a, b), nn.ReLU()]
    mods.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*mods)


class LastObsEncoder(nn.Module):
    """A fully observed task: the features are o_t itself."""

    context = 1

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.out_dim = obs_dim

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return window[:, -1]


class LSTMEncoder(nn.Module):
    """Linear -> ReLU -> LSTM over the window; features are the last hidden state.

    Padded steps hold the episode's first observation (as in the reference code), so the LSTM
    reads a consistent prefix at episode start at train and act time alike."""

    def __init__(self, obs_dim: int, context: int, hidden: int) -> None:
        super().__init__()
        self.context = context
        self.inp = nn.Linear(obs_dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.out_dim = hidden

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.inp(window[:, -self.context:]))
        if torch.compiler.is_compiling():
            return self._unrolled(x)
        out, _ = self.lstm(x)
        return out[:, -1]

    def _unrolled(self, x: torch.Tensor) -> torch.Tensor:
        """nn.LSTM's recurrence written out on its own weights (gate order i, f, g, o): the same
        function, in ops a compiled graph can trace (nn.LSTM's flat-weight kernel cannot be traced
        with substituted parameters)."""
        lstm = self.lstm
        gates_x = F.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)  # [B, C, 4H]: all steps at once
        h = c = x.new_zeros(x.shape[0], lstm.hidden_size)
        for t in range(x.shape[1]):
            i, f, g, o = (gates_x[:, t] + F.linear(h, lstm.weight_hh_l0)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return h


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return table


class _Block(nn.Module):
    """Pre-LN causal self-attention block on SDPA. With ``last_only`` it computes the query,
    residual and FFN for the last token alone: that is all the final layer must produce, and
    it makes the default 1-layer transformer about C times cheaper."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.dropout = dropout

    def attend(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual stream, attention output): of the last token alone with ``last_only``."""
        b, length, d = x.shape
        h = self.ln1(x)
        if last_only:
            x, q_in, allowed = x[:, -1:], h[:, -1:], allowed[:, -1:]
        else:
            q_in = h
        heads, hd = self.n_heads, d // self.n_heads
        q = self.q(q_in).view(b, -1, heads, hd).transpose(1, 2)
        k, v = self.kv(h).view(b, length, 2, heads, hd).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None], dropout_p=self._p)
        return x, F.dropout(self.proj(att.transpose(1, 2).reshape(b, -1, d)), self._p, self.training)

    @property
    def _p(self) -> float:
        return self.dropout if self.training else 0.0

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool) -> torch.Tensor:
        x, att = self.attend(x, allowed, last_only)
        x = x + att
        return x + F.dropout(self.ffn(self.ln2(x)), self._p, self.training)


class GRUGate(nn.Module):
    """GTrXL's gating layer (Parisotto et al., 2020), in place of a residual connection x + y:
        r = σ(W_r y + U_r x),  z = σ(W_z y + U_z x − b_g),  h = tanh(W_g y + U_g (r ⊙ x)),
        out = (1 − z) ⊙ x + z ⊙ h.
    With the gate bias b_g = 2 the update gate starts near σ(−2) ≈ 0.12, so a block starts close
    to the identity: the paper's reason why gated transformers train stably online."""

    def __init__(self, d_model: int, gate_bias: float = 2.0) -> None:
        super().__init__()
        self.w = nn.Linear(d_model, 3 * d_model, bias=False)
        self.u = nn.Linear(d_model, 2 * d_model, bias=False)
        self.ug = nn.Linear(d_model, d_model, bias=False)
        self.gate_bias = nn.Parameter(torch.full((d_model,), gate_bias))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wr, wz, wg = self.w(y).chunk(3, dim=-1)
        ur, uz = self.u(x).chunk(2, dim=-1)
        r = torch.sigmoid(wr + ur)
        z = torch.sigmoid(wz + uz - self.gate_bias)
        h = torch.tanh(wg + self.ug(r * x))
        return (1.0 - z) * x + z * h


class _GatedBlock(_Block):
    """GTrXL block: the same pre-LN attention and FFN, each joined to the stream by a GRU gate
    on its ReLU'd output instead of a residual sum."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__(d_model, n_heads, d_ff, dropout)
        self.gate1, self.gate2 = GRUGate(d_model), GRUGate(d_model)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool) -> torch.Tensor:
        x, att = self.attend(x, allowed, last_only)
        x = self.gate1(x, F.relu(att))
        return self.gate2(x, F.relu(F.dropout(self.ffn(self.ln2(x)), self._p, self.training)))


BLOCKS = {"gpt": _Block, "gtrxl": _GatedBlock}


class TransformerEncoder(nn.Module):
    """Causal transformer over the window; features are the last token's output. With a
    ``frame`` encoder (pixels) each token is that encoder's features of one observation.
    ``variant``: gpt (pre-LN residual blocks) or gtrxl (GRU-gated blocks)."""

    def __init__(self, obs_dim: int, context: int, d_model: int, n_heads: int, n_layers: int, d_ff: int,
                 dropout: float, positions: str, frame: nn.Module | None = None, variant: str = "gpt") -> None:
        super().__init__()
        self.context = context
        self.frame = frame
        self.inp = nn.Linear(frame.out_dim if frame is not None else obs_dim, d_model)
        if positions == "learned":
            self.pos = nn.Parameter(torch.randn(context, d_model) * 0.02)
        else:
            self.register_buffer("pos", sinusoidal_positions(context, d_model), persistent=False)
        self.blocks = nn.ModuleList(BLOCKS[variant](d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)
        self.out_dim = d_model
        self.register_buffer("causal", torch.ones(context, context, dtype=torch.bool).tril(), persistent=False)

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        window, mask = window[:, -self.context:], mask[:, -self.context:]
        if self.frame is not None:
            window = self.frame(window.flatten(0, 1), window.shape[1]).unflatten(0, window.shape[:2])
        x = self.drop(self.inp(window) + self.pos)
        # A query may see earlier real steps; padded queries also see themselves, so no row of
        # the attention matrix is empty (an all-masked row would make SDPA return NaN).
        eye = torch.eye(self.context, dtype=torch.bool, device=mask.device)
        allowed = self.causal & (mask[:, None, :] | eye)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, last_only=i == last)
        return self.norm(x[:, -1])


def random_shift(images: torch.Tensor, pad: int = 4, group: int = 1) -> torch.Tensor:
    """DrQ's augmentation: pad by replicating edges, then crop back at a random integer offset
    (one vectorised gather, no Python loop over the batch). Each run of ``group`` consecutive
    images shares one offset: the frames of one window move together, as a stacked observation
    does in DrQ, so the motion between them (velocity, in pixels) is not drowned in jitter."""
    n, _, h, w = images.shape
    if n % group:
        raise ValueError(f"random_shift: {n} images do not split into groups of {group}")
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n // group, 1, 1), device=images.device).repeat_interleave(group, 0)
    dx = torch.randint(0, 2 * pad + 1, (n // group, 1, 1), device=images.device).repeat_interleave(group, 0)
    rows = (torch.arange(h, device=images.device)[None, :, None] + dy).expand(n, h, w)
    cols = (torch.arange(w, device=images.device)[None, None, :] + dx).expand(n, h, w)
    flat = rows * (w + 2 * pad) + cols  # [n, h, w] indices into each padded image
    out = padded.flatten(2).gather(2, flat.flatten(1)[:, None].expand(-1, images.shape[1], -1))
    return out.view_as(images)


class FrameCNN(nn.Module):
    """One observation -> features: the frame through 4 conv layers, a linear layer, LayerNorm
    and tanh (the image-SAC encoder), with the state (if any) appended unchanged.

    Input is the flat observation (frame in CHW order with values 0..255, then the state); with
    ``window`` > 1 the rows are windows flattened window by window (a window's steps consecutive),
    and each window gets one shift."""

    def __init__(self, pixel_shape: tuple[int, int, int], state_dim: int, features: int, augment: bool) -> None:
        super().__init__()
        self.pixel_shape, self.pixel_dims = pixel_shape, math.prod(pixel_shape)
        self.augment = augment
        c = pixel_shape[0]
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 3, stride=2), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=2), nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(), nn.Conv2d(32, 32, 3, stride=1), nn.ReLU(), nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *pixel_shape)).shape[1]
        self.proj = nn.Sequential(nn.Linear(flat, features), nn.LayerNorm(features), nn.Tanh())
        self.out_dim = features + state_dim

    def forward(self, obs: torch.Tensor, window: int = 1) -> torch.Tensor:
        images = obs[:, :self.pixel_dims].view(-1, *self.pixel_shape) / 255.0 - 0.5
        if self.augment and self.training:
            images = random_shift(images, group=window)
        return torch.cat([self.proj(self.convs(images)), obs[:, self.pixel_dims:]], dim=-1)


class FrameStackEncoder(nn.Module):
    """The CNN accelerator's view: the last ``frames`` observations of the window, each through
    one FrameCNN, features concatenated (late fusion, so the same per-frame CNN can serve the
    transformer's tokens)."""

    def __init__(self, frame: FrameCNN, frames: int) -> None:
        super().__init__()
        self.frame, self.context = frame, frames
        self.out_dim = frame.out_dim * frames

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        window = window[:, -self.context:]
        return self.frame(window.flatten(0, 1), window.shape[1]).view(window.shape[0], -1)


class DetachedEncoder(nn.Module):
    """An actor's view of its critic's encoder: the same weights, no gradient from the actor's
    loss (image-based SAC practice: only the critic trains a shared encoder)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.context, self.out_dim = inner.context, inner.out_dim

    def forward(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.inner(window, mask).detach()
