"""Train Multi-VAE / RecVAE (+ PIA) on Ray Train: prepare if needed -> train -> test -> report.

    python jobs/train_pia.py                                   # embedded default: synthetic data, local Ray
    python jobs/train_pia.py --config configs/ml-100k.yaml --data PREPARED_OR_RAW --output-dir RUN_DIR [key=value ...]
    ray job submit --working-dir . -- python jobs/train_pia.py --config configs/ml-20m.yaml ...
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from raytrain.cli import run_main  # noqa: E402
from raytrain.config import load_config, to_dict  # noqa: E402
from raytrain.train.job import JobOptions, run_train_job  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config (default: configs/quickstart.yaml)")
    parser.add_argument("--data", help="a prepared dataset directory, or a raw source to prepare first (sets data.path)")
    parser.add_argument("--format", help="raw data format when --data is raw (sets data.format)")
    parser.add_argument("--output-dir", default="runs/default", help="run directory: metrics.json, model/, report PNGs")
    parser.add_argument("--num-workers", type=int, help="Ray Train workers (sets scaling.num_workers)")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per worker, NCCL (sets scaling.use_gpu)")
    parser.add_argument("--storage-path", help="checkpoint storage, local dir or URI (default: OUTPUT_DIR/ray_results)")
    parser.add_argument("--name", help="run name, unique per run and stable across its retries (default: config name)")
    parser.add_argument("--resume", nargs="?", const="must", choices=["must", "auto"],
                        help="continue the stopped run of this name; --resume=auto starts it when it does not exist yet")
    parser.add_argument("--publish", metavar="STORE", help="publish the best model to this model store")
    parser.add_argument("--promote", action="store_true", help="with --publish: promote it to 'latest' (quality-gated)")
    parser.add_argument("--force-promote", action="store_true", help="with --promote: skip the quality gate")
    parser.add_argument("overrides", nargs="*", help="dotted key=value config overrides, e.g. model.pia.lambda_a=1")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data}")
    if args.format:
        overrides.append(f"data.format={args.format}")
    if args.num_workers:
        overrides.append(f"scaling.num_workers={args.num_workers}")
    if args.use_gpu:
        overrides.append("scaling.use_gpu=true")
    config = load_config(args.config, overrides)
    logging.getLogger("raytrain").info("config: %s", to_dict(config))
    options = JobOptions(
        output_dir=args.output_dir, storage_path=args.storage_path, name=args.name, resume={None: False, "must": True, "auto": "auto"}[args.resume],
        publish=args.publish, promote=args.promote, force_promote=args.force_promote,
    )
    run_train_job(config, options)
    return 0


if __name__ == "__main__":
    run_main(main)
