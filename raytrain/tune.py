"""Ray Tune sweeps over beta / lambda_A / epsilon (+ lr) with ASHA; every trial is a Ray Train run.

Each trial function builds the same ``TorchTrainer`` as a training run (``train/trainer.py``) with a
``TuneReportCallback``, so every epoch's validation NDCG@100 reaches ASHA, which stops weak trials.
The Train run inside a trial is named after the trial id, so a trial resumed after the sweep's
driver died continues from its own last checkpoint instead of starting over.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator

from raytrain import storage
from raytrain.config import Config, from_dict, replace, to_dict
from raytrain.data.prepared import PreparedDataset
from raytrain.train.trainer import SCORE_METRIC, build_trainer

logger = logging.getLogger(__name__)

# Knob name in the search space -> config key it sets.
KNOBS = {"beta": "train.beta_cap", "lambda": "model.pia.lambda_a", "epsilon": "model.epsilon", "lr": "train.lr"}
TRIAL_DRIVER_CPU = 0.01  # the trial function only waits on its TorchTrainer


@dataclass(frozen=True)
class SweepPaths:
    """Where a sweep keeps Tune's experiment state and its trials' Train runs."""

    root: str  # the sweep's output directory (local path or URI)
    name: str

    @property
    def tune_storage(self) -> str:
        return self.root

    @property
    def experiment(self) -> str:
        return storage.join(self.root, self.name)

    @property
    def trial_runs(self) -> str:
        return storage.join(self.root, "trial_runs")


def search_space(config: Config) -> dict[str, Any]:
    """The sweep's space from ``config.tune`` (lambda = 0 is plain Multi-VAE inside the same sweep)."""
    settings = config.tune
    space: dict[str, Any] = {
        "beta": tune.loguniform(settings.beta_min, settings.beta_max),
        "lambda": tune.choice(list(settings.lambdas)),
        "epsilon": tune.uniform(settings.epsilon_min, settings.epsilon_max),
    }
    if settings.lrs:
        space["lr"] = tune.choice(list(settings.lrs))
    return space


def trial_config(base: Config, params: dict[str, Any]) -> Config:
    """The training config of one trial: the base config with this trial's knobs applied."""
    overrides = [f"{KNOBS[k]}={float(v)!r}" for k, v in params.items() if k in KNOBS]
    lambda_a = float(params.get("lambda", base.model.pia.lambda_a))
    overrides += [
        f"model.pia.enabled={'true' if lambda_a > 0 else 'false'}",
        f"model.pia.lambda_max={max(base.model.pia.lambda_max, lambda_a)!r}",
        f"train.epochs={base.tune.max_epochs}",
        "train.eval_every=1",  # ASHA needs the metric at every rung
    ]
    return replace(base, overrides)


def _run_trial(params: dict[str, Any], *, base_config: dict[str, Any], prepared_path: str, runs_path: str) -> None:
    """Tune trial function: one TorchTrainer run, its epochs forwarded to Tune by the callback."""
    config = trial_config(from_dict(base_config), params)
    trial_id = tune.get_context().get_trial_id()
    trainer = build_trainer(
        config,
        PreparedDataset.open(prepared_path),
        storage_path=runs_path,
        name=f"train-trial_id={trial_id}",
        callbacks=[TuneReportCallback()],
    )
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"trial {trial_id} failed: {result.error}")


def max_concurrent_trials(config: Config) -> int:
    """Trials that fit at once: Tune does not count the Train workers inside a trial itself."""
    if config.tune.max_concurrent_trials > 0:
        return config.tune.max_concurrent_trials
    scaling = config.scaling
    resources = ray.cluster_resources()
    if scaling.use_gpu:
        per_trial = scaling.num_workers * scaling.gpus_per_worker
        return max(1, int(resources.get("GPU", 0) // per_trial))
    # Keep CPU for Ray Data or the workers starve it: its file-listing task always asks for a
    # whole CPU, and the read tasks (scaling.read_cpus each) need room beside it.
    cpus = resources.get("CPU", 1.0)
    per_trial = scaling.num_workers * scaling.cpus_per_worker + TRIAL_DRIVER_CPU
    return max(1, int(math.floor((cpus - max(1.0 + scaling.read_cpus, 0.25 * cpus)) / per_trial)))


def _trainable(config: Config, prepared: PreparedDataset, paths: SweepPaths):
    function = tune.with_parameters(
        _run_trial, base_config=to_dict(config), prepared_path=prepared.path, runs_path=paths.trial_runs
    )
    return tune.with_resources(function, {"CPU": TRIAL_DRIVER_CPU})


def build_tuner(config: Config, prepared: PreparedDataset, paths: SweepPaths, resume: bool = False) -> tune.Tuner:
    """A new Tuner for the sweep, or the restored one when ``resume`` (finished trials are kept)."""
    trainable = _trainable(config, prepared, paths)
    if resume:
        if not tune.Tuner.can_restore(paths.experiment):
            raise FileNotFoundError(f"no sweep to resume at {paths.experiment}")
        logger.info("restoring sweep %s: finished trials are kept, unfinished ones resume", paths.experiment)
        return tune.Tuner.restore(paths.experiment, trainable=trainable, resume_unfinished=True, resume_errored=False)
    if storage.exists(paths.experiment):
        raise FileExistsError(f"a sweep already exists at {paths.experiment}; pass --resume to continue it")
    settings = config.tune
    scheduler = ASHAScheduler(
        time_attr="epoch",  # the true epoch, also right for a trial resumed from a checkpoint
        max_t=settings.max_epochs,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
    )
    return tune.Tuner(
        trainable,
        param_space=search_space(config),
        tune_config=tune.TuneConfig(
            metric=SCORE_METRIC,
            mode="max",
            scheduler=scheduler,
            # The limit goes on the generator: Tune ignores max_concurrent_trials for one passed in.
            search_alg=BasicVariantGenerator(random_state=settings.seed, max_concurrent=max_concurrent_trials(config)),
            num_samples=settings.num_samples,
        ),
        run_config=tune.RunConfig(
            name=paths.name,
            storage_path=paths.tune_storage,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )


def default_sweep_name(config: Config) -> str:
    return f"sweep-{config.name}"


def sweep_paths(output_dir: str, name: str) -> SweepPaths:
    root = output_dir if "://" in output_dir else os.path.abspath(output_dir)
    return SweepPaths(root=root, name=name)


def run_sweep(config: Config, output_dir: str, *, name: str | None = None, resume: bool = False):
    """Run (or resume) a sweep end to end and write its table, best config and plot.

    Returns:
        :class:`raytrain.tune_results.SweepSummary`.
    """
    from raytrain.runtime import ensure_ray, quiet_ray_data
    from raytrain.train.job import resolve_prepared
    from raytrain.tune_results import summarize

    if "://" not in output_dir:
        os.makedirs(output_dir, exist_ok=True)
    ensure_ray()
    quiet_ray_data()
    prepared = resolve_prepared(config, output_dir)
    paths = sweep_paths(output_dir, name or default_sweep_name(config))
    tuner = build_tuner(config, prepared, paths, resume=resume)
    results = tuner.fit()
    summary = summarize(results, config, output_dir)
    logger.info("sweep %s: %d trials, %d trial-epochs run of %d if all completed (ASHA saved %.0f%%)",
                paths.name, len(summary.table), summary.epochs_run, summary.epochs_if_all_completed,
                100 * summary.epoch_savings)
    logger.info("best %s\n%s", summary.best_params, summary.table.to_string(max_rows=50))
    return summary
