"""jobs/prepare_data.py: documented options, one-line errors with exit code 2, a real run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from raytrain.cli import run_main

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "jobs" / "prepare_data.py"
ML100K = str((REPO / "../shared/data/ml-100k/ratings.csv").resolve())


def load_job():
    spec = importlib.util.spec_from_file_location("prepare_data_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_job(*args: str) -> subprocess.CompletedProcess:
    """Only for paths that fail before Ray starts: the test session's Ray is the one cluster on this host."""
    return subprocess.run([sys.executable, str(JOB), *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_help_documents_every_option():
    result = run_job("--help")
    assert result.returncode == 0
    for flag in [*load_job().OPTIONS, "--output", "--config"]:
        assert flag in result.stdout
    for name in ("movielens", "netflix", "msd", "parquet", "csv", "synthetic"):
        assert name in result.stdout


def test_missing_input_is_one_line_and_exit_code_2(tmp_path):
    result = run_job("--format", "movielens", "--input", str(tmp_path / "ratings.csv"), "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'ratings.csv'} does not exist"
    assert "Traceback" not in result.stderr


def test_unknown_format_is_a_usage_error(tmp_path):
    result = run_job("--format", "excel", "--output", str(tmp_path))
    assert result.returncode == 2 and "invalid choice: 'excel'" in result.stderr


@pytest.mark.usefixtures("ray_session")
def test_bad_column_in_process_exits_2(tmp_path, capsys):
    (tmp_path / "events.csv").write_text("user,item,value\n1,2,3\n")
    job = load_job()
    with pytest.raises(SystemExit) as caught:
        run_main(lambda: job.main(["--format", "csv", "--input", str(tmp_path / "events.csv"),
                                   "--output", str(tmp_path / "out")]))
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: {tmp_path / 'events.csv'}: no column 'user_id' (data.user_col); the header has: user, item, value"


@pytest.mark.usefixtures("ray_session")
def test_the_issue_command_on_movielens(tmp_path):
    job = load_job()
    code = job.main(["--format", "movielens", "--input", ML100K, "--output", str(tmp_path / "ml"), "--threshold", "4",
                     "--min-items-per-user", "5", "--n-heldout", "100", "--seed", "1"])
    from raytrain.data.prepared import PreparedDataset

    prepared = PreparedDataset.open(str(tmp_path / "ml"))
    assert code == 0 and prepared.meta["users"]["val"] == prepared.meta["users"]["test"] == 100
    assert prepared.meta["params"]["threshold"] == 4.0 and prepared.meta["params"]["format"] == "movielens"
