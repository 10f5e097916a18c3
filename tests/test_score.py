"""Batch scoring end to end on a real local Ray: correctness, idempotent reruns, crashes, vocabularies."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch

from model_runs import make_run_dir
from raytrain.cli import run_main
from raytrain.config import DataConfig, SyntheticConfig
from raytrain.data.batches import list_column_to_csr
from raytrain.partitions import read_manifest
from raytrain.score import read_recommendations, score_users
from raytrain.score_inputs import window_bounds
from raytrain.scorer import top_n
from raytrain.store import ModelStore, load_model
from raytrain.train.checkpoint import CheckpointMismatchError

REPO = Path(__file__).resolve().parents[1]
DATE = "2026-11-23"
SETTINGS = ["score.top_n=10", "score.batch_size=128", "score.concurrency=2"]


@pytest.fixture(scope="module")
def prepared(ray_session, tmp_path_factory):
    from raytrain.data.prepare import prepare_dataset

    data = DataConfig(format="synthetic", threshold=1, n_heldout=100, synthetic=SyntheticConfig(
        n_users=1500, n_items=200, n_clusters=5, mean_items_per_user=12, n_blocks=2))
    return prepare_dataset(data, str(tmp_path_factory.mktemp("prepared")))


@pytest.fixture(scope="module")
def run_dir(prepared, tmp_path_factory):
    histories = prepared.read_split("train").column("items")
    return make_run_dir(tmp_path_factory.mktemp("run"), prepared.read_items(), prepared.vocab_fingerprint,
                        histories=histories, steps=40)


@pytest.fixture(scope="module")
def scored(prepared, run_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("recs")
    summary = score_users(None, str(run_dir), prepared.path, str(output), DATE, overrides=SETTINGS)
    return summary, output


def _histories(prepared) -> dict:
    """user_id -> set of known item_idx (train items; fold-in + held-out for held-out users)."""
    out = {u: set(items) for u, items in zip(*(prepared.read_split("train").column(c).to_pylist() for c in ("user_id", "items")))}
    for split in ("val", "test"):
        table = prepared.read_split(split)
        for u, a, b in zip(*(table.column(c).to_pylist() for c in ("user_id", "fold_in", "held_out"))):
            out[u] = set(a) | set(b)
    return out


def _sorted_rows(table: pa.Table) -> pa.Table:
    return table.sort_by("user_id")


def test_recommendations_match_in_process_model(prepared, run_dir, scored):
    summary, output = scored
    histories = _histories(prepared)
    table = _sorted_rows(pq.read_table(output))  # the root, as a consumer reads it (run_date from the path)
    assert table.num_rows == summary.rows == len(histories)
    assert set(table.column("run_date").to_pylist()) == {DATE}
    assert set(table.column("model_version").to_pylist()) == {summary.model_version}
    assert not any(table.column("fallback").to_pylist()) and not any(table.column("unknown_items").to_pylist())
    manifest = read_manifest(str(output), "run_date", DATE)
    assert manifest["rows"] == summary.rows and manifest["model_version"] == summary.model_version
    assert manifest["input"]["fingerprint"] == summary.input_fingerprint and "total_s" in manifest["timings"]

    item_ids = prepared.item_ids().to_pylist()
    to_idx = {item: i for i, item in enumerate(item_ids)}
    rows = table.to_pylist()
    for row in rows:  # never a seen item; scores sorted; full lists
        assert len(row["item_ids"]) == 10
        assert not {to_idx[i] for i in row["item_ids"]} & histories[row["user_id"]]
        assert row["scores"] == sorted(row["scores"], reverse=True)

    sample = rows[:: max(1, len(rows) // 50)]  # ~50 users across the id range, incl. held-out users
    loaded = load_model(str(run_dir))
    x = list_column_to_csr(pa.array([sorted(histories[r["user_id"]]) for r in sample], pa.list_(pa.int32())),
                           prepared.n_items)
    scores, indices = top_n(loaded.model, x, 10)
    for row, expect_idx, expect_scores in zip(sample, indices.tolist(), scores.numpy()):
        assert row["item_ids"] == [item_ids[i] for i in expect_idx]
        np.testing.assert_allclose(row["scores"], expect_scores, rtol=1e-4, atol=1e-5)


def test_rerun_of_a_date_replaces_it_with_identical_content(prepared, run_dir, scored, tmp_path):
    summary, first_output = scored
    output = tmp_path / "recs"
    shutil.copytree(first_output, output)
    again = score_users(None, str(run_dir), prepared.path, str(output), DATE, overrides=SETTINGS)
    assert again.rows == summary.rows
    first, second = _sorted_rows(pq.read_table(first_output)), _sorted_rows(pq.read_table(output))
    assert second.num_rows == first.num_rows  # replaced, not appended
    assert second.column("user_id").equals(first.column("user_id"))
    assert second.column("item_ids").to_pylist() == first.column("item_ids").to_pylist()
    np.testing.assert_allclose(np.concatenate(second.column("scores").to_pylist()),
                               np.concatenate(first.column("scores").to_pylist()), rtol=1e-5)
    assert read_manifest(str(output), "run_date", DATE)["attempt"] != summary.manifest["attempt"]
    assert list((output / "_staging").iterdir()) == []


def test_crashed_run_leaves_previous_output_intact(prepared, run_dir, scored, tmp_path):
    summary, first_output = scored
    output = tmp_path / "recs"
    shutil.copytree(first_output, output)
    before = sorted(p.name for p in (output / f"run_date={DATE}").iterdir())
    with pytest.raises(Exception, match="fail_at_batch"):
        score_users(None, str(run_dir), prepared.path, str(output), DATE, overrides=[*SETTINGS, "score.fail_at_batch=1"])
    assert sorted(p.name for p in (output / f"run_date={DATE}").iterdir()) == before
    assert read_manifest(str(output), "run_date", DATE)["attempt"] == summary.manifest["attempt"]
    assert list((output / "_staging").iterdir()) == []  # nothing half-written left behind
    assert pq.read_table(output).num_rows == summary.rows


def test_checkpoint_with_another_vocabulary_is_refused(prepared, tmp_path):
    other = make_run_dir(tmp_path / "other", prepared.read_items(), "0" * 64)
    with pytest.raises(CheckpointMismatchError, match="different item vocabulary"):
        score_users(None, str(other), prepared.path, str(tmp_path / "recs"), DATE)
    assert not (tmp_path / "recs" / f"run_date={DATE}").exists()


def _raw_events(prepared, path: Path) -> list:
    """Raw interactions over the model's item ids, plus unknown items, old and non-positive events."""
    ids = prepared.item_ids().to_pylist()
    unknown = (lambda k: f"nope-{k}") if isinstance(ids[0], str) else (lambda k: 10**12 + k)
    start, end = window_bounds(DATE, 30)
    recent, old = end - 86_400, start - 86_400
    events = [  # user, item, value, timestamp
        ("u1", ids[0], 1.0, recent), ("u1", ids[5], 2.0, recent), ("u1", unknown(1), 1.0, recent),
        ("u1", ids[7], 0.5, recent),  # below the threshold (1): not a positive
        ("u2", unknown(2), 3.0, recent), ("u2", unknown(3), 1.0, recent),  # only unknown items: fallback
        ("u3", ids[1], 1.0, old),  # active only before the window: not scored
        *[(f"u{4 + k}", ids[(3 * k) % len(ids)], 1.0, recent) for k in range(40)],
    ]
    users, items, values, stamps = zip(*events)
    pq.write_table(pa.table({"user_id": list(users), "item_id": list(items),
                             "value": pa.array(values, pa.float32()), "timestamp": pa.array(stamps, pa.int64())}),
                   path / "events.parquet")
    return ids


def test_raw_input_is_mapped_through_the_vocabulary(prepared, run_dir, tmp_path):
    (tmp_path / "raw").mkdir()
    ids = _raw_events(prepared, tmp_path / "raw")
    summary = score_users(None, str(run_dir), str(tmp_path / "raw"), str(tmp_path / "recs"), DATE, input_format="parquet",
                          overrides=[*SETTINGS, "score.window_days=30", "data.timestamp_col=timestamp", "data.threshold=1"])
    table = read_recommendations(str(tmp_path / "recs"), DATE)
    rows = {r["user_id"]: r for r in table.to_pylist()}
    assert "u3" not in rows and len(rows) == 42 == summary.rows
    assert summary.unknown_items == 3 and summary.fallback_users == 1
    assert rows["u2"]["fallback"] and rows["u2"]["item_ids"] == ids[:10]  # most popular first
    assert (rows["u1"]["unknown_items"], rows["u2"]["unknown_items"], rows["u4"]["unknown_items"]) == (1, 2, 0)
    u1 = rows["u1"]
    assert not u1["fallback"] and not {ids[0], ids[5]} & set(u1["item_ids"])
    loaded = load_model(str(run_dir))
    x = list_column_to_csr(pa.array([[0, 5]], pa.list_(pa.int32())), prepared.n_items)
    with torch.inference_mode():
        _, expected = top_n(loaded.model, x, 10)
    assert u1["item_ids"] == [ids[i] for i in expected[0].tolist()]  # ids[7] (value 0.5) was not history


def test_raw_input_of_another_catalogue_is_refused(prepared, run_dir, tmp_path):
    (tmp_path / "raw").mkdir()
    pq.write_table(pa.table({"user_id": ["a", "b"], "item_id": ["x1", "x2"], "value": pa.array([5.0, 5.0], pa.float32())}),
                   tmp_path / "raw" / "events.parquet")
    with pytest.raises(CheckpointMismatchError, match="does not match the model's item vocabulary"):
        score_users(None, str(run_dir), str(tmp_path / "raw"), str(tmp_path / "recs"), DATE, input_format="parquet")


def test_cli_scores_from_a_store_alias(prepared, run_dir, tmp_path):
    store = ModelStore(str(tmp_path / "store"))
    store.promote(store.publish(str(run_dir)))
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    command = [sys.executable, str(REPO / "jobs" / "score_users.py"), "--model", f"{tmp_path / 'store'}@latest",
               "--input", prepared.path, "--output", str(tmp_path / "recs"), "--run-date", DATE, "--top-n", "5",
               "--splits", "test", "--concurrency", "1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "recommendations:" in done.stdout
    table = read_recommendations(str(tmp_path / "recs"), DATE)
    assert table.num_rows == int(prepared.meta["users"]["test"])
    assert set(len(x) for x in table.column("item_ids").to_pylist()) == {5}
    assert set(table.column("model_version").to_pylist()) == {store.resolve("latest")}


def _job_module():
    spec = importlib.util.spec_from_file_location("score_users_job", REPO / "jobs" / "score_users.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_help_and_friendly_errors(tmp_path, capsys, monkeypatch):
    job = _job_module()
    with pytest.raises(SystemExit) as exited:
        job.parse_args(["--help"])
    assert exited.value.code == 0
    helped = capsys.readouterr().out
    assert "--window-days" in helped and "STORE@VERSION_OR_ALIAS" in helped and "--num-gpus" in helped
    monkeypatch.setattr(sys, "argv", ["score_users.py", "--model", str(tmp_path), "--input", str(tmp_path),
                                      "--output", str(tmp_path / "o"), "--run-date", "23/11/2026"])
    with pytest.raises(SystemExit) as exited:
        run_main(job.main)
    assert exited.value.code == 2
    assert "is not YYYY-MM-DD" in capsys.readouterr().err
