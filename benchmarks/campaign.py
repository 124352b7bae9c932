"""The evidence campaign: docs/RESULTS.md's four questions, as named plans sized to a machine.

Run by hand (not in CI); needs the ``bench`` extra (rliable) for the statistics:

    python benchmarks/campaign.py --plan cpu --dry-run              # the runs and their estimated cost
    python benchmarks/campaign.py --plan cpu --jobs 2 --write-docs  # ~2.5 h on 2 CPU cores, resumable
    python benchmarks/campaign.py --plan gpu --jobs 16 --device cuda --write-docs   # one H200, 16 cores
    python benchmarks/campaign.py --plan paper --ray auto --write-docs             # the full grid

1. Does the accelerated transformer learn better than the same transformer from scratch, and
   how close does it get to the accelerator? (final return, area under the curve, env steps and
   training wall time to a return threshold)
2. Is a 10-20k stage-2 replay buffer enough, at a budget where the small buffers evict?
3. On pixels, is the accelerated transformer faster in wall-clock time to the same return?
4. On velocity-masked tasks (LSTM accelerator), does the transformer keep what the LSTM learned?

Every run is an ``accelerl train`` subprocess with its own directory under ``--out``, named after
its study (task, algorithm, budget), variant and seed: a re-run skips finished runs and resumes
interrupted ones, and ``--seeds N`` grows every grid to N seeds without touching the runs it has.
``--report-only`` starts nothing and reports the runs that have finished. Statistics: the
interquartile mean (IQM) over seeds with a 95% stratified bootstrap interval, and the
probability of improvement, from rliable; rows with fewer than 5 seeds are marked indicative.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accelerl import sweep
from accelerl.errors import AccelerlError
from accelerl.plots import read_metrics
from accelerl.policy import policy_of
from accelerl.stats import REPS, Estimate, area_under_curve, first_reach, iqm, performance_profiles, probability_of_improvement

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import command_line, machine_line, replace_section, save_figure, write_csv  # noqa: E402

EVAL_OVERHEAD = 1.2  # evaluations and checkpoints on top of the training time the rates describe


@dataclass(frozen=True)
class Variant:
    """One arm of a study: its train flags, the policy whose evaluations count, and the env steps
    per second one run of it is assumed to do on the plan's machine (for the cost estimate)."""

    label: str
    flags: tuple[str, ...]
    rate: float

    @property
    def mode(self) -> str:
        flags = list(self.flags)
        return flags[flags.index("--mode") + 1] if "--mode" in flags else "accelerate"

    @property
    def policy(self) -> str:
        return policy_of(self.mode)

    def flag(self, name: str) -> int | None:
        flags = list(self.flags)
        return int(flags[flags.index(name) + 1]) if name in flags else None

    def evicts(self, total_steps: int) -> bool | None:
        """Whether the stage-2 buffer of a fixed-switch run overwrites transitions: it holds the
        warm start (the last stage-1 transitions, up to its size) plus every stage-2 step."""
        size, switch = self.flag("--stage2-buffer-size"), self.flag("--stage1-steps")
        if size is None or switch is None:
            return None
        return min(switch, size - 1) + total_steps - switch > size


@dataclass(frozen=True)
class Study:
    """One question on one task: every variant x seed, at one budget."""

    question: int
    env: str
    algo: str
    total_steps: int
    variants: tuple[Variant, ...]
    seeds: int
    eval_every: int
    eval_episodes: int = 10
    learning_starts: int = 5_000
    obs_mask: str = "none"
    extra: tuple[str, ...] = ()
    tag: str = ""  # tells apart studies of one question, task and budget (e.g. 'pixels')

    @property
    def key(self) -> str:
        """Names the study's folder and docs section; the budget is in it, so a study at another
        budget never mixes with this one's runs."""
        task = self.env.replace("/", "-") + ("" if self.obs_mask == "none" else f"-{self.obs_mask}")
        return f"q{self.question}-{task}-{self.algo}{f'-{self.tag}' if self.tag else ''}-{self.total_steps // 1000}k"

    def flags(self, variant: Variant, seed: int) -> list[str]:
        flags = ["--env", self.env, "--algo", self.algo, "--total-steps", str(self.total_steps),
                 "--learning-starts", str(self.learning_starts), "--eval-every", str(self.eval_every),
                 "--eval-episodes", str(self.eval_episodes), "--checkpoint-every",
                 str(max(self.eval_every, self.total_steps // 10)), "--seed", str(seed), *self.extra, *variant.flags]
        return flags + (["--obs-mask", self.obs_mask] if self.obs_mask != "none" else [])


@dataclass(frozen=True)
class Plan:
    name: str
    machine: str
    jobs: int  # runs at a time the rates assume
    studies: tuple[Study, ...]


@dataclass(frozen=True)
class Run:
    study: Study
    variant: Variant
    seed: int
    flags: list[str]
    run_dir: Path

    @property
    def finished(self) -> bool:
        return (self.run_dir / "summary.json").exists()


def modes(rates: dict[str, float], switch_flags: tuple[str, ...] = ()) -> tuple[Variant, ...]:
    """The three modes of questions 1, 3 and 4; ``switch_flags`` go to the accelerated run."""
    return tuple(Variant(mode, ("--mode", mode, *(switch_flags if mode == "accelerate" else ())), rate)
                 for mode, rate in rates.items())


def buffers(sizes: list[int], keep_all: int, stage1_steps: int, rate: float) -> tuple[Variant, ...]:
    """Question 2: the accelerated run with a fixed switch and each stage-2 buffer size; the
    ``keep_all`` buffer holds every transition of the run."""
    return tuple(Variant(f"buffer {size:,}", ("--mode", "accelerate", "--stage1-steps", str(stage1_steps),
                                             "--stage2-buffer-size", str(size)), rate) for size in [*sizes, keep_all])


# Rates: env steps/s of one run while `jobs` run at a time (training time; evaluations come on top).
# cpu: Hopper-v5 TD3 at the reference network sizes, 2 runs sharing 2 cores (one torch thread each),
# from the 30k-step runs of `benchmarks/learning.py --budget small` and `replay_size.py` in
# docs/RESULTS.md (504, 615 and 298 s; ~545 s). gpu and paper: assumed, not yet measured.
CPU_MODES = {"accelerate": 60.0, "scratch": 49.0, "accelerator": 100.0}
PLANS = {
    "cpu": Plan("cpu", "2 CPU cores, no GPU; about 2.5 hours", 2, (
        Study(1, "Hopper-v5", "td3", 30_000, modes(CPU_MODES, ("--switch-max-steps", "15000")), seeds=5,
              eval_every=2_000),
        # A switch at 20k fills every small buffer from the stage-1 warm start: all of them evict
        # from the first stage-2 step, while 1M keeps all 26k transitions.
        Study(2, "Hopper-v5", "td3", 26_000, buffers([5_000, 10_000, 20_000], 1_000_000, 20_000, 55.0), seeds=5,
              eval_every=2_000),
    )),
    "gpu": Plan("gpu", "one H200 GPU, 16 CPU cores; one command of at most 8 minutes (rates assumed)", 16, (
        *(Study(1, env, "td3", 200_000, modes({"accelerate": 900.0, "scratch": 700.0, "accelerator": 1200.0},
                                              ("--switch-max-steps", "100000")), seeds=5, eval_every=10_000,
                learning_starts=10_000) for env in ("Hopper-v5", "HalfCheetah-v5")),
        Study(2, "Hopper-v5", "td3", 300_000, buffers([10_000, 20_000, 100_000], 1_000_000, 100_000, 900.0),
              seeds=5, eval_every=10_000, learning_starts=10_000),
        Study(3, "Walker2d-v5", "td3", 100_000, modes({"accelerate": 400.0, "scratch": 300.0, "accelerator": 500.0},
              ("--switch-max-steps", "50000")), seeds=5, eval_every=10_000, learning_starts=10_000,
              extra=("--pixels",), tag="pixels"),
        Study(4, "Hopper-v5", "td3", 100_000, modes({"accelerate": 400.0, "scratch": 500.0, "accelerator": 400.0},
              ("--switch-max-steps", "50000")), seeds=5, eval_every=10_000, learning_starts=10_000,
              obs_mask="velocities"),
    )),
    "paper": Plan("paper", "a cluster (accelerl sweep --ray) or many GPU machines; rates assumed", 64, (
        *(Study(1, env, algo, 1_000_000, modes({"accelerate": 300.0, "scratch": 200.0, "accelerator": 400.0}), seeds=5,
                eval_every=10_000, learning_starts=25_000)
          for env in ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5") for algo in ("td3", "sac")),
        Study(2, "Hopper-v5", "td3", 1_000_000, buffers([10_000, 20_000, 100_000], 1_000_000, 300_000, 300.0),
              seeds=5, eval_every=10_000, learning_starts=25_000),
        Study(3, "Walker2d-v5", "td3", 1_000_000, modes({"accelerate": 150.0, "scratch": 100.0, "accelerator": 200.0}),
              seeds=5, eval_every=20_000, learning_starts=25_000, extra=("--pixels",), tag="pixels"),
        *(Study(4, env, algo, 1_000_000, modes({"accelerate": 150.0, "scratch": 200.0, "accelerator": 150.0}), seeds=5,
                eval_every=10_000, learning_starts=25_000, obs_mask="velocities")
          for env in ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5") for algo in ("td3", "sac")),
    )),
}
QUESTIONS = {
    1: "Does the accelerated transformer beat the transformer from scratch, and how close is it to the accelerator?",
    2: "Is a 10-20k stage-2 replay buffer enough?",
    3: "On pixels, is the accelerated transformer faster in wall-clock time to the same return?",
    4: "Velocity-masked (LSTM accelerator): does the transformer keep what the LSTM learned?",
}


def expand(plan: Plan, out: Path, seeds: int | None = None, keys: list[str] | None = None) -> list[Run]:
    runs = []
    for study in plan.studies:
        if keys and study.key not in keys:
            continue
        for seed in range(study.seeds if seeds is None else seeds):  # seed by seed: a cut grid stays balanced
            for variant in study.variants:
                label = variant.label.replace(" ", "").replace(",", "")
                runs.append(Run(study, variant, seed, study.flags(variant, seed), out / study.key / label / f"s{seed}"))
    return runs


def estimate_seconds(runs: list[Run], jobs: int) -> float:
    """Wall-clock seconds for the unfinished runs, ``jobs`` at a time: each variant's measured
    seconds per env step where some of its runs have finished, else the plan's assumed rate."""
    measured: dict[tuple[Study, Variant], list[float]] = {}
    for r in runs:
        if r.finished:
            s = json.loads((r.run_dir / "summary.json").read_text())
            measured.setdefault((r.study, r.variant), []).append(s["wall_time_s"] / max(s["env_steps"], 1))
    total = 0.0
    for run in runs:
        if not run.finished:
            done = measured.get((run.study, run.variant))
            per_step = float(np.mean(done)) if done else 1.0 / run.variant.rate
            total += run.study.total_steps * per_step * EVAL_OVERHEAD
    return total / max(1, jobs)


def describe(plan: Plan, runs: list[Run], jobs: int) -> str:
    lines = [f"plan {plan.name} ({plan.machine}): {len(runs)} runs, {sum(r.finished for r in runs)} finished"]
    for study in dict.fromkeys(r.study for r in runs):
        mine = [r for r in runs if r.study == study]
        seeds = len({r.seed for r in mine})
        lines.append(f"  {study.key}: {', '.join(v.label for v in study.variants)} x {seeds} seeds, "
                     f"{study.total_steps:,} env steps, {sum(r.finished for r in mine)}/{len(mine)} finished, "
                     f"about {estimate_seconds(mine, jobs) / 3600:.1f} h left at {jobs} at a time")
    lines.append(f"estimated time left: {estimate_seconds(runs, jobs) / 3600:.1f} h ({jobs} run(s) at a time)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ reading runs
@dataclass
class Curve:
    steps: np.ndarray
    wall: np.ndarray  # training wall time at each evaluation (evaluations excluded)
    returns: np.ndarray
    switch_step: int | None

    @property
    def final(self) -> float:
        return float(self.returns[-1])


def read_curve(run: Run, stage: str | None = None) -> Curve:
    """The evaluations of the policy the run's mode is for (one per step: the last logged)."""
    rows = [r for r in read_metrics(run.run_dir) if r["policy"] == run.variant.policy and r["return_mean"]
            and (stage is None or r["stage"] == stage)]
    by_step = {int(r["env_step"]): r for r in rows}
    steps = np.array(sorted(by_step))
    summary = json.loads((run.run_dir / "summary.json").read_text())
    return Curve(steps, np.array([float(by_step[s]["wall_time"] or 0.0) for s in steps]),
                 np.array([float(by_step[s]["return_mean"]) for s in steps]), summary.get("switch_step"))


def accelerator_at_switch(run: Run) -> tuple[float, float]:
    """(accelerator, transformer) returns at the last stage-1 evaluation of an accelerated run."""
    rows = [r for r in read_metrics(run.run_dir) if r["stage"] == "stage1" and r["return_mean"]]
    last = max(int(r["env_step"]) for r in rows)
    at = {r["policy"]: float(r["return_mean"]) for r in rows if int(r["env_step"]) == last}
    return at["accelerator"], at["transformer"]


# ---------------------------------------------------------------------------------------- report
def _mark(e: Estimate) -> str:
    return "" if not e.indicative else " (indicative)"


def report(study: Study, runs: list[Run], results_dir: Path, reps: int = REPS) -> tuple[str, list[dict]]:
    """The study's section (answer first, then table and figure) and its per-run rows."""
    by_variant = {v.label: [r for r in runs if r.variant == v and r.finished] for v in study.variants}
    by_variant = {k: v for k, v in by_variant.items() if v}
    stage = "stage2" if study.question == 2 else None
    curves = {k: [read_curve(r, stage) for r in v] for k, v in by_variant.items()}
    finals = {k: np.array([c.final for c in cs]) for k, cs in curves.items()}
    aucs = {k: np.array([area_under_curve(c.steps, c.returns) for c in cs]) for k, cs in curves.items()}
    threshold = float(np.median(finals["accelerator"])) if "accelerator" in finals else None
    rows, table = [], []
    for label, cs in curves.items():
        reach = [first_reach(c.steps, c.wall, c.returns, threshold) if threshold is not None else None for c in cs]
        for run, c, hit in zip(by_variant[label], cs, reach, strict=True):
            rows.append({"study": study.key, "variant": label, "seed": run.seed, "final": round(c.final, 1),
                         "auc": round(area_under_curve(c.steps, c.returns), 1), "switch_step": c.switch_step or "",
                         "threshold": "" if threshold is None else round(threshold, 1),
                         "steps_to_threshold": hit[0] if hit else "", "wall_s_to_threshold": round(hit[1], 1) if hit else "",
                         "wall_time_s": round(float(c.wall[-1]), 1)})
        hits = [h for h in reach if h]
        fin, auc = iqm(finals[label], reps=reps), iqm(aucs[label], reps=reps)
        cells = [label, str(len(cs)), fin.cell() + _mark(fin), auc.cell()]
        if threshold is not None:
            cells += [f"{len(hits)}/{len(cs)}", f"{np.median([h[0] for h in hits]):,.0f}" if hits else "not reached",
                      f"{np.median([h[1] for h in hits]):,.0f}" if hits else "not reached"]
        if stage:
            cells.append("yes" if study_variant(study, label).evicts(study.total_steps) else "no")
        cells.append(f"{np.median([c.wall[-1] for c in cs]):,.0f}")
        table.append("| " + " | ".join(cells) + " |")
    header = ["variant", "seeds", "final return, IQM [95% CI]", ("stage-2 " if stage else "") + "area under curve"]
    if threshold is not None:
        header += [f"reached {threshold:.0f}", "env steps to it (median)", "training s to it (median)"]
    if stage:
        header.append("buffer evicts")
    header.append("training wall time (s, median)")
    lines = [f"**{QUESTIONS[study.question]}** {answer(study, finals, aucs, by_variant, reps)}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *table]
    if threshold is not None:
        lines += ["", f"Threshold: the accelerator's median final return at this budget ({threshold:.0f}); "
                      "steps and seconds are over the seeds that reached it."]
    figures = plot_study(study, curves, results_dir, reps)
    lines += ["", *[f"![{f.stem}](../benchmarks/results/{f.name})" for f in figures]]
    return "\n".join(lines), rows


def study_variant(study: Study, label: str) -> Variant:
    return next(v for v in study.variants if v.label == label)


def answer(study: Study, finals: dict, aucs: dict, by_variant: dict, reps: int = REPS) -> str:
    """The one or two sentences that answer the study's question, with their intervals."""
    n = min(len(v) for v in by_variant.values())
    seeds = f"{n} seed{'s' if n != 1 else ''}{' (indicative: fewer than 5)' if n < 5 else ''}"
    if study.question == 2:
        keep = study.variants[-1].label
        if keep not in finals or len(finals) < 2:
            return f"Not answered yet: the {keep} buffer and a small one must finish ({seeds} so far)."
        parts = [f"{k}: P(final > {keep}) = {probability_of_improvement(finals[k], finals[keep], reps=reps).cell('.2f')}"
                 for k in finals if k != keep]
        return f"Against {keep} ({seeds}): " + "; ".join(parts) + " (0.5 = no difference)."
    if "accelerate" not in finals or "scratch" not in finals:
        return f"Not answered yet: both the accelerated and the from-scratch runs must finish ({seeds} so far)."
    p_final = probability_of_improvement(finals["accelerate"], finals["scratch"], reps=reps)
    p_auc = probability_of_improvement(aucs["accelerate"], aucs["scratch"], reps=reps)
    text = (f"P(accelerated > from scratch) = {p_final.cell('.2f')} on final return and {p_auc.cell('.2f')} on "
            f"area under the curve ({seeds}; 0.5 = no difference).")
    if study.question == 4 and by_variant.get("accelerate"):
        kept = np.array([accelerator_at_switch(r) for r in by_variant["accelerate"]])
        gap = iqm(finals["accelerate"] - kept[:, 0], reps=reps)
        text += (f" The transformer's final return minus the LSTM accelerator's at the switch: IQM {gap.cell()}"
                 " (above 0: it kept and improved on what it was taught).")
    elif "accelerator" in finals:
        text += (f" P(accelerated transformer > accelerator alone) = "
                 f"{probability_of_improvement(finals['accelerate'], finals['accelerator'], reps=reps).cell('.2f')}.")
    return text


def plot_study(study: Study, curves: dict[str, list[Curve]], out_dir: Path, reps: int = REPS) -> list[Path]:
    """Return against env steps and against training wall time (IQM across seeds, 95% band), and
    for more than one variant the performance profiles of the final returns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_step, by_wall) = plt.subplots(1, 2, figsize=(11, 4))
    for label, cs in curves.items():
        common = sorted(set.intersection(*(set(c.steps.tolist()) for c in cs)))
        at = np.array([[c.returns[list(c.steps).index(s)] for s in common] for c in cs])
        wall = np.median([[c.wall[list(c.steps).index(s)] for s in common] for c in cs], axis=0)
        est = [iqm(at[:, i], reps=max(1, reps // 4)) for i in range(len(common))]  # a band: fewer resamples
        for ax, x in ((by_step, common), (by_wall, wall)):
            ax.plot(x, [e.point for e in est], label=f"{label} ({len(cs)})")
            ax.fill_between(x, [e.low for e in est], [e.high for e in est], alpha=0.2)
    by_wall.set_xlabel("training wall time (s, median over seeds)")
    by_wall.set_ylabel("eval return (IQM)")
    by_wall.grid(alpha=0.3)
    figures = [save_figure(fig, by_step, f"{study.key}", out_dir / f"campaign-{study.key}.png", "eval return (IQM)")]
    if len(curves) > 1:
        finals = {k: np.array([c.final for c in cs]) for k, cs in curves.items()}
        lo, hi = min(v.min() for v in finals.values()), max(v.max() for v in finals.values())
        taus = np.linspace(lo, hi, 50)
        profiles, bands = performance_profiles(finals, taus, reps=max(1, reps // 4))
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for k in finals:
            ax.plot(taus, profiles[k], label=k)
            ax.fill_between(taus, bands[k][0], bands[k][1], alpha=0.15)
        figures.append(save_figure(fig, ax, f"{study.key}: performance profile", out_dir /
                                   f"campaign-{study.key}-profile.png", "fraction of runs with final return > tau",
                                   "final return (tau)"))
    return figures


def versions() -> str:
    import gymnasium
    import torch

    import accelerl

    try:
        import mujoco

        mj = f", MuJoCo {mujoco.__version__}"
    except ImportError:
        mj = ""
    return f"accelerl {accelerl.__version__}, torch {torch.__version__}, gymnasium {gymnasium.__version__}{mj}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True, choices=list(PLANS))
    parser.add_argument("--seeds", type=int, help="seeds per variant (grows every grid; the plan's default otherwise)")
    parser.add_argument("--studies", nargs="+", help="only these studies (keys as --dry-run prints them)")
    parser.add_argument("--jobs", type=int, help="runs at a time (default: the plan's)")
    parser.add_argument("--ray", help="run on this Ray cluster (accelerl sweep --ray)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and the estimated cost, start nothing")
    parser.add_argument("--report-only", action="store_true", help="start nothing; report the finished runs")
    parser.add_argument("--out", default=str(ROOT / "runs" / "campaign"))
    parser.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--write-docs", action="store_true", help="rewrite the studies' sections of --docs-file")
    parser.add_argument("--docs-file", default=str(ROOT / "docs" / "RESULTS.md"))
    parser.add_argument("--reps", type=int, default=REPS, help="bootstrap resamples of each interval")
    args = parser.parse_args(argv)
    args.argv = argv
    plan = PLANS[args.plan]
    jobs = args.jobs or plan.jobs
    try:
        return campaign(plan, args, jobs)
    except AccelerlError as exc:
        print(f"campaign.py: {exc}", file=sys.stderr)
        return 2


def campaign(plan: Plan, args: argparse.Namespace, jobs: int) -> int:
    """Check every run's config, print the plan and its cost, run what is unfinished (unless a
    dry run or a report), then report each study from its finished runs."""
    from accelerl.cli import train_overrides_parser

    runs = expand(plan, Path(args.out), args.seeds, args.studies)
    if not runs:
        raise AccelerlError(f"no study of plan {plan.name} is named {' '.join(args.studies)}")
    parse = train_overrides_parser()
    work = [sweep.check_run([*r.flags, "--device", args.device], r.run_dir, parse) for r in runs]
    print(describe(plan, runs, jobs), flush=True)
    if args.dry_run:
        return 0
    failed = []
    if not args.report_only:
        statuses = sweep.run_all([w for w, r in zip(work, runs, strict=True) if not r.finished], jobs, args.ray,
                                 lambda run, status: print(f"  {run}: {status}", flush=True))
        failed = [run for run, status in statuses.items() if status.startswith("failed")]
    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    env_line = f"{machine_line(1 if args.ray else jobs)}; {versions()}"
    for study in dict.fromkeys(r.study for r in runs):
        mine = [r for r in runs if r.study == study]
        done = [r for r in mine if r.finished]
        if not done:
            print(f"{study.key}: no finished run yet")
            continue
        body, rows = report(study, done, results_dir, args.reps)
        write_csv(results_dir / f"campaign-{study.key}.csv", rows)
        cmd = command_line("campaign.py", args.argv)
        body += (f"\n\nCommand: `{cmd}` ({env_line}). {len(done)} of {len(mine)} runs of the study finished"
                 f"; {study.eval_episodes} deterministic evaluation episodes every {study.eval_every:,} env steps;"
                 f" per-run rows in `benchmarks/results/campaign-{study.key}.csv`.")
        print(f"\n## {study.key}\n{body}")
        if args.write_docs:
            replace_section(Path(args.docs_file), f"campaign-{study.key}", body)
    if failed:
        print(f"campaign.py: {len(failed)} run(s) failed (each folder has sweep-error.log); re-run to resume",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
