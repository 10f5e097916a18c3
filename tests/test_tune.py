"""Ray Tune + ASHA sweeps on ml-100k: early stopping, outputs, retraining the best config, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from raytrain.config import load_config
from raytrain.train.job import JobOptions, run_train_job
from raytrain.tune import run_sweep

REPO = Path(__file__).resolve().parents[1]

SMALL = [
    "model.hidden_dim=100",
    "model.latent_dim=32",
    "scaling.cpus_per_worker=0.5",
    "tune.grace_period=1",
    "tune.reduction_factor=2",
]


def sweep_config(prepared_path: str, *overrides: str):
    return load_config(REPO / "configs" / "ml-100k.yaml", [f"data.path={prepared_path}", *SMALL, *overrides])


@pytest.fixture(scope="module")
def sweep(ml100k_prepared, tmp_path_factory):
    # Two of the four seeded trials draw lr 1e-7 (they cannot learn) and arrive after a trial with lr
    # 3e-3, so ASHA has something to stop whatever the noise; with near-equal early scores it once
    # let all four finish.
    config = sweep_config(ml100k_prepared.path, "tune.num_samples=4", "tune.max_epochs=4",
                          "tune.lrs=[0.0000001, 0.003]", "train.batch_size=100")
    out = tmp_path_factory.mktemp("sweep")
    return config, out, run_sweep(config, str(out))


def test_asha_stops_weak_trials_and_writes_outputs(sweep):
    config, out, summary = sweep
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 4
    assert set(table.columns) >= {"trial_id", "beta", "lambda", "epsilon", "epochs", "best_val_ndcg@100", "stop_reason"}
    assert (table["stop_reason"] == "stopped early (ASHA)").sum() >= 1
    assert table["epochs"].max() == config.tune.max_epochs
    assert summary.epochs_run < summary.epochs_if_all_completed
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), summary.table, check_dtype=False)
    assert (out / "sweep.png").stat().st_size > 10_000
    # Knobs stay inside the configured space.
    assert table["beta"].between(config.tune.beta_min, config.tune.beta_max).all()
    assert table["lambda"].isin(config.tune.lambdas).all()
    assert table["epsilon"].between(config.tune.epsilon_min, config.tune.epsilon_max).all()


def test_best_config_retrains_to_the_reported_score(sweep, tmp_path):
    _, out, summary = sweep
    best = load_config(out / "best_config.yaml")
    row = summary.table.iloc[0]
    assert best.train.beta_cap == pytest.approx(row["beta"])
    assert best.model.epsilon == pytest.approx(row["epsilon"])
    assert best.model.pia.enabled == (row["lambda"] > 0)
    metrics = run_train_job(best, JobOptions(output_dir=str(tmp_path / "retrain")))
    assert abs(metrics["best_val"]["ndcg@100"] - row["best_val_ndcg@100"]) < 0.04


def _trial_states(experiment: Path) -> dict[str, str]:
    """Trial statuses in the newest experiment state (a restored sweep writes a new file)."""
    files = sorted(experiment.glob("experiment_state-*.json"))  # names carry a sortable timestamp
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text())
    except ValueError:
        return {}  # being written
    return {json.loads(t)["trial_id"]: json.loads(t)["status"] for t, _ in data.get("trial_data", [])}


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(ml100k_prepared, tmp_path):
    out = tmp_path / "sweep"
    args = [sys.executable, str(REPO / "jobs" / "tune_pia.py"), "--config", str(REPO / "configs" / "ml-100k.yaml"),
            "--data", ml100k_prepared.path, "--output-dir", str(out), "--name", "resumable",
            *SMALL, "tune.num_samples=3", "tune.max_epochs=2", "tune.max_concurrent_trials=1", "tune.grace_period=2"]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    driver = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    experiment = out / "resumable"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            states = _trial_states(experiment)
            if "TERMINATED" in states.values():
                break
            assert driver.poll() is None, "the sweep driver ended before any trial finished"
            time.sleep(1)
        else:
            pytest.fail("no trial finished within 300 s")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver dies without saying goodbye
        driver.wait()
    finished = {t for t, s in states.items() if s == "TERMINATED"}
    runs = out / "trial_runs"
    before = {t: sorted(p.name for p in (runs / f"train-trial_id={t}").glob("checkpoint_*")) for t in finished}

    config = sweep_config(ml100k_prepared.path, "tune.num_samples=3", "tune.max_epochs=2",
                          "tune.max_concurrent_trials=1", "tune.grace_period=2")
    summary = run_sweep(config, str(out), name="resumable", resume=True)
    assert len(summary.table) == 3
    assert set(_trial_states(experiment).values()) == {"TERMINATED"}
    for trial in finished:  # no new checkpoints: the finished trial was not trained again
        assert sorted(p.name for p in (runs / f"train-trial_id={trial}").glob("checkpoint_*")) == before[trial]


def test_resume_without_a_sweep_and_rerun_over_one_are_refused(ml100k_prepared, tmp_path):
    config = sweep_config(ml100k_prepared.path)
    with pytest.raises(FileNotFoundError, match="no sweep to resume"):
        run_sweep(config, str(tmp_path), name="missing", resume=True)
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="--resume"):
        run_sweep(config, str(tmp_path), name="exists")
