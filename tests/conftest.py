"""Shared fixtures: one real Ray cluster for the whole session, started like production.

The head is started with ``ray start --head`` (dashboard and job server bound to 127.0.0.1, token
authentication on), and the test process connects to it, so job-submission tests and in-process
tests share one cluster (two local clusters on one host break Ray Train's placement-group cleaner).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

# Token auth must be on before Ray is imported: Ray reads its auth mode when it loads its config.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
os.environ.pop("RAY_ADDRESS", None)

import ray  # noqa: E402

from raytrain.runtime import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO.parent / "shared" / "data" / "ml-100k" / "ratings.csv"
RAY_CLI = str(Path(sys.executable).parent / "ray")


@dataclass(frozen=True)
class RayCluster:
    address: str  # GCS address for ray.init / RAY_ADDRESS
    dashboard_url: str  # job server (http://127.0.0.1:PORT)
    env: dict  # environment for subprocesses that talk to the cluster (token included)


def _start_head(tmp: Path) -> tuple[subprocess.Popen, RayCluster]:
    port, dashboard_port = free_port(), free_port()
    env = {
        **os.environ,
        # Jobs run `python ...`: make that the interpreter running the tests.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    log = open(tmp / "ray-head.log", "w")
    head = subprocess.Popen(
        [RAY_CLI, "start", "--head", "--block", "--num-cpus=2", f"--port={port}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--include-dashboard=true",
         "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    cluster = RayCluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", env)
    return head, cluster


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The session's Ray cluster (token auth, dashboard on loopback); the test process is connected."""
    tmp = tmp_path_factory.mktemp("ray-head")
    head, cluster = _start_head(tmp)
    try:
        _connect(head, cluster, tmp)
        yield cluster
    finally:
        ray.shutdown()
        _stop_head(head)


def _stop_head(head: subprocess.Popen) -> None:
    """Stop every process of the head's session (raylet, GCS, dashboard, workers): SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            head.poll()  # reap the head so a zombie does not keep its group alive
            try:
                os.killpg(head.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def _connect(head: subprocess.Popen, cluster: RayCluster, tmp: Path) -> None:
    deadline = time.time() + 120
    while True:
        try:
            # Workers get the address too: Train's placement-group cleaner finds the cluster through
            # it, and guesses wrong (leaking an ASHA-stopped trial's resources) when a host runs more.
            ray.init(address=cluster.address, logging_level=logging.WARNING,
                     runtime_env={"env_vars": {"RAY_ADDRESS": cluster.address}})
            break
        except Exception:  # noqa: BLE001 - not up yet
            if head.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray head did not start: {(tmp / 'ray-head.log').read_text()[-3000:]}") from None
            time.sleep(1)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False


@pytest.fixture(scope="session")
def ray_session(ray_cluster):
    """Tests that need Ray running (the connected session cluster)."""
    yield


@pytest.fixture(scope="session")
def ml100k_prepared(ray_session, tmp_path_factory):
    """MovieLens-100K prepared once per session (threshold 4, min 5 items, 100 held-out users per split)."""
    from raytrain.config import DataConfig
    from raytrain.data.prepare import prepare_dataset

    data = DataConfig(format="movielens", path=str(ML100K), threshold=4, min_items_per_user=5, n_heldout=100, seed=1)
    return prepare_dataset(data, str(tmp_path_factory.mktemp("ml100k") / "prepared"))
