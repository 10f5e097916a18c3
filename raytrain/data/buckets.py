"""Per-bucket steps of the preparation (each runs inside a Ray Data task on one user bucket).

A bucket is every interaction of the users whose seeded id hash falls in it, so all per-user
work (dedupe, user filter, held-out choice, fold-in/held-out split, list building) is local to
one task. Buckets live as Parquet files under ``<output>/_work`` between passes and become the
output files, so the file layout is a function of the data and the seed only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raytrain.data.hashing import SALT_ITEMS, SALT_USER, bucket_of, id_hash, seeded, splitmix64

MIN_ITEMS_TO_SPLIT = 5  # Liang et al.: held-out users with fewer items keep them all as fold-in
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

Key = tuple[int, object]  # (user hash, user id or None): inclusive upper bound in (hash, id) order


@dataclass(frozen=True)
class Place:
    """Where a pass reads and writes bucket files (picklable: shipped to every task)."""

    fs: pafs.FileSystem
    root: str

    def path(self, stage: str, bucket: int | str) -> str:
        name = f"part-{bucket:05d}" if isinstance(bucket, int) else bucket
        return f"{self.root}/{stage}/{name}.parquet"

    def read(self, stage: str, bucket: int, schema: pa.Schema) -> pa.Table:
        path = self.path(stage, bucket)
        if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return schema.empty_table()
        return pq.read_table(path, filesystem=self.fs)

    def write(self, stage: str, bucket: int | str, table: pa.Table) -> None:
        self.fs.create_dir(f"{self.root}/{stage}", recursive=True)
        pq.write_table(table, self.path(stage, bucket), filesystem=self.fs)


def partition_positives(batch: pa.Table, place: Place, threshold: float, n_buckets: int) -> pa.Table:
    """Step 1, map side: keep ``value >= threshold`` and append each user's rows to their bucket.

    Files get random names: a retried task may leave a second copy of its rows, which the
    per-bucket dedupe removes, so the result is the same.
    """
    kept = batch.filter(pc.greater_equal(batch["value"], threshold)).select(["user_id", "item_id"])
    bucket = bucket_of(kept["user_id"], n_buckets)
    order = np.argsort(bucket, kind="stable")
    kept, bucket = kept.take(pa.array(order, type=pa.int64())), bucket[order]
    bounds = np.flatnonzero(np.diff(bucket)) + 1
    for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [len(bucket)]])):
        if hi > lo:
            place.write(f"incoming/{bucket[lo]:05d}", uuid.uuid4().hex, kept.slice(lo, hi - lo))
    return pa.table({"rows": [batch.num_rows], "positives": [kept.num_rows]})


def _item_counts(table: pa.Table) -> pa.Table:
    counts = table.group_by("item_id").aggregate([("user_id", "count")])
    return counts.rename_columns(["item_id", "users"]).cast(
        pa.schema([("item_id", table.schema.field("item_id").type), ("users", pa.int64())]))


def dedupe_bucket(batch: pa.Table, place: Place, schema: pa.Schema) -> pa.Table:
    """Step 1, reduce side: a bucket's distinct (user, item) pairs sorted by user, item; item counts back."""
    bucket = batch["task"][0].as_py()
    folder = f"{place.root}/incoming/{bucket:05d}"
    found = place.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    parts = [pq.read_table(f.path, filesystem=place.fs) for f in sorted(found, key=lambda f: f.path)]
    pairs = pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()
    pairs = pairs.sort_by([("user_id", "ascending"), ("item_id", "ascending")]).cast(schema)
    if pairs.num_rows > 1:  # sorted: a repeated pair sits next to its first copy
        users, items = pairs["user_id"].combine_chunks(), pairs["item_id"].combine_chunks()
        repeat = pc.and_(pc.equal(users[1:], users[:-1]), pc.equal(items[1:], items[:-1]))
        pairs = pairs.filter(pa.concat_arrays([pa.array([True]), pc.invert(repeat)]))
    place.write("positives", bucket, pairs)
    if parts:
        place.fs.delete_dir(folder)
    return _item_counts(pairs)


def _runs(users: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by user: run id per row, and the row where each run starts."""
    users = users.combine_chunks() if isinstance(users, pa.ChunkedArray) else users
    if len(users) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    changed = pc.not_equal(users[1:], users[:-1]).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(changed) + 1])
    return np.cumsum(np.concatenate([[0], changed])).astype(np.int64), starts


def filter_bucket(batch: pa.Table, place: Place, schema: pa.Schema, kept_items: pa.Array | None,
                  min_items_per_user: int, n_candidates: int, seed: int) -> pa.Table:
    """Steps 2-3: item filter, user filter; returns counts and this bucket's first held-out candidates."""
    bucket = batch["task"][0].as_py()
    table = place.read("positives", bucket, schema)
    if kept_items is not None:
        table = table.filter(pc.is_in(table["item_id"], value_set=kept_items))
    run, starts = _runs(table["user_id"])
    sizes = np.diff(np.append(starts, table.num_rows))
    table = table.filter(pa.array(sizes[run] >= min_items_per_user)) if len(run) else table
    place.write("filtered", bucket, table)
    run, starts = _runs(table["user_id"])
    users = table["user_id"].combine_chunks().take(pa.array(starts, type=pa.int64()))
    hashes = seeded(id_hash(users), seed, SALT_USER)
    order = pa.table({"h": hashes, "u": users}).sort_by([("h", "ascending"), ("u", "ascending")])
    top = order.slice(0, n_candidates)
    return pa.table({
        "bucket": [bucket], "users": [len(users)], "rows": [table.num_rows],
        "cand_hash": pa.array([top["h"].to_numpy()], type=pa.list_(pa.uint64())),
        "cand_user": pa.array([top["u"].to_pylist()], type=pa.list_(schema.field("user_id").type)),
    })


def _at_or_below(hashes: np.ndarray, users: pa.Array, key: Key) -> np.ndarray:
    bound, user = key
    below = hashes < np.uint64(bound)
    tie = hashes == np.uint64(bound)
    if user is None:
        return below | tie
    if tie.any():
        below |= tie & pc.less_equal(users, pa.scalar(user, users.type)).to_numpy(zero_copy_only=False)
    return below


def split_codes(users: pa.Array, seed: int, cuts: tuple[Key, Key]) -> np.ndarray:
    """0 train, 1 validation, 2 test per user, from the global cut points in (hash, id) order."""
    hashes = seeded(id_hash(users), seed, SALT_USER)
    codes = np.zeros(len(users), np.int8)
    codes[_at_or_below(hashes, users, cuts[1])] = 2
    codes[_at_or_below(hashes, users, cuts[0])] = 1
    return codes


def _user_split_per_row(table: pa.Table, seed: int, cuts: tuple[Key, Key]) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    run, starts = _runs(table["user_id"])
    users = table["user_id"].combine_chunks().take(pa.array(starts, type=pa.int64()))
    codes = split_codes(users, seed, cuts)
    return codes[run] if len(run) else np.zeros(0, np.int8), run, users


def train_item_counts(batch: pa.Table, place: Place, schema: pa.Schema, seed: int,
                      cuts: tuple[Key, Key]) -> pa.Table:
    """Step 4 (vocabulary): per item, how many training users of this bucket have it."""
    table = place.read("filtered", batch["task"][0].as_py(), schema)
    codes, _, _ = _user_split_per_row(table, seed, cuts)
    return _item_counts(table.filter(pa.array(codes == 0)))


def _lists(run: np.ndarray, values: np.ndarray, n_runs: int) -> pa.ListArray:
    """list<int32> per run from values already sorted by run."""
    offsets = np.concatenate([[0], np.cumsum(np.bincount(run, minlength=n_runs))]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, pa.int32()))


def _train_table(users: pa.Array, run: np.ndarray, idx: np.ndarray) -> pa.Table:
    present, local = np.unique(run, return_inverse=True)
    order = np.argsort(local.astype(np.int64) * (int(idx.max(initial=0)) + 1) + idx, kind="stable")
    items = _lists(local[order], idx[order], len(present))
    return pa.table({"user_id": users.take(pa.array(present, type=pa.int64())), "items": items})


def _heldout_table(users: pa.Array, run: np.ndarray, idx: np.ndarray, item_ids: pa.Array, seed: int,
                   fraction: float) -> pa.Table:
    """Step 5: floor(fraction * n) of each user's n items held out (n >= 5), chosen by seeded hash."""
    present, local = np.unique(run, return_inverse=True)
    user_key = seeded(id_hash(users.take(pa.array(present, type=pa.int64()))), seed, SALT_ITEMS)
    item_key = splitmix64(user_key[local] ^ id_hash(item_ids))
    n = np.bincount(local, minlength=len(present))
    n_held = np.where(n >= MIN_ITEMS_TO_SPLIT, np.floor(fraction * n), 0).astype(np.int64)
    order = np.lexsort((idx, item_key, local))
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    held = np.zeros(len(order), bool)
    held[order] = (np.arange(len(order)) - starts[local[order]]) < n_held[local[order]]
    columns = {"user_id": users.take(pa.array(present, type=pa.int64()))}
    for name, mask in (("fold_in", ~held), ("held_out", held)):
        part = np.lexsort((idx[mask], local[mask]))
        columns[name] = _lists(local[mask][part], idx[mask][part], len(present))
    return pa.table(columns)


def split_schemas(user_type: pa.DataType) -> dict[str, pa.Schema]:
    items = pa.list_(pa.int32())
    heldout = pa.schema([("user_id", user_type), ("fold_in", items), ("held_out", items)])
    return {"train": pa.schema([("user_id", user_type), ("items", items)]), "val": heldout, "test": heldout}


def _list_sizes(column: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(pc.list_value_length(column)).as_py() or 0)


def write_splits(batch: pa.Table, work: Place, output: Place, schema: pa.Schema, vocab_ids: pa.Array,
                 seed: int, cuts: tuple[Key, Key], fraction: float) -> pa.Table:
    """Map items to their vocabulary index, build per-user lists, write train/val/test for one bucket.

    A held-out user left with no vocabulary item has no row (nothing to fold in or to score).
    """
    bucket = batch["task"][0].as_py()
    table = work.read("filtered", bucket, schema)
    codes, run, users = _user_split_per_row(table, seed, cuts)
    idx = pc.index_in(table["item_id"], value_set=vocab_ids).fill_null(-1).to_numpy(zero_copy_only=False)
    schemas = split_schemas(schema.field("user_id").type)
    stats = {"bucket": [bucket]}
    for split, code in SPLIT_CODES.items():
        mask = (codes == code) & (idx >= 0)  # held-out users drop items outside the vocabulary
        if split == "train":
            out = _train_table(users, run[mask], idx[mask].astype(np.int32))
            stats.update(train_users=[out.num_rows], train_rows=[_list_sizes(out["items"])])
        else:
            item_ids = table["item_id"].filter(pa.array(mask))
            out = _heldout_table(users, run[mask], idx[mask].astype(np.int32), item_ids, seed, fraction)
            stats[f"{split}_users"] = [out.num_rows]
            stats[f"{split}_fold_in"] = [_list_sizes(out["fold_in"])]
            stats[f"{split}_held_out"] = [_list_sizes(out["held_out"])]
        output.write(split, bucket, out.cast(schemas[split]))
    return pa.table(stats)
