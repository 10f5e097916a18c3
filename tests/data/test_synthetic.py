"""Synthetic generator: deterministic per seed, independent of parallelism, and carrying real signal."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from raytrain.config import DataConfig, SyntheticConfig
from raytrain.data.prepare import prepare_dataset
from raytrain.data.synthetic import generate, generate_table

pytestmark = pytest.mark.usefixtures("ray_session")
SMALL = SyntheticConfig(n_users=21_000, n_items=500, n_clusters=10, mean_items_per_user=15, seed=5)


def sorted_table(table: pa.Table) -> pa.Table:
    return table.sort_by([("user_id", "ascending"), ("item_id", "ascending")])


def ray_table(cfg: SyntheticConfig) -> pa.Table:
    return pa.concat_tables(list(generate(cfg).iter_batches(batch_format="pyarrow", batch_size=None)))


def test_same_data_for_any_number_of_blocks():
    local = sorted_table(generate_table(SMALL))
    one = sorted_table(ray_table(SMALL))
    three = sorted_table(ray_table(SyntheticConfig(**{**SMALL.__dict__, "n_blocks": 3})))
    assert local.equals(one) and local.equals(three)
    other = generate_table(SyntheticConfig(**{**SMALL.__dict__, "seed": 6}))
    assert not sorted_table(other).equals(local)


def test_popularity_activity_and_ratings_have_the_planted_shape():
    frame = generate_table(SMALL).to_pandas()
    assert not frame.duplicated(["user_id", "item_id"]).any()
    assert frame["user_id"].nunique() == SMALL.n_users
    activity = frame.groupby("user_id").size()
    assert 0.8 * SMALL.mean_items_per_user < activity.mean() < 1.1 * SMALL.mean_items_per_user
    assert activity.median() < activity.mean()  # lognormal: right-skewed
    popularity = frame["item_id"].value_counts().to_numpy()
    assert popularity[: SMALL.n_items // 10].sum() > 0.35 * popularity.sum()  # heavy head
    assert set(frame["value"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (frame["value"] >= 4).mean() > 0.5


def ndcg_at_100(scores: np.ndarray, fold_in: sp.csr_matrix, held_out: list[list[int]]) -> float:
    scores = np.where(fold_in.toarray() > 0, -np.inf, scores)
    top = np.argsort(-scores, axis=1)[:, :100]
    discounts = 1.0 / np.log2(np.arange(2, 102))
    values = []
    for row, truth in zip(top, held_out):
        if truth:
            hits = np.isin(row, truth)
            values.append((hits * discounts).sum() / discounts[: min(100, len(truth))].sum())
    return float(np.mean(values))


def csr(lists: list[list[int]], n_items: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(len(lists)), [len(x) for x in lists])
    cols = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lists else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(lists), n_items))


def test_a_model_that_learns_the_clusters_beats_popularity(tmp_path):
    config = DataConfig(format="synthetic", threshold=4, n_heldout=400, seed=1,
                        synthetic=SyntheticConfig(n_users=6_000, n_items=400, n_clusters=8, mean_items_per_user=25))
    prepared = prepare_dataset(config, str(tmp_path))
    n_items = prepared.n_items
    train = csr(prepared.read_split("train")["items"].to_pylist(), n_items)
    test = prepared.read_split("test").to_pydict()
    fold_in = csr(test["fold_in"], n_items)

    popularity = np.asarray(train.sum(axis=0)).ravel()
    gram = (train.T @ train).toarray() + 200.0 * np.eye(n_items)  # EASE (Steck 2019), lambda = 200
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    np.fill_diagonal(weights, 0.0)

    pop_ndcg = ndcg_at_100(np.tile(popularity, (fold_in.shape[0], 1)), fold_in, test["held_out"])
    ease_ndcg = ndcg_at_100(fold_in @ weights, fold_in, test["held_out"])
    print(f"NDCG@100 EASE {ease_ndcg:.3f} vs popularity {pop_ndcg:.3f}")
    assert ease_ndcg > 1.5 * pop_ndcg and ease_ndcg - pop_ndcg > 0.1, (ease_ndcg, pop_ndcg)
