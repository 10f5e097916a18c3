"""Training throughput: the Ray Train job (1 and 2 workers) vs a bare PyTorch loop, Multi-VAE with
and without PIA, on the same synthetic prepared dataset and model, in one run.

    python benchmarks/train_throughput.py            # 60k users x 6k items, 600-200, 3 epochs each
    python benchmarks/train_throughput.py --quick    # 8k users x 1.5k items, 2 epochs each: a smoke run
    python benchmarks/train_throughput.py --users 100000 --items 10000 --epochs 4 --only bare ray1

The default takes ~7 min on 2 idle cores and ~15 min on 2 cores at load ~20 (the quick run ~4-5 min,
mostly Ray start-up). What runs (every configuration trains a fresh model from the same seed,
``--batch-size`` users per optimizer update, float32 on CPU, one torch thread per process):

* ``bare``: one process, no Ray in the loop. The whole train split is read once and cut into CSR
  batches in memory up front (``raytrain.data.batches.list_column_to_csr``); each epoch is
  ``raytrain.train.loop.train_epoch`` - the very function the Ray workers run - over those batches
  (batch order permuted per epoch), minus Ray Data and DDP. ``torch.set_num_threads(1)``. The no-PIA
  and the PIA model train in alternate epochs, so the PIA overhead compares epochs run at the same load.
* ``ray1``: ``raytrain.train.trainer.build_trainer`` (the TorchTrainer ``trainer.fit`` runs: Ray Data
  streaming of the Parquet train split, checkpoint of the evaluated epoch), 1 worker x 1 CPU; the
  worker sets ``torch.set_num_threads(int(cpus_per_worker))`` = 1 thread, as the bare loop.
* ``ray2``: the same with 2 workers (DDP over gloo, ``batch_size // 2`` users per rank, same global
  batch). On a 2-core node 2 workers x 1 CPU leave no CPU for Ray Data's read tasks (the run hangs,
  shared/RAY_NOTES.md), so they get ``cpus_per_worker=0.5`` (``--cpus-2w``); each still runs 1 torch
  thread (``max(1, int(0.5))``): one thread per rank on the two cores, beside the reads.

users/s is ``train_epoch``'s own figure (users of the epoch / its wall seconds; for Ray the worker's
``train/users_per_second``: all ranks' users over the slowest rank's seconds). Data loading that the
prefetch does not hide is included; start-up, validation and checkpointing are not. The table shows
the median over the epochs after the first (warm-up) one. Validation runs only after the last epoch
(``train.eval_every = epochs``) on ``--n-heldout`` users. "job s" is the whole ``fit()`` for Ray
(start-up, epochs, validation, checkpoint) and batch building plus epochs for ``bare``.

The host may be shared and noisy, so besides wall-clock users/s the table gives CPU figures over the
epochs after the warm-up and before the last (which validates): "CPU share" (CPU seconds the training
process got per wall second), "run/wait/blocked" (the training thread's wall time on a CPU / runnable
but waiting for a CPU that other work held / blocked: waiting for data, for the other rank, for I/O -
from /proc/PID/task/TID/schedstat) and users per CPU second of the training process(es) and of all
the job's processes (Ray: every worker process of this node's raylet - Train workers, controller,
Ray Data - exited ones included). For Ray these are read by a Train callback in the controller at each
``ray.train.report``. Per-CPU-second ratios are much less sensitive to the host load than wall-clock
ones; "wait" is the host's share of a slowdown, "blocked" Ray's (data stalls, DDP synchronisation).
The 1-minute load average is printed at the start and end of every configuration. The CPU figures
assume a single-node cluster (this host, or one node at RAY_ADDRESS); elsewhere they read n/a.

Ray: with RAY_ADDRESS set, ``raytrain.runtime.ensure_ray()`` joins that cluster. Otherwise a local
instance with this host's cores is started - by ``ensure_ray()``, unless a ``ray start`` head already
runs on the host (tests, another job): ``ensure_ray()``'s plain ``ray.init()`` would then join that
cluster, so a private one is started with ``ray.init(address="local")`` instead. It is shut down at
the end; runs get unique names under a temporary storage path (removed unless --storage-path).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import ray.train  # noqa: E402
import torch  # noqa: E402

from raytrain.config import (  # noqa: E402
    Config,
    DataConfig,
    ModelConfig,
    PIAConfig,
    ScalingSettings,
    SyntheticConfig,
    TrainConfig,
)
from raytrain.data.batches import list_column_to_csr  # noqa: E402
from raytrain.data.prepare import prepare_dataset  # noqa: E402
from raytrain.data.prepared import PreparedDataset  # noqa: E402
from raytrain.models.build import build_model  # noqa: E402
from raytrain.runtime import ensure_ray, quiet_ray_data  # noqa: E402
from raytrain.train.loop import initial_state, make_optimizers, train_epoch, updates_per_epoch  # noqa: E402
from raytrain.train.trainer import build_trainer  # noqa: E402

MODES = ("bare", "ray1", "ray2")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAPER_PIA_OVERHEAD = 0.159
TARGET_RAY_OVER_BARE = 0.9
TARGET_PIA_OVERHEAD = 0.05


@dataclass
class Measured:
    mode: str
    pia: bool
    workers: int
    cpus_per_worker: float
    threads: int
    users_per_second: list[float] = field(default_factory=list)  # one per epoch, warm-up included
    train_seconds: list[float] = field(default_factory=list)
    users: list[float] = field(default_factory=list)
    # Over the CPU span (see cpu_epochs): users trained, wall seconds, CPU seconds of the training
    # process(es) and of every process of the job (bare: the same one process).
    span_users: float = 0.0
    span_wall: float = 0.0
    span_train_cpu: float = 0.0
    span_all_cpu: float = 0.0
    span_new_processes: int = 0  # Ray worker processes that appeared during the CPU span
    # The training thread (per rank, averaged): seconds on a CPU and runnable-but-waiting.
    span_thread_run: float = 0.0
    span_thread_wait: float = 0.0
    wall_seconds: float = 0.0
    load_start: float = 0.0
    load_end: float = 0.0

    @property
    def measured(self) -> list[float]:
        """Epochs after the first (warm-up) one; the only epoch when there is just one."""
        return self.users_per_second[1:] or self.users_per_second

    @property
    def median(self) -> float:
        return statistics.median(self.measured)

    @property
    def median_seconds(self) -> float:
        seconds = self.train_seconds[1:] or self.train_seconds
        return statistics.median(seconds)

    @property
    def cpu_share(self) -> float:
        """CPU the training process(es) got per wall second, per process (1.0: a core all the time)."""
        return self.span_train_cpu / max(self.span_wall * self.workers, 1e-9)

    @property
    def thread_split(self) -> str:
        """Training thread's wall time: on a CPU / runnable, waiting for a CPU / blocked."""
        wall = max(self.span_wall, 1e-9)
        run, wait = self.span_thread_run / wall, self.span_thread_wait / wall
        return f"{run:.2f}/{wait:.2f}/{max(0.0, 1 - run - wait):.2f}"

    @property
    def users_per_train_cpu(self) -> float:
        return self.span_users / max(self.span_train_cpu, 1e-9)

    @property
    def users_per_all_cpu(self) -> float:
        return self.span_users / max(self.span_all_cpu, 1e-9)

    @property
    def label(self) -> str:
        return {"bare": "bare loop", "ray1": "Ray Train 1 worker", "ray2": "Ray Train 2 workers"}[self.mode]


def cpu_epochs(epochs: int) -> range:
    """1-based epochs whose CPU time is measured: after the warm-up one and, when there are 3 or
    more, before the last one (the Ray run validates and checkpoints in its last epoch)."""
    return range(2, epochs) if epochs >= 3 else range(epochs, epochs + 1)


def _proc_stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, user + system CPU seconds, start time in ticks) of a live process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, int(fields[19])


def thread_schedstat(pid: int) -> dict[str, tuple[float, float]]:
    """Per thread of ``pid``: (seconds on a CPU, seconds runnable but waiting for one), from
    /proc/PID/task/TID/schedstat (Linux). The rest of a thread's wall time it was blocked: waiting
    for data, for the other rank, for I/O."""
    threads = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return threads
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                run, wait, _ = handle.read().split()
        except (OSError, ValueError):
            continue
        threads[tid] = (int(run) / 1e9, int(wait) / 1e9)
    return threads


def busiest_thread(before: dict, after: dict) -> tuple[float, float]:
    """(on-CPU, runnable-waiting) seconds between two schedstat snapshots of the thread that ran most."""
    deltas = [(after[t][0] - before[t][0], after[t][1] - before[t][1]) for t in after if t in before]
    return max(deltas, default=(0.0, 0.0))


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class CpuAtReport(ray.train.UserCallback):
    """Runs in the Train controller. From the first report on, a thread samples the CPU seconds of
    every worker process of this node's raylet (the controller's parent) every 0.25 s, remembering
    processes that have exited; at every report (an epoch ended on all ranks) it appends the wall
    time and the cumulative CPU seconds of the Train workers and of all those processes to a
    JSON-lines file, with the scheduler statistics of the Train workers' threads. Processes born and
    gone within one sampling interval are missed."""

    def __init__(self, path: str, interval: float = 0.25) -> None:
        self.path = path
        self.interval = interval
        self._seen: dict | None = None

    def _sample(self) -> tuple[float, float]:
        with self._lock:
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                stat = _proc_stat(int(entry))
                if stat is None or stat[0] != self._raylet:
                    continue
                key = (int(entry), stat[2])
                if key not in self._seen:
                    self._seen[key] = [0.0, _cmdline(int(entry)).startswith("ray::RayTrainWorker")]
                self._seen[key][0] = stat[1]
                if self._seen[key][1]:  # remember threads that end (the training thread, after the last report)
                    self._threads.setdefault(entry, {}).update(thread_schedstat(int(entry)))
            train = sum(cpu for cpu, is_train in self._seen.values() if is_train)
            return train, sum(cpu for cpu, _ in self._seen.values())

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            self._sample()

    def after_report(self, run_context, metrics, checkpoint) -> None:  # noqa: ANN001 - Ray's signature
        if self._seen is None:
            self._seen, self._threads, self._lock = {}, {}, threading.Lock()
            self._raylet = _proc_stat(os.getpid())[0]
            threading.Thread(target=self._loop, name="cpu-sampler", daemon=True).start()
        train, total = self._sample()
        epoch = int(metrics[0].get("epoch", 0)) if metrics else 0
        with self._lock:
            threads = {pid: dict(tids) for pid, tids in self._threads.items()}
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"epoch": epoch, "t": time.time(), "train_cpu": train, "all_cpu": total,
                                     "processes": len(self._seen), "threads": threads}) + "\n")


def load1() -> float:
    return os.getloadavg()[0]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def make_config(args: argparse.Namespace, pia: bool, workers: int = 1, cpus_per_worker: float = 1.0) -> Config:
    return Config(
        name="bench",
        model=ModelConfig(
            name="multvae", hidden_dim=args.hidden_dim, latent_dim=args.latent_dim,
            pia=PIAConfig(enabled=pia, lambda_a=args.lambda_a),
        ),
        train=TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, eval_every=args.epochs, seed=1,
            num_checkpoints_to_keep=1, max_failures=0,
        ),
        scaling=ScalingSettings(num_workers=workers, cpus_per_worker=cpus_per_worker, read_cpus=args.read_cpus),
    )


def run_bare(args: argparse.Namespace, prepared: PreparedDataset) -> list[Measured]:
    """``loop.train_epoch`` over CSR batches built in memory up front, one torch thread; the no-PIA
    and the PIA model train in alternate epochs, so both see the same host load."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    column = prepared.read_split("train").column("items")
    n_items, bs = prepared.n_items, args.batch_size
    batches = [list_column_to_csr(column.slice(s, bs), n_items) for s in range(0, len(column), bs)]
    setup = time.perf_counter() - started
    runs = []
    for pia in (False, True):
        config = make_config(args, pia)
        torch.manual_seed(config.train.seed)  # the same initial weights as the Ray workers
        model = build_model(config.model, n_items)
        result = Measured("bare", pia, 1, 1.0, torch.get_num_threads(), wall_seconds=setup, load_start=load1())
        runs.append((result, config, model, make_optimizers(model, config), initial_state(config)))
    total_updates = max(1, updates_per_epoch(runs[0][1].model, len(batches)) * args.epochs)
    rng = np.random.default_rng(1)
    span = cpu_epochs(args.epochs)
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(batches))  # the same order for both models
        for result, config, model, optimizers, state in runs:
            me = str(threading.get_native_id())
            sched, wall, cpu = thread_schedstat(os.getpid()), time.perf_counter(), time.process_time()
            stats = train_epoch(model, optimizers, lambda: (batches[i] for i in order), state, config, total_updates, "cpu")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            after = thread_schedstat(os.getpid())
            run, wait = (after[me][0] - sched[me][0], after[me][1] - sched[me][1]) if me in sched and me in after else (0, 0)
            result.wall_seconds += wall
            result.users_per_second.append(stats["users_per_second"])
            result.train_seconds.append(stats["seconds"])
            result.users.append(stats["users"])
            if epoch in span:
                result.span_users += stats["users"]
                result.span_wall += wall
                result.span_train_cpu += cpu
                result.span_all_cpu += cpu
                result.span_thread_run += run
                result.span_thread_wait += wait
            result.load_end = load1()
            print(f"  bare pia={'on' if result.pia else 'off'} epoch {epoch}: {stats['users_per_second']:,.0f} users/s "
                  f"({stats['seconds']:.1f} s, CPU share {cpu / wall:.2f}, run/wait/blocked {run / wall:.2f}/{wait / wall:.2f}/"
                  f"{max(0.0, 1 - (run + wait) / wall):.2f}, loss {stats['loss']:.2f}, "
                  f"load {result.load_end:.1f})", flush=True)
    return [run[0] for run in runs]


def run_ray(args: argparse.Namespace, prepared: PreparedDataset, pia: bool, workers: int, cpus: float,
            storage_path: str, tag: str) -> Measured:
    """The production path: ``trainer.build_trainer`` (what ``trainer.fit`` runs) plus a callback
    that samples CPU times at every report."""
    config = make_config(args, pia, workers, cpus)
    name = f"bench-{tag}-w{workers}-{'pia' if pia else 'base'}"
    reports_path = os.path.join(storage_path, f"{name}.cpu.jsonl")
    os.makedirs(storage_path, exist_ok=True)
    result = Measured(f"ray{workers}", pia, workers, cpus, max(1, int(cpus)), load_start=load1())
    started = time.perf_counter()
    trainer = build_trainer(config, prepared, storage_path=storage_path, name=name,
                            callbacks=[CpuAtReport(reports_path)])
    outcome = trainer.fit()
    result.wall_seconds = time.perf_counter() - started
    result.load_end = load1()
    if outcome.error is not None:
        raise RuntimeError(f"Ray Train run {name} failed: {outcome.error}") from outcome.error
    history = outcome.return_value or []
    if len(history) != config.train.epochs:
        raise RuntimeError(f"{name}: {len(history)} epochs in the history, expected {config.train.epochs}")
    for epoch in history:
        result.users_per_second.append(float(epoch["train/users_per_second"]))
        result.train_seconds.append(float(epoch["train/seconds"]))
        result.users.append(float(epoch["train/users"]))
    span = cpu_epochs(config.train.epochs)
    reports = {}
    if os.path.exists(reports_path):  # absent when the controller ran on another node
        with open(reports_path) as handle:
            reports = {r["epoch"]: r for r in map(json.loads, handle)}
    if span.start - 1 not in reports or span.stop - 1 not in reports:
        print(f"  {name}: no CPU samples from the Train controller (multi-node cluster?): CPU columns n/a")
        result.span_wall = result.span_train_cpu = result.span_all_cpu = float("nan")
        return result
    first, last = reports[span.start - 1], reports[span.stop - 1]
    result.span_users = sum(result.users[e - 1] for e in span)
    result.span_wall = last["t"] - first["t"]
    result.span_train_cpu = last["train_cpu"] - first["train_cpu"]
    result.span_all_cpu = last["all_cpu"] - first["all_cpu"]
    result.span_new_processes = last["processes"] - first["processes"]
    ranks = [busiest_thread(first["threads"][pid], last["threads"][pid]) for pid in last["threads"] if pid in first["threads"]]
    if ranks:
        result.span_thread_run = sum(r for r, _ in ranks) / len(ranks)
        result.span_thread_wait = sum(w for _, w in ranks) / len(ranks)
    print(f"  ray{workers} pia={'on' if pia else 'off'}: per-epoch users/s "
          f"{', '.join(f'{u:,.0f}' for u in result.users_per_second)}; epoch{'s' if len(span) > 1 else ''} "
          f"{span.start}..{span.stop - 1}: CPU share {result.cpu_share:.2f}, training thread run/wait/blocked "
          f"{result.thread_split}, Train workers {result.span_train_cpu:.1f} CPU-s, "
          f"all {result.span_all_cpu:.1f} CPU-s, {result.span_new_processes} new worker processes "
          f"(job {result.wall_seconds:.0f} s, load {result.load_end:.1f})", flush=True)
    return result


def start_ray(cores: int) -> str:
    """One Ray instance for the whole benchmark; returns how it was obtained."""
    if os.environ.get("RAY_ADDRESS"):
        ensure_ray()  # a cluster was named: join it (its CPUs, not this host's, set the resources)
        return f"joined RAY_ADDRESS={os.environ['RAY_ADDRESS']}"
    try:
        from ray._private.services import find_bootstrap_address

        other = find_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - private helper; absent means nothing to avoid
        other = None
    if other:
        # ensure_ray() would call ray.init() with no address, which joins the latest `ray start`
        # head on this host (another job's or the test suite's cluster). Start our own instead,
        # with the same settings ensure_ray uses for a local instance.
        os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")
        ray.init(address="local", num_cpus=cores, include_dashboard=False, configure_logging=False,
                 logging_level=logging.WARNING)
        return f"private local instance, {cores} CPUs (a `ray start` head at {other} exists on this host: not joined)"
    ensure_ray(num_cpus=cores)
    return f"local instance via ensure_ray(), {cores} CPUs"


def ratio_line(label: str, value: str, target: str, ok: tuple[bool, bool] | None = None) -> str:
    """``ok``: (wall-clock ratio meets the target, per-CPU-second ratio meets it)."""
    verdict = "" if ok is None else "  " + ", ".join(
        f"{kind} {'ok' if good else 'MISSED'}" for kind, good in zip(("wall", "per CPU-s"), ok))
    return f"  {label:<42} {value:>16}  {target}{verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=60_000, help="synthetic users before the val/test split")
    parser.add_argument("--items", type=int, default=6_000)
    parser.add_argument("--mean-items", type=float, default=40.0, help="mean raw interactions per user")
    parser.add_argument("--n-heldout", type=int, default=1_000, help="validation (and test) users")
    parser.add_argument("--hidden-dim", type=int, default=600)
    parser.add_argument("--latent-dim", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500, help="users per update (split across ranks)")
    parser.add_argument("--epochs", type=int, help="per configuration; the first is warm-up (default 3, --quick 2)")
    parser.add_argument("--lambda-a", type=float, default=0.5, help="PIA weight of the PIA runs")
    parser.add_argument("--read-cpus", type=float, default=0.25, help="CPU per Ray Data read task")
    parser.add_argument("--cpus-2w", type=float, default=0.5, help="cpus_per_worker of the 2-worker run")
    parser.add_argument("--only", nargs="+", choices=MODES, default=list(MODES), help="subset of the runs")
    parser.add_argument("--storage-path", help="Ray Train storage (default: a temp dir, removed at the end)")
    parser.add_argument("--quick", action="store_true", help="8k users x 1.5k items, 2 epochs: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.users, args.items, args.n_heldout = 8_000, 1_500, 300
    args.epochs = args.epochs or (2 if args.quick else 3)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first one is warm-up)")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    default_threads = torch.get_num_threads()
    print(f"command: cd {shlex.quote(os.getcwd())} && {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine: {platform.node()}, {cpu_model()}, nproc {cores} (os.cpu_count {os.cpu_count()}), "
          f"torch {torch.__version__} (default intra-op threads {default_threads}), ray {ray.__version__}, "
          f"python {platform.python_version()}")
    load_start = os.getloadavg()
    print(f"load average at start (1/5/15 min): {load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f}")
    began = time.perf_counter()

    tmp = tempfile.mkdtemp(prefix="train-throughput-")
    storage_path = args.storage_path or os.path.join(tmp, "ray_results")
    tag = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    results: list[Measured] = []
    try:
        print(f"ray: {start_ray(cores)}", flush=True)
        quiet_ray_data()
        started = time.perf_counter()
        data = DataConfig(
            format="synthetic", threshold=4.0, min_items_per_user=5, n_heldout=args.n_heldout, seed=1,
            synthetic=SyntheticConfig(n_users=args.users, n_items=args.items, mean_items_per_user=args.mean_items,
                                      n_blocks=max(2, cores)),
        )
        prepared = prepare_dataset(data, os.path.join(tmp, "prepared"))
        users = prepared.meta["users"]
        rows = prepared.meta.get("interactions", {}).get("train", "?")
        print(f"data: synthetic {args.users:,} users x {args.items:,} items (mean {args.mean_items:g} raw/user) -> "
              f"{int(users['train']):,} train users, {prepared.n_items:,} items, {rows:,} train positives; "
              f"val/test {int(users['val']):,}/{int(users['test']):,} users; prepared in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        print(f"model: Multi-VAE {prepared.n_items}-{args.hidden_dim}-{args.latent_dim} (x2)-{args.hidden_dim}-"
              f"{prepared.n_items}, batch {args.batch_size}, {args.epochs} epochs per configuration "
              f"(first = warm-up); PIA runs: model.pia.enabled, lambda_a {args.lambda_a} (fixed)", flush=True)
        print(f"threads: bare loop torch.set_num_threads(1); Ray workers set max(1, int(cpus_per_worker)) = 1: "
              f"1 worker x 1 CPU, 2 workers x {args.cpus_2w:g} CPU (2 x 1 CPU on a 2-core node leaves no CPU for "
              f"Ray Data's reads: hang, shared/RAY_NOTES.md); Ray Data read tasks {args.read_cpus:g} CPU", flush=True)

        for mode in args.only:
            if mode == "bare":
                results.extend(run_bare(args, prepared))
                continue
            workers = 1 if mode == "ray1" else 2
            cpus = 1.0 if workers == 1 else args.cpus_2w
            for pia in (False, True):
                results.append(run_ray(args, prepared, pia, workers, cpus, storage_path, tag))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if not args.storage_path:
            shutil.rmtree(tmp, ignore_errors=True)

    load_end = os.getloadavg()
    print()
    span = cpu_epochs(args.epochs)
    print(f"Training throughput (users/s: median of epochs 2..{args.epochs}, epoch 1 is warm-up; CPU columns: "
          f"epoch{'s' if len(span) > 1 else ''} {span.start}..{span.stop - 1})")
    header = (f"{'configuration':<20} {'PIA':<3} {'workers x CPU':>13} {'thr':>3} {'users/s':>8} {'epoch s':>7} "
              f"{'min..max users/s':>16} {'CPU share':>9} {'run/wait/blocked':>16} {'users/train-CPU-s':>17} "
              f"{'users/all-CPU-s':>15} {'job s':>5} {'load start->end':>15}")
    print(header)
    print("-" * len(header))
    for r in results:
        spread = f"{min(r.measured):,.0f}..{max(r.measured):,.0f}"
        shape = f"{r.workers} x {r.cpus_per_worker:g}" if r.mode != "bare" else "1 process"
        print(f"{r.label:<20} {'on' if r.pia else 'off':<3} {shape:>13} {r.threads:>3} {r.median:>8,.0f} "
              f"{r.median_seconds:>7.1f} {spread:>16} {r.cpu_share:>9.2f} {r.thread_split:>16} {r.users_per_train_cpu:>17,.0f} "
              f"{r.users_per_all_cpu:>15,.0f} {r.wall_seconds:>5.0f} {f'{r.load_start:.1f}->{r.load_end:.1f}':>15}")
    print("CPU share: CPU seconds of the training process(es) per wall second, per process (1 = a whole core).")
    print("run/wait/blocked: the training thread's wall time on a CPU / runnable but waiting for a CPU (host load) /")
    print("blocked (waiting for data, for the other rank's all-reduce, for I/O); per rank, averaged.")
    print("users/train-CPU-s: users per CPU second of the training process(es); users/all-CPU-s: per CPU second of")
    print("every worker process of the job (Ray: Train workers, controller, Ray Data) - the cost, whatever the load.")

    def get(mode: str, pia: bool) -> Measured | None:
        return next((r for r in results if r.mode == mode and r.pia == pia), None)

    print()
    print("Ratios (wall-clock users/s; in brackets the same ratio per training-process CPU second)")
    for pia in (False, True):
        one, bare = get("ray1", pia), get("bare", pia)
        if one and bare:
            value, per_cpu = one.median / bare.median, one.users_per_train_cpu / bare.users_per_train_cpu
            print(ratio_line(f"Ray 1 worker / bare loop ({'PIA' if pia else 'no PIA'})", f"{value:.3f} [{per_cpu:.3f}]",
                             f"target >= {TARGET_RAY_OVER_BARE}:",
                             (value >= TARGET_RAY_OVER_BARE, per_cpu >= TARGET_RAY_OVER_BARE)))
    for pia in (False, True):
        one, two = get("ray1", pia), get("ray2", pia)
        if one and two:
            print(ratio_line(f"Ray 2 workers / 1 worker ({'PIA' if pia else 'no PIA'})",
                             f"{two.median / one.median:.3f} [{two.users_per_train_cpu / one.users_per_train_cpu:.3f}]",
                             "(wall: 2 = linear; per CPU-s: 1 = no DDP overhead)"))
    for mode in MODES:
        base, with_pia = get(mode, False), get(mode, True)
        if base and with_pia:
            overhead = with_pia.median_seconds / base.median_seconds - 1
            per_cpu = base.users_per_train_cpu / with_pia.users_per_train_cpu - 1
            print(ratio_line(f"PIA overhead per epoch, {base.label}", f"{overhead:+.1%} [{per_cpu:+.1%}]",
                             f"paper +{PAPER_PIA_OVERHEAD:.1%}, target <= +{TARGET_PIA_OVERHEAD:.0%}:",
                             (overhead <= TARGET_PIA_OVERHEAD, per_cpu <= TARGET_PIA_OVERHEAD)))
    print()
    print(f"load average at end (1/5/15 min): {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} "
          f"on {cores} cores; total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
