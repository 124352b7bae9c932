"""--transformer gtrxl: GRU-gated blocks (Parisotto et al., 2020) beside the pre-LN GPT blocks."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from accelerl.nets.encoders import GRUGate, TransformerEncoder, _GatedBlock
from accelerl.stages import Trainer

D, C = 32, 5


def _allowed(batch: int = 4) -> torch.Tensor:
    return torch.ones(C, C, dtype=torch.bool).tril().expand(batch, C, C)


def test_a_gated_block_starts_near_the_identity():
    """Update gates start near sigmoid(-2) = 0.12 (gate bias 2), so the block's output is mostly its
    input; as the gate bias grows the block becomes the identity."""
    torch.manual_seed(0)
    x = torch.randn(4, C, D)
    block = _GatedBlock(D, 2, 64, 0.0).eval()
    gate = block.gate1
    with torch.no_grad():
        y = torch.relu(block.attend(x, _allowed(), last_only=False)[1])  # what the first gate reads
        z = torch.sigmoid(gate.w(y).chunk(3, -1)[1] + gate.u(x).chunk(2, -1)[1] - gate.gate_bias)
        change = (block(x, _allowed(), last_only=False) - x).norm() / x.norm()
        for g in (block.gate1, block.gate2):
            g.gate_bias.fill_(8.0)
        closed = (block(x, _allowed(), last_only=False) - x).norm() / x.norm()
    assert 0.05 < z.mean() < 0.2
    assert change < 0.35 and closed < 0.01
    fresh = _GatedBlock(D, 2, 64, 0.0)  # the block above had its biases raised
    for g in (fresh.gate1, fresh.gate2):  # GTrXL's b_g = 2, exactly
        torch.testing.assert_close(g.gate_bias.detach(), torch.full((D,), 2.0))


def test_the_gate_interpolates_between_the_stream_and_the_candidate():
    torch.manual_seed(0)
    gate = GRUGate(D)
    x, y = torch.randn(3, D) * 3, torch.randn(3, D)
    with torch.no_grad():
        gate.gate_bias.fill_(50.0)   # update gate closed: the stream passes unchanged
        torch.testing.assert_close(gate(x, y), x)
        gate.gate_bias.fill_(-50.0)  # update gate open: the tanh candidate alone
        out = gate(x, y)
    assert out.abs().max() < 1.0 and not torch.allclose(out, x)


def test_the_gate_is_gtrxls_formula():
    """r = s(W_r y + U_r x), z = s(W_z y + U_z x - b_g), h = tanh(W_g y + U_g (r * x)),
    out = (1 - z) * x + z * h, written out by hand on the gate's own weights."""
    torch.manual_seed(0)
    gate = GRUGate(D)
    x, y = torch.randn(3, D), torch.randn(3, D)
    w_r, w_z, w_g = gate.w.weight.chunk(3, dim=0)
    u_r, u_z = gate.u.weight.chunk(2, dim=0)
    with torch.no_grad():
        r = torch.sigmoid(y @ w_r.T + x @ u_r.T)
        z = torch.sigmoid(y @ w_z.T + x @ u_z.T - 2.0)
        h = torch.tanh(y @ w_g.T + (r * x) @ gate.ug.weight.T)
        torch.testing.assert_close(gate(x, y), (1 - z) * x + z * h)
    assert gate.w.bias is None and gate.u.bias is None and gate.ug.bias is None


def test_gradients_reach_every_gate():
    torch.manual_seed(0)
    enc = TransformerEncoder(3, C, D, 2, 2, 64, 0.0, "sinusoidal", variant="gtrxl")
    mask = torch.ones(4, C, dtype=torch.bool)
    mask[0, :3] = False
    enc(torch.randn(4, C, 3), mask).pow(2).sum().backward()
    gates = [(n, p) for n, p in enc.named_parameters() if ".gate" in n]
    assert len(gates) == 2 * 2 * 4  # layers x gates x (w, u, ug, bias)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in gates), [n for n, p in gates
                                                                                 if p.grad is None or not p.grad.any()]


@pytest.mark.parametrize("overrides", [{"mode": "scratch", "critic": "transformer"}, {"mode": "accelerate", "algo": "sac"}],
                         ids=["scratch-transformer-critic", "accelerate-sac"])
def test_a_gtrxl_run_trains(tmp_path, overrides):
    cfg = tiny_config(tmp_path, transformer="gtrxl", total_steps=600, stage1_steps="300", eval_every=300,
                      eval_episodes=1, bc_every=100, bc_updates=2, **overrides)
    trainer = Trainer(cfg, tmp_path)
    start = {k: v.clone() for k, v in trainer.transformer.state_dict().items() if ".gate" in k}
    summary = trainer.run()
    assert summary["env_steps"] == 600 and summary["rl_updates"] > 0
    assert all(isinstance(b, _GatedBlock) for b in trainer.transformer.encoder.blocks)
    if cfg.critic == "transformer":
        assert all(isinstance(b, _GatedBlock) for b in trainer.rl.critic.enc1.blocks)
    moved = [k for k, v in trainer.transformer.state_dict().items() if ".gate" in k and not torch.equal(v, start[k])]
    assert len(moved) == len(start) > 0  # BC and RL both train the gates
