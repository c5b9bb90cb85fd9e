"""The proxy context on real digits: what a study records of its accuracy measurement, the check
a resumed study makes against it, and the mapping from an evaluation's exception to its reason."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from evaluators import TrainingFailed, load_dataset, proxy_split, train_proxy
from search import ProxyContext, SearchError, SearchSettings
from search._proxy import check_record
from search._record import failure_reason
from spaces import reference


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> ProxyContext:
    out = tmp_path_factory.mktemp("run")
    return ProxyContext.from_settings(SearchSettings(study="p", out=out, subset=300, epochs=1, seed=3, workers=1))


def test_the_record_says_how_accuracy_is_measured(proxy):
    digits = load_dataset("digits")
    assert proxy.record == {
        "images": 1797, "classes": list(digits.classes), "subset": 300, "val_fraction": 0.2, "epochs": 1,
        "preset": "cifar", "input_size": 16, "train_input_size": None, "seed": 3,
    }  # fmt: skip
    assert proxy.num_classes == 10 and proxy.train_settings.seed == 3
    train, val = proxy_split(digits, seed=3, subset=300)
    assert torch.equal(proxy.data[0].images, train.images) and torch.equal(proxy.data[1].labels, val.labels)


def test_a_training_resolution_trains_there_and_is_recorded(tmp_path):
    # Configs stay at the preset's 16 px (FLOPs and latency); the proxy trains and validates at 8.
    settings = SearchSettings(study="p", out=tmp_path, subset=300, epochs=1, seed=3, workers=1, train_input_size=8)
    small = ProxyContext.from_settings(settings)
    assert (small.input_size, small.train_settings.input_size, small.record["train_input_size"]) == (16, 8, 8)
    config = reference("ghostnet-0.35x", preset="cifar", num_classes=10, input_size=16)
    trained = small.train(config)
    at = {size: train_proxy(config, *small.data, dataclasses.replace(small.train_settings, input_size=size)) for size in (8, 16)}
    assert trained.loss_sum == at[8].loss_sum != at[16].loss_sum  # the same seeded run as an 8 px one
    with pytest.raises(SearchError, match="measured accuracy with train_input_size None; resume"):
        check_record("s", {**small.record, "train_input_size": None}, small.record)


def test_another_seed_is_another_split_and_training_seed(proxy):
    assert proxy.with_seed(3) is proxy
    other = proxy.with_seed(4)
    assert other.seed == 4 and other.train_settings.seed == 4 and other.record == {**proxy.record, "seed": 4}
    assert not torch.equal(other.data[0].images, proxy.data[0].images)
    assert len(other.data[0]) == len(proxy.data[0]) and other.dataset is proxy.dataset


def test_a_study_resumed_with_another_measurement_is_refused(proxy):
    check_record("s", None, proxy.record)  # written before the record existed: not checked
    check_record("s", {**proxy.record, "seed": 9}, proxy.record)  # the study's seed is used instead
    with pytest.raises(SearchError, match=r"study 's' measured accuracy with subset 500, epochs 2; resume it with the same data"):
        check_record("s", {**proxy.record, "epochs": 2, "subset": 500}, proxy.record)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TrainingFailed("loss is nan after 3 steps"), "training failed: loss is nan after 3 steps"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "out of memory"),
        (MemoryError(), "out of memory"),
        (ValueError("bad kernel\nsecond line"), "ValueError: bad kernel"),
        (RuntimeError(""), "RuntimeError"),
    ],
)
def test_an_evaluation_error_becomes_one_line_reason(exc, reason):
    assert failure_reason(exc) == reason
