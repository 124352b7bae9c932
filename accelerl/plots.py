"""Learning curves from metrics.csv: one run (curves.png) or several side by side."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from accelerl.config import read_run_config
from accelerl.errors import AccelerlError

COLORS = {"transformer": "tab:blue", "accelerator": "tab:orange", "random": "tab:gray"}


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise AccelerlError(f"{run_dir} has no metrics.csv (is it an accelerl run directory?)")
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _draw(ax, rows: list[dict[str, str]], title: str) -> None:
    curves: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        if row["return_mean"] and row["policy"] != "random":
            curves.setdefault(row["policy"], []).append(
                (int(row["env_step"]), float(row["return_mean"]), float(row["return_std"] or 0)))
    for policy, pts in curves.items():
        pts.sort()
        xs, ys, sd = zip(*pts, strict=True)
        color = COLORS.get(policy)
        ax.plot(xs, ys, marker="o", ms=3, label=policy, color=color)
        ax.fill_between(xs, [y - s for y, s in zip(ys, sd, strict=True)],
                        [y + s for y, s in zip(ys, sd, strict=True)], alpha=0.15, color=color)
    for row in rows:
        if row["policy"] == "random" and row["return_mean"]:
            ax.axhline(float(row["return_mean"]), ls=":", color=COLORS["random"], label="random policy")
        if row["event"].startswith("switch"):
            ax.axvline(int(row["env_step"]), ls="--", color="k", alpha=0.6, label="switch to stage 2")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (deterministic, mean ± std)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _title(run_dir: Path) -> str:
    try:
        cfg = read_run_config(run_dir)
        mask = f" mask={cfg['obs_mask']}" if cfg.get("obs_mask") else ""
        return f"{cfg['env']}{mask} {cfg['mode']} {cfg['algo']} seed {cfg['seed']}"
    except (AccelerlError, KeyError):
        return run_dir.name


def plot_run(run_dir: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _draw(ax, read_metrics(run_dir), _title(run_dir))
    out = run_dir / "curves.png"
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_runs(run_dirs: list[Path], out: Path) -> Path:
    if not run_dirs:
        raise AccelerlError("accelerl plot needs at least one run directory")
    out = Path(out)
    probe = plt.figure()
    formats = probe.canvas.get_supported_filetypes()
    plt.close(probe)
    if out.suffix.lstrip(".").lower() not in formats:
        raise AccelerlError(f"--out {out}: give an image file name ending in .png, .pdf or .svg")
    rows = [read_metrics(d) for d in run_dirs]
    for d, r in zip(run_dirs, rows, strict=True):
        if not any(row["return_mean"] and row["policy"] != "random" for row in r):
            raise AccelerlError(f"{d} has no evaluation yet; nothing to plot")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AccelerlError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    fig, axes = plt.subplots(1, len(run_dirs), figsize=(5.5 * len(run_dirs), 4.2), sharey=True, squeeze=False)
    for ax, d, r in zip(axes[0], run_dirs, rows, strict=True):
        _draw(ax, r, _title(d))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
