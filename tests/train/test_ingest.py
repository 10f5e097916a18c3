"""What a Train worker reads each epoch: the cached train split, every user once, a new order each epoch."""

from __future__ import annotations

import shutil

import pytest

from raytrain.data.prepared import PreparedDataset
from raytrain.train.trainer import train_dataset
from raytrain.train.worker import _train_batches

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")


def _epoch_rows(dataset, config, n_items: int, epoch: int) -> list[tuple[int, ...]]:
    """The users of one epoch, in order, each as its tuple of item indices."""
    make = _train_batches(dataset.iterator(), n_items, 100, config, epoch=epoch, rank=0)
    rows = []
    for batch in make():
        crow, col = batch.crow_indices().tolist(), batch.col_indices().tolist()
        rows.extend(tuple(col[crow[i]:crow[i + 1]]) for i in range(len(crow) - 1))
    return rows


def test_every_user_once_per_epoch_in_a_new_order(ml100k_prepared, small_config):
    config = small_config()
    dataset = train_dataset(config, ml100k_prepared)
    first, second = (_epoch_rows(dataset, config, ml100k_prepared.n_items, epoch) for epoch in (0, 1))
    expected = sorted(tuple(items) for items in ml100k_prepared.read_split("train").column("items").to_pylist())
    assert sorted(first) == expected and sorted(second) == expected
    assert first != second  # one Parquet block: the local shuffle buffer alone must reorder it


def test_cached_split_is_read_once(ml100k_prepared, small_config, tmp_path):
    """With ``train.cache_train`` the epochs come from the object store: removing the files after the
    trainer's dataset is built changes nothing; without it every epoch re-reads them."""
    copy = tmp_path / "prepared"
    shutil.copytree(ml100k_prepared.path, copy)
    prepared = PreparedDataset.open(str(copy))
    cached = train_dataset(small_config(), prepared)
    streamed = train_dataset(small_config("train.cache_train=false"), prepared)
    shutil.rmtree(copy / "train")
    assert len(_epoch_rows(cached, small_config(), prepared.n_items, 0)) == 738
    with pytest.raises(Exception, match="(?i)no such file|not found|FileNotFound"):
        _epoch_rows(streamed, small_config(), prepared.n_items, 0)
