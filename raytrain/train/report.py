"""Run outputs a person reads: ``metrics.json``, training-curve and per-group PNGs, a one-screen summary."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

logger = logging.getLogger(__name__)


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | Path) -> None:
    """Loss, validation NDCG@100 and the beta / lambda_A schedules against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [h.get("train/loss", float("nan")) for h in history])
    axes[0].set(title="training loss", xlabel="epoch")
    evaluated = [h for h in history if "val/ndcg@100" in h]
    for key in ("val/ndcg@100", "val/recall@20", "val/recall@50"):
        axes[1].plot([h["epoch"] for h in evaluated], [h[key] for h in evaluated], label=key.split("/")[1])
    axes[1].set(title="validation", xlabel="epoch")
    axes[1].legend()
    axes[2].plot(epochs, [h.get("beta", float("nan")) for h in history], label="beta")
    axes[2].plot(epochs, [h.get("lambda_A", float("nan")) for h in history], label="lambda_A")
    axes[2].set(title="schedules", xlabel="epoch")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_groups(groups: Mapping[str, Mapping[str, float]], path: str | Path) -> None:
    """Test NDCG@100 and Recall@20 per activity group (fold-in size), with user counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    xs = range(len(names))
    ax.bar([x - width / 2 for x in xs], [groups[n].get("ndcg@100", 0.0) for n in names], width, label="ndcg@100")
    ax.bar([x + width / 2 for x in xs], [groups[n].get("recall@20", 0.0) for n in names], width, label="recall@20")
    ax.set_xticks(list(xs), [f"{n}\n({int(groups[n].get('users', 0))} users)" for n in names])
    ax.set(title="test metrics by activity group (fold-in items)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary_lines(metrics: Mapping[str, Any]) -> list[str]:
    """The one-screen summary logged at the end of a run."""
    test = metrics.get("test", {})
    lines = [
        f"run {metrics.get('run_name')} | model {metrics.get('model')} | epochs {metrics.get('epochs_run')} "
        f"| best epoch {metrics.get('best_epoch')}",
        f"best val ndcg@100 {metrics.get('best_val', {}).get('ndcg@100', float('nan')):.4f}",
        "test   " + "  ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float)),
    ]
    for group, values in metrics.get("test_groups", {}).items():
        lines.append(
            f"  {group:>8}: ndcg@100 {values.get('ndcg@100', float('nan')):.4f} "
            f"recall@20 {values.get('recall@20', float('nan')):.4f} ({int(values.get('users', 0))} users)"
        )
    for key, value in metrics.get("baselines", {}).items():
        lines.append(f"  baseline {key}: ndcg@100 {value.get('ndcg@100', float('nan')):.4f}")
    lines.append(f"outputs in {metrics.get('run_dir')}")
    return lines
