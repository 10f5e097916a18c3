"""Test helper: write a real run directory (model/checkpoint.pt, model/items.parquet, metrics.json).

The model is a real raytrain model, optionally fitted for a few steps with the multinomial
likelihood so its top-N depends on the user (an untrained decoder ranks nearly the same items for
everyone, which would hide masking and ordering bugs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from raytrain.config import Config, ModelConfig, PIAConfig
from raytrain.data.batches import list_column_to_csr
from raytrain.models.build import build_model
from raytrain.train.checkpoint import make_payload, save_checkpoint


def tiny_config(name: str = "tiny") -> Config:
    return Config(name=name, model=ModelConfig(hidden_dim=32, latent_dim=8, pia=PIAConfig(enabled=True)))


def items_table(n_items: int, id_prefix: str = "item-") -> pa.Table:
    """A vocabulary: item_idx 0..n-1, string ids, popularity descending with the index."""
    return pa.table({
        "item_idx": pa.array(np.arange(n_items), pa.int32()),
        "item_id": pa.array([f"{id_prefix}{i}" for i in range(n_items)]),
        "popularity": pa.array(np.arange(n_items, 0, -1) * 10, pa.int64()),
    })


def fit_steps(model: torch.nn.Module, histories: pa.ChunkedArray | pa.Array | None, n_items: int, steps: int) -> None:
    """A few Adam steps of the multinomial likelihood (PIA and KL left out: only ranking matters here)."""
    if histories is None or steps == 0:
        return
    x = list_column_to_csr(histories, n_items)
    dense = x.to_dense()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(x).logits
        loss = -(torch.log_softmax(logits, dim=1) * dense).sum(1).mean()
        loss.backward()
        optimizer.step()
    model.eval()


def make_run_dir(
    path: Path,
    items: pa.Table,
    vocab_fingerprint: str,
    *,
    test_ndcg: float | None = 0.3,
    histories: pa.ChunkedArray | pa.Array | None = None,
    steps: int = 0,
    seed: int = 0,
    config: Config | None = None,
) -> Path:
    config = config or tiny_config()
    n_items = items.num_rows
    torch.manual_seed(seed)
    model = build_model(config.model, n_items)
    fit_steps(model, histories, n_items, steps)
    payload = make_payload(
        model_state={k: v.detach().clone() for k, v in model.state_dict().items()},
        optimizer_states=[],
        train_state={"epoch": 1},
        config=config,
        n_items=n_items,
        vocab_fingerprint=vocab_fingerprint,
        history=[],
    )
    (path / "model").mkdir(parents=True, exist_ok=True)
    save_checkpoint(str(path / "model"), payload)
    pq.write_table(items, path / "model" / "items.parquet")
    metrics = {"data_fingerprint": "data-" + vocab_fingerprint[:8]}
    if test_ndcg is not None:
        metrics["test"] = {"ndcg@100": test_ndcg}
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path
