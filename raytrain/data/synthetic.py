"""Synthetic interactions with planted structure, generated in parallel by Ray Data.

The model: items have power-law popularity (a seeded random rank r gets weight (r + 1)^-a) and a
home taste cluster; each user belongs to one cluster, has lognormal activity, and draws a share
``cluster_affinity`` of their items from their cluster (by popularity within it), the rest from
global popularity. In-cluster items get high ratings (3-5), noise draws uniform 1-5, so a
``value >= 4`` threshold keeps mostly signal. A model that learns the clusters beats popularity.

Users are generated in fixed chunks of ``USERS_PER_CHUNK``, each seeded by ``(seed, chunk)``:
the data depends only on the config and seed, not on ``n_blocks`` or the cluster size, and no
task ever holds more than one chunk of users.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import ray.data

from raytrain.config import SyntheticConfig, to_dict

USERS_PER_CHUNK = 10_000
START_TIME = 1_500_000_000  # timestamps spread over a year after 2017-07-14
TIME_SPAN = 365 * 24 * 3600


@dataclass(frozen=True)
class ItemModel:
    """Item-side parameters, cheap to rebuild from the seed in every task (O(n_items))."""

    popularity_cdf: np.ndarray  # (n_items,) global draw distribution
    cluster_of_item: np.ndarray  # (n_items,) home cluster
    items_by_cluster: np.ndarray  # (n_items,) item ids grouped by cluster
    cluster_cdf: np.ndarray  # (n_items,) cluster c's CDF shifted to [c, c + 1]


def item_model(cfg: SyntheticConfig) -> ItemModel:
    rng = np.random.default_rng([cfg.seed, 0])
    rank = rng.permutation(cfg.n_items)
    weight = (rank + 1.0) ** -cfg.popularity_exponent
    cluster = rng.permutation(np.arange(cfg.n_items) % cfg.n_clusters)  # balanced, none empty
    order = np.lexsort((np.arange(cfg.n_items), cluster))
    grouped_weight, grouped_cluster = weight[order], cluster[order]
    cdf = np.cumsum(grouped_weight)
    starts = np.searchsorted(grouped_cluster, np.arange(cfg.n_clusters))
    ends = np.append(starts[1:], cfg.n_items)
    base = np.where(starts > 0, cdf[np.maximum(starts - 1, 0)], 0.0)
    totals = cdf[ends - 1] - base
    within = (cdf - base[grouped_cluster]) / totals[grouped_cluster]
    global_cdf = np.cumsum(weight)
    return ItemModel(global_cdf / global_cdf[-1], cluster, order, grouped_cluster + within)


def _activity(rng: np.random.Generator, n: int, cfg: SyntheticConfig) -> np.ndarray:
    """Lognormal item counts with mean ``mean_items_per_user`` (mu shifted by -sigma^2 / 2)."""
    mu = np.log(cfg.mean_items_per_user) - cfg.activity_sigma**2 / 2
    counts = np.rint(rng.lognormal(mu, cfg.activity_sigma, n)).astype(np.int64)
    return np.clip(counts, 1, max(1, cfg.n_items // 2))


def _draw(rng: np.random.Generator, owner: np.ndarray, taste: np.ndarray, items: ItemModel,
          cfg: SyntheticConfig) -> np.ndarray:
    """One item per entry of ``owner`` (from their cluster, or globally with 1 - affinity).

    Returns sortable keys ``(owner * n_items + item) * 2 + is_noise``: sorting them groups a
    user's draws and puts an in-cluster copy of a pair before a noise copy.
    """
    in_cluster = rng.random(len(owner)) < cfg.cluster_affinity
    u = rng.random(len(owner))
    item = np.empty(len(owner), np.int64)
    hits, noise = np.flatnonzero(in_cluster), np.flatnonzero(~in_cluster)
    position = np.searchsorted(items.cluster_cdf, taste[owner[hits]] + u[hits])
    item[hits] = items.items_by_cluster[np.minimum(position, cfg.n_items - 1)]
    item[noise] = np.minimum(np.searchsorted(items.popularity_cdf, u[noise]), cfg.n_items - 1)
    return ((owner * cfg.n_items + item) << 1) | (~in_cluster).astype(np.int64)


def _distinct(keys: np.ndarray) -> np.ndarray:
    keys = np.sort(keys, kind="stable")  # timsort: cheap on the already sorted prefix
    pair = keys >> 1
    return keys[np.concatenate([[True], pair[1:] != pair[:-1]])] if len(keys) else keys


def _distinct_draws(rng: np.random.Generator, counts: np.ndarray, taste: np.ndarray, items: ItemModel,
                    cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """About ``counts[u]`` distinct items per user: draw, drop repeats, top up the shortfall (3 rounds)."""
    n_users = len(counts)
    keys = _distinct(_draw(rng, np.repeat(np.arange(n_users), counts), taste, items, cfg))
    for _ in range(3):
        shortfall = np.maximum(counts - np.bincount((keys >> 1) // cfg.n_items, minlength=n_users), 0)
        if not shortfall.any():
            break
        extra = np.repeat(np.arange(n_users), shortfall + (shortfall + 1) // 2)  # repeats are likely: ask 1.5x
        keys = _distinct(np.concatenate([keys, _draw(rng, extra, taste, items, cfg)]))
    pair = keys >> 1
    return pair // cfg.n_items, pair % cfg.n_items, (keys & 1) == 0


def generate_chunk(cfg: SyntheticConfig, chunk: int, items: ItemModel | None = None) -> pa.Table:
    """Interactions of users ``[chunk * USERS_PER_CHUNK, ...)``: user_id, item_id, value, timestamp."""
    items = items or item_model(cfg)
    first = chunk * USERS_PER_CHUNK
    n_users = max(0, min(cfg.n_users, first + USERS_PER_CHUNK) - first)
    rng = np.random.default_rng([cfg.seed, 1, chunk])
    taste = rng.integers(0, cfg.n_clusters, n_users)
    owner, item, in_cluster = _distinct_draws(rng, _activity(rng, n_users, cfg), taste, items, cfg)
    n = len(owner)
    rating = np.where(in_cluster, rng.choice([3, 4, 5], size=n, p=[0.15, 0.35, 0.5]), rng.integers(1, 6, n))
    return pa.table({
        "user_id": pa.array(first + owner, type=pa.int64()),
        "item_id": pa.array(item, type=pa.int64()),
        "value": pa.array(rating, type=pa.float32()),
        "timestamp": pa.array(START_TIME + rng.integers(0, TIME_SPAN, n), type=pa.int64()),
    })


def n_chunks(cfg: SyntheticConfig) -> int:
    return -(-cfg.n_users // USERS_PER_CHUNK)


def _generate_batch(batch: dict[str, np.ndarray], cfg: SyntheticConfig) -> Iterator[pa.Table]:
    items = item_model(cfg)
    for chunk in batch["id"]:
        yield generate_chunk(cfg, int(chunk), items)


def generate(cfg: SyntheticConfig) -> ray.data.Dataset:
    """The synthetic interactions as a Ray Dataset: ``n_blocks`` tasks, one chunk of users at a time."""
    chunks = n_chunks(cfg)
    return ray.data.range(chunks, override_num_blocks=min(cfg.n_blocks, chunks)).map_batches(
        _generate_batch, fn_kwargs={"cfg": cfg}, batch_size=None, batch_format="numpy")


def generate_table(cfg: SyntheticConfig) -> pa.Table:
    """All interactions in this process (small instances, tests and single-process baselines)."""
    items = item_model(cfg)
    return pa.concat_tables([generate_chunk(cfg, c, items) for c in range(n_chunks(cfg))])


def fingerprint(cfg: SyntheticConfig) -> str:
    """Identifies the generated data: a hash of the generator settings (the data is a function of them)."""
    settings = {k: v for k, v in to_dict(cfg).items() if k != "n_blocks"}
    payload = json.dumps({"generator": "planted-clusters-v1", **settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()
