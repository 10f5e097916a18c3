"""Nightly batch scoring: users' histories -> per-user top-N Parquet under ``OUT/run_date=YYYY-MM-DD/``.

The driver resolves the model once (an alias that moves mid-job cannot mix versions), puts the
checkpoint bytes in Ray's object store, and runs ``map_batches`` with :class:`TopNScorer` on an
actor pool, so each actor builds the model once. Output goes to a staging directory and is swapped
into place with a ``_SUCCESS`` manifest only when every row is written (:mod:`raytrain.partitions`):
a rerun of a date replaces it whole, a crash leaves the previous output untouched.

Output rows: ``user_id, item_ids list<original id>, scores list<float32>, fallback bool,
unknown_items int32, model_version`` in the files, and ``run_date`` as the Hive partition
(``run_date=...`` in the path; pyarrow and Ray Data add it as a column when reading ``OUT``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
import ray.data
from ray.data import SaveMode
from ray.data.datasource import FilenameProvider

import raytrain
from raytrain import storage
from raytrain.config import Config, from_dict, replace, to_dict
from raytrain.data.formats import raise_data_errors
from raytrain.partitions import StagedPartition, read_partition, remove_stale_staging
from raytrain.runtime import ensure_ray, quiet_ray_data
from raytrain.score_inputs import PREPARED, ScoreInput, detect_format, prepared_input, raw_input
from raytrain.scorer import TopNScorer
from raytrain.store import ModelArtifact, fetch_model
from raytrain.train.checkpoint import CheckpointMismatchError

logger = logging.getLogger(__name__)

PARTITION_KEY = "run_date"


@dataclass
class ScoreSummary:
    """What a scoring run published: where, how much, with which model, and a few example rows."""

    output: str  # the published partition directory, e.g. OUT/run_date=2026-11-23
    run_date: str
    model_version: str
    rows: int
    fallback_users: int
    unknown_items: int
    input_fingerprint: str
    seconds: float
    manifest: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def users_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)

    def lines(self) -> list[str]:
        """A short human summary (the quickstart prints it)."""
        out = [
            f"recommendations: {self.output}",
            f"  {self.rows:,} users scored with model {self.model_version} in {self.seconds:.1f}s "
            f"({self.users_per_second:,.0f} users/s); {self.fallback_users:,} popularity fallbacks, "
            f"{self.unknown_items:,} unknown items dropped",
        ]
        for row in self.examples:
            shown = ", ".join(f"{i} ({s:.2f})" for i, s in zip(row["item_ids"][:5], row["scores"][:5]))
            out.append(f"  user {row['user_id']}{' [fallback]' if row['fallback'] else ''}: {shown}, ...")
        return out


class _PartFiles(FilenameProvider):
    """Deterministic names (``part-00003.parquet``): a staging directory is fresh per attempt."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:05d}.parquet"


def read_recommendations(output: str, run_date: str, columns: list[str] | None = None) -> pa.Table:
    """One published date's rows in-process (with ``run_date``); refuses an incomplete partition.

    For big outputs read ``OUTPUT`` with Ray Data or any Hive-partition-aware reader instead.
    """
    return read_partition(output, PARTITION_KEY, _check_run_date(run_date), columns)


def _check_run_date(run_date: str) -> str:
    try:
        return dt.date.fromisoformat(run_date).isoformat()
    except ValueError:
        raise ValueError(f"run date {run_date!r} is not YYYY-MM-DD") from None


def resolve_config(config: Config | None, artifact: ModelArtifact, overrides: Sequence[str] = ()) -> Config:
    """The scoring config: the given one, else the model's own training config, plus ``key=value`` overrides.

    Defaulting to the training config means raw input is read with the threshold the model was
    trained with, without the training YAML.
    """
    base = config if config is not None else from_dict(artifact.payload["config"])
    return replace(base, list(overrides)) if overrides else base


def _scorer_kwargs(artifact: ModelArtifact, config: Config) -> dict[str, Any]:
    score = config.score
    return {
        "model_ref": [ray.put(artifact.checkpoint)],
        "item_ids": artifact.items.column("item_id").combine_chunks(),
        "popularity": artifact.items.column("popularity").to_numpy().astype(np.float64),
        "top_n": score.top_n,
        "model_version": artifact.version,
        "device": "cuda" if score.num_gpus > 0 else "cpu",
        "torch_threads": score.torch_threads,
        "fail_at_batch": score.fail_at_batch,
    }


def score_dataset(histories: ray.data.Dataset, users: int, artifact: ModelArtifact, config: Config) -> ray.data.Dataset:
    """Lazy Ray Dataset of recommendation rows (``map_batches`` over a scorer actor pool)."""
    score = config.score
    cpus = ray.cluster_resources().get("CPU", 1.0)
    if score.num_gpus == 0 and score.concurrency * score.cpus_per_actor >= cpus:
        logger.warning("scoring actors take all %.0f CPUs: Ray Data reads/writes may starve (lower score.concurrency)", cpus)
    # Few input files give few blocks and so one busy actor: split into blocks of whole batches,
    # about 4 per actor, at most 8 batches each (streaming, no shuffle).
    batches_per_block = min(8, max(1, -(-users // (4 * score.concurrency * score.batch_size))))
    histories = histories.repartition(target_num_rows_per_block=batches_per_block * score.batch_size)
    return histories.map_batches(
        TopNScorer,
        fn_constructor_kwargs=_scorer_kwargs(artifact, config),
        batch_size=score.batch_size,
        batch_format="pyarrow",
        # Start every actor up front (model loads overlap the first reads) but never wait for all:
        # min_size=1 keeps a partly available cluster (e.g. fewer free GPUs) making progress.
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=score.concurrency, initial_size=score.concurrency),
        num_cpus=score.cpus_per_actor,
        num_gpus=score.num_gpus or None,
    )


@dataclass
class _OutputStats:
    files: list[dict[str, Any]]
    rows: int = 0
    fallback: int = 0
    unknown_items: int = 0
    only_unknown: int = 0  # users whose every positive is an item the model does not know


def _staged_stats(stage: StagedPartition) -> _OutputStats:
    """Counts read back from the staged files (two small columns), so they describe what is published."""
    fs, _ = storage.resolve(stage.staging)
    stats = _OutputStats(files=[])
    for path in stage.staged_files():
        table = pq.read_table(path, filesystem=fs, columns=["fallback", "unknown_items"])
        fallback = table.column("fallback").to_numpy()
        unknown = table.column("unknown_items").to_numpy()
        stats.files.append({"name": path.rsplit("/", 1)[-1], "rows": table.num_rows})
        stats.rows += table.num_rows
        stats.fallback += int(np.count_nonzero(fallback))
        stats.unknown_items += int(unknown.sum())
        stats.only_unknown += int(np.count_nonzero(fallback & (unknown > 0)))
    return stats


def _check_output(stats: _OutputStats, source: ScoreInput, config: Config, version: str) -> None:
    """Refuse to publish output that says the input does not fit the model (nothing is visible yet)."""
    where = source.description.get("path")
    if stats.rows == 0:
        window = source.description.get("window")
        raise ValueError(f"no users to score in {where}" + (f" within the last {window['days']} days" if window else ""))
    share = stats.only_unknown / stats.rows
    if share > config.score.max_unknown_fraction:
        raise CheckpointMismatchError(
            f"{stats.only_unknown:,} of {stats.rows:,} users in {where} have only items model {version} does not "
            f"know ({stats.unknown_items:,} unknown-item interactions; > score.max_unknown_fraction="
            f"{config.score.max_unknown_fraction}): the input does not match the model's item vocabulary"
        )
    if stats.fallback == stats.rows:
        raise ValueError(
            f"none of the {stats.rows:,} users in {where} has a known positive item (value >= data.threshold="
            f"{config.data.threshold}): every recommendation would be the popularity fallback"
        )


def _examples(partition: str, n: int = 3, width: int = 10) -> list[dict[str, Any]]:
    """The first ``n`` rows of the first file, lists cut to ``width`` items (for logs and the quickstart)."""
    fs, path = storage.resolve(partition)
    files = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path)) if i.path.endswith(".parquet"))
    rows = pq.read_table(files[0], filesystem=fs).slice(0, n).to_pylist() if files else []
    return [{**r, "item_ids": r["item_ids"][:width], "scores": r["scores"][:width]} for r in rows]


def score_users(
    config: Config | None,
    model_ref: str,
    input_path: str,
    output: str,
    run_date: str,
    *,
    input_format: str | None = None,
    overrides: Sequence[str] = (),
) -> ScoreSummary:
    """Score every user of ``input_path`` and publish ``output/run_date=RUN_DATE/`` atomically.

    Args:
        config: scoring settings (``score.*``; ``data.*`` for raw input); None: the model's own
            training config.
        model_ref: a run / model directory or ``STORE@VERSION_OR_ALIAS``.
        input_path: a prepared dataset directory, or raw interactions (see ``input_format``).
        output: root of the partitioned output (local path or URI).
        run_date: ``YYYY-MM-DD``; the partition that is replaced.
        input_format: ``prepared`` or a raw format (movielens, netflix, msd, parquet, csv);
            None: prepared when ``input_path`` has ``meta.json``, else ``config.data.format``.
        overrides: dotted ``key=value`` settings applied on top of ``config``.

    Raises:
        CheckpointMismatchError: the model's vocabulary does not match the input (prepared: by
            fingerprint, before scoring; raw: too many users with only unknown items, before publishing).
        ValueError: bad run date; no users; no user with a known positive item.
        DataError: unreadable raw input.
        ray.exceptions.RayError: scoring failed (nothing was published).
    """
    started = time.perf_counter()
    run_date = _check_run_date(run_date)
    ensure_ray()
    quiet_ray_data()
    artifact = fetch_model(model_ref)
    config = resolve_config(config, artifact, overrides)
    fmt = input_format or detect_format(input_path, config.data.format)
    if fmt == PREPARED:
        if config.score.window_days > 0:
            raise ValueError("score.window_days needs raw interactions with timestamps, not a prepared dataset")
        source: ScoreInput = prepared_input(input_path, artifact, config.score.splits)
    else:
        source = raw_input(input_path, fmt, artifact, config, run_date)
    return publish_scores(source, artifact, config, output, run_date, started=started)


def publish_scores(
    source: ScoreInput, artifact: ModelArtifact, config: Config, output: str, run_date: str,
    *, started: float | None = None,
) -> ScoreSummary:
    """Score ``source`` into a staging directory and swap it in as ``output/run_date=RUN_DATE/``.

    The second half of :func:`score_users`, for callers that build their own input (the benchmark).
    Nothing becomes visible unless every row is written; on any error the staging is removed.
    """
    started = time.perf_counter() if started is None else started
    run_date = _check_run_date(run_date)
    loaded = time.perf_counter()
    removed = remove_stale_staging(output, PARTITION_KEY, run_date)
    if removed:
        logger.info("removed %d stale staging attempt(s) for %s", removed, run_date)
    stage = StagedPartition.begin(output, PARTITION_KEY, run_date)
    logger.info("scoring %s users with model %s -> %s", f"{source.users:,}", artifact.version, stage.partition)
    try:
        fs, staging_path = storage.resolve(stage.staging)
        with raise_data_errors():  # bad raw input surfaces as one DataError line naming the file
            score_dataset(source.dataset, source.users, artifact, config).write_parquet(
                staging_path, filesystem=fs, filename_provider=_PartFiles(),
                min_rows_per_file=config.score.rows_per_file,
                mode=SaveMode.OVERWRITE,  # the staging directory is ours alone; allows deterministic names
            )
        written = time.perf_counter()
        stats = _staged_stats(stage)
        _check_output(stats, source, config, artifact.version)
        manifest = {
            "run_date": run_date,
            "rows": stats.rows,
            "fallback_users": stats.fallback,
            "unknown_items_dropped": stats.unknown_items,
            "model_version": artifact.version,
            "model_source": artifact.source,
            "vocab_fingerprint": artifact.vocab_fingerprint,
            "input": {**source.description, "fingerprint": source.fingerprint, "users": source.users},
            "score": to_dict(config.score),
            "files": stats.files,
            "timings": {"load_s": round(loaded - started, 3), "score_write_s": round(written - loaded, 3),
                        "total_s": round(time.perf_counter() - started, 3)},
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "attempt": stage.attempt,
            "raytrain_version": raytrain.__version__,
        }
        partition = stage.commit(manifest)
    except BaseException:
        stage.abort()
        raise
    summary = ScoreSummary(
        output=partition, run_date=run_date, model_version=artifact.version, rows=stats.rows,
        fallback_users=stats.fallback, unknown_items=stats.unknown_items, input_fingerprint=source.fingerprint,
        seconds=time.perf_counter() - started, manifest=manifest, examples=_examples(partition),
    )
    for line in summary.lines():
        logger.info(line)
    return summary
