"""Users' current histories for scoring, as a Ray Dataset of ``(user_id, items list<int32>[, unknown])``.

Two sources:

* a prepared dataset (its vocabulary must be the model's: checked by fingerprint, never mapped);
  train users' ``items``, held-out users' ``fold_in + held_out``;
* raw interactions in any supported format, mapped through the model's vocabulary: positives
  (``value >= data.threshold``) of known items are kept, unknown items are dropped and counted
  per user (``unknown``),
  optionally only interactions within ``window_days`` before the end of ``run_date`` (and so only
  users active in that window).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from raytrain import storage
from raytrain.config import Config
from raytrain.data.prepared import PreparedDataset
from raytrain.store import ModelArtifact
from raytrain.train import checkpoint as ckpt

logger = logging.getLogger(__name__)

PREPARED = "prepared"


@dataclass
class ScoreInput:
    """A lazily read history dataset plus what the manifest reports about it."""

    dataset: ray.data.Dataset
    users: int  # from meta for prepared input; an estimate for raw input (sizes blocks only)
    fingerprint: str
    description: dict[str, Any]


def detect_format(path: str, configured: str) -> str:
    """``prepared`` when ``path`` holds a prepared dataset (``meta.json``), else the configured raw format."""
    if storage.exists(storage.join(path, "meta.json")):
        return PREPARED
    if configured in ("synthetic", PREPARED):
        raise ValueError(
            f"{path} is not a prepared dataset (no meta.json); give the raw format with --format "
            "(movielens | netflix | msd | parquet | csv)"
        )
    return configured


def _concat_lists(a: pa.Array, b: pa.Array) -> pa.ListArray:
    """Row-wise concatenation of two list columns (fold_in + held_out) without a Python loop."""
    values = pa.concat_arrays([a.flatten(), b.flatten()])
    parents = pa.concat_arrays([pc.list_parent_indices(a), pc.list_parent_indices(b)])
    values = values.take(pc.sort_indices(parents))  # sort_indices is stable: keeps each list's order
    lengths = pc.add(pc.fill_null(pc.list_value_length(a), 0), pc.fill_null(pc.list_value_length(b), 0))
    offsets = np.zeros(len(a) + 1, dtype=np.int32)
    np.cumsum(lengths.to_numpy(zero_copy_only=False), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values.cast(pa.int32()))


def _held_out_history(batch: pa.Table) -> pa.Table:
    fold_in = batch.column("fold_in").combine_chunks()
    held_out = batch.column("held_out").combine_chunks()
    return pa.table({"user_id": batch.column("user_id"), "items": _concat_lists(fold_in, held_out)})


def prepared_input(path: str, artifact: ModelArtifact, splits: tuple[str, ...]) -> ScoreInput:
    """Histories of the prepared dataset's users; refuses a dataset with another vocabulary.

    Raises:
        CheckpointMismatchError: the model was trained on a different item vocabulary.
    """
    prepared = PreparedDataset.open(path)
    ckpt.check_compatible(
        artifact.payload, n_items=prepared.n_items, vocab_fingerprint=prepared.vocab_fingerprint,
        source=f"model {artifact.version}",
    )
    parts = []
    for split in splits:
        ds = prepared.ray_dataset(split)
        if split == "train":
            parts.append(ds.select_columns(["user_id", "items"]))
        else:
            parts.append(ds.map_batches(_held_out_history, batch_format="pyarrow"))
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    users = sum(int(prepared.meta["users"][s]) for s in splits)
    digest = hashlib.sha256(storage.read_bytes(storage.join(path, "meta.json")))
    for split in splits:
        for file in sorted(prepared.split_paths(split)):
            fs, fpath = storage.resolve(file)
            digest.update(f"{file}:{fs.get_file_info(fpath).size}".encode())
    return ScoreInput(dataset, users, digest.hexdigest(), {"format": PREPARED, "path": path, "splits": list(splits)})


def window_bounds(run_date: str, window_days: int) -> tuple[int, int]:
    """``[start, end)`` in epoch seconds: the ``window_days`` days up to and including ``run_date`` (UTC)."""
    end = dt.datetime.combine(dt.date.fromisoformat(run_date) + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    return int((end - dt.timedelta(days=window_days)).timestamp()), int(end.timestamp())


def _to_vocabulary(batch: pa.Table, item_ids: pa.Array, threshold: float, window: tuple[int, int] | None) -> pa.Table:
    """Map raw ``item_id`` to the model's ``item_idx``; flag positives and unknown positives."""
    if window is not None:
        if "timestamp" not in batch.column_names:
            raise ValueError("score.window_days needs interactions with a timestamp; this input has none")
        ts = batch.column("timestamp")
        batch = batch.filter(pc.and_(pc.greater_equal(ts, window[0]), pc.less(ts, window[1])))
    items, vocab = batch.column("item_id"), item_ids
    if items.type != vocab.type:  # e.g. ids read as int64 from CSV, string in the vocabulary
        items, vocab = pc.cast(items, pa.string()), pc.cast(vocab, pa.string())
    index = pc.index_in(items, value_set=vocab)
    positive = pc.fill_null(pc.greater_equal(batch.column("value"), threshold), False)
    return pa.table({
        "user_id": batch.column("user_id"),
        "item_idx": pc.if_else(positive, index, pa.scalar(None, pa.int32())).cast(pa.int32()),
        "positive": pc.cast(positive, pa.int64()),
        "unknown": pc.cast(pc.and_(positive, pc.is_null(index)), pa.int64()),
    })


def raw_input(
    path: str, input_format: str, artifact: ModelArtifact, config: Config, run_date: str
) -> ScoreInput:
    """Group raw interactions into histories over the model's vocabulary, lazily (one streaming pass).

    Each user's row carries ``unknown`` (positive interactions with items the model does not
    know); the scorer passes it through as ``unknown_items`` so the totals, and the check that the
    input is this model's catalogue, come from the written output before it is published.

    Raises:
        DataError: unreadable input (names the file), raised when the job runs.
    """
    from ray.data.aggregate import Sum, Unique

    from raytrain.data.formats import plan_read, raise_data_errors

    data = dataclasses.replace(config.data, path=path, format=input_format)
    plan = plan_read(data)
    window = window_bounds(run_date, config.score.window_days) if config.score.window_days > 0 else None
    item_ids = artifact.items.column("item_id").combine_chunks()
    with raise_data_errors():
        mapped = plan.dataset().map_batches(
            _to_vocabulary, fn_kwargs={"item_ids": item_ids, "threshold": data.threshold, "window": window},
            batch_format="pyarrow",
        )
        # Ray's default of 200 hash partitions is 200 tasks even for a small input: size it to the data.
        partitions = config.score.shuffle_partitions or max(1, min(200, -(-plan.estimated_rows // 1_000_000)))
        grouped = mapped.groupby("user_id", num_partitions=partitions).aggregate(
            Unique(on="item_idx", ignore_nulls=True, alias_name="items"),
            Sum(on="unknown", alias_name="unknown"),
        )
    description = {"format": input_format, "path": path, "threshold": data.threshold,
                   "window": {"days": config.score.window_days, "start": window[0], "end": window[1]} if window else None}
    digest = hashlib.sha256(json.dumps({"source": plan.fingerprint(), **description}, sort_keys=True).encode())
    # The user count is unknown until the job runs; ~20 interactions per user only sizes blocks.
    return ScoreInput(grouped, max(1, plan.estimated_rows // 20), digest.hexdigest(), description)
