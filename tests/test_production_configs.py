"""Every production job config in configs/ runs end to end at toy size, so it cannot silently rot.

For each config a tiny raw input is written in the config's own ``data.format`` (MovieLens ratings.csv,
Netflix combined_data_*.txt "MovieID:" blocks, MSD train_triplets.txt; the synthetic generator for the
synthetic configs), with planted taste clusters, and the real training job runs on it
(``run_train_job``: prepare -> Ray Train -> best checkpoint -> test metrics). The overrides shrink only
sizes: the data path, held-out users, output files, model width, epochs, batch sizes, workers, CPUs and
GPUs. Thresholds and filters stay the production ones (MSD's songs >= 200 users and users >= 20 songs
included: its tiny file is dense enough), so the checks below also see the config's filters applied.

Checks per config: metrics.json holds test metrics for the held-out users; the prepared data was read in
the configured format, and its counts are those of the config's threshold and filters applied to the
file by hand; the checkpoint's config equals the production config everywhere except the overridden
size keys (model name, epsilon, PIA, beta cap and the rest all kept). quickstart.yaml and ml-100k.yaml take
the same code paths as synthetic.yaml and ml-20m.yaml and are not run here (NOT_RUN says why).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from raytrain.config import load_config, to_dict
from raytrain.train import checkpoint as ckpt
from raytrain.train.job import JobOptions, run_train_job
from test_cluster_configs import PRODUCTION_CONFIGS, TINY_OVERRIDES  # tests/ is on sys.path (no __init__.py)

REPO = Path(__file__).resolve().parents[1]
N_HELDOUT = 20  # validation users, and as many test users

# Sizes only: TINY_OVERRIDES' model / train / scaling / score / tune sizes (its data keys switch the format
# to synthetic, so they are replaced per config below), a 32-wide model, half a CPU per worker.
SIZE_OVERRIDES = (
    *(o for o in TINY_OVERRIDES if not o.startswith("data.")),
    "model.hidden_dim=32", "model.latent_dim=8", "train.epochs=1",
    "scaling.num_workers=1", "scaling.use_gpu=false", "scaling.cpus_per_worker=0.5",
    f"data.n_heldout={N_HELDOUT}", "data.num_output_files=1",
)
SYNTHETIC_SIZES = (
    "data.synthetic.n_users=400", "data.synthetic.n_items=100", "data.synthetic.n_clusters=4",
    "data.synthetic.mean_items_per_user=12", "data.synthetic.n_blocks=2",
)

Record = tuple[Any, Any, float]  # (user id, item id, value) as written to the raw file


# --- tiny raw inputs with planted structure, in each production format -------------------------------------

def _clustered(rng: np.random.Generator, n_users: int, n_clusters: int, per_cluster: int, p_own: float,
               p_other: float) -> list[tuple[int, int, bool]]:
    """(user, item, in own cluster) draws: users like their cluster's block of items, others rarely."""
    n_items = n_clusters * per_cluster
    draws = []
    for user in range(n_users):
        own = user % n_clusters
        for item in range(n_items):
            mine = item // per_cluster == own
            if rng.random() < (p_own if mine else p_other):
                draws.append((user, item, mine))
    return draws


def _ratings(rng: np.random.Generator, step: float) -> tuple[Callable[[], float], Callable[[], float]]:
    """(liked, disliked) rating draws on the 1-5 scale in ``step`` increments, split at the threshold 4."""
    liked = np.arange(4.0, 5.0 + step / 2, step)
    disliked = np.arange(1.0 if step == 1 else 0.5, 4.0 - step / 2, step)
    return (lambda: float(rng.choice(liked))), (lambda: float(rng.choice(disliked)))


def _rated(seed: int, step: float) -> list[tuple[int, int, float]]:
    """300 regular users (4 clusters x 30 items: positives in their cluster, mostly low ratings elsewhere)
    and 20 light users with 3 positives among 8 ratings, whom min_items_per_user=5 drops after the threshold."""
    rng = np.random.default_rng(seed)
    liked, disliked = _ratings(rng, step)
    rows = [(u, i, liked() if mine else disliked()) for u, i, mine in _clustered(rng, 300, 4, 30, 0.4, 0.12)]
    rows += [(u, i, liked()) for u, i, _ in _clustered(rng, 300, 4, 30, 0.0, 0.02)]  # out-of-cluster likes
    rows = list({(u, i): (u, i, v) for u, i, v in rows}.values())  # one rating per (user, movie)
    for light in range(20):
        movies = rng.choice(120, size=8, replace=False)
        rows += [(300 + light, int(m), liked() if k < 3 else disliked()) for k, m in enumerate(movies)]
    return rows


def write_movielens(directory: Path) -> tuple[str, list[Record]]:
    """ratings.csv as in ml-20m.zip: header, userId,movieId,rating,timestamp with half-star ratings."""
    records = [(1 + 7 * u, 10 * i + 3, v) for u, i, v in _rated(seed=20, step=0.5)]
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{m},{v:.1f},{1_100_000_000 + 37 * k}" for k, (u, m, v) in enumerate(records)]
    path = directory / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path), records


def write_netflix(directory: Path) -> tuple[str, list[Record]]:
    """combined_data_1.txt and _2.txt as in the Kaggle copy: 'MovieID:' then CustomerID,Rating,Date lines."""
    rng = np.random.default_rng(7)
    customers = rng.choice(np.arange(6, 2_649_430), size=320, replace=False)  # Netflix's sparse id range
    records = [(int(customers[u]), i + 1, v) for u, i, v in _rated(seed=17, step=1.0)]
    by_movie: dict[int, list[Record]] = {}
    for record in records:
        by_movie.setdefault(record[1], []).append(record)
    movies = sorted(by_movie)
    for part, chunk in enumerate((movies[: len(movies) // 2], movies[len(movies) // 2:]), start=1):
        lines = []
        for movie in chunk:
            lines.append(f"{movie}:")
            lines += [f"{c},{int(v)},2005-{1 + c % 12:02d}-{1 + c % 28:02d}" for c, _, v in by_movie[movie]]
        (directory / f"combined_data_{part}.txt").write_text("\n".join(lines) + "\n")
    return str(directory / "combined_data_*.txt"), records


def write_msd(directory: Path) -> tuple[str, list[Record]]:
    """train_triplets.txt as in the Taste Profile subset: 40-hex user<TAB>SO... song<TAB>play count.

    Dense enough for msd.yaml's own filters: 600 regular users (4 clusters x 20 head songs: 0.85 in their
    cluster, 0.3 elsewhere) put every head song above 200 users and nearly every user above 20 songs; 40 tail
    songs (a few plays each) fall under 200 users; 30 light users with 10 head + 15 tail songs have 25 songs
    in the file but 10 after the song filter, so the user filter (applied second) drops them.
    """
    rng = np.random.default_rng(2011)
    user = [hashlib.sha1(f"user-{u}".encode()).hexdigest() for u in range(630)]
    song = ["SO" + hashlib.sha1(f"song-{s}".encode()).hexdigest()[:16].upper() for s in range(120)]
    pairs = [(u, s) for u, s, _ in _clustered(rng, 600, 4, 20, 0.85, 0.3)]
    for u in range(600):
        pairs += [(u, 80 + int(t)) for t in rng.choice(40, size=int(rng.integers(0, 3)), replace=False)]
    for light in range(600, 630):
        pairs += [(light, int(s)) for s in rng.choice(80, size=10, replace=False)]
        pairs += [(light, 80 + int(t)) for t in rng.choice(40, size=15, replace=False)]
    records = [(user[u], song[s], float(rng.integers(1, 12))) for u, s in pairs]
    path = directory / "train_triplets.txt"
    path.write_text("".join(f"{u}\t{s}\t{int(v)}\n" for u, s, v in records))
    return str(path), records


WRITERS: dict[str, Callable[[Path], tuple[str, list[Record]]]] = {
    "movielens": write_movielens, "netflix": write_netflix, "msd": write_msd,
}


def liang_counts(records: list[Record], threshold: float, min_users_per_item: int,
                 min_items_per_user: int) -> dict[str, int]:
    """The preparation's counts done by hand: positives, distinct pairs, item filter, then user filter."""
    positives = {(u, i) for u, i, v in records if v >= threshold}
    users_per_item = Counter(i for _, i in positives)
    kept = {(u, i) for u, i in positives if users_per_item[i] >= min_users_per_item}
    items_per_user = Counter(u for u, _ in kept)
    kept = {(u, i) for u, i in kept if items_per_user[u] >= min_items_per_user}
    return {"positives": len(positives), "users": len({u for u, _ in kept}), "interactions": len(kept),
            "items": len({i for _, i in kept}), "dropped_items": len(users_per_item) - len({i for _, i in kept})}


# --- the end-to-end run per config ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str  # configs/<name>.yaml
    format: str  # the data.format that config reads


CASES = [Case("ml-20m", "movielens"), Case("netflix", "netflix"), Case("msd", "msd"), Case("synthetic", "synthetic")]
# Not run here: each run costs ~50-100 s on the shared 2-core test machine (mostly Ray Train start-up); these
# two add no code path the four above do not take. Both still load in tests/test_cluster_configs.py.
NOT_RUN = {
    "quickstart": "synthetic data, the same path as synthetic.yaml",
    "ml-100k": "MovieLens ratings.csv, the same path as ml-20m.yaml; also trained in tests/train and test_job_submit.py",
}


def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def test_every_job_config_is_covered():
    """A new config in configs/ must be added to CASES (or, with a reason, to NOT_RUN)."""
    assert {c.name for c in CASES} | set(NOT_RUN) == {p.stem for p in (REPO / "configs").glob("*.yaml")}
    assert {c.name for c in CASES} >= set(PRODUCTION_CONFIGS)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_production_config_trains_end_to_end_at_tiny_size(case, ray_session, tmp_path):
    path = REPO / "configs" / f"{case.name}.yaml"
    full = load_config(path)
    assert full.data.format == case.format, f"{path.name} reads {full.data.format}, not {case.format}"
    raw = tmp_path / "raw"
    raw.mkdir()
    records: list[Record] = []
    if case.format == "synthetic":
        data_overrides: tuple[str, ...] = SYNTHETIC_SIZES
    else:
        source, records = WRITERS[case.format](raw)
        data_overrides = (f"data.path={source}",)
    overrides = (*SIZE_OVERRIDES, *data_overrides, f"data.prepared_path={tmp_path / 'prepared'}")
    config = load_config(path, overrides)
    out = tmp_path / "run"

    metrics = run_train_job(config, JobOptions(output_dir=str(out)))

    # Test metrics for every held-out test user, on disk as returned.
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["test"] == metrics["test"]
    assert on_disk["test"]["users"] == N_HELDOUT
    for key in ("ndcg@100", "recall@20", "recall@50"):
        assert 0.0 <= on_disk["test"][key] <= 1.0 and math.isfinite(on_disk["test"][key]), key
    assert on_disk["epochs_run"] == 1 and on_disk["best_epoch"] == 1
    assert on_disk["model"] == full.model.name + ("+pia" if full.model.pia.enabled else "")
    assert on_disk["best_val"]["ndcg@100"] >= 0.0

    # The configured format was read, with the config's threshold and filters.
    meta = json.loads((Path(metrics["data_path"]) / "meta.json").read_text())
    assert Path(metrics["data_path"]).resolve() == (tmp_path / "prepared").resolve()
    assert meta["format"] == meta["params"]["format"] == full.data.format
    assert meta["users"]["val"] == meta["users"]["test"] == N_HELDOUT
    if case.format == "synthetic":
        assert meta["source"] == "synthetic" and meta["params"]["synthetic"]["n_users"] == 400
        assert meta["counts"]["after_filters"]["users"] > 2 * N_HELDOUT
    else:
        assert meta["source"] == config.data.path
        expected = liang_counts(records, full.data.threshold, full.data.min_users_per_item, full.data.min_items_per_user)
        assert meta["counts"]["raw_interactions"] == len(records)
        assert meta["counts"]["positives"] == expected["positives"]
        assert meta["counts"]["after_filters"] == {"users": expected["users"], "interactions": expected["interactions"]}
        assert expected["users"] < len({u for u, _, _ in records}), "the tiny file should exercise the user filter"
        if full.data.min_users_per_item > 0:
            assert expected["dropped_items"] > 0, "the tiny file should exercise the item filter"
        assert 0 < meta["n_items"] <= expected["items"]

    # The checkpoint's config is the production one except the size keys overridden here.
    payload = ckpt.load_checkpoint(out / "model")
    saved, production = leaves(payload["config"]), leaves(to_dict(full))
    overridden = {o.partition("=")[0] for o in overrides}
    kept = {k: v for k, v in production.items() if k not in overridden}
    assert {k: saved[k] for k in kept} == kept
    assert payload["config"]["model"]["pia"] == to_dict(full.model.pia)
    assert (saved["model.name"], saved["model.epsilon"], saved["train.beta_cap"]) == (
        full.model.name, full.model.epsilon, full.train.beta_cap)
    assert payload["shape"]["n_items"] == meta["n_items"]
    assert (saved["model.hidden_dim"], saved["model.latent_dim"], saved["train.epochs"]) == (32, 8, 1)
