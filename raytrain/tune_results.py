"""Turn a finished sweep's ResultGrid into the outputs people use: table, best config, plot.

Writes ``results.csv`` / ``results.parquet`` (one row per trial: knobs, epochs run, best
validation NDCG@100, stop reason), ``best_config.yaml`` (accepted as is by ``jobs/train_pia.py``)
and ``sweep.png`` (validation curves, stopped-early vs completed, and best NDCG@100 vs each knob).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from raytrain.config import Config, dump_yaml
from raytrain.train.trainer import SCORE_METRIC
from raytrain.tune import KNOBS, trial_config

logger = logging.getLogger(__name__)


@dataclass
class SweepSummary:
    table: pd.DataFrame  # one row per trial, best first
    curves: dict[str, pd.DataFrame]  # trial id -> (epoch, val/ndcg@100)
    best_params: dict[str, float]
    epochs_run: int
    epochs_if_all_completed: int
    output_dir: str

    @property
    def epoch_savings(self) -> float:
        """Share of trial-epochs ASHA saved compared with running every trial to the end."""
        return 1.0 - self.epochs_run / max(self.epochs_if_all_completed, 1)


def _trial_row(result: Any, max_epochs: int) -> tuple[dict[str, Any], pd.DataFrame | None]:
    params = {k: result.config.get(k) for k in KNOBS if k in result.config}
    frame = result.metrics_dataframe
    trial_id = (result.metrics or {}).get("trial_id") or os.path.basename(str(result.path)).split("_")[1]
    row: dict[str, Any] = {"trial_id": trial_id, **params, "epochs": 0, "best_val_ndcg@100": float("nan"),
                           "best_epoch": 0, "best_checkpoint": None}
    curve = None
    if frame is not None and SCORE_METRIC in frame and "epoch" in frame:
        curve = frame[["epoch", SCORE_METRIC]].dropna().drop_duplicates("epoch", keep="last").sort_values("epoch")
        best = frame.loc[frame[SCORE_METRIC].idxmax()]
        row.update(epochs=int(curve["epoch"].max()), best_epoch=int(best["epoch"]),
                   best_checkpoint=best.get("checkpoint_path"))
        row["best_val_ndcg@100"] = float(best[SCORE_METRIC])
    if result.error is not None:
        row["stop_reason"] = "error"
        row["error"] = str(result.error).strip().splitlines()[-1][:300] if str(result.error).strip() else repr(result.error)
    else:
        row["stop_reason"] = "completed" if row["epochs"] >= max_epochs else "stopped early (ASHA)"
        row["error"] = ""
    return row, curve


def summarize(result_grid: Any, config: Config, output_dir: str) -> SweepSummary:
    """Collect every trial (finished, stopped or failed) into one table and write the outputs."""
    max_epochs = config.tune.max_epochs
    rows, curves = [], {}
    for result in result_grid:
        row, curve = _trial_row(result, max_epochs)
        rows.append(row)
        if curve is not None:
            curves[row["trial_id"]] = curve
    table = pd.DataFrame(rows).sort_values("best_val_ndcg@100", ascending=False, na_position="last")
    table = table.reset_index(drop=True)
    scored = table.dropna(subset=["best_val_ndcg@100"])
    if scored.empty:
        raise RuntimeError(f"no trial of the sweep reported a validation score; see {output_dir}")
    best_params = {k: float(scored.iloc[0][k]) for k in KNOBS if k in scored.columns}
    summary = SweepSummary(
        table=table, curves=curves, best_params=best_params,
        epochs_run=int(table["epochs"].sum()), epochs_if_all_completed=max_epochs * len(table),
        output_dir=output_dir,
    )
    _write_outputs(summary, config)
    return summary


def _write_outputs(summary: SweepSummary, config: Config) -> None:
    out = summary.output_dir
    os.makedirs(out, exist_ok=True)
    summary.table.to_csv(os.path.join(out, "results.csv"), index=False)
    summary.table.to_parquet(os.path.join(out, "results.parquet"), index=False)
    best = trial_config(config, summary.best_params)
    header = (
        f"# best config of sweep {config.name}: val ndcg@100 {summary.table.iloc[0]['best_val_ndcg@100']:.4f}\n"
        f"#   python jobs/train_pia.py --config {os.path.join(out, 'best_config.yaml')} --data PREPARED --output-dir RUN_DIR"
    )
    dump_yaml(best, os.path.join(out, "best_config.yaml"), header=header)
    plot_sweep(summary, os.path.join(out, "sweep.png"))


def plot_sweep(summary: SweepSummary, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    knobs = [k for k in ("beta", "lambda", "epsilon", "lr") if k in summary.table.columns]
    fig, axes = plt.subplots(1, 1 + len(knobs), figsize=(4.2 * (1 + len(knobs)), 3.6))
    reasons = dict(zip(summary.table["trial_id"], summary.table["stop_reason"]))
    for trial_id, curve in summary.curves.items():
        completed = reasons.get(trial_id) == "completed"
        axes[0].plot(curve["epoch"], curve[SCORE_METRIC], "-" if completed else "--",
                     color="tab:blue" if completed else "tab:gray", alpha=0.9 if completed else 0.6)
    axes[0].set(title="val ndcg@100 (solid: completed, dashed: stopped)", xlabel="epoch")
    for ax, knob in zip(axes[1:], knobs):
        ax.scatter(summary.table[knob], summary.table["best_val_ndcg@100"])
        ax.set(title=f"best val ndcg@100 vs {knob}", xlabel=knob, xscale="log" if knob in ("beta", "lr") else "linear")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
