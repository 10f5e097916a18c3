"""Prepare raw interactions into a prepared dataset (Liang et al. 2018 protocol) on Ray Data.

    python jobs/prepare_data.py --format movielens --input ratings.csv --output DIR \\
        --threshold 4 --min-items-per-user 5 --n-heldout 100 --seed 1
    python jobs/prepare_data.py --format synthetic --synthetic-users 100000 --output DIR
    python jobs/prepare_data.py --config configs/ml-100k.yaml --output DIR     # the config's data section
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from raytrain.cli import run_main  # noqa: E402
from raytrain.config import DATA_FORMATS, ID_DTYPES, from_dict, load_config, to_dict  # noqa: E402
from raytrain.data.prepare import prepare_dataset  # noqa: E402

# flag -> (config key under data., type, help); defaults come from DataConfig (or --config).
OPTIONS = {
    "--format": ("format", str, f"raw format: {', '.join(f for f in DATA_FORMATS if f != 'prepared')}"),
    "--input": ("path", str, "raw file, directory, glob or URI (local or any pyarrow filesystem); not for synthetic"),
    "--threshold": ("threshold", float, "positives are value >= threshold (4 for ratings, 1 for play counts)"),
    "--min-users-per-item": ("min_users_per_item", int, "drop items with fewer positive users first (0: off; MSD 200)"),
    "--min-items-per-user": ("min_items_per_user", int, "then drop users with fewer positive items (ML/Netflix 5)"),
    "--n-heldout": ("n_heldout", float, "validation and test users each: a count, or a fraction of users if < 1"),
    "--heldout-fraction": ("heldout_fraction", float, "share of each held-out user's items held out (0.2)"),
    "--seed": ("seed", int, "seed of the held-out user and item choice"),
    "--user-col": ("user_col", str, "csv/parquet: user id column"),
    "--item-col": ("item_col", str, "csv/parquet: item id column"),
    "--value-col": ("value_col", str, "csv/parquet: rating/count column ('' = every row is a positive of value 1)"),
    "--timestamp-col": ("timestamp_col", str, "csv/parquet: optional timestamp column"),
    "--id-dtype": ("id_dtype", str, f"csv/parquet id type: {', '.join(ID_DTYPES)}"),
    "--num-output-files": ("num_output_files", int, "files per split (0: one per ~4M raw interactions)"),
    "--read-blocks": ("read_blocks", int, "read tasks for the raw input (0: ~64 MiB each); output does not change"),
    "--synthetic-users": ("synthetic.n_users", int, "synthetic: users"),
    "--synthetic-items": ("synthetic.n_items", int, "synthetic: items"),
    "--synthetic-clusters": ("synthetic.n_clusters", int, "synthetic: planted taste clusters"),
    "--synthetic-mean-items": ("synthetic.mean_items_per_user", float, "synthetic: mean items per user (lognormal)"),
    "--synthetic-seed": ("synthetic.seed", int, "synthetic: generator seed"),
    "--synthetic-blocks": ("synthetic.n_blocks", int, "synthetic: parallel generation tasks"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="prepared dataset directory or URI (a previous one is replaced)")
    parser.add_argument("--config", help="YAML config whose data section gives the defaults (flags override it)")
    defaults = to_dict(load_config().data)
    for flag, (key, kind, text) in OPTIONS.items():
        default = defaults["synthetic"][key[10:]] if key.startswith("synthetic.") else defaults[key]
        choices = {"--format": [f for f in DATA_FORMATS if f != "prepared"], "--id-dtype": ID_DTYPES}.get(flag)
        parser.add_argument(flag, type=kind, choices=choices, help=f"{text} (default: {default!r})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    values = to_dict(load_config(args.config))
    for flag, (key, _, _) in OPTIONS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            section, _, name = key.rpartition(".")
            (values["data"][section] if section else values["data"])[name] = value
    data = from_dict(values).data
    logging.getLogger("raytrain").info("data config: %s", to_dict(data))
    prepared = prepare_dataset(data, args.output)
    meta = prepared.meta
    logging.getLogger("raytrain").info(
        "prepared %s: %d items; users %s; interactions %s", prepared.path, meta["n_items"], meta["users"],
        meta["interactions"])
    return 0


if __name__ == "__main__":
    run_main(main)
