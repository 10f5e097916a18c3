"""How preparation scales: synthetic data at doubling user counts, Ray Data vs one process.

    python benchmarks/prepare_scale.py       # 250k .. 2M users, ~100M raw interactions at 2M (6-12 min on 2 busy cores)
    python benchmarks/prepare_scale.py --users 125000 250000 500000 --baseline-max-users 500000

Each size is prepared by a fresh driver process connected to one local Ray cluster, so "driver
peak RSS" is that driver's own ru_maxrss (generation, shuffle and writes run in Ray workers).
The baseline runs the same steps in one process (pyarrow generation, pandas positives / dedupe /
filters / vocabulary, numpy fold-in/held-out lists, one Parquet file per split) on the sizes up
to --baseline-max-users; the two must agree on every count, which the script checks. "load" is
the host's 1-minute load average after each size: other work on the machine skews the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.fs as pafs  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from raytrain.config import DataConfig, SyntheticConfig  # noqa: E402
from raytrain.data import buckets  # noqa: E402
from raytrain.data.hashing import SALT_USER, id_hash, seeded  # noqa: E402


def config_for(users: int, args: argparse.Namespace) -> DataConfig:
    synthetic = SyntheticConfig(n_users=users, n_items=args.items, n_clusters=args.clusters,
                                mean_items_per_user=args.mean_items, n_blocks=args.blocks)
    return DataConfig(format="synthetic", threshold=4, min_items_per_user=5, n_heldout=args.n_heldout, seed=1,
                      synthetic=synthetic)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_ray(config: DataConfig, output: str, address: str) -> dict:
    import ray

    from raytrain.data.prepare import prepare_dataset

    ray.init(address=address, logging_level="WARNING")
    ray.data.DataContext.get_current().enable_progress_bars = False
    started = time.time()
    meta = prepare_dataset(config, output).meta
    seconds = time.time() - started
    return {"seconds": seconds, "rss_mb": peak_rss_mb(), "raw": meta["counts"]["raw_interactions"],
            "n_items": meta["n_items"], "users": meta["users"], "interactions": meta["interactions"]}


def run_baseline(config: DataConfig, output: str) -> dict:
    """The same steps in one process: generation, pandas relational steps, numpy per-user lists."""
    from raytrain.data.synthetic import generate_table

    started = time.time()
    raw = generate_table(config.synthetic)
    frame = raw.select(["user_id", "item_id", "value"]).to_pandas()
    positives = frame.loc[frame["value"] >= config.threshold, ["user_id", "item_id"]].drop_duplicates()
    del frame
    sizes = positives.groupby("user_id")["item_id"].transform("size")
    positives = positives[sizes >= config.min_items_per_user].sort_values(["user_id", "item_id"])
    users = np.unique(positives["user_id"].to_numpy())
    hashes = seeded(id_hash(pa.array(users)), config.seed, SALT_USER)
    order, k = np.lexsort((users, hashes)), int(config.n_heldout)
    cuts = tuple((int(hashes[order[i]]), int(users[order[i]])) for i in (k - 1, 2 * k - 1))
    codes = buckets.split_codes(pa.array(users), config.seed, cuts)
    row_codes = codes[np.searchsorted(users, positives["user_id"].to_numpy())]
    popularity = positives.loc[row_codes == 0, "item_id"].value_counts()
    vocab = popularity.reset_index().sort_values(["count", "item_id"], ascending=[False, True])["item_id"].to_numpy()
    table = pa.Table.from_pandas(positives, preserve_index=False)
    out = buckets.Place(pafs.LocalFileSystem(), output)
    stats = buckets.write_splits(pa.table({"task": [0]}), _InMemory(table), out, table.schema,
                                 pa.array(vocab), config.seed, cuts, config.heldout_fraction)
    pq.write_table(pa.table({"item_id": vocab}), f"{output}/items.parquet")
    seconds = time.time() - started
    row = stats.to_pylist()[0]
    return {"seconds": seconds, "rss_mb": peak_rss_mb(), "raw": raw.num_rows, "n_items": len(vocab),
            "users": {s: row[f"{s}_users"] for s in ("train", "val", "test")},
            "interactions": {"train": row["train_rows"],
                             **{s: row[f"{s}_fold_in"] + row[f"{s}_held_out"] for s in ("val", "test")}}}


class _InMemory:
    """Stands in for the bucket files: the whole dataset is one bucket in the baseline."""

    def __init__(self, table: pa.Table):
        self.table = table

    def read(self, stage: str, bucket: int, schema: pa.Schema) -> pa.Table:
        return self.table


def child(args: argparse.Namespace) -> None:
    config = config_for(args.one, args)
    output = tempfile.mkdtemp(prefix="prep-", dir=args.work_dir)
    try:
        result = run_ray(config, output, args.address) if args.mode == "ray" else run_baseline(config, output)
    finally:
        shutil.rmtree(output, ignore_errors=True)
    print("RESULT " + json.dumps(result))


def measure(users: int, mode: str, args: argparse.Namespace, address: str) -> dict:
    command = [sys.executable, __file__, "--one", str(users), "--mode", mode, "--address", address,
               "--work-dir", args.work_dir, "--items", str(args.items), "--clusters", str(args.clusters),
               "--mean-items", str(args.mean_items), "--blocks", str(args.blocks), "--n-heldout", str(args.n_heldout)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"{mode} at {users} users failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[250_000, 500_000, 1_000_000, 2_000_000],
                        help="user counts, each double the previous (default: 250k 500k 1M 2M)")
    parser.add_argument("--baseline-max-users", type=int, default=1_000_000, help="run the one-process baseline up to here")
    parser.add_argument("--items", type=int, default=20_000, help="synthetic items")
    parser.add_argument("--clusters", type=int, default=50, help="synthetic taste clusters")
    parser.add_argument("--mean-items", type=float, default=50.0, help="mean raw interactions per user (2M users: ~100M)")
    parser.add_argument("--blocks", type=int, default=16, help="synthetic generation tasks")
    parser.add_argument("--n-heldout", type=int, default=10_000, help="validation and test users each")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    parser.add_argument("--work-dir", default=tempfile.gettempdir(), help="where the prepared outputs go (deleted)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["ray", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return child(args)

    import ray

    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level="WARNING")
    address = ray.get_runtime_context().gcs_address
    print(f"Ray: {ray.cluster_resources().get('CPU', 0):.0f} CPUs; items {args.items}, clusters {args.clusters}, "
          f"mean {args.mean_items:g} raw interactions/user, n_heldout {args.n_heldout}")
    header = (f"{'users':>9} {'raw inter.':>11} {'wall s':>8} {'inter./s':>10} {'driver MB':>9} "
              f"{'time x':>7} {'rss x':>6} {'1-proc s':>9} {'1-proc MB':>9} {'ray/1-proc':>10} {'load':>5}")
    print(header)
    previous = None
    try:
        for users in args.users:
            result = measure(users, "ray", args, address)
            base = measure(users, "baseline", args, address) if users <= args.baseline_max_users else None
            if base is not None:
                keys = ("raw", "n_items", "users", "interactions")
                assert all(base[k] == result[k] for k in keys), (base, result)
            growth = (f"{result['seconds'] / previous['seconds']:7.2f} {result['rss_mb'] / previous['rss_mb']:6.2f}"
                      if previous else f"{'-':>7} {'-':>6}")
            versus = (f"{base['seconds']:9.1f} {base['rss_mb']:9.0f} {result['seconds'] / base['seconds']:10.2f}"
                      if base else f"{'-':>9} {'-':>9} {'-':>10}")
            print(f"{users:>9,} {result['raw']:>11,} {result['seconds']:8.1f} {result['raw'] / result['seconds']:>10,.0f} "
                  f"{result['rss_mb']:9.0f} {growth} {versus} {os.getloadavg()[0]:5.1f}", flush=True)
            previous = result
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
