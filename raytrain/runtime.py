"""Connect to the Ray cluster a job was submitted to, or start a local one.

Inside ``ray job submit`` (or with RAY_ADDRESS set) a plain ``ray.init()`` joins the cluster;
passing resource arguments there raises, so local-only options are given only when no
cluster address is known.
"""

from __future__ import annotations

import logging
import os

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
    ray.init(
        address="local",  # a new instance, never whatever cluster another program left running
        num_cpus=num_cpus,
        resources=resources,
        include_dashboard=False,
        configure_logging=False,
    )


def quiet_ray_data() -> None:
    """Turn off Ray Data's per-operator progress bars (they flood job logs and test output)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False  # else every epoch's re-read logs its plan
