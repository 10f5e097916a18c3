"""The scoring actor's maths in-process: masking, ordering, fallback, short lists; atomic partitions."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from model_runs import items_table, make_run_dir
from raytrain.partitions import PartitionNotFoundError, StagedPartition, read_manifest, read_partition
from raytrain.scorer import InjectedScoringFailure, TopNScorer
from raytrain.store import fetch_model, load_model

N_ITEMS = 40


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    rng = np.random.default_rng(0)
    histories = pa.array([sorted(rng.choice(N_ITEMS, 6, replace=False).tolist()) for _ in range(64)], pa.list_(pa.int32()))
    run = make_run_dir(tmp_path_factory.mktemp("run"), items_table(N_ITEMS), "f" * 64, histories=histories, steps=30)
    return fetch_model(str(run))


def make_scorer(artifact, top_n: int = 5, **kwargs) -> TopNScorer:
    return TopNScorer(
        model_ref=[artifact.checkpoint], item_ids=artifact.items.column("item_id").combine_chunks(),
        popularity=artifact.items.column("popularity").to_numpy().astype(float), top_n=top_n,
        model_version=artifact.version, **kwargs,
    )


def test_top_n_excludes_seen_items_sorted_and_handles_edges(artifact):
    heavy = [i for i in range(N_ITEMS) if i not in (5, 17, 33)]  # has seen all but 3 items
    histories = [[0, 1, 2], [10, 20, 30, 39], [], heavy]
    batch = pa.table({"user_id": pa.array([7, 8, 9, 10], pa.int64()), "items": pa.array(histories, pa.list_(pa.int32()))})
    out = make_scorer(artifact).__call__(batch).to_pylist()
    assert [r["user_id"] for r in out] == [7, 8, 9, 10]
    for row, seen in zip(out, histories):
        seen_ids = {f"item-{i}" for i in seen}
        assert not seen_ids & set(row["item_ids"])
        assert row["scores"] == sorted(row["scores"], reverse=True)
        assert row["model_version"] == artifact.version
    assert [len(r["item_ids"]) for r in out] == [5, 5, 5, 3]
    assert sorted(out[3]["item_ids"]) == ["item-17", "item-33", "item-5"]
    assert [r["fallback"] for r in out] == [False, False, True, False]
    assert out[2]["item_ids"] == [f"item-{i}" for i in range(5)]  # most popular first


def test_scores_equal_direct_model_computation(artifact):
    histories = [[3, 4], [11], [0, 25, 26, 27]]
    batch = pa.table({"user_id": ["a", "b", "c"], "items": pa.array(histories, pa.list_(pa.int32()))})
    out = make_scorer(artifact, top_n=8).__call__(batch).to_pylist()
    loaded = load_model(artifact.source)
    dense = torch.zeros(3, N_ITEMS)
    for row, seen in enumerate(histories):
        dense[row, seen] = 1.0
    with torch.no_grad():  # dense input, plain masked_fill + topk: an independent path to the same answer
        logits = loaded.model(dense).logits.masked_fill(dense > 0, float("-inf"))
    expected = torch.topk(logits, 8, dim=1)
    for row in range(3):
        assert out[row]["item_ids"] == [f"item-{i}" for i in expected.indices[row].tolist()]
        np.testing.assert_allclose(out[row]["scores"], expected.values[row].numpy(), rtol=1e-5)


def test_fail_at_batch_raises_on_that_batch(artifact):
    scorer = make_scorer(artifact, fail_at_batch=1)
    batch = pa.table({"user_id": [1], "items": pa.array([[1]], pa.list_(pa.int32()))})
    scorer(batch)
    with pytest.raises(InjectedScoringFailure):
        scorer(batch)


def _stage_with(tmp_path, rows: int) -> StagedPartition:
    stage = StagedPartition.begin(str(tmp_path / "out"), "run_date", "2026-11-23")
    pq.write_table(pa.table({"user_id": list(range(rows))}), f"{stage.staging}/part-00000.parquet")
    return stage


def test_partition_swap_replaces_whole_directory(tmp_path):
    with pytest.raises(PartitionNotFoundError):
        read_manifest(str(tmp_path / "out"), "run_date", "2026-11-23")
    _stage_with(tmp_path, 5).commit({"rows": 5})
    second = StagedPartition.begin(str(tmp_path / "out"), "run_date", "2026-11-23")
    pq.write_table(pa.table({"user_id": [1, 2]}), f"{second.staging}/part-00009.parquet")  # different file name
    second.commit({"rows": 2})
    table = read_partition(str(tmp_path / "out"), "run_date", "2026-11-23")
    assert table.num_rows == 2 and set(table.column("run_date").to_pylist()) == {"2026-11-23"}
    assert json.loads((tmp_path / "out" / "run_date=2026-11-23" / "_SUCCESS").read_text())["rows"] == 2
    assert list((tmp_path / "out" / "_staging").iterdir()) == []
    assert pq.read_table(tmp_path / "out").num_rows == 2  # readers of the root skip _staging


def test_aborted_stage_is_invisible_and_removed(tmp_path):
    _stage_with(tmp_path, 5).commit({"rows": 5})
    crashed = _stage_with(tmp_path, 3)
    assert pq.read_table(tmp_path / "out").num_rows == 5  # staged files are never read
    crashed.abort()
    assert list((tmp_path / "out" / "_staging").iterdir()) == []
    assert read_manifest(str(tmp_path / "out"), "run_date", "2026-11-23")["rows"] == 5
