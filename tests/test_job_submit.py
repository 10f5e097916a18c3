"""End to end through the real job server: `ray job submit -- python jobs/train_pia.py ...`.

The session's head runs with token authentication and its dashboard on 127.0.0.1 (see conftest):
an unauthenticated request is refused, an authenticated submission trains and writes metrics.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAY_CLI_TIMEOUT = 600
RAY_CLI = str(Path(sys.executable).parent / "ray")


def _ray(cluster, *args: str, timeout: int = RAY_CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([RAY_CLI, *args], env=cluster.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _job_info(cluster, submission_id: str = "") -> dict | list:
    request = urllib.request.Request(
        f"{cluster.dashboard_url}/api/jobs/{submission_id}",
        headers={"Authorization": f"Bearer {cluster.env['RAY_AUTH_TOKEN']}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_job_api_refuses_requests_without_the_token(ray_cluster):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{ray_cluster.dashboard_url}/api/jobs/", timeout=30)
    assert refused.value.code in (401, 403)
    assert isinstance(_job_info(ray_cluster), list)  # with the token the same request is served


def test_submitted_training_job_succeeds_and_writes_metrics(ray_cluster, ml100k_prepared, tmp_path):
    out = tmp_path / "run"
    submission_id = f"train-pia-test-{uuid.uuid4().hex[:8]}"
    entrypoint = [
        "python", "jobs/train_pia.py", "--config", "configs/ml-100k.yaml", "--data", ml100k_prepared.path,
        "--output-dir", str(out), "train.epochs=2", "model.hidden_dim=100", "model.latent_dim=32",
        "scaling.cpus_per_worker=0.5",
    ]
    submitted = _ray(ray_cluster, "job", "submit", "--address", ray_cluster.dashboard_url, "--working-dir", ".",
                     "--submission-id", submission_id, "--", *entrypoint)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert _job_info(ray_cluster, submission_id)["status"] == "SUCCEEDED"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert metrics["test"]["users"] == 100
    assert (out / "model" / "checkpoint.pt").exists()
    # A reused submission id is refused: schedules use it as an idempotency key.
    again = _ray(ray_cluster, "job", "submit", "--address", ray_cluster.dashboard_url, "--working-dir", ".",
                 "--submission-id", submission_id, "--no-wait", "--", "python", "-c", "print(1)")
    assert again.returncode != 0
