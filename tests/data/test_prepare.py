"""Preparation on MovieLens-100K against a straightforward pandas computation of the same protocol."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raytrain.config import DataConfig, to_dict
from raytrain.data.files import DataError
from raytrain.data.prepare import prepare_dataset
from raytrain.data.prepared import SPLITS, PreparedDataset, vocab_fingerprint

pytestmark = pytest.mark.usefixtures("ray_session")
ML100K = str((Path(__file__).resolve().parents[2] / "../shared/data/ml-100k/ratings.csv").resolve())
CONFIG = DataConfig(path=ML100K, format="movielens", threshold=4, min_items_per_user=5, n_heldout=100, seed=1)


@pytest.fixture(scope="module")
def prepared(ml100k_prepared) -> PreparedDataset:
    """The session's MovieLens-100K preparation (tests/conftest.py), made with exactly CONFIG."""
    assert ml100k_prepared.meta["params"] == to_dict(CONFIG)
    return ml100k_prepared


@pytest.fixture(scope="module")
def reference() -> dict[int, set[int]]:
    """Each user's positive items after the filters, computed the obvious way."""
    ratings = pd.read_csv(ML100K)
    positives = ratings[ratings["rating"] >= 4][["user_id", "item_id"]].drop_duplicates()
    sizes = positives.groupby("user_id")["item_id"].transform("size")
    kept = positives[sizes >= 5]
    return {int(u): set(map(int, items)) for u, items in kept.groupby("user_id")["item_id"]}


def split_frames(prepared: PreparedDataset) -> dict[str, pd.DataFrame]:
    return {s: prepared.read_split(s).to_pandas() for s in SPLITS}


def test_users_partition_the_filtered_users(prepared, reference):
    frames = split_frames(prepared)
    users = {s: set(frames[s]["user_id"]) for s in SPLITS}
    assert len(users["val"]) == len(users["test"]) == 100
    assert not (users["train"] & users["val"]) and not (users["train"] & users["test"]) and not (users["val"] & users["test"])
    assert users["train"] | users["val"] | users["test"] == set(reference)
    for split, frame in frames.items():
        assert frame["user_id"].is_monotonic_increasing and frame["user_id"].is_unique, split


def test_vocabulary_is_training_items_by_popularity(prepared, reference):
    items = prepared.read_items().to_pandas()
    train_users = set(prepared.read_split("train")["user_id"].to_pylist())
    popularity = pd.Series([i for u in train_users for i in reference[u]]).value_counts()
    expected = sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))
    assert list(zip(items["item_id"], items["popularity"])) == expected
    assert items["item_idx"].tolist() == list(range(len(items))) and prepared.n_items == len(items)
    assert prepared.vocab_fingerprint == vocab_fingerprint(prepared.item_ids())


def test_training_lists_are_the_users_positives(prepared, reference):
    ids = np.asarray(prepared.item_ids())
    for user, items in zip(*prepared.read_split("train").to_pydict().values()):
        assert items == sorted(items) and set(ids[items]) == reference[user]


def test_heldout_users_fold_in_plus_held_out(prepared, reference):
    ids = np.asarray(prepared.item_ids())
    vocab = set(ids.tolist())
    for split in ("val", "test"):
        for user, fold_in, held_out in zip(*prepared.read_split(split).to_pydict().values()):
            expected = reference[user] & vocab
            assert not set(fold_in) & set(held_out)
            assert set(ids[fold_in]) | set(ids[held_out]) == expected
            n = len(expected)
            assert len(held_out) == (math.floor(0.2 * n) if n >= 5 else 0)


def test_meta_counts(prepared, reference):
    meta = json.loads(Path(prepared.path, "meta.json").read_text())
    frames = split_frames(prepared)
    ratings = pd.read_csv(ML100K)
    assert meta["schema_version"] == 1 and meta["seed"] == 1 and meta["n_items"] == prepared.n_items
    assert meta["users"] == {s: len(frames[s]) for s in SPLITS}
    assert meta["interactions"]["train"] == int(frames["train"]["items"].map(len).sum())
    for split in ("val", "test"):
        fold, held = (int(frames[split][c].map(len).sum()) for c in ("fold_in", "held_out"))
        assert meta["interactions"][split] == fold + held and meta["held_out_interactions"][split] == held
    assert meta["counts"]["positives"] == int((ratings["rating"] >= 4).sum())
    assert meta["counts"]["after_filters"] == {"users": len(reference), "interactions": sum(map(len, reference.values()))}
    assert meta["params"]["threshold"] == 4 and meta["params"]["n_heldout"] == 100
    assert len(meta["source_fingerprint"]) == 64 and meta["created_at"]


def test_open_and_ray_dataset(prepared):
    again = PreparedDataset.open(prepared.path)
    assert again.meta == prepared.meta
    assert again.ray_dataset("val").count() == 100
    assert all(Path(p).is_file() for p in again.split_paths("train"))
    with pytest.raises(DataError, match="is not a prepared dataset"):
        PreparedDataset.open(str(Path(prepared.path).parent))
    with pytest.raises(DataError, match="does not exist"):
        PreparedDataset.open(str(Path(prepared.path) / "missing"))


def test_another_seed_holds_out_other_users(prepared, tmp_path):
    other = prepare_dataset(DataConfig(**{**CONFIG.__dict__, "seed": 2, "min_users_per_item": 3}), str(tmp_path / "o"))
    assert set(other.read_split("val")["user_id"].to_pylist()) != set(prepared.read_split("val")["user_id"].to_pylist())
    ratings = pd.read_csv(ML100K)
    positives = ratings[ratings["rating"] >= 4]
    item_users = positives.groupby("item_id")["user_id"].nunique()
    assert other.meta["counts"]["positive_items"] == len(item_users)
    items = positives[positives["item_id"].isin(item_users[item_users >= 3].index)]
    sizes = items.groupby("user_id").size()
    assert other.meta["counts"]["after_filters"] == {"users": int((sizes >= 5).sum()),
                                                     "interactions": int(sizes[sizes >= 5].sum())}


def test_fractional_n_heldout_holds_out_that_share(tmp_path, reference):
    prepared = prepare_dataset(DataConfig(**{**CONFIG.__dict__, "n_heldout": 0.1}), str(tmp_path))
    users = {s: set(prepared.read_split(s)["user_id"].to_pylist()) for s in SPLITS}
    assert all(40 <= len(users[s]) <= 150 for s in ("val", "test"))  # 10% of 938 in expectation
    assert not users["val"] & users["test"] and len(users["train"]) + len(users["val"]) + len(users["test"]) == len(reference)
    assert prepared.meta["heldout"]["user_fraction"] == 0.1 and prepared.meta["heldout"]["users_per_split"] is None
