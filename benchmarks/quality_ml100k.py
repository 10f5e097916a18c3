"""Quality table on MovieLens-100K (strong generalisation): baselines, Multi-VAE, PIA, RecVAE.

    .venv/bin/python benchmarks/quality_ml100k.py --seeds 1 2 3 --epochs 200

For each split seed: prepare the data (threshold 4, >= 5 items per user, 100 validation and
100 test users), fit popularity and EASE (lambda picked on validation), train every variant in
plain processes (no Ray; --jobs in parallel) with the best epoch chosen on validation NDCG@100, and report test NDCG@100,
Recall@20, Recall@50 per seed and as mean +- std, the paired PIA - Multi-VAE difference and
the mask-variance diagnostic of Prop. 3.2 (test users, K = 8 masks). Measured table:
benchmarks/quality_ml100k.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import math
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch

from raytrain.config import Config, DataConfig, replace
from raytrain.data.batches import list_column_to_csr
from raytrain.models.baselines import fit_ease, fit_popularity
from raytrain.train.local import evaluate_table, fit

logger = logging.getLogger("quality_ml100k")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k" / "ratings.csv"
VARIANTS: dict[str, list[str]] = {
    "multvae": ["model.name=multvae"],
    "multvae+pia": ["model.name=multvae", "model.pia.enabled=true", "model.pia.lambda_a=0.5"],
    "multvae+pia-centroid": ["model.name=multvae", "model.pia.enabled=true", "model.pia.lambda_a=0.5",
                             "model.pia.form=centroid"],
    "multvae+pia-escalating": ["model.name=multvae", "model.pia.enabled=true", "model.pia.lambda_a=0.5",
                               "model.pia.lambda_scale=2", "model.pia.patience=5", "model.pia.lambda_max=64"],
    "multdae": ["model.name=multdae"],
    # RecVAE's reference learning rate; its epochs are 3 encoder + 1 decoder passes each.
    "recvae": ["model.name=recvae", "train.lr=0.0005"],
    "recvae+pia": ["model.name=recvae", "train.lr=0.0005", "model.pia.enabled=true", "model.pia.lambda_a=0.5"],
}
COLUMNS = ("ndcg@100", "recall@20", "recall@50")
DIAGNOSTIC_COLUMNS = ("mask_variance", "mask_variance_ratio", "centroid_distance")
EASE_L2 = (50.0, 100.0, 200.0, 300.0, 500.0, 1000.0)


def prepare_splits(seeds: list[int], work_dir: Path) -> dict[int, str]:
    """Prepare one dataset per split seed with the project's Ray Data pipeline (once; cached)."""
    missing = [seed for seed in seeds if not (work_dir / f"ml-100k-seed{seed}" / "meta.json").exists()]
    if missing:
        import ray

        from raytrain.data.prepare import prepare_dataset
        from raytrain.runtime import ensure_ray

        ensure_ray(num_cpus=2)  # a local instance of its own (or RAY_ADDRESS's cluster)
        for seed in missing:
            data = DataConfig(format="movielens", path=str(DATA), threshold=4, min_items_per_user=5,
                              n_heldout=100, seed=seed)
            prepare_dataset(data, str(work_dir / f"ml-100k-seed{seed}"))
        ray.shutdown()  # free the cores for training
    return {seed: str(work_dir / f"ml-100k-seed{seed}") for seed in seeds}


def load_split(path: str) -> tuple:
    from raytrain.data.prepared import PreparedDataset

    prepared = PreparedDataset.open(path)
    return (prepared.read_split("train"), prepared.read_split("val"), prepared.read_split("test"), prepared.n_items)


def run_baselines(train, val, test, n_items: int) -> dict[str, dict[str, float]]:
    matrix = list_column_to_csr(train.column("items"), n_items)
    results = {"popularity": evaluate_table(fit_popularity(matrix), test, n_items)}
    best_l2 = max(EASE_L2, key=lambda l2: evaluate_table(fit_ease(matrix, l2), val, n_items)["ndcg@100"])
    results["ease"] = {**evaluate_table(fit_ease(matrix, best_l2), test, n_items), "l2": best_l2}
    return results


def run_variant(name: str, overrides: list[str], path: str, seed: int, threads: int, recvae_epochs: int
                ) -> dict[str, float]:
    """Train one variant on one split (runs in a worker process when --jobs > 1)."""
    torch.set_num_threads(threads)
    train, val, test, n_items = load_split(path)
    config = replace(Config(), [*overrides[:1], *VARIANTS[name], *overrides[1:], f"train.seed={seed}"])
    if config.model.name == "recvae":
        config = replace(config, [f"train.epochs={recvae_epochs}"])
    started = time.perf_counter()
    result = fit(config, train, val, n_items, test)
    return {**result.test, "best_epoch": result.state.best_epoch, "val_ndcg@100": result.state.best_ndcg,
            "final_lambda_a": result.state.lambda_a, "seconds": time.perf_counter() - started}


def mean_std(values: list[float]) -> str:
    values = [float(v) for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(results: dict[str, dict[int, dict[str, float]]], seeds: list[int]) -> list[str]:
    lines = ["| model | " + " | ".join(f"{c} s{s}" for c in COLUMNS for s in seeds) + " | "
             + " | ".join(f"{c} mean" for c in COLUMNS) + " |"]
    lines.append("|" + "---|" * (1 + len(COLUMNS) * (len(seeds) + 1)))
    for model, by_seed in results.items():
        cells = [f"{by_seed[s][c]:.4f}" for c in COLUMNS for s in seeds]
        cells += [mean_std([by_seed[s][c] for s in seeds]) for c in COLUMNS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "| model | paired ΔNDCG@100 vs multvae | " + " | ".join(DIAGNOSTIC_COLUMNS) + " | best epoch |",
              "|---|---|" + "---|" * len(DIAGNOSTIC_COLUMNS) + "---|"]
    for model, by_seed in results.items():
        delta = ""
        if "multvae" in results and model != "multvae" and "mask_variance" in by_seed[seeds[0]]:
            delta = mean_std([by_seed[s]["ndcg@100"] - results["multvae"][s]["ndcg@100"] for s in seeds])
        diagnostics = [mean_std([by_seed[s].get(c, float("nan")) for s in seeds]) for c in DIAGNOSTIC_COLUMNS]
        epochs = ", ".join(str(int(by_seed[s].get("best_epoch", 0))) for s in seeds)
        lines.append(f"| {model} | {delta} | " + " | ".join(diagnostics) + f" | {epochs} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--recvae-epochs", type=int, default=100, help="RecVAE peaks by epoch ~60 here")
    parser.add_argument("--variants", nargs="+", default=["multvae", "multvae+pia", "recvae"],
                        choices=sorted(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value overrides for every variant")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/benchmarks/ml-100k"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    parser.add_argument("--jobs", type=int, default=2, help="training processes in parallel")
    parser.add_argument("--tag", default="quality", help="results are written to WORK_DIR/TAG.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("raytrain.train.local").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    splits = prepare_splits(args.seeds, args.work_dir)
    overrides = [f"train.epochs={args.epochs}", *args.set]
    results: dict[str, dict[int, dict[str, float]]] = {}
    for seed in args.seeds:
        for name, metrics in run_baselines(*load_split(splits[seed])).items():
            results.setdefault(name, {})[seed] = metrics
    tasks = [(name, seed) for name in args.variants for seed in args.seeds]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {pool.submit(run_variant, name, overrides, splits[seed], seed, args.threads, args.recvae_epochs): (name, seed)
                   for name, seed in tasks}
        for future in concurrent.futures.as_completed(futures):
            name, seed = futures[future]
            metrics = results.setdefault(name, {})[seed] = future.result()
            logger.info("seed %d %-24s test ndcg@100 %.4f (best epoch %d, %.0f s)", seed, name,
                        metrics["ndcg@100"], metrics["best_epoch"], metrics["seconds"])
    results = {name: results[name] for name in ["popularity", "ease", *args.variants]}
    (args.work_dir / f"{args.tag}.json").write_text(json.dumps({"args": vars(args) | {"work_dir": str(args.work_dir)},
                                                           "results": results}, indent=1, default=str))
    lines = [f"ml-100k, seeds {args.seeds}, epochs {args.epochs}, overrides {overrides}", "", *table(results, args.seeds)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
