"""Write one output partition (e.g. ``OUT/run_date=2026-11-23/``) so readers never see half of it.

A job writes into ``OUT/_staging/<attempt>/`` (readers skip ``_``-prefixed paths: pyarrow and Ray
Data both do), adds a ``_SUCCESS`` manifest, then swaps the whole directory into place:

* local/POSIX: ``renameat2(RENAME_EXCHANGE)`` swaps old and new in one step on Linux; elsewhere two
  renames (a reader in the microseconds between them sees the date missing, never mixed).
* object stores (no directory rename): the old ``_SUCCESS`` is deleted first, old files removed,
  new files moved in and ``_SUCCESS`` written last, so a reader that requires ``_SUCCESS`` sees the
  old or the new partition. :func:`read_partition` requires it.

A crashed attempt leaves only its staging directory, which is invisible and removed on the next
abort or by :func:`remove_stale_staging`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raytrain import storage

logger = logging.getLogger(__name__)

SUCCESS_FILE = "_SUCCESS"
STAGING_DIR = "_staging"


class PartitionNotFoundError(FileNotFoundError):
    """No complete (``_SUCCESS``-marked) partition at the requested location."""


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two local paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, a.encode(), at_fdcwd, b.encode(), rename_exchange) == 0


@dataclass
class StagedPartition:
    """One attempt at writing ``OUTPUT/KEY=VALUE``; see the module docstring for the protocol."""

    output: str
    key: str
    value: str
    attempt: str

    @classmethod
    def begin(cls, output: str, key: str, value: str) -> "StagedPartition":
        stage = cls(output.rstrip("/"), key, value, f"{key}={value}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}")
        fs, path = storage.resolve(stage.staging)
        fs.create_dir(path, recursive=True)
        return stage

    @property
    def partition(self) -> str:
        return storage.join(self.output, f"{self.key}={self.value}")

    @property
    def staging(self) -> str:
        return storage.join(self.output, STAGING_DIR, self.attempt)

    def staged_files(self) -> list[str]:
        """Parquet files written so far into the staging directory, sorted by name."""
        fs, path = storage.resolve(self.staging)
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))

    def commit(self, manifest: dict[str, Any]) -> str:
        """Write ``_SUCCESS`` and swap the staging directory into place; returns the partition URI."""
        storage.write_bytes(storage.join(self.staging, SUCCESS_FILE), (json.dumps(manifest, indent=2) + "\n").encode())
        fs, final = storage.resolve(self.partition)
        _, staged = storage.resolve(self.staging)
        if isinstance(fs, pafs.LocalFileSystem):
            self._swap_local(staged, final)
        else:
            self._replace_remote(fs, staged, final)
        logger.info("published %s (%s rows)", self.partition, manifest.get("rows"))
        return self.partition

    def _swap_local(self, staged: str, final: str) -> None:
        if not os.path.exists(final):
            os.rename(staged, final)
            return
        if not _exchange(staged, final):
            retired = f"{staged}-replaced"
            os.rename(final, retired)
            os.rename(staged, final)
            staged = retired
        shutil.rmtree(staged, ignore_errors=True)  # now holds the previous output

    def _replace_remote(self, fs: pafs.FileSystem, staged: str, final: str) -> None:
        if fs.get_file_info(final).type != pafs.FileType.NotFound:
            old_success = f"{final}/{SUCCESS_FILE}"
            if fs.get_file_info(old_success).type != pafs.FileType.NotFound:
                fs.delete_file(old_success)
            fs.delete_dir_contents(final, missing_dir_ok=True)
        fs.create_dir(final, recursive=True)
        names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(staged)) if i.type == pafs.FileType.File]
        for name in sorted(names, key=lambda n: n == SUCCESS_FILE):  # _SUCCESS last
            fs.move(f"{staged}/{name}", f"{final}/{name}")
        fs.delete_dir(staged)

    def abort(self) -> None:
        """Remove this attempt's staging directory; the published partition is untouched."""
        fs, path = storage.resolve(self.staging)
        try:
            fs.delete_dir(path)
        except (FileNotFoundError, OSError) as err:  # nothing staged, or already gone
            logger.debug("staging cleanup of %s: %s", path, err)


def remove_stale_staging(output: str, key: str, value: str, older_than_s: float = 6 * 3600) -> int:
    """Delete staging attempts for ``KEY=VALUE`` left by killed jobs (not by a job still running)."""
    fs, path = storage.resolve(storage.join(output, STAGING_DIR))
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return 0
    removed = 0
    cutoff = time.time() - older_than_s
    for info in fs.get_file_info(pafs.FileSelector(path)):
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        if info.base_name.startswith(f"{key}={value}-") and mtime < cutoff:
            fs.delete_dir(info.path) if info.type == pafs.FileType.Directory else fs.delete_file(info.path)
            removed += 1
    return removed


def read_manifest(output: str, key: str, value: str) -> dict[str, Any]:
    """The ``_SUCCESS`` manifest of a published partition.

    Raises:
        PartitionNotFoundError: the partition is missing or incomplete.
    """
    uri = storage.join(output, f"{key}={value}", SUCCESS_FILE)
    if not storage.exists(uri):
        raise PartitionNotFoundError(f"no complete output at {storage.join(output, f'{key}={value}')} (no {SUCCESS_FILE})")
    return json.loads(storage.read_bytes(uri).decode())


def read_partition(output: str, key: str, value: str, columns: list[str] | None = None) -> pa.Table:
    """Read one complete partition in-process (tests, examples, small outputs), adding ``KEY``."""
    read_manifest(output, key, value)
    fs, path = storage.resolve(storage.join(output, f"{key}={value}"))
    table = pq.read_table(path, filesystem=fs, columns=columns)
    return table.append_column(key, pa.array([value] * table.num_rows, type=pa.string()))
