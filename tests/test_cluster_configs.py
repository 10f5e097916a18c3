"""Cluster configs and production job configs: valid, consistent with the jobs, private, token-authenticated.

Fast and Ray-free. Parses every YAML under cluster/ and configs/, checks that entrypoints name scripts,
flags and configs that exist, that each cluster has the GPUs and CPUs its job's config asks for, that no
dashboard is published and that Ray token auth is on everywhere, that scheduled training resumes its run
(--resume=auto); runs the schedule script against a fake kubectl to check its idempotency logic.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from raytrain.config import Config, load_config, to_dict

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHER = CLUSTER / "aws" / "raytrain-aws.yaml"
IMAGE_REPO = "/home/ray/raytrain/"  # where cluster/docker/Dockerfile puts this repository
CLUSTER_YAML = sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml"))
CONFIG_YAML = sorted((REPO / "configs").glob("*.yaml"))
PRODUCTION_CONFIGS = ["ml-20m", "netflix", "msd", "synthetic"]
# Entry points the design names that are written under other issues. Until one lands, references to it
# are skipped; once the file exists every check below applies to it.
PENDING_JOBS = {"jobs/prepare_data.py", "jobs/tune_pia.py", "jobs/score_users.py"}
# Placeholders the schedules fill in, and the $(date ...) a RayCronJob entrypoint expands, with samples.
SAMPLES = {"__RUN_NAME__": "pia-msd-2026w48", "__RUN_DATE__": "2026-11-23"}
DATA_HEADROOM = 0.8  # share of a cluster's CPUs that train/score actors may take: the rest feed Ray Data

# The production configs at toy size: same code path, tiny data and model (the lead's end-to-end test of
# these configs on tiny data can reuse this list).
TINY_OVERRIDES = (
    "data.format=synthetic", "data.path=", "data.prepared_path=", "data.threshold=1",
    "data.min_items_per_user=2", "data.min_users_per_item=0", "data.n_heldout=20", "data.num_output_files=2",
    "data.synthetic.n_users=400", "data.synthetic.n_items=80", "data.synthetic.n_clusters=4",
    "data.synthetic.mean_items_per_user=8", "data.synthetic.n_blocks=2",
    "model.hidden_dim=16", "model.latent_dim=8",
    "train.epochs=1", "train.batch_size=64", "train.eval_batch_size=64",
    "scaling.num_workers=1", "scaling.use_gpu=false", "scaling.cpus_per_worker=1",
    "score.concurrency=1", "score.num_gpus=0", "score.batch_size=64", "score.cpus_per_actor=0.5",
    "tune.num_samples=2", "tune.max_epochs=1", "tune.grace_period=1", "tune.max_concurrent_trials=1",
)


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def rendered(text: str) -> str:
    for placeholder, sample in SAMPLES.items():
        text = text.replace(placeholder, sample)
    return re.sub(r"\$\(date [^)]*\)", "20261123", text)


def ray_jobs() -> Iterator[Any]:
    """(where, manifest, RayJobSpec) for every RayJob and every RayCronJob's job template."""
    for path in CLUSTER_YAML:
        for doc in docs_of(path):
            if doc.get("kind") == "RayJob":
                yield pytest.param(f"{path.name}:{doc['metadata']['name']}", doc, doc["spec"], id=f"{path.name}")
            elif doc.get("kind") == "RayCronJob":
                where = f"{path.name}:{doc['metadata']['name']}"
                yield pytest.param(where, doc, doc["spec"]["jobTemplate"], id=where)


def ray_cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = [(job.values[0], job.values[2]["rayClusterSpec"]) for job in ray_jobs()]
    for path in CLUSTER_YAML:
        specs += [(f"{path.name}:{d['metadata']['name']}", d["spec"]) for d in docs_of(path) if d.get("kind") == "RayCluster"]
    return specs


def cpu_quantity(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def worker_groups(spec: dict[str, Any]) -> list[dict[str, float]]:
    """Per group: Ray CPUs and GPUs of one pod, and pods at the group's maximum size."""
    groups = []
    for group in spec.get("workerGroupSpecs", []):
        container = group["template"]["spec"]["containers"][0]
        limits = container["resources"]["limits"]
        params = group.get("rayStartParams") or {}
        groups.append({
            "cpus": float(params.get("num-cpus", cpu_quantity(limits["cpu"]))),
            "gpus": float(params.get("num-gpus", limits.get("nvidia.com/gpu", 0))),
            "pods": int(group["maxReplicas"]) * int(group.get("numOfHosts", 1)),
        })
    return groups


def launcher_groups() -> list[dict[str, float]]:
    launcher = yaml.safe_load(LAUNCHER.read_text())
    return [
        {"cpus": float(t["resources"].get("CPU", 0)), "gpus": float(t["resources"].get("GPU", 0)), "pods": int(t["max_workers"])}
        for name, t in launcher["available_node_types"].items() if name != launcher["head_node_type"]
    ]


def parse_entrypoint(entrypoint: str) -> tuple[str, list[str], dict[str, str | bool], list[str]]:
    """(script relative to the repo, raw arguments, --flags, key=value overrides) of an entrypoint."""
    tokens = [t.removeprefix(IMAGE_REPO) for t in shlex.split(rendered(entrypoint))]
    assert tokens[0] == "python", f"entrypoint should run python, got {tokens[0]!r}"
    script, args = tokens[1], tokens[2:]
    flags: dict[str, str | bool] = {}
    overrides: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token.startswith("--"):
            key, sep, value = token.partition("=")
            if sep:
                flags[key] = value
            elif i + 1 < len(args) and not args[i + 1].startswith("--") and "=" not in args[i + 1]:
                flags[key], i = args[i + 1], i + 1
            else:
                flags[key] = True
        else:
            assert "=" in token, f"stray argument {token!r} in {entrypoint!r}"
            overrides.append(token)
        i += 1
    return script, args, flags, overrides


# Job flags that set config keys, as the jobs map them (jobs/train_pia.py, jobs/score_users.py).
FLAG_KEYS = {
    "--num-workers": "scaling.num_workers", "--concurrency": "score.concurrency", "--num-gpus": "score.num_gpus",
    "--batch-size": "score.batch_size", "--top-n": "score.top_n", "--window-days": "score.window_days",
}


def job_config(doc: dict[str, Any], flags: dict[str, str | bool], overrides: list[str]) -> Config:
    """The resolved config an entrypoint runs with: --config (scoring: the annotated training config)."""
    extra = [f"{key}={flags[flag]}" for flag, key in FLAG_KEYS.items() if flag in flags]
    if flags.get("--use-gpu") is True:
        extra.append("scaling.use_gpu=true")
    path = flags.get("--config") or doc["metadata"]["annotations"]["raytrain.io/config"]
    return load_config(REPO / str(path), extra + overrides)


def fits_training(config: Config, groups: list[dict[str, float]]) -> bool:
    """All training workers in one group (DDP within one GPU type) with CPU left over for Ray Data."""
    scaling = config.scaling
    for g in groups:
        if scaling.use_gpu and (g["gpus"] < scaling.gpus_per_worker or g["gpus"] * g["pods"] < scaling.num_workers * scaling.gpus_per_worker):
            continue
        if scaling.num_workers * scaling.cpus_per_worker <= DATA_HEADROOM * g["cpus"] * g["pods"]:
            return True
    return False


def fits_scoring(config: Config, groups: list[dict[str, float]]) -> bool:
    """Scorer actors' GPUs within the cluster's, their CPUs leaving room for reads and writes."""
    score = config.score
    gpus = sum(g["gpus"] * g["pods"] for g in groups)
    cpus = sum(g["cpus"] * g["pods"] for g in groups)
    return score.concurrency * score.num_gpus <= gpus and score.concurrency * score.cpus_per_actor <= DATA_HEADROOM * cpus


# --- every YAML parses; every config loads ---------------------------------------------------------------

@pytest.mark.parametrize("path", CLUSTER_YAML + CONFIG_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses(path):
    docs = docs_of(path)
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", CONFIG_YAML, ids=lambda p: p.name)
def test_config_loads(path):
    assert load_config(path).name


@pytest.mark.parametrize("name", PRODUCTION_CONFIGS)
def test_production_config_loads_at_tiny_size(name):
    """The same config with only its sizes shrunk: what the end-to-end test of these configs runs."""
    full = load_config(REPO / "configs" / f"{name}.yaml")
    tiny = load_config(REPO / "configs" / f"{name}.yaml", TINY_OVERRIDES)
    assert (tiny.model.name, tiny.model.epsilon, tiny.model.pia) == (full.model.name, full.model.epsilon, full.model.pia)
    assert (tiny.train.lr, tiny.train.beta_cap, tiny.train.anneal_fraction) == (full.train.lr, full.train.beta_cap, full.train.anneal_fraction)
    assert tiny.train.epochs == 1 and tiny.data.synthetic.n_users <= 1000 and not tiny.scaling.use_gpu

    def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
        return out

    changed = {k for k, v in leaves(to_dict(tiny)).items() if leaves(to_dict(full))[k] != v}
    assert changed <= {o.partition("=")[0] for o in TINY_OVERRIDES}


@pytest.mark.parametrize(
    "name, heldout, threshold, min_items, min_users",
    [("ml-20m", 10_000, 4, 5, 0), ("netflix", 40_000, 4, 5, 0), ("msd", 50_000, 1, 20, 200)],
)
def test_paper_table5_settings(name, heldout, threshold, min_items, min_users):
    path = REPO / "configs" / f"{name}.yaml"
    config = load_config(path)
    assert (config.data.n_heldout, config.data.threshold) == (heldout, threshold)
    assert (config.data.min_items_per_user, config.data.min_users_per_item) == (min_items, min_users)
    assert (config.train.epochs, config.train.batch_size, config.train.lr) == (200, 500, 1e-3)
    assert (config.model.hidden_dim, config.model.latent_dim, config.model.pia.enabled) == (600, 200, True)
    assert config.scaling.use_gpu and config.scaling.num_workers > 1
    text = path.read_text()
    assert "lambda_scale" in text and "Fixed lambda_A" in text, "the config must say which PIA schedule it uses and why"


# --- entrypoints and references name real files, flags and configs -----------------------------------------

@pytest.mark.parametrize("where, doc, spec", list(ray_jobs()))
def test_entrypoint_names_real_script_flags_and_config(where, doc, spec):
    script, args, flags, overrides = parse_entrypoint(spec["entrypoint"])
    assert script.startswith("jobs/") and script.endswith(".py"), where
    if not (REPO / script).is_file():
        assert script in PENDING_JOBS, f"{where}: {script} does not exist"
        pytest.skip(f"{script} is not written yet")
    source = (REPO / script).read_text()
    for flag in flags:
        assert f'"{flag}"' in source, f"{where}: {script} has no {flag} option"
    if overrides:
        assert "overrides" in source, f"{where}: {script} takes no key=value overrides"
    annotated = doc["metadata"]["annotations"]["raytrain.io/config"]
    assert (REPO / annotated).is_file(), f"{where}: no config {annotated}"
    assert flags.get("--config", annotated) == annotated, f"{where}: annotation and --config differ"
    job_config(doc, flags, overrides)  # loads: keys and values are valid
    if "--resume" in flags:
        assert flags["--resume"] in (True, "auto"), f"{where}: --resume takes no value or =auto"
        assert {"--storage-path", "--name"} <= set(flags), f"{where}: a resumable run needs --storage-path and --name"
        assert str(flags["--storage-path"]).startswith("s3://"), f"{where}: checkpoints must outlive the cluster"


def scheduled_training_jobs() -> list[Any]:
    return [job for job in ray_jobs()
            if job.values[1]["metadata"].get("labels", {}).get("raytrain.io/schedule", "").startswith("train")]


def option_choices(script: Path, flag: str) -> list[Any]:
    """The ``choices`` of ``parser.add_argument(flag, ...)`` in a job script, read from its source."""
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args \
                and isinstance(node.args[0], ast.Constant) and node.args[0].value == flag:
            return next((ast.literal_eval(k.value) for k in node.keywords if k.arg == "choices"), [])
    raise AssertionError(f"{script.name} has no {flag} option")


def test_both_weekly_training_schedules_are_checked():
    assert {job.values[0].split(":")[0] for job in scheduled_training_jobs()} == {
        "rayjob-train-weekly.yaml", "raycronjob-weekly.yaml"}


@pytest.mark.parametrize("where, doc, spec", scheduled_training_jobs())
def test_scheduled_training_resumes_its_run(where, doc, spec):
    """A retry of a scheduled run (same --name) continues its checkpoints; its first attempt starts it."""
    script, _, flags, _ = parse_entrypoint(spec["entrypoint"])
    assert script == "jobs/train_pia.py", where
    assert flags.get("--resume") == "auto", f"{where}: a scheduled training run needs --resume=auto"
    assert "auto" in option_choices(REPO / script, "--resume"), f"{script} does not accept --resume=auto"


def test_shipped_scripts_and_paths_referenced_anywhere_exist():
    files = [p for p in CLUSTER.rglob("*") if p.is_file()] + CONFIG_YAML + [REPO / "README.md"]
    pattern = r"\b(?:jobs/\w+\.py|configs/[\w.-]+\.yaml|(?:cluster|docs)/[\w./-]+\.(?:yaml|sh|md)|cluster/docker/Dockerfile)\b"
    for text in (p.read_text() for p in files if p.is_file()):
        for ref in set(re.findall(pattern, text)):
            assert (REPO / ref).exists() or ref in PENDING_JOBS, f"{ref} is referenced but does not exist"


def test_kustomization_files_and_names_match():
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    generated = {g["name"]: g["files"] for g in kustomization["configMapGenerator"]}
    for item in kustomization["resources"] + [f for files in generated.values() for f in files]:
        assert (KUBERAY / item).is_file(), item
    for name in ("cronjob-train-weekly.yaml", "cronjob-score-nightly.yaml"):
        pod = docs_of(KUBERAY / name)[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert {v["configMap"]["name"] for v in pod["volumes"]} <= set(generated)
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        assert Path(env["TEMPLATE"]).name in generated["raytrain-rayjob-templates"]
        assert env["PERIOD"] in ("week", "day")


# --- resources: each cluster fits the job config it runs -----------------------------------------------------

@pytest.mark.parametrize("where, doc, spec", list(ray_jobs()))
def test_rayjob_cluster_fits_its_config(where, doc, spec):
    groups = worker_groups(spec["rayClusterSpec"])
    script, _, flags, overrides = parse_entrypoint(spec["entrypoint"])
    config = job_config(doc, flags, overrides)
    if script == "jobs/score_users.py":
        assert fits_scoring(config, groups), f"{where}: score.concurrency x num_gpus / cpus do not fit"
        return
    assert fits_training(config, groups), f"{where}: {config.scaling} does not fit {groups}"
    if script == "jobs/tune_pia.py" and config.tune.max_concurrent_trials:
        per_trial = config.scaling.num_workers * config.scaling.gpus_per_worker
        gpus = sum(g["gpus"] * g["pods"] for g in groups)
        cpus = sum(g["cpus"] * g["pods"] for g in groups)
        trials = config.tune.max_concurrent_trials
        assert trials * per_trial <= gpus, f"{where}: {trials} concurrent trials need more GPUs"
        assert trials * config.scaling.num_workers * config.scaling.cpus_per_worker <= DATA_HEADROOM * cpus, where


@pytest.mark.parametrize("path", CONFIG_YAML, ids=lambda p: p.name)
def test_every_config_fits_the_launcher_and_the_raycluster(path):
    config = load_config(path)
    raycluster = next(spec for where, spec in ray_cluster_specs() if where.startswith("raycluster.yaml"))
    for name, groups in (("launcher", launcher_groups()), ("raycluster", worker_groups(raycluster))):
        assert fits_training(config, groups), f"{path.name}: {config.scaling} fits no {name} group"
        assert fits_scoring(config, groups), f"{path.name}: {config.score} does not fit the {name}"


# --- security: dashboard private, token auth everywhere ------------------------------------------------------

def string_values(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from string_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from string_values(value)
    elif node is not None:
        yield str(node)


def test_dashboard_is_never_bound_to_all_interfaces():
    """No dashboard-host 0.0.0.0 in any setting or command (comments, which warn against it, aside)."""
    public = re.compile(r"dashboard[-_]host\W{0,3}0\.0\.0\.0")
    for path in CLUSTER.rglob("*"):
        if path.suffix in (".yaml", ".yml"):
            content = [yaml.safe_dump(doc, width=float("inf")) for doc in docs_of(path)]
        elif path.is_file() and path.suffix != ".md":
            content = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
        else:
            continue
        assert not any(public.search(text) for text in content), f"{path}: dashboard bound to 0.0.0.0"


def test_launcher_head_is_cpu_only_private_and_token_authenticated():
    launcher = yaml.safe_load(LAUNCHER.read_text())
    head = launcher["available_node_types"][launcher["head_node_type"]]
    assert head["resources"]["CPU"] == 0 and not head["resources"].get("GPU"), "the head schedules no tasks"
    head_start = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "RAY_AUTH_MODE=token" in head_start
    assert "RAY_AUTH_MODE=token" in " ".join(launcher["worker_start_ray_commands"])
    assert any(remote.endswith(".ray/auth_token") for remote in launcher["file_mounts"]), "token must reach every node"
    gpu_types = [t for t in launcher["available_node_types"].values() if t["resources"].get("GPU")]
    assert gpu_types and all(t["max_workers"] >= t["min_workers"] >= 0 for t in gpu_types)


@pytest.mark.parametrize("where, spec", [pytest.param(w, s, id=w) for w, s in ray_cluster_specs()])
def test_kuberay_cluster_is_private_and_token_authenticated(where, spec):
    assert spec.get("authOptions", {}).get("mode") == "token", f"{where}: Ray token auth is off"
    head = spec["headGroupSpec"]
    assert head.get("serviceType") == "ClusterIP", f"{where}: head service must be ClusterIP"
    assert not head.get("enableIngress"), f"{where}: no ingress to the dashboard"
    assert (head.get("headService") or {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
    assert head["rayStartParams"].get("dashboard-host", "127.0.0.1") in ("127.0.0.1", "localhost")
    assert head["rayStartParams"].get("num-cpus") == "0", f"{where}: nothing should be scheduled on the head"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_no_public_services_or_ingresses():
    for path in CLUSTER_YAML:
        for doc in docs_of(path):
            assert doc.get("kind") not in ("Ingress", "Gateway", "HTTPRoute", "Route"), f"{path}: {doc['kind']}"
            if doc.get("kind") == "Service":
                assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", f"{path}: public Service"


# --- schedules ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cronjob-train-weekly.yaml", "cronjob-score-nightly.yaml"])
def test_cronjobs_forbid_overlap_and_run_the_submit_script(name):
    (cron,) = docs_of(KUBERAY / name)
    assert cron["kind"] == "CronJob" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["spec"]["schedule"].split()) == 5 and cron["spec"]["timeZone"]
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1].endswith("submit-rayjob.sh")


def test_raycronjob_alternative_has_no_concurrency_policy_field():
    docs = docs_of(KUBERAY / "raycronjob-weekly.yaml")
    assert docs and all(d["kind"] == "RayCronJob" for d in docs)
    for doc in docs:
        assert "concurrencyPolicy" not in doc["spec"], "KubeRay v1.7.0's RayCronJob has no such field"
        assert doc["spec"]["schedule"] and doc["spec"]["jobTemplate"]["entrypoint"]
        assert doc["spec"]["jobTemplate"]["activeDeadlineSeconds"] > 0, "bounds overlapping runs"


@pytest.mark.parametrize("name", ["rayjob-train-weekly.yaml", "rayjob-score-nightly.yaml"])
def test_rayjob_templates_render_to_valid_names(name):
    (doc,) = docs_of(KUBERAY / name)
    assert "__RUN_NAME__" in doc["metadata"]["name"]
    (out,) = yaml.safe_load_all(rendered((KUBERAY / name).read_text()))
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", out["metadata"]["name"])
    assert "__" not in " ".join(string_values(out))


def test_shell_scripts_parse():
    for script in CLUSTER.rglob("*.sh"):
        shell = "bash" if script.read_text().startswith("#!/usr/bin/env bash") else "sh"
        subprocess.run([shell, "-n", str(script)], check=True)


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


FAKE_KUBECTL = """#!/bin/sh
# kubectl for tests: a RayJob is a file under $STATE; created jobs finish at once with $OUTCOME.
f="$STATE/$3"
case "$1" in
  get) [ -f "$f" ] || exit 1
       case "$5" in *jobDeploymentStatus*) cat "$f.deployment" ;; *jobStatus*) cat "$f.job" ;; *) echo "$3" ;; esac ;;
  create) cat > "$STATE/new"; n=$(sed -n 's/^  name: //p' "$STATE/new" | head -n 1); mv "$STATE/new" "$STATE/$n"
          printf %s "${OUTCOME%/*}" > "$STATE/$n.deployment"; printf %s "${OUTCOME#*/}" > "$STATE/$n.job"
          echo "create $n" >> "$STATE/log" ;;
  delete) rm -f "$f" "$f".*; echo "delete $3" >> "$STATE/log" ;;
esac
"""


def test_submit_script_creates_once_follows_and_reruns_failures(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "kubectl", FAKE_KUBECTL)
    state = tmp_path / "state"
    state.mkdir()

    def submit(template: str, prefix: str, period: str, day: str, outcome: str = "Complete/SUCCEEDED") -> int:
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STATE": str(state), "OUTCOME": outcome,
               "TEMPLATE": str(KUBERAY / template), "NAME_PREFIX": prefix, "PERIOD": period, "RUN_DATE": day,
               "POLL_SECONDS": "0"}
        return subprocess.run(["sh", str(KUBERAY / "scripts" / "submit-rayjob.sh")], env=env, capture_output=True).returncode

    train = ("rayjob-train-weekly.yaml", "pia-msd", "week")
    assert submit(*train, "2026-11-23") == 0  # Monday of ISO week 48
    assert submit(*train, "2026-11-29") == 0  # Sunday, same week: the same RayJob, not a second run
    (state / "pia-msd-2026w48.deployment").write_text("Failed")
    assert submit(*train, "2026-11-25", outcome="Failed/FAILED") == 1  # recreated, fails again: reported
    assert submit("rayjob-score-nightly.yaml", "score", "day", "2026-11-23") == 0
    assert (state / "log").read_text().split("\n")[:-1] == [
        "create pia-msd-2026w48", "delete pia-msd-2026w48", "create pia-msd-2026w48", "create score-2026-11-23",
    ]
    (job,) = yaml.safe_load_all((state / "score-2026-11-23").read_text())
    _, _, flags, _ = parse_entrypoint(job["spec"]["entrypoint"])
    assert job["metadata"]["name"] == "score-2026-11-23" and flags["--run-date"] == "2026-11-23"
    (train_job,) = yaml.safe_load_all((state / "pia-msd-2026w48").read_text())
    _, _, flags, overrides = parse_entrypoint(train_job["spec"]["entrypoint"])
    assert flags["--name"] == "pia-msd-2026w48" and "pia-msd-2026w48" in " ".join(overrides)
