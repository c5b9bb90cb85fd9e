"""Exports of Ghost-family members (issue 19): which class builds each table (official GhostNet,
timm's GhostNet with a version, or only this project), and the feature maps a detection neck taps."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage

from results import export, load_trials, pareto_front, read_exported
from spaces import Choice, load_space, reference

FAMILY_SPACE = load_space(Path(__file__).parents[2] / "spaces" / "ghostnet_family.yaml")


def family_study(path: Path) -> optuna.Study:
    """A real study of the family space: v1, V2, V3 references and a dilated V2, each on the front
    (accuracy up as latency goes up)."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, study_name="family", directions=["maximize", "minimize"])
    study.set_user_attr("ghostnas_version", 1)
    study.set_user_attr("objectives", ["accuracy", "latency_ms"])
    study.set_user_attr("limits", {"max_flops": None, "max_params": None, "max_latency_ms": None})
    dims = FAMILY_SPACE.dimensions()
    configs = [reference("ghostnet-1.0x"), reference("ghostnetv2-1.0x"), reference("ghostnetv3-1.0x"), reference("ghostnetv2-1.0x").replace(dw_dilation=2)]
    for i, config in enumerate(configs):
        params = FAMILY_SPACE.to_params(config)
        scores = {"accuracy": 0.6 + 0.05 * i, "latency_ms": 5.0 + i, "flops": 150e6, "params": 6e6}
        distributions = {n: CategoricalDistribution(dims[n].values) if isinstance(dims[n], Choice) else IntDistribution(dims[n].low, dims[n].high, step=dims[n].step) for n in params}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, values=[scores["accuracy"], scores["latency_ms"]],
            user_attrs={"config": config.to_dict(), "config_id": config.id, "scores": scores},
        ))  # fmt: skip
    return study


def test_exports_name_the_builder_and_the_feature_maps(tmp_path):
    front = pareto_front(load_trials(family_study(tmp_path / "study.log")))
    assert len(front) == 4
    members = json.loads(export(front, fmt="json", path=tmp_path / "best.json").read_text())
    assert [m["timm_version"] for m in members] == [None, "v3", "v2", "v1"]  # accuracy descending
    assert [m["official_compatible"] for m in members] == [False, False, False, True]
    assert "dw_dilation 2" in members[0]["timm_incompatibility"]
    assert members[3]["feature_info"] == [
        {"num_chs": 40, "reduction": 8, "module": "blocks.4"},
        {"num_chs": 112, "reduction": 16, "module": "blocks.6"},
        {"num_chs": 160, "reduction": 32, "module": "blocks.8"},
    ]
    path = export(front, fmt="py", path=tmp_path / "best.py")
    text = path.read_text()
    numbers = [m["trial"] for m in members]
    assert f"# timm: GhostNet(cfgs_{numbers[1]}, width=width_{numbers[1]}, version='v3')" in text
    assert f"# timm: GhostNet(cfgs_{numbers[2]}, width=width_{numbers[2]}, version='v2')" in text
    assert "# not timm-compatible: closest is version v2: module ghostnet, dw_dilation 2" in text
    assert text.count("# feature maps: 40 ch at stride 8, 112 ch at stride 16, 160 ch at stride 32") == 4
    assert read_exported(path) == read_exported(tmp_path / "best.json") == [reference("ghostnetv2-1.0x").replace(dw_dilation=2), reference("ghostnetv3-1.0x"), reference("ghostnetv2-1.0x"), reference("ghostnet-1.0x")]
