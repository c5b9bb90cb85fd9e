"""What the kernel grid adds to a latency model: a ``ghostnas profile`` file refitted on its own
timings with and without the grid feature, both scored on its held-out models.

The file keeps everything a refit needs: every timed unit's ratio, the training models' ids and
whole-model timings, the held-out models' configs and timings. The training configs are drawn
again from the space with the file's settings (checked against the ids it recorded), each unit's
features are computed again, and both predictors are fitted as ``profile`` fits them: with the
file's kernel grid (this reproduces the file's own held-out error: a self-check) and with an
empty grid, so the ``grouped_grid`` feature is 0 everywhere and the fit is format 4's features
on the same timings. Nothing is timed: differences are the features', not the machine's.

    .venv/bin/python bench/latency_model_refit.py bench/out/device.json [--space spaces/ghostnet.yaml]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators.latency_model import LatencyModel, config_units  # noqa: E402
from evaluators.profile import ProfileSettings, _fit_units, _fit_whole, _holdout_error, _sample  # noqa: E402
from spaces import GhostNetConfig, default_space_path, load_space  # noqa: E402


def refit(data: dict, *, kernels: dict, space_path: Path) -> dict:
    """The held-out error of ``data``'s timings refitted with ``kernels`` as the grid."""
    names = {f.name for f in dataclasses.fields(ProfileSettings)}
    settings = ProfileSettings(**{k: v for k, v in data["settings"].items() if k in names})
    train, _ = _sample(load_space(space_path), settings)
    if [c.id for c in train] != data["train_models"]:
        raise SystemExit(f"the training models drawn from {space_path} are not the file's: pass the space it was profiled on")
    # The correction starts as the identity, as in ``profile``: the units' sums are fitted raw.
    variant = {**copy.deepcopy(data), "kernels": kernels, "correction": {"slope": 1.0, "per_unit": 0.0}}
    model = LatencyModel(data=variant, sha256="", path="(refit)")
    units = {u.key: u for c in train for u, _ in config_units(c)}
    variant["fit"]["coef"] = _fit_units(model, [(u, data["units"][key]) for key, u in units.items()])
    reference_ms = data["reference_ms"]
    _fit_whole(model, train, [ms / reference_ms for ms in data["train_measured_ms"]])
    holdout = [GhostNetConfig.from_dict(row["config"]) for row in data["holdout"]]
    measured = [row["measured_ms"] / reference_ms for row in data["holdout"]]
    error, _ = _holdout_error(model, holdout, measured, reference_ms=reference_ms)
    return error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path, help="ghostnas profile files")
    parser.add_argument("--space", type=Path, default=default_space_path(), help="the space they were profiled on")
    args = parser.parse_args(argv)
    print("| file | backend | grid | predictor | held-out | within +-10 % | median | largest | Kendall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in args.profiles:
        data = json.loads(path.read_text())
        for label, kernels in (("kernel grid (format 5)", data["kernels"]), ("none (format 4's features)", {})):
            e = refit(data, kernels=kernels, space_path=args.space)
            print(
                f"| {path.name} | {data['settings']['backend']} | {label} | {e['mode']} | {e['models']} | {e['within_10pct']:.1%} "
                f"| {e['median_abs_rel']:.1%} | {e['max_abs_rel']:.1%} | {e['kendall']:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
