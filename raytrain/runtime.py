"""Connect to the Ray cluster a job was submitted to, or start a local one.

Inside ``ray job submit`` (or with RAY_ADDRESS set) a plain ``ray.init()`` joins the cluster;
passing resource arguments there raises, so local-only options are given only when no
cluster address is known.
"""

from __future__ import annotations

import logging
import os
import socket

import ray

logger = logging.getLogger(__name__)


def ensure_ray(num_cpus: int | None = None, resources: dict[str, float] | None = None) -> None:
    """Initialise Ray once per process: join an existing cluster, else start a local one."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        logger.info("connecting to the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(log_to_driver=True)
        return
    logger.info("no RAY_ADDRESS: starting a local Ray instance")
    # Read by the Train controller, which inherits this process's environment only on a local
    # instance; clusters set it on their nodes. An unschedulable run fails after this, not never.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
    # Ray Train's placement-group cleaner frees a run's CPUs when its controller is killed (Tune
    # stopping a trial) and finds the controller through the state API, i.e. the dashboard at
    # RAY_API_SERVER_ADDRESS, else a guessed cluster (a stale /tmp/ray/ray_current_cluster). Without
    # a dashboard it can never free them: each stopped trial leaked its CPUs until a sweep hung.
    # The local instance's processes inherit this environment, so name our dashboard here.
    dashboard_port = free_port()
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dashboard_port}"
    ray.init(
        address="local",  # a new instance, never whatever cluster another program left running
        num_cpus=num_cpus,
        resources=resources,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port,
        configure_logging=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def quiet_ray_data() -> None:
    """Turn off Ray Data's per-operator progress bars (they flood job logs and test output)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False  # else every epoch's re-read logs its plan
