"""Rows of a prepared split -> sparse CSR torch batches.

A prepared split stores each user's items as a ``list<int32>`` Arrow column. Its offsets and
flat values are exactly a CSR matrix's row pointers and column indices, so a batch becomes a
``torch.sparse_csr_tensor`` without a per-row Python loop and, for the column indices, without
a copy. Dense ``(B, I)`` matrices are only made on demand (``batch.to_dense()``) on the device
that needs them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import torch
from ray.data.collate_fn import ArrowBatchCollateFn

from raytrain.models.sparse import csr_tensor


def _single_list_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous (large) list array; nulls become empty lists."""
    if isinstance(column, pa.ChunkedArray):
        # combine_chunks copies only when there is more than one chunk.
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)):
        raise TypeError(f"expected a list<int> column, got {column.type}")
    if column.null_count:
        # A null slot may still span values in its offsets; rebuilding drops them.
        column = pa.array(
            [row if row is not None else [] for row in column.to_pylist()], type=column.type
        )
    return column


def _readonly_numpy_to_torch(array: np.ndarray) -> torch.Tensor:
    """Zero-copy view of an Arrow-owned (read-only) buffer; we never write to it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def list_column_to_csr(column: pa.Array | pa.ChunkedArray, n_items: int) -> torch.Tensor:
    """Turn a ``list<int>`` Arrow column of item indices into a binary CSR matrix.

    Args:
        column: one list of item indices (``0..n_items-1``) per user; a slice is fine.
        n_items: number of columns ``I``.

    Returns:
        float32 sparse CSR tensor of shape ``(B, I)`` with value 1 at every listed item. The
        column indices share memory with the Arrow buffer; the row pointers are rebased to 0.

    Raises:
        TypeError: the column is not a list column.
        ValueError: an item index lies outside ``[0, n_items)``.
    """
    array = _single_list_array(column)
    offsets = np.asarray(array.offsets)
    # flatten() honours slicing (``.values`` would return the parent's whole buffer).
    values = array.flatten()
    if values.null_count:
        raise ValueError("item lists contain null item indices")
    columns = values.to_numpy(zero_copy_only=True)
    if columns.size and (columns.min() < 0 or columns.max() >= n_items):
        raise ValueError(f"item index out of range [0, {n_items}): {columns.min()}..{columns.max()}")
    crow = offsets - offsets[0]
    col = _readonly_numpy_to_torch(columns)
    # CSR needs one index dtype for both arrays: int32 unless large lists or int64 items.
    wide = col.dtype == torch.int64 or crow.dtype == np.int64
    index_dtype = torch.int64 if wide else torch.int32
    crow_tensor = torch.from_numpy(np.ascontiguousarray(crow)).to(index_dtype)
    col = col.to(index_dtype)
    ones = torch.ones(col.numel(), dtype=torch.float32)
    return csr_tensor(crow_tensor, col, ones, (len(array), n_items))


@dataclass
class EvalBatch:
    """Fold-in input and held-out targets of a batch of validation/test users.

    Attributes:
        fold_in: float32 CSR ``(B, I)``: what the model sees.
        held_out: float32 CSR ``(B, I)``: what it should rank highly.
    """

    fold_in: torch.Tensor
    held_out: torch.Tensor

    def to(self, device: torch.device | str) -> "EvalBatch":
        return EvalBatch(self.fold_in.to(device), self.held_out.to(device))

    def __len__(self) -> int:
        return self.fold_in.shape[0]


def table_to_eval_batch(table: pa.Table, n_items: int) -> EvalBatch:
    """Build an :class:`EvalBatch` from a table with ``fold_in`` and ``held_out`` list columns."""
    return EvalBatch(
        list_column_to_csr(table.column("fold_in"), n_items),
        list_column_to_csr(table.column("held_out"), n_items),
    )


class TrainCollate(ArrowBatchCollateFn):
    """Ray Data collate function: Arrow batch of training users -> CSR ``(B, I)`` tensor."""

    def __init__(self, n_items: int, column: str = "items") -> None:
        self.n_items = n_items
        self.column = column

    def __call__(self, batch: pa.Table) -> torch.Tensor:
        return list_column_to_csr(batch.column(self.column), self.n_items)


class EvalCollate(ArrowBatchCollateFn):
    """Ray Data collate function: Arrow batch of held-out users -> :class:`EvalBatch`."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items

    def __call__(self, batch: pa.Table) -> EvalBatch:
        return table_to_eval_batch(batch, self.n_items)


def iter_table_batches(
    table: pa.Table, batch_size: int, seed: int | None = None
) -> Iterator[pa.Table]:
    """Yield consecutive row slices of ``table`` (a plain-process stand-in for Ray Data).

    Args:
        table: any Arrow table.
        batch_size: rows per batch; the last batch may be smaller.
        seed: when given, rows are permuted with this seed first (one shuffle per call).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if seed is not None:
        order = np.random.default_rng(seed).permutation(table.num_rows)
        table = table.take(pa.array(order))
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)


def train_batches(
    table: pa.Table, n_items: int, batch_size: int, seed: int | None = None, column: str = "items"
) -> Iterator[torch.Tensor]:
    """CSR batches of a training table, shuffled with ``seed`` when given."""
    for rows in iter_table_batches(table, batch_size, seed):
        yield list_column_to_csr(rows.column(column), n_items)


def eval_batches(table: pa.Table, n_items: int, batch_size: int) -> Iterator[EvalBatch]:
    """:class:`EvalBatch` es of a validation/test table, in table order."""
    for rows in iter_table_batches(table, batch_size):
        yield table_to_eval_batch(rows, n_items)
