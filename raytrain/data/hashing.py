"""Seeded 64-bit hashes of ids: every random choice in preparation is a function of (seed, id).

That is what makes the prepared output independent of partitioning: which bucket a user lands
in, whether they are held out, and which of their items are held out never depend on which task
saw them or in what order. splitmix64 (Steele et al. 2014) mixes integers; string ids go through
pandas' stable SipHash first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

SALT_BUCKET = 0x5EED_0001
SALT_USER = 0x5EED_0002
SALT_ITEMS = 0x5EED_0003

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Bijective 64-bit mixer (arrays wrap around on overflow, which is the point)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def id_hash(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 hash per id: int64 ids through splitmix64, strings through SipHash (pandas, fixed key)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
    if pa.types.is_integer(ids.type):
        return splitmix64(ids.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64))
    values = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)
    return splitmix64(pd.util.hash_array(values, categorize=False))


def seeded(hashes: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A fresh hash family per (seed, salt): the same ids rank differently for another seed."""
    key = splitmix64(np.array([(seed * 0x1_0000_0001 + salt) & 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64))
    return splitmix64(hashes ^ key[0])


def bucket_of(users: pa.Array | pa.ChunkedArray, n_buckets: int) -> np.ndarray:
    """Output file (and shuffle partition) of each user: fixed for an id whatever the seed."""
    return (seeded(id_hash(users), 0, SALT_BUCKET) % np.uint64(n_buckets)).astype(np.int32)
