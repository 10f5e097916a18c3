"""The training job end to end: resolve data -> Ray Train run -> best model -> test metrics -> report.

``jobs/train_pia.py`` parses arguments and calls :func:`run_train_job`; everything else is here so
the same flow runs from a submitted Ray job, a test, or a Tune trial's retraining.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from raytrain import storage
from raytrain.config import Config, dump_yaml, to_dict
from raytrain.data.prepared import PreparedDataset
from raytrain.runtime import ensure_ray, quiet_ray_data
from raytrain.train import checkpoint as ckpt
from raytrain.train import report
from raytrain.train.evaluation import evaluate_checkpoint
from raytrain.train.trainer import TrainRun, default_storage_path, fit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOptions:
    output_dir: str
    storage_path: str | None = None
    name: str | None = None
    resume: bool | str = False  # False | True | "auto" (see trainer.fit)
    publish: str | None = None
    promote: bool = False
    force_promote: bool = False


def resolve_prepared(config: Config, output_dir: str) -> PreparedDataset:
    """Open a prepared dataset, or prepare the raw source once into ``data.prepared_path``."""
    from raytrain.data.prepare import prepare_dataset

    data = config.data
    if data.format == "prepared" or (data.path and storage.exists(storage.join(data.path, "meta.json"))):
        return PreparedDataset.open(data.path)
    target = data.prepared_path or os.path.join(output_dir, "prepared")
    if storage.exists(storage.join(target, "meta.json")):
        existing = PreparedDataset.open(target)
        if existing.meta.get("params") == to_dict(data):
            logger.info("reusing the prepared dataset at %s (same source and parameters)", target)
            return existing
        logger.info("prepared dataset at %s was made with other parameters: preparing again", target)
    logger.info("preparing %s data into %s", data.format, target)
    return prepare_dataset(data, target)


def export_model(run: TrainRun, prepared: PreparedDataset, output_dir: str) -> str:
    """Copy the best checkpoint and the item vocabulary into ``OUTPUT_DIR/model`` (self-contained)."""
    model_dir = os.path.join(output_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    payload = ckpt.load_checkpoint(run.best_checkpoint)
    # Optimizer state is only needed to resume; the exported model is for scoring and publishing.
    payload["optimizers"] = {}
    ckpt.save_checkpoint(model_dir, payload)
    storage.write_bytes(os.path.join(model_dir, "items.parquet"), storage.read_bytes(storage.join(prepared.path, "items.parquet")))
    return model_dir


def _write_report(metrics: dict[str, Any], history: list[dict[str, float]], output_dir: str) -> None:
    report.write_json(os.path.join(output_dir, "metrics.json"), metrics)
    report.write_json(os.path.join(output_dir, "history.json"), {"epochs": history})
    if history:
        report.plot_training_curves(history, os.path.join(output_dir, "training_curves.png"))
    if metrics.get("test_groups"):
        report.plot_groups(metrics["test_groups"], os.path.join(output_dir, "test_groups.png"))


def run_train_job(config: Config, options: JobOptions) -> dict[str, Any]:
    """Run the whole training job and return what was written to ``metrics.json``."""
    started = time.time()
    output_dir = os.path.abspath(options.output_dir)
    os.makedirs(output_dir, exist_ok=True)
    ensure_ray()
    quiet_ray_data()
    prepared = resolve_prepared(config, output_dir)
    name = options.name or config.name
    storage_path = options.storage_path or default_storage_path(output_dir)
    dump_yaml(config, os.path.join(output_dir, "config.yaml"), header=f"# resolved config of run {name}")

    run = fit(config, prepared, storage_path=storage_path, name=name, resume=options.resume)
    model_dir = export_model(run, prepared, output_dir)
    evaluation = evaluate_checkpoint(model_dir, prepared, config)
    best_epoch = int(run.best_metrics.get("epoch", 0))
    metrics = {
        "run_name": name,
        "run_dir": output_dir,
        "model": config.model.name + ("+pia" if config.model.pia.enabled else ""),
        "epochs_run": len(run.history),
        "best_epoch": best_epoch,
        "best_val": {k.split("/", 1)[1]: v for k, v in run.best_metrics.items() if k.startswith("val/")},
        **evaluation,
        "checkpoint_path": run.best_checkpoint,
        "ray_run_path": run.path,
        "data_path": prepared.path,
        "data_fingerprint": prepared.meta.get("source_fingerprint"),
        "vocab_fingerprint": prepared.vocab_fingerprint,
        "wall_seconds": round(time.time() - started, 1),
        "config": to_dict(config),
    }
    _write_report(metrics, run.history, output_dir)
    if options.publish:
        _publish(options, output_dir, metrics)
    for line in report.summary_lines(metrics):
        logger.info(line)
    return metrics


def _publish(options: JobOptions, output_dir: str, metrics: dict[str, Any]) -> None:
    from raytrain.store import ModelStore

    store = ModelStore(options.publish)
    version = store.publish(output_dir)
    metrics["published_version"] = version
    if options.promote or options.force_promote:
        store.promote(version, force=options.force_promote)
        metrics["promoted"] = True
    report.write_json(os.path.join(output_dir, "metrics.json"), metrics)

