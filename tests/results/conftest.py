"""Real GhostNAS studies in real SQLite storage, written as docs/STUDY_FORMAT.md says.

Helpers reach the tests as fixtures (``make_study``, ``hand_items``, ``sampled_config``): pytest
does not put this folder on ``sys.path``, so test modules cannot import it.
"""

from __future__ import annotations

import random
import shutil

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from spaces import Choice, load_space, random_suggest, reference

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = load_space()
DIRECTIONS = {"accuracy": "maximize", "latency_ms": "minimize", "flops": "minimize", "params": "minimize"}
WORST = {"accuracy": 0.0, "latency_ms": 1e12, "flops": 1e12, "params": 1e12}


def distribution(dim):
    if isinstance(dim, Choice):
        return CategoricalDistribution(dim.values)
    return IntDistribution(dim.low, dim.high, step=dim.step)


def _sampled_config(seed, **overrides):
    """A random point of the default space (cifar preset: small, fast to build)."""
    draw = random_suggest(random.Random(seed))

    def suggest(name, dim):
        return overrides[name] if name in overrides else draw(name, dim)

    return SPACE.to_config(SPACE.sample(suggest), preset="cifar")


def spec(config, *, state="COMPLETE", scores=None, constraints=None, baseline=None, **reasons):
    return dict(config=config, state=state, scores=scores or {}, constraints=constraints or {}, baseline=baseline, reasons=reasons)


def add_trial(study, objectives, item):
    config = item["config"]
    params = SPACE.to_params(config)
    dims = SPACE.dimensions()
    user_attrs = {
        "config": config.to_dict(),
        "config_id": config.id,
        "scores": item["scores"],
        "seconds": {"build": 0.01, "flops": 0.1, "latency": 0.5, "train": 3.0, "total": 3.61},
        **{k: v for k, v in item["reasons"].items()},
    }
    if item["baseline"]:
        user_attrs["baseline"] = item["baseline"]
    state = TrialState[item["state"]]
    values = None
    if state == TrialState.COMPLETE:
        values = [item["scores"].get(name, WORST[name]) for name in objectives]
    study.add_trial(optuna.trial.create_trial(
        state=state,
        params=params,
        distributions={name: distribution(dims[name]) for name in params},
        values=values,
        user_attrs=user_attrs,
        constraints=dict(item["constraints"]),
    ))  # fmt: skip


def _make_study(storage, name, objectives, items, *, limits=None):
    study = optuna.create_study(storage=storage, study_name=name, directions=[DIRECTIONS[o] for o in objectives])
    study.set_user_attr("ghostnas_version", 1)
    study.set_user_attr("objectives", objectives)
    study.set_user_attr("limits", {"max_flops": None, "max_params": None, "max_latency_ms": None, **(limits or {})})
    study.set_user_attr("settings", {"sampler": "tpe", "seed": 0})
    for item in items:
        add_trial(study, objectives, item)
    return study


def _hand_items():
    """The hand-checked study: objectives accuracy and latency_ms, latency limit 25 ms.

    Front (accuracy desc): 3, 0, 1, 4 (4 ties 1 exactly, so both stay); 2 is dominated by 1;
    5 and 8 broke a limit; 6 failed; 7 was stopped early (PRUNED) and would dominate everything.
    """
    ref = reference("ghostnet-1.0x")
    full = {"flops": 141e6, "params": 5.2e6}
    return [
        spec(ref, scores={"accuracy": 0.80, "latency_ms": 10.0, **full}, constraints={"flops": -0.5, "latency_ms": -0.6}, baseline="ghostnet-1.0x"),
        spec(_sampled_config(1), scores={"accuracy": 0.70, "latency_ms": 5.0, "flops": 20e6, "params": 1e6}, constraints={"latency_ms": -0.8}),
        spec(_sampled_config(2), scores={"accuracy": 0.60, "latency_ms": 6.0, "flops": 30e6, "params": 2e6}, constraints={"latency_ms": -0.76}),
        spec(_sampled_config(3), scores={"accuracy": 0.90, "latency_ms": 20.0, "flops": 90e6, "params": 4e6}, constraints={"latency_ms": -0.2}),
        spec(_sampled_config(4), scores={"accuracy": 0.70, "latency_ms": 5.0, "flops": 25e6, "params": 1.5e6}, constraints={"latency_ms": -0.8}),
        spec(_sampled_config(5), scores={"flops": 300e6, "params": 9e6}, constraints={"flops": 0.2}, rejected="flops 300M > max 250M"),
        spec(_sampled_config(6), state="FAIL", failed="RuntimeError: out of memory"),
        spec(_sampled_config(7), state="PRUNED", scores={"accuracy": 0.95, "latency_ms": 1.0, "flops": 10e6, "params": 1e6}, stopped="epoch 2: accuracy below rung"),
        spec(_sampled_config(8), scores={"flops": 50e6, "params": 2e6, "latency_ms": 37.5}, constraints={"flops": -0.8, "latency_ms": 0.5}, rejected="latency 37.5 ms > max 25 ms"),
    ]  # fmt: skip


@pytest.fixture
def make_study():
    return _make_study


@pytest.fixture
def hand_items():
    return _hand_items()


@pytest.fixture
def sampled_config():
    return _sampled_config


@pytest.fixture
def storage_url(tmp_path):
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture(scope="session")
def hand_db(tmp_path_factory):
    # Writing a trial with ~80 params into SQLite takes about a second on this machine: write
    # the study once and give each test its own copy of the file.
    path = tmp_path_factory.mktemp("hand") / "study.db"
    _make_study(f"sqlite:///{path}", "hand", ["accuracy", "latency_ms"], _hand_items(), limits={"max_flops": 250e6, "max_latency_ms": 25.0})
    return path


@pytest.fixture
def hand_study(hand_db, storage_url, tmp_path):
    shutil.copy(hand_db, tmp_path / "study.db")
    return optuna.load_study(study_name="hand", storage=storage_url)


@pytest.fixture
def search_study(tmp_path):
    """A three-objective study like a small real search: two of the width family as baselines,
    then samples. Kept in an Optuna journal file, the storage several local workers share."""
    rng = random.Random(0)
    items = []
    for name, w in (("ghostnet-0.5x", 0.5), ("ghostnet-1.0x", 1.0)):
        items.append(spec(reference(name), baseline=name, scores={"accuracy": 0.6 + 0.2 * w, "latency_ms": 4 + 8 * w, "flops": 141e6 * w * w, "params": 5.2e6 * w}))
    for seed in range(10):
        extra = {"ratio": 2, "dw_size": 3} if seed % 3 == 0 else {}  # some official-compatible samples
        config = _sampled_config(100 + seed, **extra)
        items.append(spec(config, scores={"accuracy": rng.uniform(0.3, 0.95), "latency_ms": rng.uniform(1, 15), "flops": rng.uniform(5e6, 150e6), "params": rng.uniform(0.5e6, 6e6)}))
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "search.log")))
    return _make_study(storage, "search", ["accuracy", "latency_ms", "flops"], items)
