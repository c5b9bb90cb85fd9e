"""The command line, in process: output formats, exports read back, and one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cli import main
from results import read_exported
from spaces import build_model, reference


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_reference_json_prints_the_reference_figures(capsys):
    code, out, _ = run(capsys, "eval", "--reference", "ghostnet-1.0x", "--skip-accuracy", "--skip-latency", "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["params"], result["flops"]) == (5182508, 141150512)
    assert isinstance(result["params"], int) and isinstance(result["flops"], int)
    assert result["config"]["width"] == 1.0 and "latency_ms" not in result


def test_eval_overrides_and_table(capsys):
    code, out, _ = run(capsys, "eval", "--reference", "ghostnet-1.0x", "--width", "0.5", "--skip-accuracy", "--skip-latency")
    assert code == 0
    assert "2.587 M" in out and "42.3 M" in out  # GhostNet 0.5x


def test_eval_latency_and_accuracy_on_digits(capsys):
    code, out, _ = run(
        capsys, "eval", "--reference", "ghostnet-0.35x", "--preset", "cifar", "--input-size", "16",
        "--epochs", "1", "--subset", "300", "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["training"]["epochs_run"] == 1
    lat = result["latency"]
    assert result["latency_raw_ms"] == lat["median_ms"] and lat["p10_ms"] <= lat["median_ms"] <= lat["p90_ms"]
    # calibrated: the ratio to the reference times the reference's latency timed in this process
    assert result["latency_ms"] == lat["calibrated_ms"] == pytest.approx(lat["ratio_to_reference"] * lat["calibration_reference_ms"])
    assert result["config"]["num_classes"] == 10  # built for the digits' classes


def test_eval_reads_both_config_formats(capsys, tmp_path):
    config = reference("ghostnet-0.5x")
    ours, official = tmp_path / "ours.yaml", tmp_path / "official.json"
    config.save(ours)
    official.write_text(json.dumps({"cfgs": config.to_official()["cfgs"], "width": 0.5}))
    for path in (ours, official):
        code, out, _ = run(capsys, "eval", "--cfg", str(path), "--skip-accuracy", "--skip-latency", "--json")
        assert code == 0 and json.loads(out)["flops"] == 42328152


def test_search_show_export_plot_end_to_end(capsys, fast_flags, tmp_path):
    code, out, err = run(capsys, "search", *fast_flags, "--trials", "3", "--study", "cli", "--objectives", "accuracy,flops")
    assert code == 0, err
    run_dir = tmp_path / "run"
    written = out.split()
    assert written == [str(run_dir / n) for n in ("pareto.csv", "pareto.md", "best.json", "best.py", "plots/index.html")]
    storage = f"sqlite:///{run_dir / 'study.db'}"

    # confirm retrains the front with one more seed and rewrites the same files from the means
    code, out, err = run(capsys, "confirm", "--study", "cli", "--storage", storage, "--runs", "2", "--no-progress")
    assert code == 0, err
    assert out.split() == written

    code, out, _ = run(capsys, "show", "--study", "cli", "--storage", storage)
    assert code == 0 and "| trial | accuracy % | runs |" in out

    front = pd.read_csv(run_dir / "pareto.csv")
    assert 1 <= len(front) <= 3 and set(front["number"]).issubset({0, 1, 2})
    assert (front["accuracy_runs"] == 2).all()
    members = json.loads((run_dir / "best.json").read_text())
    assert [m["trial"] for m in members] == list(front["number"])
    configs = read_exported(run_dir / "best.py")
    assert [c.to_dict() for c in configs] == [m["config"] for m in members]
    assert build_model(configs[0]) is not None

    code, out, _ = run(capsys, "export", "--study", "cli", "--storage", storage, "--format", "json")
    assert code == 0 and json.loads(out) == members
    target = tmp_path / "front.py"
    code, out, _ = run(capsys, "export", "--study", "cli", "--storage", storage, "--format", "py", "--out", str(target))
    assert code == 0 and read_exported(target) == configs
    # what export writes, eval accepts
    code, out, _ = run(capsys, "eval", "--cfg", str(target), "--skip-accuracy", "--skip-latency", "--json")
    assert code == 0 and json.loads(out)["flops"] == members[0]["scores"]["flops"]

    code, out, _ = run(capsys, "plot", "--study", "cli", "--storage", storage, "--out", str(tmp_path / "plots"))
    assert code == 0 and "accuracy_flops.html" in (tmp_path / "plots" / "index.html").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--objectives", "accuracy,speed"], "unknown objective speed"),
        (["search", "--sampler", "cmaes"], "unknown sampler"),
        (["search", "--max-flops", "10Q"], "--max-flops must be a number"),
        (["search", "--trials", "0"], "--trials must be an integer in [1, 100000], got 0"),
        (["search", "--trials", "three"], "ghostnas: error: search: argument --trials: invalid int value"),
        (["search", "--storage", "nosuchdb://x"], "cannot open storage"),
        (["show", "--study", "nope", "--storage", "sqlite:////nonexistent/dir/study.db"], "no SQLite storage"),
        (["eval", "--reference", "ghostnet-9x", "--skip-accuracy", "--skip-latency"], "unknown reference model"),
        (["eval", "--cfg", "/nonexistent.json", "--skip-accuracy", "--skip-latency"], "cannot read /nonexistent.json"),
        (["eval"], "one of the arguments --cfg --reference --run is required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("ghostnas")


def test_show_of_a_missing_study_names_what_exists(capsys, fast_flags, tmp_path):
    assert run(capsys, "search", *fast_flags, "--trials", "1", "--study", "exists", "--objectives", "accuracy,flops")[0] == 0
    code, out, err = run(capsys, "show", "--study", "other", "--storage", f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    assert code == 2 and "exists" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "params", "flops"),
    [
        ("ghostnetv2-1.0x", 6_156_908, 167_048_288),  # timm ghostnetv2_100, fvcore
        ("ghostnetv3-1.0x", 6_147_588, 167_048_288),  # timm ghostnetv3_100 after convert_to_deploy
    ],
)
def test_eval_family_reference_prints_timms_figures(capsys, name, params, flops):
    # A ghostv3 network is counted in its fused (inference) form; tests/spaces/test_family.py
    # checks both forms against timm's own models.
    code, out, _ = run(capsys, "eval", "--reference", name, "--skip-accuracy", "--skip-latency", "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["params"], result["flops"]) == (params, flops)
    assert result["config_id"] == reference(name).id and result["config"]["block_types"][2] in ("ghostv2", "ghostv3")


def test_export_through_a_link_writes_its_target_and_keeps_the_link(capsys, fast_flags, tmp_path):
    assert run(capsys, "search", *fast_flags, "--trials", "1", "--study", "l", "--objectives", "flops,params")[0] == 0
    storage = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    target, link = tmp_path / "real.md", tmp_path / "front.md"
    target.write_text("old\n")
    link.symlink_to(target.name)
    code, out, err = run(capsys, "export", "--study", "l", "--storage", storage, "--out", str(link))
    assert code == 0, err
    assert link.is_symlink() and target.read_text().startswith("# Pareto front of study `l`")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["front.md", "real.md", "run"]  # no temporary left
