"""Liang et al. (2018) preparation on Ray Data: raw interactions -> prepared dataset.

Steps (DESIGN.md "Data contract"): positives ``value >= threshold``; item filter
``min_users_per_item``, then user filter ``min_items_per_user``; ``n_heldout`` validation and
``n_heldout`` test users, those with the smallest seeded user hash (a fraction < 1 instead holds out
the users whose hash falls below it: that share of users in expectation); item vocabulary = items of the
training users by descending training popularity (ties by item id); held-out users keep only
vocabulary items, and those with >= 5 have floor(heldout_fraction * n) held out.

Passes (the driver only ever holds item counts, the held-out candidates and per-bucket totals):

1. read -> positives -> append to user-bucket files (map side, hash-partitioned map_batches);
   per bucket: distinct (user, item) pairs, sorted                             (item counts back)
2. per bucket: item + user filters; the bucket's first 2 * n_heldout users by hash (candidates back)
3. per bucket: item counts over training users                                (vocabulary)
4. per bucket: vocabulary index, fold-in / held-out split, per-user lists -> output files

Buckets depend on the user id only, so the output files are the same whatever the parallelism.
Tasks write the bucket files themselves, so on a multi-node cluster ``output`` must be storage
every node sees (a shared filesystem or an object-store URI), as for any Ray Data write.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray.data

from raytrain import __version__, storage
from raytrain.config import Config, DataConfig, to_dict, validate
from raytrain.data import buckets
from raytrain.data.files import DataError
from raytrain.data.formats import ReadPlan, plan_read, raise_data_errors
from raytrain.data.prepared import SCHEMA_VERSION, SPLITS, PreparedDataset, vocab_fingerprint

logger = logging.getLogger(__name__)

ROWS_PER_FILE = 4_000_000  # raw interactions per output file when data.num_output_files is 0
MAX_FILES = 4096
ROWS_PER_WRITE = 2_000_000  # rows per map-side write: fewer, larger intermediate files


def _tasks(n: int) -> ray.data.Dataset:
    return ray.data.from_items([{"task": i} for i in range(n)], override_num_blocks=n)


def _batches(ds: ray.data.Dataset) -> Iterator[pa.Table]:
    yield from ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1)


def _sum_counts(ds: ray.data.Dataset) -> pa.Table:
    """Merge per-bucket (item_id, users) partial counts on the driver, O(n_items) memory."""
    total = None
    for batch in _batches(ds):
        total = batch if total is None else pa.concat_tables([total, batch])
        total = total.group_by("item_id").aggregate([("users", "sum")]).rename_columns(["item_id", "users"])
    return total if total is not None else pa.table({"item_id": pa.array([], pa.int64()), "users": pa.array([], pa.int64())})


def _partition(plan: ReadPlan, work: buckets.Place, n_buckets: int) -> tuple[int, int]:
    """Pass 1 (map side): read, keep positives, append rows to user-bucket files. Returns row counts."""
    stats = plan.dataset().map_batches(
        buckets.partition_positives, fn_kwargs={"place": work, "threshold": plan.data.threshold, "n_buckets": n_buckets},
        batch_size=ROWS_PER_WRITE, batch_format="pyarrow")
    raw = positives = 0
    for batch in _batches(stats):
        raw += int(pc.sum(batch["rows"]).as_py())
        positives += int(pc.sum(batch["positives"]).as_py())
    return raw, positives


def _prepare_output(fs: pafs.FileSystem, root: str, shown: str) -> None:
    """Create the output directory, or clear a previous prepared dataset there; refuse anything else."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise DataError(f"output {shown} is a file, not a directory")
    if info.type == pafs.FileType.NotFound:
        fs.create_dir(root, recursive=True)
        return
    entries = fs.get_file_info(pafs.FileSelector(root))
    if not entries:
        return
    if not any(e.base_name == "meta.json" for e in entries) and not any(e.base_name == "_work" for e in entries):
        raise DataError(f"output {shown} is not empty and holds no prepared dataset: refusing to overwrite it")
    if any(e.base_name == "meta.json" for e in entries):
        fs.delete_file(f"{root}/meta.json")  # first: a half-replaced dataset must not look complete
    for entry in entries:
        if entry.base_name in (*SPLITS, "_work"):
            fs.delete_dir(entry.path)
        elif entry.base_name == "items.parquet":
            fs.delete_file(entry.path)


def _n_heldout(data: DataConfig) -> tuple[int, float]:
    """(count, 0.0) for a whole number of users per split, (0, fraction) for a share of them."""
    if data.n_heldout >= 1:
        return int(data.n_heldout), 0.0
    if not 0 < data.n_heldout < 0.5:
        raise DataError(f"data.n_heldout={data.n_heldout}: a fraction must be in (0, 0.5) to leave training users")
    return 0, float(data.n_heldout)


def _cuts(candidates: pa.Table | None, count: int, fraction: float) -> tuple[buckets.Key, buckets.Key]:
    """Upper (hash, user) bounds of the validation and test users."""
    if count:
        hashes, users = candidates["h"].to_numpy(), candidates["u"].to_pylist()
        return (int(hashes[count - 1]), users[count - 1]), (int(hashes[2 * count - 1]), users[2 * count - 1])
    top = (1 << 64) - 1
    return (min(top, int(fraction * 2**64)), None), (min(top, int(2 * fraction * 2**64)), None)


def _keep_smallest(current: pa.Table | None, batch: pa.Table, k: int) -> pa.Table | None:
    """Running top-k of (hash, user) over the buckets' candidate lists: O(k) driver memory."""
    if k == 0:
        return None
    table = pa.table({"h": batch["cand_hash"].combine_chunks().flatten(),
                      "u": batch["cand_user"].combine_chunks().flatten()})
    if current is not None:
        table = pa.concat_tables([current, table])
    return table.sort_by([("h", "ascending"), ("u", "ascending")]).slice(0, k)


def _select_users(plan: ReadPlan, work: buckets.Place, schema: pa.Schema, kept: pa.Array | None,
                  n_buckets: int) -> tuple[dict[str, int], tuple[buckets.Key, buckets.Key]]:
    """Pass 2: filters per bucket; the driver merges the candidates into the held-out cut points."""
    data = plan.data
    count, fraction = _n_heldout(data)
    ds = _tasks(n_buckets).map_batches(
        buckets.filter_bucket, batch_size=1, batch_format="pyarrow",
        fn_kwargs={"place": work, "schema": schema, "kept_items": kept, "min_items_per_user": data.min_items_per_user,
                   "n_candidates": 2 * count, "seed": data.seed})
    users = rows = 0
    candidates = None
    for batch in _batches(ds):
        users += sum(batch["users"].to_pylist())
        rows += sum(batch["rows"].to_pylist())
        candidates = _keep_smallest(candidates, batch, 2 * count)
    if users == 0:
        raise DataError(f"{plan.source}: no user has >= {data.min_items_per_user} positive items "
                        f"(data.min_items_per_user) after the filters; nothing to train on")
    if count and users <= 2 * count:
        raise DataError(f"{plan.source}: data.n_heldout={count} asks for {2 * count} held-out users "
                        f"({count} validation + {count} test) but only {users} users remain after filtering")
    return {"users": users, "interactions": rows}, _cuts(candidates, count, fraction)


def _vocabulary(plan: ReadPlan, work: buckets.Place, schema: pa.Schema, cuts: tuple, n_buckets: int) -> pa.Table:
    """Pass 3: items of training users, most popular first, ties by item id."""
    counts = _sum_counts(_tasks(n_buckets).map_batches(
        buckets.train_item_counts, batch_size=1, batch_format="pyarrow",
        fn_kwargs={"place": work, "schema": schema, "seed": plan.data.seed, "cuts": cuts}))
    counts = counts.filter(pc.greater(counts["users"], 0))
    if counts.num_rows == 0:
        raise DataError(f"{plan.source}: the training users have no items; nothing to train on")
    ordered = counts.sort_by([("users", "descending"), ("item_id", "ascending")])
    return pa.table({
        "item_idx": pa.array(np.arange(ordered.num_rows, dtype=np.int32)),
        "item_id": ordered["item_id"],
        "popularity": ordered["users"].cast(pa.int64()),
    })


def _write_meta(output: buckets.Place, meta: dict[str, Any]) -> None:
    with output.fs.open_output_stream(f"{output.root}/meta.json") as stream:
        stream.write(json.dumps(meta, indent=2, sort_keys=True).encode())


def prepare_dataset(data: DataConfig, output: str) -> PreparedDataset:
    """Prepare ``data`` into the directory (or URI) ``output`` and open the result.

    The driver checks the source first (path, files, header), so common mistakes fail before Ray
    starts. A previous prepared dataset at ``output`` is replaced; any other non-empty directory
    is refused.

    Raises:
        DataError: bad source or parameters (names the file and the problem).
    """
    validate(Config(data=data))
    _n_heldout(data)
    plan = plan_read(data)
    from raytrain.runtime import ensure_ray

    ensure_ray()
    with raise_data_errors():
        return _prepare(plan, output)


def _prepare(plan: ReadPlan, output: str) -> PreparedDataset:
    data, started = plan.data, time.time()
    fs, root = storage.resolve(output)
    _prepare_output(fs, root, output)
    work, out = buckets.Place(fs, f"{root}/_work"), buckets.Place(fs, root)
    n_buckets = data.num_output_files or min(MAX_FILES, max(1, math.ceil(plan.estimated_rows / ROWS_PER_FILE)))
    logger.info("preparing %s (%s) into %s: %d user buckets", plan.source, data.format, output, n_buckets)

    n_raw, n_positive_rows = _partition(plan, work, n_buckets)
    incoming = fs.get_file_info(pafs.FileSelector(f"{root}/_work/incoming", recursive=True, allow_not_found=True))
    if n_positive_rows == 0 or not incoming:
        raise DataError(f"{plan.source}: no positive interactions (value >= data.threshold={data.threshold})")
    schema = pq.read_schema(min(f.path for f in incoming if f.type == pafs.FileType.File), filesystem=fs)
    item_users = _sum_counts(_tasks(n_buckets).map_batches(
        buckets.dedupe_bucket, batch_size=1, batch_format="pyarrow", fn_kwargs={"place": work, "schema": schema}))
    n_positives = int(pc.sum(item_users["users"]).as_py() or 0)
    logger.info("pass 1: %d raw interactions, %d distinct positives over %d items (%.1fs)", n_raw, n_positives,
                item_users.num_rows, time.time() - started)

    kept = None
    if data.min_users_per_item > 0:
        kept = item_users.filter(pc.greater_equal(item_users["users"], data.min_users_per_item))["item_id"]
        kept = kept.combine_chunks()
        if len(kept) == 0:
            raise DataError(f"{plan.source}: no item has >= {data.min_users_per_item} users "
                            f"(data.min_users_per_item) among the positives")
    filtered, cuts = _select_users(plan, work, schema, kept, n_buckets)
    fs.delete_dir(f"{root}/_work/positives")
    logger.info("pass 2: %d users, %d interactions after filters (%.1fs)", filtered["users"],
                filtered["interactions"], time.time() - started)
    items = _vocabulary(plan, work, schema, cuts, n_buckets)
    logger.info("pass 3: vocabulary of %d items (%.1fs)", items.num_rows, time.time() - started)

    stats = pa.concat_tables(list(_batches(_tasks(n_buckets).map_batches(
        buckets.write_splits, batch_size=1, batch_format="pyarrow",
        fn_kwargs={"work": work, "output": out, "schema": schema, "vocab_ids": items["item_id"].combine_chunks(),
                   "seed": data.seed, "cuts": cuts, "fraction": data.heldout_fraction}))))
    totals = {name: int(pc.sum(stats[name]).as_py()) for name in stats.column_names if name != "bucket"}
    for split in SPLITS:
        if totals[f"{split}_users"] == 0:
            raise DataError(f"{plan.source}: the {split} split is empty (data.n_heldout={data.n_heldout}); "
                            f"use more data or another n_heldout")
    pq.write_table(items, f"{root}/items.parquet", filesystem=fs)
    fs.delete_dir(f"{root}/_work")
    meta = _meta(plan, items, totals, n_raw, n_positives, item_users.num_rows, filtered, n_buckets)
    _write_meta(out, meta)
    logger.info("prepared %s in %.1fs: %s users, %d items", output, time.time() - started, meta["users"], meta["n_items"])
    return PreparedDataset.open(output)


def _meta(plan: ReadPlan, items: pa.Table, totals: dict[str, int], n_raw: int, n_positives: int, n_positive_items: int,
          filtered: dict[str, int], n_buckets: int) -> dict[str, Any]:
    data = plan.data
    count, fraction = _n_heldout(data)
    names = [f"part-{b:05d}.parquet" for b in range(n_buckets)]
    return {
        "schema_version": SCHEMA_VERSION,
        "n_items": items.num_rows,
        "users": {s: totals[f"{s}_users"] for s in SPLITS},
        "interactions": {"train": totals["train_rows"],
                         **{s: totals[f"{s}_fold_in"] + totals[f"{s}_held_out"] for s in ("val", "test")}},
        "fold_in_interactions": {s: totals[f"{s}_fold_in"] for s in ("val", "test")},
        "held_out_interactions": {s: totals[f"{s}_held_out"] for s in ("val", "test")},
        "files": {s: [f"{s}/{name}" for name in names] for s in SPLITS},
        "params": to_dict(data),
        "seed": data.seed,
        "heldout": {"users_per_split": count or None, "user_fraction": fraction or None,
                    "item_fraction": data.heldout_fraction, "min_items_to_split": buckets.MIN_ITEMS_TO_SPLIT},
        "counts": {"raw_interactions": n_raw, "positives": n_positives, "positive_items": n_positive_items,
                   "after_filters": {"users": filtered["users"], "interactions": filtered["interactions"]}},
        "format": data.format,
        "source": plan.source,
        "source_fingerprint": plan.fingerprint(),
        "vocab_fingerprint": vocab_fingerprint(items["item_id"]),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "raytrain_version": __version__,
    }
