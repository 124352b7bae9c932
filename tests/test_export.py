"""accelerl export: standalone ONNX and TorchScript models act as Policy.predict does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SUBPROCESS_ENV, assert_one_error_line, cli_here, run_cli

from accelerl.checkpoint import FORMAT_VERSION, atomic_save, atomic_write_text
from accelerl.config import build_config
from accelerl.envs import probe_for
from accelerl.export import export_policy
from accelerl.nets import build_accelerator_actor, build_critic, build_transformer_actor
from accelerl.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"hidden_size": 32, "hidden_layers": 2, "d_model": 32, "d_ff": 64, "n_heads": 2, "device": "cpu"}
CASES = {  # name -> (config overrides, policy)
    "mlp-td3-asymmetric-bounds": ({"env": "custom_envs:PointEnv", "mode": "accelerator"}, "accelerator"),
    "lstm-sac-masked": ({"env": "Pendulum-v1", "obs_mask": "velocities", "context": 4, "algo": "sac"}, "accelerator"),
    "transformer-td3-masked": ({"env": "Pendulum-v1", "obs_mask": "velocities", "context": 4}, "transformer"),
    "gtrxl-sac": ({"env": "Pendulum-v1", "transformer": "gtrxl", "algo": "sac", "n_layers": 2}, "transformer"),
    "cnn-td3-pixels": ({"env": "InvertedPendulum-v5", "pixels": "state+rgb", "image_size": 32, "frame_stack": 2,
                        "context": 2}, "accelerator"),
    "transformer-td3-pixels": ({"env": "InvertedPendulum-v5", "pixels": "rgb", "image_size": 32, "context": 2},
                               "transformer"),
}


def fake_run(run_dir: Path, overrides: dict) -> None:
    """A run directory whose checkpoint holds freshly initialised networks (what export reads),
    with weights scaled up so that actions spread over the bounds instead of sitting near 0."""
    cfg = build_config({**SMALL, **overrides, "run_dir": str(run_dir)})
    spec = probe_for(cfg)
    torch.manual_seed(0)
    nets = {"critic": build_critic(cfg, spec)}
    if cfg.mode != "scratch":
        nets["accelerator"] = build_accelerator_actor(cfg, spec, nets["critic"])
    if cfg.mode != "accelerator":
        nets["transformer"] = build_transformer_actor(cfg, spec)
    with torch.no_grad():
        for net in nets.values():
            for p in net.parameters():
                p.mul_(2.0)
    (run_dir / "checkpoints").mkdir(parents=True)
    atomic_write_text(cfg.to_json() + "\n", run_dir / "config.json")
    atomic_save({"format_version": FORMAT_VERSION, "nets": {k: v.state_dict() for k, v in nets.items()}},
                run_dir / "checkpoints" / "latest.pt")


def windows(episode: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """The documented window and mask of every step of one episode (docs/EXPORT.md)."""
    window = np.repeat(episode[:1], context, axis=0)
    mask = np.zeros(context, bool)
    mask[-1] = True
    out_w, out_m = [window], [mask]
    for obs in episode[1:]:
        window = np.concatenate([window[1:], obs[None]])
        mask = np.concatenate([mask[1:], [True]])
        out_w.append(window)
        out_m.append(mask)
    return np.stack(out_w).astype(np.float32), np.stack(out_m)


def record(policy, steps: int = 25, episodes: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    """(observations fed, actions Policy.predict gave) of short episodes. State tasks feed the
    raw env's observations (the model applies the mask); pixel tasks make_env()'s."""
    from accelerl.envs.custom import make_gym

    env = policy.make_env() if policy.spec.pixels else make_gym(policy.cfg.env)
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=100 + ep)
        policy.reset()
        seen, acts = [], []
        for _ in range(steps):
            seen.append(np.asarray(obs, np.float32))
            acts.append(policy.predict(obs))
            obs, _, term, trunc, _ = env.step(acts[-1])
            if term or trunc:
                break
        out.append((np.stack(seen), np.stack(acts)))
    env.close()
    return out


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    overrides, which = CASES[request.param]
    if overrides.get("pixels"):
        from test_docs import _can_render

        if not _can_render():
            pytest.skip("no off-screen OpenGL (MUJOCO_GL=egl) on this machine")
    run_dir = tmp_path_factory.mktemp(request.param)
    fake_run(run_dir, overrides)
    policy = load_policy(run_dir, which)
    paths = {fmt: export_policy(run_dir, fmt, which) for fmt in ("onnx", "torchscript")}
    return run_dir, which, policy, paths, record(policy)


def test_exported_models_act_as_policy_predict(exported):
    import onnxruntime as ort

    _, _, policy, paths, episodes = exported
    session = ort.InferenceSession(str(paths["onnx"]))
    scripted = torch.jit.load(str(paths["torchscript"]))
    low, high = np.asarray(policy.spec.action_low), np.asarray(policy.spec.action_high)
    for observations, actions in episodes:
        w, m = windows(observations, policy.context)  # the whole episode as one batch
        onnx_actions = session.run(None, {"window": w, "mask": m})[0]
        ts_actions = scripted(torch.from_numpy(w), torch.from_numpy(m)).numpy()
        np.testing.assert_allclose(onnx_actions, actions, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(ts_actions, actions, atol=1e-5, rtol=1e-5)
        assert np.all(actions >= low - 1e-6) and np.all(actions <= high + 1e-6)
    spread = np.concatenate([a for _, a in episodes])
    assert spread.std() > 1e-3 * (high - low).mean()  # the comparison is not between constants


def test_the_json_says_what_a_caller_needs(exported):
    _, which, policy, paths, episodes = exported
    meta = json.loads(paths["onnx"].with_name(paths["onnx"].name + ".json").read_text())
    obs_dim = episodes[0][0].shape[1]
    assert meta["policy"] == which and meta["context"] == policy.context
    assert meta["obs_dim"] == obs_dim and meta["act_dim"] == policy.spec.act_dim
    assert meta["inputs"]["window"]["shape"] == ["batch", policy.context, obs_dim]
    assert meta["action_low"] == list(policy.spec.action_low)
    assert meta["mask_applied_inside"] == (policy.cfg.obs_mask is not None and not policy.spec.pixels)
    if policy.cfg.obs_mask:
        assert meta["mask_indices"] == list(policy.spec.keep)


def test_a_wrong_shaped_input_fails_with_a_clear_message(exported):
    import onnxruntime as ort

    _, _, policy, paths, episodes = exported
    c, d = policy.context, episodes[0][0].shape[1]
    bad = torch.zeros(1, c, d + 1)
    mask = torch.ones(1, c, dtype=torch.bool)
    scripted = torch.jit.load(str(paths["torchscript"]))
    with pytest.raises(Exception, match=re.escape(f"window must be float32 [batch, {c}, {d}], got [1, {c}, {d + 1}]")):
        scripted(bad, mask)
    with pytest.raises(Exception, match="mask must be bool"):
        scripted(torch.zeros(1, c, d), torch.ones(2, c, dtype=torch.bool))
    session = ort.InferenceSession(str(paths["onnx"]))
    with pytest.raises(Exception, match="invalid dimensions for input: window"):
        session.run(None, {"window": bad.numpy(), "mask": mask.numpy()})


def test_torchscript_runs_with_torch_alone(exported, tmp_path):
    _, _, policy, paths, episodes = exported
    w, m = windows(episodes[0][0], policy.context)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "m.npy", m)
    code = ("import sys, numpy as np, torch; m = torch.jit.load(sys.argv[1]); "
            "a = m(torch.from_numpy(np.load(sys.argv[2])), torch.from_numpy(np.load(sys.argv[3]))); "
            "np.save(sys.argv[4], a.numpy()); assert not any(k.startswith(('accelerl', 'gymnasium')) for k in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, paths["torchscript"], tmp_path / "w.npy", tmp_path / "m.npy",
                           tmp_path / "a.npy"], capture_output=True, text=True, env=SUBPROCESS_ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), episodes[0][1], atol=1e-5)


def test_the_documented_onnxruntime_loop_runs_and_matches_evaluate(tmp_path):
    fake_run(tmp_path, {"env": "Pendulum-v1", "obs_mask": "velocities", "context": 4})
    path = export_policy(tmp_path, "onnx")
    text = (ROOT / "docs" / "EXPORT.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert '"runs/quickstart/export/transformer.onnx"' in snippet
    scope: dict = {}
    exec(snippet.replace('"runs/quickstart/export/transformer.onnx"', repr(str(path))).replace("print(", "str("),
         scope)
    expected = load_policy(tmp_path).evaluate(episodes=1, seed=0).mean
    assert scope["episode_return"] == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_export_from_the_command_line(tmp_path):
    fake_run(tmp_path, {"env": "Pendulum-v1", "mode": "accelerator"})
    rc, out, err = run_cli(["export", tmp_path, "--format", "torchscript"])
    assert rc == 0, err
    assert Path(out.strip()) == tmp_path / "export" / "accelerator.pt" and Path(out.strip()).is_file()
    rc, _, err = cli_here(["export", tmp_path, "--format", "torchscript", "--policy", "transformer"])
    assert_one_error_line(rc, err, "has no transformer policy")
    rc, _, err = cli_here(["export", tmp_path / "nowhere", "--format", "onnx"])
    assert_one_error_line(rc, err, "not an accelerl run directory")
