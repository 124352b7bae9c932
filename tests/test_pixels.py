"""Image observations: the CNN pieces, the shared-encoder rule, and short pixel runs end to end
(MuJoCo rendered off-screen on CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY, read_summary, run_cli, train_ok
from test_resume import assert_same_run

from accelerl import load_policy
from accelerl.algos import make_algo
from accelerl.algos.steps import AdamStep
from accelerl.config import build_config
from accelerl.envs import EnvSpec
from accelerl.nets import build_accelerator_actor, build_critic, build_transformer_actor
from accelerl.nets.encoders import FrameCNN, random_shift
from accelerl.replay import Batch

SIZE, STATE, ACT = 24, 4, 2
PIX = 3 * SIZE * SIZE
SPEC = EnvSpec("test", PIX + STATE, ACT, None, None, pixels="state+rgb", image_size=SIZE)


def pixel_cfg(**kw):
    return build_config({"env": "Walker2d-v5", "pixels": "state+rgb", "image_size": SIZE, "hidden_size": 32,
                         "d_model": 32, "d_ff": 64, "cnn_features": 8, "policy_delay": 1, **kw})


def pixel_obs(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randint(0, 256, (n, PIX), generator=g).float(), torch.randn(n, STATE, generator=g)], 1)


def test_random_shift_is_a_crop_of_the_edge_padded_image():
    images = torch.rand(6, 3, 10, 10)
    out = random_shift(images, pad=2)
    padded = F.pad(images, (2, 2, 2, 2), mode="replicate")
    for img, res in zip(padded, out, strict=True):
        crops = [img[:, dy:dy + 10, dx:dx + 10] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(res, c) for c in crops)
    assert not all(torch.equal(a, b) for a, b in zip(out, images, strict=True))  # some image moved


def test_random_shift_draws_every_offset_of_drqs_pad_of_4_for_each_image():
    """Default pad 4 (DrQ's): offsets 0..8 in both directions, all of them drawn, each image its own."""
    torch.manual_seed(0)
    n, size = 400, 12
    images = torch.arange(size * size, dtype=torch.float32).view(1, 1, size, size).repeat(n, 1, 1, 1)
    out = random_shift(images)
    padded = F.pad(images[:1], (4, 4, 4, 4), mode="replicate")[0, 0]
    offsets = {(dy, dx): padded[dy:dy + size, dx:dx + size] for dy in range(9) for dx in range(9)}
    drawn = [next(k for k, crop in offsets.items() if torch.equal(res[0], crop)) for res in out]
    assert {dy for dy, _ in drawn} == set(range(9)) and {dx for _, dx in drawn} == set(range(9))
    assert any(drawn[i] != drawn[i + 1] for i in range(0, n, 2))  # neighbours are not shifted in pairs


def test_the_frame_cnn_sees_pixels_centred_in_half_a_unit_through_the_image_sac_layers():
    cnn = FrameCNN((3, 32, 32), state_dim=2, features=8, augment=False)
    convs = [m for m in cnn.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(m.out_channels, m.kernel_size, m.stride) for m in convs] == [(32, (3, 3), (2, 2)), (32, (3, 3), (2, 2)),
                                                                        (32, (3, 3), (1, 1)), (32, (3, 3), (1, 1))]
    assert [type(m).__name__ for m in cnn.convs] == ["Conv2d", "ReLU"] * 4 + ["Flatten"]
    assert [type(m).__name__ for m in cnn.proj] == ["Linear", "LayerNorm", "Tanh"]
    seen = []
    cnn.convs.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    obs = torch.cat([torch.full((1, 3072), 255.0), torch.zeros(2, 3072)], 0)
    feats = cnn(torch.cat([obs, torch.tensor([[1.0, 2.0]] * 3)], 1))
    assert feats.shape == (3, 10) and torch.equal(feats[:, 8:], torch.tensor([[1.0, 2.0]] * 3))
    assert float(seen[0][0].min()) == float(seen[0][0].max()) == 0.5
    assert float(seen[0][1].min()) == float(seen[0][1].max()) == -0.5


def test_random_shift_moves_each_group_of_frames_together():
    torch.manual_seed(0)
    frames = torch.rand(8, 3, 10, 10)
    images = frames.repeat_interleave(3, 0)  # 8 windows of 3 identical frames
    out = random_shift(images, pad=2, group=3).view(8, 3, 3, 10, 10)
    assert all(torch.equal(w[0], w[1]) and torch.equal(w[0], w[2]) for w in out)
    assert len({int(torch.argmax(w[0] - f).item()) for w, f in zip(out, frames, strict=True)}) > 1
    with pytest.raises(ValueError, match="groups of 3"):
        random_shift(torch.rand(4, 3, 10, 10), group=3)


@pytest.mark.parametrize("kind", ["accelerator", "transformer"])
def test_training_shift_is_the_same_for_every_frame_of_a_window(kind):
    """Velocity from pixels lives in the differences between a window's frames: augmentation
    must move the whole window, not each frame by its own offset."""
    torch.manual_seed(0)
    cfg = pixel_cfg(frame_stack=3, context=3, dropout=0.0)
    if kind == "accelerator":
        encoder = build_critic(cfg, SPEC).enc1
        frame = encoder.frame
    else:
        encoder = build_transformer_actor(cfg, SPEC).encoder
        frame = encoder.frame
    seen = []
    original = frame.forward
    frame.forward = lambda obs, window=1: seen.append(out := original(obs, window)) or out
    encoder.train()
    obs = pixel_obs(4).repeat_interleave(3, 0).view(4, 3, -1)  # each window: one frame, three times
    encoder(obs, torch.ones(4, 3, dtype=torch.bool))
    features = seen[0].view(4, 3, -1)
    assert torch.equal(features[:, 0], features[:, 1]) and torch.equal(features[:, 0], features[:, 2])
    frame.eval()
    assert not torch.allclose(features[:, 0], original(obs[:, 0]))  # it did shift


def test_frame_cnn_appends_the_state_and_augments_only_in_training():
    torch.manual_seed(0)
    cnn = FrameCNN((3, SIZE, SIZE), STATE, 8, augment=True)
    obs = pixel_obs(5)
    cnn.eval()
    out = cnn(obs)
    assert out.shape == (5, 8 + STATE) and torch.equal(out[:, 8:], obs[:, PIX:])
    assert torch.equal(cnn(obs), out)
    cnn.train()
    assert not torch.allclose(cnn(obs), cnn(obs))


def test_cnn_actor_reads_the_critic_encoder_without_training_it():
    cfg = pixel_cfg(frame_stack=2)
    critic = build_critic(cfg, SPEC)
    actor = build_accelerator_actor(cfg, SPEC, critic)
    assert critic.enc1 is critic.enc2 and actor.encoder.inner is critic.enc1
    algo = make_algo("td3", actor, critic, cfg, act_dim=ACT)
    shared = {id(p) for p in critic.enc1.parameters()}
    assert not shared & {id(p) for p in AdamStep.of(actor, 1e-3, exclude=critic).params}
    obs = pixel_obs(8).view(4, 2, -1)
    batch = Batch(obs=obs, mask=torch.ones(4, 2, dtype=torch.bool), act=torch.rand(4, ACT) * 2 - 1,
                  rew=torch.ones(4), term=torch.zeros(4), next_obs=obs.roll(1, 0), next_mask=torch.ones(4, 2, dtype=torch.bool))
    enc_before = [p.clone() for p in critic.enc1.parameters()]
    head_before = [p.clone() for p in actor.head.parameters()]
    q1, _ = critic(obs, batch.mask, actor(obs, batch.mask))
    algo.actor_step.eager(lambda _p: (-q1.mean(), ()))  # the actor loss reaches the encoder through Q, and must not move it
    assert all(torch.equal(a, b) for a, b in zip(enc_before, critic.enc1.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(head_before, actor.head.parameters(), strict=True))
    algo.update(batch)  # the critic's step does train it
    assert not all(torch.equal(a, b) for a, b in zip(enc_before, critic.enc1.parameters(), strict=True))


def test_pixel_transformer_ignores_padded_frames():
    cfg = pixel_cfg(context=3, dropout=0.0)
    actor = build_transformer_actor(cfg, SPEC).eval()
    window = pixel_obs(6).view(2, 3, -1)
    mask = torch.tensor([[False, False, True], [True, True, True]])
    out = actor(window, mask)
    changed = window.clone()
    changed[0, :2] = pixel_obs(2, seed=1)  # padded positions of episode-start row 0
    changed_out = actor(changed, mask)
    assert torch.equal(changed_out[0], out[0])
    changed[1, 0] = pixel_obs(1, seed=2)  # a real earlier frame matters
    assert not torch.allclose(actor(changed, mask)[1], out[1])


PIXEL_RUN = ["--env", "Walker2d-v5", "--pixels", "state+rgb", "--image-size", str(SIZE), "--cnn-features", "8",
             "--total-steps", "600", "--learning-starts", "100", "--stage1-steps", "200", "--eval-every", "200",
             "--eval-episodes", "1", "--checkpoint-every", "200", "--bc-every", "100", "--bc-updates", "3",
             "--transformer-cnn", "accelerator", *TINY]


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pixels") / "run"
    train_ok([*PIXEL_RUN, "--run-dir", run_dir])
    return run_dir


def test_pixel_run_end_to_end_saves_a_policy_that_predicts_the_same(pixel_run):
    summary = read_summary(pixel_run)
    assert summary["accelerator"] == "cnn" and summary["switch_step"] == 200 and summary["env_steps"] == 600
    assert np.isfinite(summary["final_return"]["transformer"])
    policy = load_policy(pixel_run)
    env = policy.make_env()
    obs, _ = env.reset(seed=3)
    assert obs.shape == (PIX + 17,)  # the frame, then Walker2d's 17 state features
    a = policy.predict(obs)
    b = load_policy(pixel_run).predict(obs)
    assert a.shape == (6,) and env.action_space.contains(a.astype(np.float32))
    np.testing.assert_array_equal(a, b)
    env.step(a)
    env.close()
    accelerator = load_policy(pixel_run, "accelerator")  # the CNN actor loads without its critic
    assert accelerator.predict(obs).shape == (6,)
    with pytest.raises(ValueError, match="make_env"):
        policy.predict(np.zeros(17))
    rc, out, err = run_cli(["eval", pixel_run, "--episodes", "1"])
    assert rc == 0, err
    assert np.isfinite(json.loads(out.strip().splitlines()[-1])["return_mean"])


def test_pixel_run_resumed_from_stage2_equals_the_straight_run(pixel_run, tmp_path):
    """Resume restores the rendered envs too (the frames come from the restored simulator)."""
    short = tmp_path / "short"
    args = list(PIXEL_RUN)
    args[args.index("--total-steps") + 1] = "400"
    train_ok([*args, "--run-dir", short])
    train_ok(["--resume", short, "--total-steps", "600"])
    assert_same_run(short, pixel_run)


def test_pixel_scratch_sac_rgb_only_runs(tmp_path):
    run_dir = tmp_path / "run"
    train_ok(["--env", "Hopper-v5", "--pixels", "--image-size", str(SIZE), "--cnn-features", "8", "--mode", "scratch",
              "--algo", "sac", "--total-steps", "200", "--learning-starts", "100", "--eval-every", "200",
              "--eval-episodes", "1", "--augment", "none", *TINY, "--run-dir", run_dir])
    assert np.isfinite(read_summary(run_dir)["final_return"]["transformer"])


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_the_cnn_actor_loss_reads_one_augmented_view(algo, monkeypatch):
    """DrQ: the actor's action and the Q it is scored by come from one random shift of the
    observation (two shifts would score an action against features of another image)."""
    import accelerl.nets.encoders as encoders

    torch.manual_seed(0)
    cfg = pixel_cfg(frame_stack=2, algo=algo)
    critic = build_critic(cfg, SPEC)
    agent = make_algo(algo, build_accelerator_actor(cfg, SPEC, critic), critic, cfg, act_dim=ACT)
    assert agent.actor_reads_critic
    obs = pixel_obs(8).view(4, 2, -1)
    mask = torch.ones(4, 2, dtype=torch.bool)
    batch = Batch(obs=obs, mask=mask, act=torch.rand(4, ACT) * 2 - 1, rew=torch.ones(4), term=torch.zeros(4),
                  next_obs=obs.roll(1, 0), next_mask=mask)
    shifts = []
    original = encoders.random_shift
    monkeypatch.setattr(encoders, "random_shift", lambda *a, **k: shifts.append(out := original(*a, **k)) or out)
    loss, _ = agent._actor_loss(None, batch, None)
    assert len(shifts) == 1, "one augmented view per actor loss"
    # the same loss, written out on that one view
    monkeypatch.setattr(encoders, "random_shift", lambda *a, **k: shifts[0])
    view = critic.enc1(obs, mask)
    if algo == "td3":
        expected = -critic.heads((view, view), agent.actor(obs, mask, features=view), both=False).mean()
        assert torch.allclose(loss, expected, atol=1e-6)
    else:
        assert torch.isfinite(loss)
