"""Test-set evaluation of a finished run's best model: overall, per activity group, diagnostics, baseline.

Runs on the driver after training: the test split is held-out users only (thousands to tens of
thousands of rows), so it is read in-process and scored in batches.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from raytrain.config import Config
from raytrain.data.prepared import PreparedDataset
from raytrain.metrics import ACTIVITY_GROUPS
from raytrain.models.baselines import Popularity
from raytrain.train import checkpoint as ckpt
from raytrain.train.local import evaluate_table

logger = logging.getLogger(__name__)

DIAGNOSTIC_KEYS = ("mask_variance", "mask_variance_ratio", "centroid_distance")


def split_metrics(means: dict[str, float]) -> dict[str, Any]:
    """Split ``MetricSums.means()`` into overall metrics, per-group metrics and diagnostics."""
    overall = {k: v for k, v in means.items() if "/" not in k and k not in DIAGNOSTIC_KEYS}
    groups: dict[str, dict[str, float]] = {}
    for name, _, _ in ACTIVITY_GROUPS:
        suffix = f"/{name}"
        values = {k[: -len(suffix)]: v for k, v in means.items() if k.endswith(suffix)}
        if values:
            groups[name] = values
    diagnostics = {k: means[k] for k in DIAGNOSTIC_KEYS if k in means}
    return {"overall": overall, "groups": groups, "diagnostics": diagnostics}


def overall_only(means: dict[str, float]) -> dict[str, float]:
    """Overall metrics plus diagnostics (what is reported every epoch)."""
    return {k: v for k, v in means.items() if "/" not in k}


def evaluate_checkpoint(model_dir: str, prepared: PreparedDataset, config: Config, split: str = "test") -> dict[str, Any]:
    """Metrics of the checkpoint in ``model_dir`` on ``split``, with item popularity for reference."""
    payload = ckpt.load_checkpoint(model_dir)
    ckpt.check_compatible(
        payload, n_items=prepared.n_items, vocab_fingerprint=prepared.vocab_fingerprint, source=model_dir
    )
    model = ckpt.model_from_payload(payload)
    table = prepared.read_split(split)
    batch_size = config.train.eval_batch_size
    result = split_metrics(evaluate_table(model, table, prepared.n_items, batch_size))
    popularity = torch.tensor(prepared.read_items().column("popularity").to_numpy(), dtype=torch.float32)
    baseline = evaluate_table(Popularity(popularity), table, prepared.n_items, batch_size, diagnostic_users=0)
    logger.info(
        "%s ndcg@100 %.4f (popularity %.4f) on %d users",
        split, result["overall"].get("ndcg@100", float("nan")), baseline.get("ndcg@100", float("nan")), table.num_rows,
    )
    return {
        split: result["overall"],
        f"{split}_groups": result["groups"],
        f"{split}_diagnostics": result["diagnostics"],
        "baselines": {"popularity": {k: v for k, v in baseline.items() if "/" not in k}},
    }
