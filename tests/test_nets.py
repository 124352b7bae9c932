"""Encoders and heads: masking, causality, dropout modes, the last-token fast path, tails."""

from __future__ import annotations

import math

import pytest
import torch

from accelerl.config import build_config
from accelerl.envs import EnvSpec, probe_for
from accelerl.nets import build_accelerator_actor, build_critic, build_transformer_actor
from accelerl.nets.encoders import LastObsEncoder, LSTMEncoder, TransformerEncoder, sinusoidal_positions
from accelerl.nets.heads import GaussianActor

OBS, C = 5, 6


def spec(obs_dim: int, act_dim: int) -> EnvSpec:
    return EnvSpec("test", obs_dim, act_dim, None, None)


def transformer(n_layers=1, dropout=0.0, positions="sinusoidal", context=C, d_model=32,
                variant="gpt") -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(OBS, context, d_model, 2, n_layers, 64, dropout, positions, variant=variant).eval()


def window_and_mask(batch=8, context=C, seed=1):
    g = torch.Generator().manual_seed(seed)
    window = torch.randn(batch, context, OBS, generator=g)
    # row b has min(b, context - 1) earlier real steps: masks from "first step" to "all real"
    real = torch.arange(batch).clamp(max=context - 1)
    back = torch.arange(context - 1, -1, -1)
    mask = back[None, :] <= real[:, None]
    return window, mask


def allowed_mask(enc: TransformerEncoder, mask: torch.Tensor) -> torch.Tensor:
    """What the encoder's forward builds: causal & (key is real | key == query)."""
    eye = torch.eye(enc.context, dtype=torch.bool)
    return enc.causal & (mask[:, None, :] | eye)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_padded_positions_do_not_change_the_output(n_layers, positions):
    enc = transformer(n_layers, positions=positions)
    window, mask = window_and_mask()
    out = enc(window, mask)
    junk = window.clone()
    junk[~mask] = torch.randn(int((~mask).sum()), OBS) * 100
    assert torch.allclose(enc(junk, mask), out, atol=1e-5)
    assert torch.isfinite(out).all()
    # ... while real earlier steps do matter
    changed = window.clone()
    changed[-1, 0] += 3.0  # the last row is fully real
    assert not torch.allclose(enc(changed, mask)[-1], out[-1], atol=1e-4)


def test_attention_is_causal():
    """Earlier tokens' outputs of a (full) block never depend on later tokens."""
    enc = transformer(n_layers=2)
    window, mask = window_and_mask()
    x = enc.inp(window) + enc.pos
    allowed = allowed_mask(enc, mask)
    block = enc.blocks[0]
    full = block(x, allowed, last_only=False)
    for i in range(C - 1):
        later = x.clone()
        later[:, i + 1:] += torch.randn_like(later[:, i + 1:])
        again = block(later, allowed, last_only=False)
        assert torch.allclose(again[:, : i + 1], full[:, : i + 1], atol=1e-5), f"token {i} saw the future"


def test_only_the_last_context_steps_are_used():
    enc = transformer()
    window, mask = window_and_mask(context=C + 4)
    out = enc(window, mask)
    assert torch.allclose(out, enc(window[:, -C:], mask[:, -C:]), atol=1e-6)
    # what comes before the window cannot matter
    older = window.clone()
    older[:, :4] = 1e3
    assert torch.allclose(enc(older, mask), out, atol=1e-6)


@pytest.mark.parametrize("variant", ["gpt", "gtrxl"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_last_only_fast_path_equals_full_computation(n_layers, variant):
    enc = transformer(n_layers, variant=variant)
    window, mask = window_and_mask()
    allowed = allowed_mask(enc, mask)
    x = enc.inp(window) + enc.pos
    for block in enc.blocks:
        x_full = block(x, allowed, last_only=False)
        assert x_full.shape == x.shape
        x_last = block(x, allowed, last_only=True)
        assert x_last.shape == (x.shape[0], 1, x.shape[2])
        assert torch.allclose(x_last[:, 0], x_full[:, -1], atol=1e-5)
        x = x_full
    manual = enc.norm(x[:, -1])
    assert torch.allclose(enc(window, mask), manual, atol=1e-5)


@pytest.mark.parametrize("variant", ["gpt", "gtrxl"])
def test_only_the_final_block_computes_the_last_token_alone(variant):
    """The layers before the last produce every token (the next layer attends over them); the
    final one only the last token, which is all the read-out uses (the C-times-cheaper path)."""
    enc = transformer(n_layers=3, variant=variant)
    shapes = []
    for block in enc.blocks:
        block.register_forward_hook(lambda module, args, out: shapes.append(tuple(out.shape)))
    window, mask = window_and_mask()
    enc(window, mask)
    assert shapes == [(8, C, 32), (8, C, 32), (8, 1, 32)]


def test_attention_weights_drop_out_at_the_configured_rate_in_training_only(monkeypatch):
    """Dropout acts on the attention weights too (as in nn.MultiheadAttention), not only on the
    block's outputs; never outside training."""
    rates = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        rates.append(kwargs.get("dropout_p", 0.0))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    enc = transformer(n_layers=2, dropout=0.3)
    window, mask = window_and_mask()
    enc.train()(window, mask)
    enc.eval()(window, mask)
    assert rates == [0.3, 0.3, 0.0, 0.0]


@pytest.mark.parametrize("variant", ["gpt", "gtrxl"])
def test_eval_mode_is_deterministic_and_train_mode_with_dropout_is_not(variant):
    cfg = build_config({"env": "Pendulum-v1", "d_model": 32, "d_ff": 64, "n_heads": 2, "hidden_size": 32,
                        "dropout": 0.3, "context": C, "transformer": variant})
    actor = build_transformer_actor(cfg, spec(OBS, 2))
    window, mask = window_and_mask()
    actor.eval()
    a, b = actor(window, mask), actor(window, mask)
    assert torch.equal(a, b)
    actor.train()
    c, d = actor(window, mask), actor(window, mask)
    assert not torch.allclose(c, d)
    # dropout 0: train mode is deterministic too
    actor0 = build_transformer_actor(build_config({**cfg.to_dict(), "dropout": 0.0}), spec(OBS, 2)).train()
    assert torch.equal(actor0(window, mask), actor0(window, mask))


def test_lstm_and_mlp_encoders_read_the_tail_they_need():
    torch.manual_seed(0)
    lstm = LSTMEncoder(OBS, 4, 16)
    window, mask = window_and_mask(context=10)
    out = lstm(window, mask)
    assert torch.allclose(out, lstm(window[:, -4:], mask[:, -4:]), atol=1e-6)
    changed = window.clone()
    changed[:, :6] = 7.0
    assert torch.allclose(lstm(changed, mask), out, atol=1e-6)
    changed[:, -4] += 1.0  # the oldest step the LSTM reads matters
    assert not torch.allclose(lstm(changed, mask), out, atol=1e-5)
    mlp = LastObsEncoder(OBS)
    assert torch.equal(mlp(window, mask), window[:, -1])


def test_builders_follow_the_config():
    mdp = build_config({"env": "Pendulum-v1", "hidden_size": 16, "d_model": 16, "n_heads": 2, "d_ff": 32})
    assert isinstance(build_accelerator_actor(mdp, spec(3, 1)).encoder, LastObsEncoder)
    pomdp = build_config({"env": "Pendulum-v1", "obs_mask": "velocities", "hidden_size": 16})
    acc = build_accelerator_actor(pomdp, spec(2, 1))
    assert isinstance(acc.encoder, LSTMEncoder) and acc.encoder.context == 10
    assert isinstance(build_critic(pomdp, spec(2, 1)).enc1, LSTMEncoder)
    sac = build_config({"env": "Pendulum-v1", "algo": "sac", "d_model": 16, "n_heads": 2, "d_ff": 32})
    tr = build_transformer_actor(sac, spec(3, 1))
    assert isinstance(tr, GaussianActor) and isinstance(tr.encoder, TransformerEncoder)
    assert tr.encoder.context == 3


def test_gaussian_actor_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = GaussianActor(LastObsEncoder(OBS), 2, 16, 1)
    window, mask = window_and_mask()
    torch.manual_seed(5)
    action, logp = actor.sample(window, mask)
    mean, log_std = actor(window, mask)
    assert (action.abs() < 1).all()
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform(cache_size=1)])
    pre = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
    ref = dist.log_prob(torch.tanh(pre)).sum(-1)
    assert torch.allclose(logp, ref, atol=1e-3, rtol=1e-3)
    assert torch.equal(actor.act(window, mask), torch.tanh(mean))
    assert (log_std >= -5.0).all() and (log_std <= 2.0).all()


# --------------------------------------------------------- each computation against its formula
def test_a_transformer_block_is_pre_ln_attention_then_ffn_each_added_to_the_stream():
    """x1 = x + proj(attn(ln1(x))), out = x1 + ffn(ln2(x1)), written out by hand (a residual
    subtracted, or the FFN dropped in training mode, changes the output)."""
    enc = transformer(dropout=0.0)
    block = enc.blocks[0]
    _, mask = window_and_mask()
    x = torch.randn(8, C, 32, generator=torch.Generator().manual_seed(3))
    allowed = allowed_mask(enc, mask)
    h = block.ln1(x)
    q = block.q(h).view(8, C, 2, 16).transpose(1, 2)
    k, v = block.kv(h).view(8, C, 2, 2, 16).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-1, -2)) / 4.0  # sqrt(head dim 16)
    att = scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1) @ v
    x1 = x + block.proj(att.transpose(1, 2).reshape(8, C, 32))
    expected = x1 + block.ffn(block.ln2(x1))
    for training in (False, True):  # dropout 0: training mode computes the same function
        block.train(training)
        torch.testing.assert_close(block(x, allowed, last_only=False), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(block(x, allowed, last_only=True), expected[:, -1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("d_model", [6, 7])
def test_sinusoidal_positions_are_the_original_transformers_table(d_model):
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d)), for an even and an
    odd width (an odd one has one sine column more than cosines), and the encoder adds exactly it."""
    table = sinusoidal_positions(5, d_model)
    assert table.shape == (5, d_model) and table.dtype == torch.float32
    for p in range(5):
        for i in range(d_model):
            angle = p / 10000 ** (2 * (i // 2) / d_model)
            expected = math.sin(angle) if i % 2 == 0 else math.cos(angle)
            assert float(table[p, i]) == pytest.approx(expected, abs=1e-6), (p, i)
    enc = transformer(context=5)
    torch.testing.assert_close(enc.pos, sinusoidal_positions(5, 32))
    # derived tables, not weights: checkpoints and exports leave them out
    assert not {"pos", "causal"} & set(enc.state_dict())


def test_learned_positions_start_as_small_noise_and_are_saved():
    """--positions learned starts from N(0, 0.02^2) (GPT-2's initialisation): small beside the
    projected observations, a different vector at each position; a weight, so checkpoints hold it."""
    torch.manual_seed(0)
    enc = TransformerEncoder(OBS, 64, 64, 2, 1, 64, 0.0, "learned")
    assert enc.pos.shape == (64, 64) and enc.pos.requires_grad
    pos = enc.pos.detach()
    assert 0.018 < float(pos.std()) < 0.022 and abs(float(pos.mean())) < 0.002
    assert "pos" in enc.state_dict()


def test_lstm_features_are_the_hidden_state_after_the_windows_last_step():
    torch.manual_seed(0)
    enc = LSTMEncoder(OBS, C, 16)
    window, mask = window_and_mask()
    feats = enc(window, mask)
    out, _ = enc.lstm(torch.relu(enc.inp(window)))
    torch.testing.assert_close(feats, out[:, -1])
    # the unrolled recurrence (the compiled path's) is the same function
    torch.testing.assert_close(enc._unrolled(torch.relu(enc.inp(window))), feats, atol=1e-5, rtol=1e-5)
    later = window.clone()
    later[:, -1] += 1.0
    assert not torch.allclose(enc(later, mask), feats)  # the last observation reaches the features


def test_the_gaussian_actor_bounds_log_std_and_stays_finite_when_saturated():
    from accelerl.nets.heads import LOG_STD_MAX, LOG_STD_MIN

    torch.manual_seed(0)
    actor = GaussianActor(LastObsEncoder(OBS), act_dim=3, hidden=16, layers=1)
    window, mask = window_and_mask()
    last = actor.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias[:3] = 50.0  # mean far in the tanh's flat part: actions of exactly +-1 in float32
        last.bias[3:] = 100.0
    mean, log_std = actor(window, mask)
    assert mean.shape == log_std.shape == (8, 3)
    torch.testing.assert_close(log_std, torch.full((8, 3), LOG_STD_MAX))
    action, logp = actor(window, mask, sample=True)
    assert action.shape == (8, 3) and logp.shape == (8,) and torch.isfinite(logp).all()
    with torch.no_grad():
        last.bias[3:] = -100.0
    torch.testing.assert_close(actor(window, mask)[1], torch.full((8, 3), LOG_STD_MIN))


def test_the_transformer_actor_is_a_linear_read_out_with_the_configured_positions():
    """The paper's actor: the action is one linear layer on the last token; --positions learned
    gives the encoder a trained position table, sinusoidal a fixed one."""
    for positions, learned in (("learned", True), ("sinusoidal", False)):
        cfg = build_config({"env": "Pendulum-v1", "d_model": 16, "d_ff": 32, "n_heads": 2, "positions": positions})
        actor = build_transformer_actor(cfg, spec(OBS, 2))
        assert [type(m) for m in actor.head.modules() if len(list(m.children())) == 0] == [torch.nn.Linear]
        assert isinstance(actor.encoder.pos, torch.nn.Parameter) == learned


def test_a_cnn_accelerator_actor_without_its_critic_gets_that_encoders_architecture():
    """Loading a saved CNN policy builds the actor alone: its frozen encoder must be the critic's
    architecture (the saved weights are loaded into it)."""
    cfg = build_config({"env": "Hopper-v5", "pixels": "rgb", "image_size": 32, "frame_stack": 2, "context": 2,
                        "hidden_size": 16})
    pixel_spec = probe_for(cfg)
    critic = build_critic(cfg, pixel_spec)
    alone = build_accelerator_actor(cfg, pixel_spec)
    with_critic = build_accelerator_actor(cfg, pixel_spec, critic)
    assert with_critic.encoder.inner is critic.enc1
    shapes = {k: v.shape for k, v in critic.enc1.state_dict().items()}
    assert shapes and {k: v.shape for k, v in alone.encoder.inner.state_dict().items()} == shapes
