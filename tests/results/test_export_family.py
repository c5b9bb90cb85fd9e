"""Exports of Ghost-family members (issue 19): which class builds each table (official GhostNet,
timm's GhostNet with a version, or only this project), and the feature maps a detection neck taps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.storages.journal import JournalFileBackend, JournalStorage

from results import export, load_trials, pareto_front, read_exported
from spaces import Choice, build_model, load_space, reference

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


def _timm_reproduces(config, version: str) -> bool:
    """Whether timm's GhostNet(cfgs, width=..., version=...) of ``config``'s table loads our
    weights strictly and computes our logits."""
    import dataclasses

    import pytest
    import torch

    from spaces import build_model

    ghostnet = pytest.importorskip("timm.models.ghostnet")
    table = config.to_official(strict=False)
    torch.manual_seed(0)
    ours = build_model(dataclasses.replace(config, dropout=0.0)).eval()
    theirs = ghostnet.GhostNet(table["cfgs"], num_classes=config.num_classes, width=table["width"], version=version).eval()
    try:
        theirs.load_state_dict(ours.state_dict(), strict=True)
    except RuntimeError:  # missing, unexpected or misshaped tensors
        return False
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        return torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_the_builders_an_export_names_build_its_members(tmp_path):
    # What best.py claims is checked against the classes themselves: timm's GhostNet with the
    # version named (timm's v1 is the official code) loads the member's weights and computes
    # its logits; a member marked not timm-compatible is not reproduced by its closest version.
    front = pareto_front(load_trials(family_study(tmp_path / "study.log")))
    members = json.loads(export(front, fmt="json", path=tmp_path / "best.json").read_text())
    configs = read_exported(tmp_path / "best.json")
    for member, config in zip(members, configs):
        if member["timm_version"]:
            assert _timm_reproduces(config, member["timm_version"])
        else:  # "closest is version v2: ..."
            assert not _timm_reproduces(config, member["timm_incompatibility"].split()[3].rstrip(":"))
        assert member["official_compatible"] == (member["timm_version"] == "v1")


def test_yolov5_and_v3_everywhere_are_marked_unbuildable_and_are():
    base = reference("ghostnet-1.0x")
    yolo = base.replace(module="yolov5", dw_size=5, stages=tuple(tuple(dataclasses.replace(b, se=0.0) for b in s) for s in base.stages))
    v3_everywhere = base.replace(block_types=("ghostv3",) * len(base.stages))
    for config in (yolo, v3_everywhere):
        assert config.timm_version() is None and config.official_incompatibility()
        assert not any(_timm_reproduces(config, version) for version in ("v1", "v2", "v3"))
