"""A real search over the Ghost family (issue 19): block types, the yolov5 module and the cheap-op
dilation are sampled, built, timed and trained like v1's dimensions, and a study remembers them."""

from __future__ import annotations

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search import SearchError, SearchSettings, run_search
from spaces import GhostNetConfig, load_space


@pytest.fixture
def family_space(tiny_space, tmp_path):
    """The tiny test space (every stage one block, narrow) with the family turned on."""
    data = yaml.safe_load(tiny_space.read_text())
    data.update(module={"choices": ["ghostnet", "yolov5"]}, dw_dilation={"choices": [1, 2]}, dw_size={"choices": [3, 5]})
    for stage in data["stages"]:
        stage["block"] = {"choices": ["ghost", "ghostv2", "ghostv3", "ghostv3-nodfc"]}
    path = tmp_path / "family.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def settings(space, tmp_path, **overrides) -> SearchSettings:
    values = dict(
        study="f", out=tmp_path / "run", space=space, subset=200, epochs=1, input_size=16, baselines=False,
        progress=False, trials=4, sampler="random", seed=3, early_stopping=False,
    )  # fmt: skip
    return SearchSettings(**(values | overrides))


def test_a_real_search_samples_and_scores_the_family(family_space, tmp_path):
    s = settings(family_space, tmp_path)
    summary = run_search(s)
    assert (summary.finished, summary.failed) == (4, 0)
    study = optuna.load_study(study_name="f", storage=s.storage_url)
    space = load_space(family_space)
    kinds = set()
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE
        config = GhostNetConfig.from_dict(t.user_attrs["config"])
        assert space.to_params(config) == t.params
        assert t.params["module"] == config.module and t.user_attrs["scores"]["latency_ms"] > 0
        kinds |= set(config.block_types) | {config.module}
    assert len(kinds) >= 3  # several block types and modules really ran


@pytest.mark.parametrize("field", ["block", "module", "dw_dilation"])
def test_resume_with_a_family_field_switched_on_is_refused(tiny_space, tmp_path, field):
    data = yaml.safe_load(tiny_space.read_text())
    if field == "block":
        data["stages"][4]["block"] = {"choices": ["ghost", "ghostv2"]}
    else:
        data.update({"module": {"module": "yolov5"}, "dw_dilation": {"dw_dilation": 2, "dw_size": 3}}[field])
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(data))
    run_search(settings(tiny_space, tmp_path, trials=1))
    with pytest.raises(SearchError, match="created with another search space"):
        run_search(settings(changed, tmp_path, trials=2))
