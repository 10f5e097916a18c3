"""Sweep beta / lambda_A / epsilon (+ lr) with Ray Tune + ASHA; every trial is a Ray Train run.

    python jobs/tune_pia.py --config configs/ml-100k.yaml --data PREPARED_OR_RAW --output-dir SWEEP_DIR \
        [--num-samples 12] [--resume] [tune.max_epochs=30 tune.grace_period=3 ...]

Writes SWEEP_DIR/results.csv|parquet, SWEEP_DIR/best_config.yaml (for jobs/train_pia.py) and sweep.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from raytrain.cli import run_main  # noqa: E402
from raytrain.config import load_config  # noqa: E402
from raytrain.tune import run_sweep  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="base YAML config (the trials' fixed settings)")
    parser.add_argument("--data", help="a prepared dataset directory, or a raw source to prepare first")
    parser.add_argument("--output-dir", required=True, help="sweep directory (local path or URI)")
    parser.add_argument("--num-samples", type=int, help="number of trials (sets tune.num_samples)")
    parser.add_argument("--name", help="sweep name (default: sweep-<config name>)")
    parser.add_argument("--resume", action="store_true", help="restore the interrupted sweep; finished trials are kept")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. tune.max_epochs=20")
    args = parser.parse_args()
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data}")
    if args.num_samples:
        overrides.append(f"tune.num_samples={args.num_samples}")
    config = load_config(args.config, overrides)
    run_sweep(config, args.output_dir, name=args.name, resume=args.resume)
    return 0


if __name__ == "__main__":
    run_main(main)
