"""CSR batches from Arrow list columns: values, slices, chunks, zero-copy, collate functions."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from raytrain.data.batches import (
    EvalCollate,
    TrainCollate,
    eval_batches,
    iter_table_batches,
    list_column_to_csr,
    train_batches,
)

ROWS = [[0, 2], [1], [], [3, 0, 1]]
DENSE = torch.tensor(
    [[1.0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [1, 1, 0, 1]],
)


def test_list_column_to_csr_matches_the_lists():
    csr = list_column_to_csr(pa.array(ROWS, type=pa.list_(pa.int32())), n_items=4)
    assert csr.layout == torch.sparse_csr
    assert csr.dtype == torch.float32
    assert torch.equal(csr.to_dense(), DENSE)


def test_slices_rebase_offsets_and_use_only_their_values():
    column = pa.array(ROWS, type=pa.list_(pa.int32())).slice(1, 3)
    csr = list_column_to_csr(column, n_items=4)
    assert csr.crow_indices().tolist() == [0, 1, 1, 4]
    assert torch.equal(csr.to_dense(), DENSE[1:])


def test_chunked_columns_are_combined():
    chunked = pa.chunked_array([pa.array(ROWS[:2], type=pa.list_(pa.int32())), pa.array(ROWS[2:], type=pa.list_(pa.int32()))])
    assert torch.equal(list_column_to_csr(chunked, 4).to_dense(), DENSE)


def test_column_indices_share_the_arrow_buffer():
    column = pa.array(ROWS, type=pa.list_(pa.int32()))
    csr = list_column_to_csr(column, 4)
    values_buffer = column.flatten().buffers()[1]
    assert csr.col_indices().data_ptr() == values_buffer.address


def test_large_lists_and_int64_items_use_int64_indices():
    column = pa.array(ROWS, type=pa.large_list(pa.int64()))
    csr = list_column_to_csr(column, 4)
    assert csr.crow_indices().dtype == torch.int64 == csr.col_indices().dtype
    assert torch.equal(csr.to_dense(), DENSE)


def test_null_rows_become_empty_rows():
    csr = list_column_to_csr(pa.array([[1], None, [0]], type=pa.list_(pa.int32())), 2)
    assert csr.to_dense().tolist() == [[0, 1], [0, 0], [1, 0]]


def test_out_of_range_items_and_non_list_columns_are_rejected():
    with pytest.raises(ValueError, match="out of range"):
        list_column_to_csr(pa.array([[0, 4]], type=pa.list_(pa.int32())), 4)
    with pytest.raises(TypeError, match="list"):
        list_column_to_csr(pa.array([1, 2]), 4)


def test_collate_functions_build_train_and_eval_batches():
    table = pa.table({
        "user_id": [1, 2],
        "items": pa.array(ROWS[:2], type=pa.list_(pa.int32())),
        "fold_in": pa.array([[0], [1, 2]], type=pa.list_(pa.int32())),
        "held_out": pa.array([[3], []], type=pa.list_(pa.int32())),
    })
    assert torch.equal(TrainCollate(4)(table).to_dense(), DENSE[:2])
    batch = EvalCollate(4)(table)
    assert len(batch) == 2
    assert batch.fold_in.to_dense().tolist() == [[1, 0, 0, 0], [0, 1, 1, 0]]
    assert batch.held_out.to_dense().tolist() == [[0, 0, 0, 1], [0, 0, 0, 0]]
    assert batch.to("cpu").held_out.layout == torch.sparse_csr


def test_iter_table_batches_slices_and_shuffles_deterministically():
    table = pa.table({"user_id": list(range(10))})
    sizes = [batch.num_rows for batch in iter_table_batches(table, 4)]
    assert sizes == [4, 4, 2]
    first = [v for b in iter_table_batches(table, 3, seed=5) for v in b.column("user_id").to_pylist()]
    again = [v for b in iter_table_batches(table, 3, seed=5) for v in b.column("user_id").to_pylist()]
    other = [v for b in iter_table_batches(table, 3, seed=6) for v in b.column("user_id").to_pylist()]
    assert first == again != other
    assert sorted(first) == list(range(10))


def test_train_and_eval_batch_iterators_cover_every_row():
    rng = np.random.default_rng(0)
    lists = [sorted(rng.choice(50, size=rng.integers(1, 10), replace=False).tolist()) for _ in range(23)]
    table = pa.table({
        "items": pa.array(lists, type=pa.list_(pa.int32())),
        "fold_in": pa.array(lists, type=pa.list_(pa.int32())),
        "held_out": pa.array(lists, type=pa.list_(pa.int32())),
    })
    total = sum(batch.to_dense().sum().item() for batch in train_batches(table, 50, 5, seed=1))
    assert total == sum(len(row) for row in lists)
    stacked = torch.cat([batch.fold_in.to_dense() for batch in eval_batches(table, 50, 7)])
    assert stacked.sum(dim=1).tolist() == [len(row) for row in lists]
