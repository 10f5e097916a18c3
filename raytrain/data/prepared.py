"""Open a prepared dataset (DESIGN.md "Data contract"): meta, item vocabulary, splits.

Layout::

    meta.json         schema_version, n_items, users / interactions per split, params, seed,
                      source_fingerprint, vocab_fingerprint, created_at
    items.parquet     item_idx int32, item_id, popularity int64   (item_idx order)
    train/*.parquet   user_id, items list<int32>
    val|test/*.parquet  user_id, fold_in list<int32>, held_out list<int32>
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raytrain import storage
from raytrain.data.files import DataError

SPLITS = ("train", "val", "test")
SCHEMA_VERSION = 1


def vocab_fingerprint(item_ids: pa.Array | pa.ChunkedArray) -> str:
    """sha256 of the item ids in item_idx order, one per line as text: a model and data agree iff equal."""
    text = pc.cast(item_ids, pa.string()).to_pylist()
    return hashlib.sha256("\n".join(text).encode("utf-8")).hexdigest()


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset directory (local or URI) and its meta.json."""

    path: str
    meta: dict[str, Any]

    @classmethod
    def open(cls, path: str) -> "PreparedDataset":
        """Raises DataError when ``path`` is missing or is not a prepared dataset."""
        path = _absolute(str(path))
        fs, root = storage.resolve(path)
        if fs.get_file_info(root).type == pafs.FileType.NotFound:
            raise DataError(f"prepared dataset {path} does not exist")
        meta_path = f"{root}/meta.json"
        if fs.get_file_info(meta_path).type != pafs.FileType.File:
            raise DataError(f"{path} is not a prepared dataset (no meta.json; run jobs/prepare_data.py first)")
        try:
            with fs.open_input_stream(meta_path) as stream:
                meta = json.loads(stream.read())
        except (OSError, ValueError) as err:
            raise DataError(f"{path}/meta.json cannot be read: {err}") from None
        version = meta.get("schema_version") if isinstance(meta, dict) else None
        if version != SCHEMA_VERSION:
            raise DataError(f"{path}/meta.json has schema_version {version!r}; this raytrain reads {SCHEMA_VERSION}")
        return cls(path, meta)

    @property
    def n_items(self) -> int:
        return int(self.meta["n_items"])

    @property
    def vocab_fingerprint(self) -> str:
        return str(self.meta["vocab_fingerprint"])

    def _fs(self) -> tuple[pafs.FileSystem, str]:
        return storage.resolve(self.path)

    def read_items(self) -> pa.Table:
        fs, root = self._fs()
        return pq.read_table(f"{root}/items.parquet", filesystem=fs)

    def item_ids(self) -> pa.Array:
        """Original item ids in item_idx order."""
        return self.read_items()["item_id"].combine_chunks()

    def split_paths(self, split: str) -> list[str]:
        """The split's Parquet files (full paths or URIs), in user-bucket order."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return [storage.join(self.path, name) for name in self.meta["files"][split]]

    def read_split(self, split: str) -> pa.Table:
        """The whole split in this process (tests and small data)."""
        fs, _ = self._fs()
        paths = [storage.resolve(p)[1] for p in self.split_paths(split)]
        return pa.concat_tables([pq.read_table(p, filesystem=fs) for p in paths])

    def ray_dataset(self, split: str, read_cpus: float | None = None) -> "ray.data.Dataset":  # noqa: F821
        """Stream a split with Ray Data; ``read_cpus`` (fractional allowed) is each read task's CPU
        request, so reads still fit beside training workers that hold most of a node's CPUs."""
        import ray.data

        return ray.data.read_parquet(self.split_paths(split), num_cpus=read_cpus)
