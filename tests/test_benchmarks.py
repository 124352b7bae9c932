"""Smoke runs of every benchmark script at a toy budget (the real runs are by hand)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def in_process(module, monkeypatch) -> None:
    """The benchmark's runs as in-process ``accelerl.train`` calls instead of subprocesses (no
    interpreter start per run); the subprocess path is tested by the learning smoke below."""
    from accelerl.api import train
    from accelerl.cli import train_overrides_parser

    parse = train_overrides_parser()

    def run_parallel(runs, jobs):
        for flags, run_dir in runs:
            train(run_dir=run_dir, **parse(flags))

    monkeypatch.setattr(module, "run_parallel", run_parallel)


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_speed_benchmark_smoke(algo, tmp_path, capsys):
    load("speed").main(["--env", "Pendulum-v1", "--algo", algo, "--steps", "16", "--warmup", "300",
                        "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| accelerl --mode accelerate, stage 1 |" in out and "target: at most 1.3x" in out
    assert f"| plain single-file MLP {algo.upper()} |" in out and "| bytes per transition |" in out
    table = rows(tmp_path / f"speed-{algo}.csv")
    assert len(table) == 5 and all(float(r["updates_per_s"]) > 0 for r in table)
    # the plain agent's replay is exactly the raw (s, a, r, s', terminated) float32 data: 36 B for Pendulum
    assert int(table[0]["replay_bytes"]) == 36 * int(table[0]["transitions"]) == 36 * 316


def test_speed_paths_smoke(tmp_path, capsys, monkeypatch):
    """--paths: the velocity-masked rows with both LSTM critics, async envs. The first row runs in
    its own process, as every row does for real; the rest in this one (no interpreter start each)."""
    speed = load("speed")
    spawn, calls = speed.rates_in_subprocess, []

    def rates(spec, source=None):
        calls.append(spec)
        if len(calls) == 1:
            return spawn(spec, source)
        spec = dict(spec)
        return {"plain": speed.plain_mlp_agent(**spec)} if spec.pop("plain", False) else speed.accelerl_rates(**spec)

    monkeypatch.setattr(speed, "rates_in_subprocess", rates)
    speed.main(["--paths", "--env", "Pendulum-v1", "--steps", "32", "--warmup", "300", "--slow-steps", "2",
                        "--slow-warmup", "300", "--pixel-env", "", "--num-envs", "2", "--compile", "off",
                        "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    for row in ("| plain single-file MLP TD3 |", "| --obs-mask velocities (LSTM, C = 10), stage 2 |",
                "| --obs-mask velocities (LSTM, C = 10), --lstm-critic shared, stage 1 |",
                "| --mode accelerator, --num-envs 2 --vector-env async |"):
        assert row in out, out


def test_switching_benchmark_smoke(tmp_path, capsys, monkeypatch):
    extra = " ".join(a for a in TINY if a not in ("--device", "cpu"))
    switching = load("switching")
    in_process(switching, monkeypatch)
    switching.main(["--env", "Pendulum-v1", "--total-steps", "400", "--learning-starts", "100",
                            "--eval-every", "100", "--eval-episodes", "1", "--out", str(tmp_path / "runs"),
                            "--results-dir", str(tmp_path), "--extra", f"{extra} --bc-every 50 --bc-updates 2"])
    table = rows(tmp_path / "switching-Pendulum-v1.csv")
    assert {r["config"] for r in table} >= {"auto switch, replay BC", "fixed switch at 200, replay BC",
                                            "auto switch, rollouts BC", "auto switch, dagger BC"}
    rollouts = next(r for r in table if r["config"] == "auto switch, rollouts BC")
    assert int(rollouts["env_steps"]) > 400  # teacher rollout steps are counted
    assert "| configuration |" in capsys.readouterr().out


def test_learning_benchmark_smoke_and_resume(tmp_path, capsys):
    extra = " ".join(a for a in TINY if a not in ("--device", "cpu"))
    argv = ["--envs", "Pendulum-v1", "--masks", "none", "--algos", "td3", "--modes", "accelerate", "scratch",
            "--seeds", "0", "1", "--total-steps", "400", "--eval-every", "200", "--eval-episodes", "1",
            "--learning-starts", "100", "--extra", f"{extra} --stage1-steps 200", "--jobs", "2",
            "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path)]
    learning = load("learning")
    learning.main(argv)
    table = rows(tmp_path / "learning.csv")
    assert len(table) == 4 and {r["mode"] for r in table} == {"accelerate", "scratch"}
    assert (tmp_path / "learning-Pendulum-v1-td3.png").stat().st_size > 0
    first = capsys.readouterr().out
    assert "| Pendulum-v1 | td3 | accelerate |" in first
    # A second call finds every run finished and only re-aggregates.
    mtime = (tmp_path / "runs" / "Pendulum-v1" / "td3" / "scratch" / "s0" / "summary.json").stat().st_mtime
    learning.main(argv)
    assert (tmp_path / "runs" / "Pendulum-v1" / "td3" / "scratch" / "s0" / "summary.json").stat().st_mtime == mtime
    # Part of a bigger grid: only the finished runs are reported, nothing is started.
    capsys.readouterr()
    learning.main([*argv, "--modes", "accelerate", "scratch", "accelerator", "--finished-only"])
    out = capsys.readouterr().out
    assert "2 unfinished run(s) of the grid left out" in out and "| accelerator |" not in out
    assert not (tmp_path / "runs" / "Pendulum-v1" / "td3" / "accelerator").exists()


def test_time_to_return_benchmark_smoke(tmp_path, capsys, monkeypatch):
    extra = " ".join(a for a in TINY if a not in ("--device", "cpu"))
    argv = ["--env", "Pendulum-v1", "--algo", "td3", "--total-steps", "400", "--learning-starts", "200",
            "--eval-every", "200", "--eval-episodes", "1", "--seeds", "0",
            "--extra", f"{extra} --stage1-steps 200 --bc-every 100 --bc-updates 2",
            "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path)]
    time_to_return = load("time_to_return")
    in_process(time_to_return, monkeypatch)
    time_to_return.main(argv)
    (csv_path,) = tmp_path.glob("time-to-return-*.csv")
    assert csv_path.with_suffix(".png").stat().st_size > 0
    table = rows(csv_path)
    assert {r["mode"] for r in table} == {"accelerate", "scratch"}
    # the target is below the lower mode's best, so at least that mode reaches it
    assert any(r["reached"] == "True" for r in table)
    assert "| accelerate |" in capsys.readouterr().out
    # a target fixed in advance (a success rate of 0.8, say) replaces the fraction of the best
    monkeypatch.setattr(time_to_return, "run_parallel", lambda runs, jobs: None)  # the runs are finished
    time_to_return.main([*argv, "--target", "1e9"])
    assert "fixed in advance" in capsys.readouterr().out
    assert all(r["reached"] == "False" and float(r["target"]) == 1e9 for r in rows(csv_path))


def test_replay_size_benchmark_smoke(tmp_path, capsys, monkeypatch):
    extra = " ".join(a for a in TINY if a not in ("--device", "cpu", "--stage2-buffer-size", "500"))
    replay_size = load("replay_size")
    in_process(replay_size, monkeypatch)
    replay_size.main(["--env", "Pendulum-v1", "--sizes", "200", "1000", "--stage1-steps", "300",
                              "--total-steps", "700", "--learning-starts", "200", "--eval-every", "200",
                              "--eval-episodes", "1", "--seeds", "0", "--extra", f"{extra} --bc-every 100 --bc-updates 2",
                              "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path)])
    table = rows(tmp_path / "replay-size-Pendulum-v1.csv")
    assert [int(r["stage2_buffer_size"]) for r in table] == [200, 1000]
    assert (tmp_path / "replay-size-Pendulum-v1.png").stat().st_size > 0
    assert int(table[0]["replay_bytes"]) < int(table[1]["replay_bytes"])  # the buffer's storage follows its size
    assert "| 1,000 |" in capsys.readouterr().out


def test_transformer_variants_benchmark_smoke(tmp_path, capsys, monkeypatch):
    """The grid's flags are valid train configs (in process), and its table and figure come
    from the runs' outputs (stand-in runs: gtrxl training is tested in test_gtrxl.py, the
    resumable run mechanics in the learning smoke test above)."""
    from accelerl.cli import train_overrides_parser
    from accelerl.config import build_config

    variants = load("transformer_variants")
    parse, started = train_overrides_parser(), []

    def stand_in(runs, jobs):
        for flags, run_dir in runs:
            cfg = build_config(parse(flags))
            started.append(cfg)
            run_dir.mkdir(parents=True)
            rows = ["env_step,stage,policy,return_mean"] + [
                f"{step},x,transformer,{-1000 + step / 10 + (cfg.transformer == 'gtrxl') * 50}" for step in (0, 500, 1000)]
            (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")
            (run_dir / "summary.json").write_text(json.dumps({"switch_step": 500 if cfg.mode == "accelerate" else None,
                                                              "wall_time_s": 1.0}))

    monkeypatch.setattr(variants, "run_parallel", stand_in)
    variants.main(["--seeds", "0", "1", "--out", str(tmp_path / "runs"), "--results-dir", str(tmp_path)])
    assert len(started) == 2 * 2 * 2 * 2  # tasks x variants x modes x seeds
    masked = [c for c in started if c.obs_mask]
    assert {c.env for c in masked} == {"Pendulum-v1"} and {c.accelerator_kind for c in masked} == {"lstm"}
    assert {(c.transformer, c.mode) for c in started} == {(v, m) for v in ("gpt", "gtrxl") for m in ("accelerate", "scratch")}
    assert all(c.preset == "quick" and c.stage1_cap <= c.total_steps // 2 for c in started if c.mode == "accelerate")
    table = rows(tmp_path / "transformer-variants.csv")
    assert len(table) == 16 and {float(r["final"]) for r in table} == {-900.0, -850.0}
    assert (tmp_path / "transformer-variants-Hopper-v5.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| Pendulum-v1-velocities | gtrxl | accelerate | -850 [-850, -850] |" in out


def test_lstm_cost_counts_the_lstms_arithmetic_and_writes_its_section(tmp_path, monkeypatch, capsys):
    """The benchmark's FLOP count of an LSTM pass is what torch's FLOP counter finds in the
    encoder's own recurrence, and the profiled update time contains the LSTM's time."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from accelerl.nets.encoders import LSTMEncoder

    bench = load("lstm_cost")
    encoder = LSTMEncoder(obs_dim=16, context=5, hidden=16)
    with FlopCounterMode(display=False) as counter:
        encoder._unrolled(torch.randn(3, 5, 16))
    assert counter.get_total_flops() == bench.lstm_pass_flop(3, 5, 16)

    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\n<!-- lstm-cost:start -->\nold\n<!-- lstm-cost:end -->\n")
    monkeypatch.setattr(bench, "RESULTS", results)
    bench.main(["--batch-size", "8", "--context", "3", "--hidden-size", "16", "--updates", "2", "--repeats", "2",
                "--matmul-size", "64", "--write-docs"])
    out = capsys.readouterr().out
    share = float(out.split("of it in the LSTM's kernels")[1].splitlines()[0].split("(")[-1].split("%")[0])
    assert 0 < share < 100
    text = results.read_text()
    assert "old" not in text and "Command: `python benchmarks/lstm_cost.py --batch-size 8" in text


def test_the_device_checks_join_cut_wheels_and_refuse_an_incomplete_one(tmp_path):
    """A wheel too big for one transfer travels as pieces; the check joins them back byte for
    byte, and a missing piece stops the install with one line instead of a damaged package."""
    import subprocess
    import zipfile

    wheel = tmp_path / "big-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("big/__init__.py", "x = 1\n" * 5000)
        zf.writestr("big/data.bin", bytes(range(256)) * 400)
    data = wheel.read_bytes()
    wheel.unlink()
    third = len(data) // 3 + 1
    for i in range(3):
        (tmp_path / f"{wheel.name}.piece{i:02d}").write_bytes(data[i * third:(i + 1) * third])
    join = f"source {ROOT / 'benchmarks' / 'device_env.sh'} && device_env_join {tmp_path}"
    done = subprocess.run(["bash", "-c", join], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert wheel.read_bytes() == data
    wheel.unlink()
    (tmp_path / f"{wheel.name}.piece01").unlink()
    done = subprocess.run(["bash", "-c", join], capture_output=True, text=True)
    assert done.returncode == 1 and not wheel.exists()
    assert "does not join" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("script", ["device_check.sh", "device_check_maniskill.sh", "device_env.sh", "device_wheels.sh"])
def test_the_device_scripts_parse(script):
    import subprocess

    done = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
