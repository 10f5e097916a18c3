"""The prepared output is identical whatever the number of read tasks, blocks and intermediate files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
import ray

from raytrain.config import DataConfig, SyntheticConfig
from raytrain.data import prepare
from raytrain.data.prepare import prepare_dataset
from raytrain.data.synthetic import generate_table

pytestmark = pytest.mark.usefixtures("ray_session")


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def meta_of(root: Path) -> dict:
    meta = json.loads((root / "meta.json").read_text())
    meta.pop("created_at")
    meta["params"].pop("read_blocks")
    return meta


def test_same_bytes_with_other_parallelism(tmp_path, monkeypatch):
    raw = generate_table(SyntheticConfig(n_users=25_000, n_items=600, n_clusters=6, mean_items_per_user=12, seed=3))
    pacsv.write_csv(raw, tmp_path / "events.csv")
    config = DataConfig(path=str(tmp_path / "events.csv"), format="csv", timestamp_col="timestamp", n_heldout=500,
                        min_users_per_item=3, num_output_files=3, seed=7)
    first = prepare_dataset(DataConfig(**{**config.__dict__, "read_blocks": 1}), str(tmp_path / "a"))

    context = ray.data.DataContext.get_current()
    saved = context.target_max_block_size
    context.target_max_block_size = 256 * 1024  # many small blocks everywhere
    monkeypatch.setattr(prepare, "ROWS_PER_WRITE", 7_000)  # many small map-side files per bucket
    try:
        second = prepare_dataset(DataConfig(**{**config.__dict__, "read_blocks": 11}), str(tmp_path / "b"))
    finally:
        context.target_max_block_size = saved

    a, b = files_of(tmp_path / "a"), files_of(tmp_path / "b")
    assert sorted(a) == ["items.parquet"] + [f"{s}/part-0000{i}.parquet" for s in ("test", "train", "val") for i in range(3)]
    assert a == b
    assert meta_of(tmp_path / "a") == meta_of(tmp_path / "b")
    assert first.meta["users"]["val"] == second.meta["users"]["val"] == 500
    assert all(second.read_split(s).num_rows for s in ("train", "val", "test"))


def test_rerun_replaces_a_previous_dataset(tmp_path):
    config = DataConfig(format="synthetic", n_heldout=50, num_output_files=2,
                        synthetic=SyntheticConfig(n_users=2_000, n_items=200, n_clusters=4, mean_items_per_user=10))
    prepare_dataset(config, str(tmp_path))
    (tmp_path / "train" / "part-00007.parquet").write_bytes(b"stale")  # from an imagined earlier run
    again = prepare_dataset(DataConfig(**{**config.__dict__, "num_output_files": 1}), str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["part-00000.parquet"]
    assert again.meta["files"]["train"] == ["train/part-00000.parquet"]
