"""A job started without RAY_ADDRESS gets a local Ray whose own processes can reach its state API.

Ray Train's placement-group cleaner (a worker process) frees a killed run's CPUs through the state
API; when it could not find this instance's dashboard, every trial Tune stopped leaked its CPUs
and a 12-trial sweep hung on its second trial.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import os, ray
    from raytrain.runtime import ensure_ray

    ensure_ray(num_cpus=1)
    url = os.environ["RAY_API_SERVER_ADDRESS"]

    @ray.remote(num_cpus=0)
    def from_a_worker():
        from ray.util.state import list_nodes
        return os.environ.get("RAY_API_SERVER_ADDRESS"), len(list_nodes(timeout=20))

    seen, nodes = ray.get(from_a_worker.remote())
    print("RESULT", url == seen, nodes, ray.get_runtime_context().gcs_address)
    """
)


def test_local_instance_workers_reach_its_state_api():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    _, same_url, nodes, _ = line.split()
    assert same_url == "True" and nodes == "1"
