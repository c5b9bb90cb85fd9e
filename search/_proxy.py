"""How a study measures accuracy: its data, split, proxy training settings and seed, and
whether trials train or are scored by the fitted accuracy model (``--accuracy-estimator``).

``ProxyContext`` is built from search settings (``from_settings``), written into a new study as
its ``proxy`` record (``record``), checked against the record of a study it resumes or joins
(``check_record``) and then put on that study's seed (``on_study``): accuracies are comparable
only when every trial of a study, every ``confirm`` run and every later retraining used one split
and one training seed. ``for_study`` rebuilds the context of an existing study from the settings
it recorded, for commands that retrain its members (confirm, train).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from evaluators.accuracy_model import AccuracyModel
from evaluators.data import ImageSet, load_dataset, proxy_split
from evaluators.training import TrainResult, TrainSettings, train_proxy
from results import StudyAttr
from search._objectives import SearchError
from search._settings import SearchSettings
from spaces import PRESETS, Block, GhostNetConfig

__all__ = ["ProxyContext", "check_record", "default_input_size", "study_settings"]


@dataclass(frozen=True)
class ProxyContext:
    dataset: ImageSet  # the whole data set the split is drawn from
    data: tuple[ImageSet, ImageSet]  # (proxy-train, proxy-validation)
    val_fraction: float
    subset: int | None
    preset: str
    input_size: int  # every config of the study is built for it
    train_settings: TrainSettings  # epochs, device, threads, and the seed (also the split's)
    # With --accuracy-estimator ridge, what scores a trial's accuracy instead of training
    # (confirm and train still train, with train_settings).
    accuracy_model: AccuracyModel | None = None

    @classmethod
    def from_settings(cls, settings: SearchSettings) -> ProxyContext:
        """Load the data and split it as ``settings`` say; DataError if the data cannot be read,
        ConfigError for settings no config can have (an input size out of range)."""
        dataset = load_dataset(settings.dataset, data_root=settings.data_root, download=settings.download)
        input_size = settings.input_size or default_input_size(settings.preset, native=dataset.images.shape[-1])
        # Workers split the cores: torch's default (every core per process) oversubscribes them,
        # and proxy training then ran ~10x slower here (docs/BENCHMARKS.md, "Search cost"). A lower
        # limit already set (OMP_NUM_THREADS=1 for searches sharing a machine) is kept.
        threads = max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // settings.workers))
        train = {"device": settings.device, "seed": settings.seed, "threads": threads}
        if settings.epochs is not None:
            train["epochs"] = settings.epochs
        if settings.train_input_size is not None:
            train["input_size"] = settings.train_input_size
        # Checked before any study is touched: the smallest network (one block, stride 1).
        for size in {input_size, settings.train_input_size or input_size}:
            GhostNetConfig(stages=((Block(3, 16, 16),),), stem_stride=1, num_classes=len(dataset.classes), input_size=size)
        return cls(
            dataset=dataset, data=proxy_split(dataset, seed=settings.seed, val_fraction=settings.val_fraction, subset=settings.subset),
            val_fraction=settings.val_fraction, subset=settings.subset, preset=settings.preset, input_size=input_size,
            train_settings=TrainSettings(**train),
            accuracy_model=AccuracyModel.load() if settings.accuracy_estimator == "ridge" else None,
        )  # fmt: skip

    @classmethod
    def for_study(cls, study: optuna.Study, /, **overrides: Any) -> tuple[SearchSettings, ProxyContext]:
        """The settings ``study`` recorded (with ``overrides``) and its context, checked against
        its proxy record and on its seed; SearchError if the study cannot be retrained."""
        # (a --device given was checked already; the settings' own check would name the flag)
        recorded = (study.user_attrs.get(StudyAttr.SETTINGS) or {}).get("device", "cpu")
        if overrides.get("device") is None and str(recorded).startswith("cuda") and not torch.cuda.is_available():
            raise SearchError(f"study {study.study_name!r} trained on {recorded}, which this machine lacks; pass --device cpu")
        settings = study_settings(study, **overrides)
        context = cls.from_settings(settings)
        check_record(study.study_name, study.user_attrs.get(StudyAttr.PROXY), context.record)
        return settings, context.on_study(study)

    @property
    def seed(self) -> int:
        return self.train_settings.seed

    @property
    def num_classes(self) -> int:
        return len(self.dataset.classes)

    @property
    def record(self) -> dict[str, Any]:
        """The study's ``proxy`` user attr (docs/STUDY_FORMAT.md)."""
        # The estimator is recorded only when it is not training, so that the records of studies
        # made before it existed (all trained) still match.
        estimator = {} if self.accuracy_model is None else {"accuracy_estimator": {"name": "ridge", "sha256": self.accuracy_model.sha256}}
        return {
            "images": len(self.dataset), "classes": list(self.dataset.classes), "subset": self.subset,
            "val_fraction": self.val_fraction, "epochs": self.train_settings.epochs, "preset": self.preset,
            "input_size": self.input_size, "train_input_size": self.train_settings.input_size, "seed": self.seed,
            **estimator,
        }  # fmt: skip

    def with_seed(self, seed: int) -> ProxyContext:
        """The same measurement on the split and training seed ``seed``."""
        if seed == self.seed:
            return self
        data = proxy_split(self.dataset, seed=seed, val_fraction=self.val_fraction, subset=self.subset)
        return dataclasses.replace(self, data=data, train_settings=dataclasses.replace(self.train_settings, seed=seed))

    def on_study(self, study: optuna.Study) -> ProxyContext:
        """On the split and training seed ``study`` recorded when it was created: a command
        joining it (another machine) with another --seed seeds only its sampler with it."""
        return self.with_seed(study.user_attrs.get(StudyAttr.PROXY, self.record)["seed"])

    def train(self, config: GhostNetConfig, *, seed: int | None = None, check_stop: Callable[[], None] | None = None) -> TrainResult:
        """One proxy training run of ``config`` on the split, with training seed ``seed``
        (default: the study's); TrainingFailed, or torch's out-of-memory, when it fails."""
        settings = self.train_settings if seed is None else dataclasses.replace(self.train_settings, seed=seed)
        return train_proxy(config, *self.data, settings, check_stop=check_stop)


def check_record(study: str, recorded: Mapping[str, Any] | None, record: Mapping[str, Any]) -> None:
    """SearchError unless ``record`` measures accuracy as the study's ``recorded`` one did (the
    seed aside: the study's is used). Studies written before the record existed are not checked."""
    if recorded is None:
        return
    differ = [key for key in dict.fromkeys([*record, *recorded]) if key != "seed" and recorded.get(key) != record.get(key)]
    if "accuracy_estimator" in differ:
        was, now = (_estimator(r.get("accuracy_estimator")) for r in (recorded, record))
        raise SearchError(f"study {study!r} scored accuracy by {was}, not by {now}; resume it with the same --accuracy-estimator (and GhostNAS version)")
    if differ:
        was = ", ".join(f"{key} {_brief(recorded.get(key))}" for key in differ)
        raise SearchError(f"study {study!r} measured accuracy with {was}; resume it with the same data and proxy settings")


def _estimator(record: Any) -> str:
    if not record:
        return "training (--accuracy-estimator train)"
    return f"the {record.get('name')} accuracy model (sha256 {str(record.get('sha256'))[:12]})"


def _brief(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def default_input_size(preset: str, *, native: int) -> int:
    """The preset's input size, but no larger than the images need: upsampling 8x8 digits to
    32x32 would cost 16x the compute for no information (a multiple of 8, at least 16)."""
    return min(PRESETS[preset]["input_size"], max(16, -(-native // 8) * 8))


def study_settings(study: optuna.Study, /, **overrides: Any) -> SearchSettings:
    """The search settings ``study`` recorded, with ``overrides`` (None values keep the recorded
    ones); SearchError if it has no such record or one this version cannot read."""
    attrs = study.user_attrs
    if not isinstance(attrs.get(StudyAttr.SETTINGS), dict) or not isinstance(attrs.get(StudyAttr.PROXY), dict):
        raise SearchError(f"study {study.study_name!r} has no record of its data and proxy budget (written by an older GhostNAS); it cannot be confirmed")
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return SearchSettings(**{**attrs[StudyAttr.SETTINGS], **given})
    except TypeError as exc:
        raise SearchError(f"study {study.study_name!r} records settings this version cannot read ({exc})") from None
