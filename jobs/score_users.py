"""Nightly batch scoring: every user's top-N items to Parquet under OUTPUT/run_date=YYYY-MM-DD/.

    python jobs/score_users.py --model runs/quickstart --input runs/quickstart/prepared \\
        --output recs --run-date 2026-11-23 --top-n 100
    python jobs/score_users.py --model /models@latest --input /raw/events --format parquet \\
        --output s3://bucket/recs --run-date 2026-11-23 --window-days 90 --concurrency 4 --num-gpus 1

--model is a run directory, its model/ directory, or STORE@VERSION_OR_ALIAS. Settings default to the
model's own training config (so raw input uses its positive threshold); --config replaces that, and
key=value overrides (e.g. score.batch_size=2048 data.user_col=uid) apply last. Rerunning a date
replaces its output atomically; a failed run publishes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from raytrain.cli import run_main  # noqa: E402
from raytrain.config import load_config  # noqa: E402
from raytrain.score import score_users  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="run dir, model dir, or STORE@VERSION_OR_ALIAS (e.g. store@latest)")
    parser.add_argument("--input", required=True, help="prepared dataset dir, or raw interactions (with --format)")
    parser.add_argument("--output", required=True, help="output root (local or URI); writes OUTPUT/run_date=DATE/")
    parser.add_argument("--run-date", required=True, help="YYYY-MM-DD: the partition written (replaced on rerun)")
    parser.add_argument("--format", help="raw input format: movielens | netflix | msd | parquet | csv (default: auto)")
    parser.add_argument("--config", help="YAML config instead of the model's training config")
    parser.add_argument("--top-n", type=int, help="items per user (score.top_n)")
    parser.add_argument("--window-days", type=int, help="raw input: only interactions/users of the last N days")
    parser.add_argument("--splits", help="prepared input: comma-separated splits to score (default train,val,test)")
    parser.add_argument("--concurrency", type=int, help="max scoring actors (score.concurrency)")
    parser.add_argument("--num-gpus", type=float, help="GPUs per scoring actor (score.num_gpus); 0 = CPU")
    parser.add_argument("--batch-size", type=int, help="users per scoring batch (score.batch_size)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value config overrides")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    flags = {"top_n": args.top_n, "window_days": args.window_days, "concurrency": args.concurrency,
             "num_gpus": args.num_gpus, "batch_size": args.batch_size,
             "splits": f"[{args.splits}]" if args.splits else None}
    overrides = [f"score.{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)
    config = load_config(args.config) if args.config else None
    summary = score_users(config, args.model, args.input, args.output, args.run_date,
                          input_format=args.format, overrides=overrides)
    print("\n".join(summary.lines()))
    return 0


if __name__ == "__main__":
    run_main(main)
