"""Command line: ``accelerl train | eval | plot``.

Train flags are generated from ``TrainConfig`` so the help, the config file and the code never
disagree. Every user error ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from accelerl.config import PRESETS, TrainConfig, build_config, read_run_config
from accelerl.errors import AccelerlError

_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"accelerl: error: {message} (see '{self.prog} --help')\n")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f.metadata["help"] + f" (default: {default})"
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            bare = {"nargs": "?", "const": f.metadata["bare"]} if f.metadata.get("bare") else {}
            p.add_argument(flag, type=_TYPES[f.type], default=None, choices=f.metadata.get("choices"),
                           metavar=None if f.metadata.get("choices") else f.name.upper(), help=help_text, **bare)
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="Continue an interrupted run from its last checkpoint (its saved config is used; "
                        "only --total-steps, --device, --vector-env and --compile may change).")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="accelerl", description="Train transformer policies online with the Accelerator method.")
    from accelerl import __version__

    parser.add_argument("--version", action="version", version=f"accelerl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="stage 1 -> switch -> stage 2 (or a baseline mode)",
                           description="Train a transformer policy. Presets: " + ", ".join(PRESETS) + ".")
    _add_train_flags(train)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a saved run deterministically; prints one JSON line")
    ev.add_argument("run_dir", metavar="DIR")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--policy", choices=("transformer", "accelerator"), default=None,
                    help="default: the transformer if the run has one")
    ev.add_argument("--checkpoint", choices=("latest", "best"), default="latest")
    ev.add_argument("--seed", type=int, default=12345, help="seeds of the episodes are seed..seed+episodes-1")
    ev.add_argument("--video", action="store_true", help="also write DIR/eval.gif of the first episode")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    ev.set_defaults(func=cmd_eval)

    sw = sub.add_parser("sweep", help="a grid of train runs in parallel processes (or on Ray); resumable",
                        description="Run every combination of the --grid values as its own 'accelerl train' run "
                                    "under --out; finished runs are skipped, interrupted ones resumed; results go "
                                    "to OUT/results.csv. Train flags shared by all runs come after '--'.")
    sw.add_argument("--grid", nargs="+", action="append", metavar=("FLAG", "VALUE"),
                    help="a train flag and its values, e.g. --grid env Hopper-v5 Walker2d-v5 --grid seed 0 1 2 "
                         "('none' = the flag's default)")
    sw.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="runs at once on this machine (default: one per CPU core; each gets cores/jobs threads)")
    sw.add_argument("--ray", metavar="ADDRESS", default=None,
                    help="run on an existing Ray cluster instead (pip install 'accelerl[ray]'; --out must be a "
                         "path every node sees)")
    sw.add_argument("--out", default="runs/sweep", help="folder of the runs and results.csv")
    sw.add_argument("train_flags", nargs=argparse.REMAINDER, help="-- then train flags for every run")
    sw.set_defaults(func=cmd_sweep)

    ex = sub.add_parser("export", help="write a run's policy as a standalone ONNX or TorchScript model",
                        description="The model takes the context window and its mask and returns actions in the "
                                    "env's units; a JSON file beside it says what a caller needs (docs/EXPORT.md).")
    ex.add_argument("run_dir", metavar="RUN")
    ex.add_argument("--format", choices=("onnx", "torchscript"), required=True,
                    help="onnx (pip install 'accelerl[onnx]'; runs on onnxruntime) or torchscript (runs on torch alone)")
    ex.add_argument("--policy", choices=("transformer", "accelerator"), default=None,
                    help="default: the transformer if the run has one")
    ex.add_argument("--checkpoint", choices=("latest", "best"), default="latest")
    ex.add_argument("--out", default=None, help="model path (default: RUN/export/<policy>.onnx or .pt)")
    ex.set_defaults(func=cmd_export)

    pl = sub.add_parser("plot", help="learning curves of several runs side by side")
    pl.add_argument("run_dirs", metavar="DIR", nargs="+")
    pl.add_argument("--out", default="comparison.png", help="output PNG")
    pl.set_defaults(func=cmd_plot)
    return parser


def _default_run_dir(cfg: TrainConfig) -> Path:
    env = cfg.env.replace("/", "-").replace(":", "-")
    mask = f"-{cfg.obs_mask.replace(',', '.')}" if cfg.obs_mask else ""
    return Path("runs") / f"{env}{mask}__{cfg.mode}__{cfg.algo}__s{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args: argparse.Namespace) -> int:
    from accelerl import api

    names = [f.name for f in dataclasses.fields(TrainConfig)]
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.resume:
        result = api.resume(args.resume, **given)
    else:
        cfg = build_config(given)
        result = api.train(cfg, run_dir=cfg.run_dir or _default_run_dir(cfg))
    print(json.dumps(result.summary))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from accelerl.envs.factory import is_maniskill
    from accelerl.policy import load_policy, policy_of
    from accelerl.stages import resolve_device

    if args.episodes < 1:
        raise AccelerlError("--episodes must be >= 1")
    run_dir = Path(args.run_dir)
    policy_name = args.policy
    saved = read_run_config(run_dir)
    if policy_name is None:
        policy_name = policy_of(str(saved.get("mode")))
    if args.video and not is_maniskill(str(saved.get("env", ""))):  # ManiSkill renders through Vulkan
        from accelerl.envs.pixels import choose_gl_backend

        choose_gl_backend()  # the user's MUJOCO_GL, else EGL, else OSMesa (a bare EGL guess fails without it)
    device = str(resolve_device(args.device))
    policy = load_policy(run_dir, policy_name, args.checkpoint, device)
    video = run_dir / "eval.gif" if args.video else None
    result = policy.evaluate(args.episodes, args.seed, video=video)
    out: dict[str, Any] = {"run": str(run_dir), "policy": policy_name, "checkpoint": args.checkpoint,
                           "seed": args.seed, **result.as_dict()}
    if video is not None:
        out["video"] = str(video)
    print(json.dumps(out))
    return 0


def _train_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="accelerl train")
    _add_train_flags(parser)
    return parser


def train_overrides_parser() -> Callable[[list[str]], dict[str, Any]]:
    """flags -> the explicit train settings they give (what cmd_train passes to build_config)."""
    parser = _train_parser()
    names = [f.name for f in dataclasses.fields(TrainConfig)]

    def parse(flags: list[str]) -> dict[str, Any]:
        ns = parser.parse_args(flags)
        return {n: getattr(ns, n) for n in names if getattr(ns, n) is not None}

    return parse


def cmd_sweep(args: argparse.Namespace) -> int:
    from accelerl import sweep

    train_flags = args.train_flags[1:] if args.train_flags[:1] == ["--"] else args.train_flags
    shared = _train_parser().parse_args(train_flags)  # also catches --resume=X and abbreviations
    for banned in ("run_dir", "resume"):
        if getattr(shared, banned) is not None:
            raise AccelerlError(f"sweep names each run's directory itself; drop --{banned.replace('_', '-')}")
    if args.jobs < 1:
        raise AccelerlError("--jobs must be >= 1")
    if args.ray:
        sweep.require_ray()
    points = sweep.expand_grid(args.grid or [])
    out = Path(args.out)
    jobs = sweep.plan(points, train_flags, train_overrides_parser(), out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AccelerlError(f"cannot create {out}: {exc.strerror or exc}") from None
    where = f"Ray at {args.ray}" if args.ray else f"{min(args.jobs, len(jobs))} at a time"
    print(f"accelerl: sweep of {len(jobs)} run(s) in {out} ({where})", file=sys.stderr)
    statuses = sweep.run_all(jobs, args.jobs, args.ray, lambda run, status: print(f"  {run}: {status}", file=sys.stderr))
    rows = sweep.collect(out, points, statuses)
    print(str(out / "results.csv"))
    failed = [r for r in rows if str(r["status"]).startswith("failed")]
    if failed:
        print(f"accelerl: {len(failed)} of {len(rows)} run(s) failed; fix and re-run the same sweep to resume",
              file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from accelerl.export import export_policy

    path = export_policy(args.run_dir, args.format, args.policy, args.out, args.checkpoint)
    print(str(path))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from accelerl.plots import plot_runs

    out = plot_runs([Path(d) for d in args.run_dirs], Path(args.out))
    print(str(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AccelerlError as exc:
        print(f"accelerl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("accelerl: interrupted; continue with 'accelerl train --resume DIR'", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
