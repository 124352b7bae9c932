"""Run outputs: metrics.csv (one row per evaluation and policy), TensorBoard, progress."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

METRIC_COLUMNS = [
    "env_step", "stage", "policy", "return_mean", "return_std", "return_min", "return_max", "ep_len_mean",
    "episodes", "success_once", "success_at_end", "wall_time", "steps_per_s", "critic_loss", "actor_loss", "bc_loss",
    "critic_bc_loss", "alpha", "train_return", "event",
]


class RunLogger:
    def __init__(self, run_dir: Path, resume_step: int | None = None, total_steps: int = 0) -> None:
        self.path = run_dir / "metrics.csv"
        if resume_step is not None and self.path.exists():
            # Rows written after the checkpoint we resume from will be produced again.
            with self.path.open() as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["env_step"]) <= resume_step]
        else:
            rows = []
        with self.path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        # Events up to and including the checkpoint's step stay (as the CSV rows do).
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=None if resume_step is None else resume_step + 1)
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=resume_step or 0, unit="step", dynamic_ncols=True)
        self._last_bar = resume_step or 0
        self.rows_written = 0  # by this logger (what curves.png has not drawn yet, if more)

    def log_eval(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=METRIC_COLUMNS).writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
            fh.flush()
        self.rows_written += 1
        step = int(row["env_step"])
        if row.get("return_mean") is not None:
            self.tb.add_scalar(f"eval/{row['policy']}_return", row["return_mean"], step)
        if row.get("success_once") is not None:
            self.tb.add_scalar(f"eval/{row['policy']}_success_once", row["success_once"], step)
        for key in ("critic_loss", "actor_loss", "bc_loss", "critic_bc_loss", "alpha", "train_return", "steps_per_s"):
            if row.get(key) not in (None, ""):
                self.tb.add_scalar(f"train/{key}", row[key], step)

    def progress(self, step: int, stage: str, sps: float, last: dict[str, float]) -> None:
        evals = " ".join(f"{k}={v:.1f}" for k, v in last.items())
        if self.bar is not None:
            self.bar.update(step - self._last_bar)
            self.bar.set_postfix_str(f"stage={stage} {sps:.0f} sps {evals}")
            self._last_bar = step
        else:
            stamp = time.strftime("%H:%M:%S")
            print(f"[{stamp}] step {step} stage={stage} {sps:.0f} steps/s {evals}", flush=True)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        self.tb.flush()
        self.tb.close()
        if self.bar is not None:
            self.bar.close()
