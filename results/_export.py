"""Export a Pareto front as csv, md, json or py, and read the config-bearing formats back.

``json`` and ``py`` carry each member's full config (loadable with ``GhostNetConfig.from_dict``)
and its official ``{"cfgs": [...], "width": ...}`` table; ``csv`` and ``md`` are for people and
spreadsheets and hold scores and key fields only. ``py`` files hold plain literals, so they are
read back with ``ast.literal_eval``, never imported or executed.
"""

from __future__ import annotations

import ast
import io
import json
import math
import pprint
from pathlib import Path
from typing import Any

import pandas as pd

from spaces import ConfigError, GhostNetConfig, write_atomic
from results._format import OBJECTIVES
from results._frame import ResultsError

__all__ = ["EXPORT_FORMATS", "export", "read_exported", "render"]

EXPORT_FORMATS = ("csv", "md", "json", "py")

_KEY_FIELDS = ("width", "ratio", "dw_size", "depth")


def render(front: pd.DataFrame, *, fmt: str) -> str:
    """The text of an export of ``front`` (``pareto_front`` output) in format ``fmt``."""
    if fmt not in EXPORT_FORMATS:
        raise ResultsError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    return {"csv": _csv, "md": _markdown, "json": _json, "py": _python}[fmt](front)


def export(front: pd.DataFrame, *, fmt: str, path: str | Path) -> Path:
    """Write ``render(front, fmt=fmt)`` to ``path`` atomically; returns the path."""
    return write_atomic(path, render(front, fmt=fmt), error=ResultsError)


def read_exported(path: str | Path) -> list[GhostNetConfig]:
    """The configs in a ``json`` or ``py`` export, in front order.

    Also reads a single config file (``.json``/``.yaml``/``.yml``, our format or the official
    one), so that one reader serves every file ``cli.py eval --cfg`` may be given.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".md"):
        raise ResultsError(f"{path}: {suffix[1:]} exports hold no configs; export as json or py to evaluate them")
    if suffix in (".yaml", ".yml"):
        return [GhostNetConfig.load(path)]
    if suffix not in (".json", ".py"):
        raise ResultsError(f"{path}: cannot read configs from a {suffix or 'suffix-less'} file (expected .json, .py or .yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path} is not a text file (not UTF-8)") from None
    configs = _configs_from_json(text, path) if suffix == ".json" else _configs_from_python(text, path)
    if not configs:
        raise ResultsError(f"{path} holds no configs (was the front empty?)")
    return configs


# -- writers ------------------------------------------------------------------------------------


def _stage_columns(front: pd.DataFrame) -> list[str]:
    return [c for c in front.columns if c.startswith("s") and c.endswith(".depth")]


def _csv(front: pd.DataFrame) -> str:
    columns = ["number", "baseline", *OBJECTIVES, "accuracy_runs", "accuracy_sd", "config_id", *_KEY_FIELDS, *_stage_columns(front)]
    stream = io.StringIO()
    front[columns].to_csv(stream, index=False)
    return stream.getvalue()


def _markdown(front: pd.DataFrame) -> str:
    name = front.attrs.get("study_name", "?")
    objectives = front.attrs.get("objectives") or []
    described = ", ".join(f"{o} ({OBJECTIVES[o][:3]})" for o in objectives)
    limits = {k: v for k, v in (front.attrs.get("limits") or {}).items() if v is not None}
    lines = [
        f"# Pareto front of study `{name}`",
        "",
        f"{len(front)} feasible trial(s) on the front of {described or 'the study objectives'}; "
        f"limits: {', '.join(_limit(k, v) for k, v in limits.items()) or 'none'}. {_runs_note(front)}",
        "",
        *([f"> **Warning**: {front.attrs['signal']}.", ""] if front.attrs.get("signal") else []),
        "| trial | accuracy % | runs | latency ms | FLOPs M | params M | width | ratio | dw_size | depth | baseline | config |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in front.itertuples(index=False):
        cells = [
            str(row.number),
            _fmt(row.accuracy, 100, ".2f") + ("" if math.isnan(row.accuracy_sd) else f" ± {100 * row.accuracy_sd:.2f}"),
            _plain(row.accuracy_runs),
            _fmt(row.latency_ms, 1, ".2f"),
            _fmt(row.flops, 1e-6, ".1f"),
            _fmt(row.params, 1e-6, ".2f"),
            *(_plain(getattr(row, field)) for field in _KEY_FIELDS),
            _plain(row.baseline),
            "" if pd.isna(row.config_id) else f"`{row.config_id}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _limit(name: str, value: float) -> str:
    """``max_flops 1e+07`` as people read it: ``max_flops 10 M``, ``max_latency_ms 8 ms``."""
    return f"{name} {value:g} ms" if name == "max_latency_ms" else f"{name} {value / 1e6:g} M"


def _runs_note(front: pd.DataFrame) -> str:
    """How many training runs the accuracies rest on (``ghostnas confirm`` adds runs)."""
    runs = front["accuracy_runs"].dropna()
    confirmed = int((runs > 1).sum())
    if not len(runs) or not confirmed:
        return "Accuracies are single proxy runs: `ghostnas confirm` retrains the front with more seeds."
    counts = "-".join(str(n) for n in sorted({int(runs[runs > 1].min()), int(runs.max())}))
    if confirmed == len(runs):
        return f"Accuracies are means over {counts} training runs (`ghostnas confirm`)."
    return f"Accuracies of {confirmed} of {len(runs)} members are means over {counts} training runs; the rest are single runs."


def _fmt(value: float, scale: float, spec: str) -> str:
    return "n/a" if math.isnan(value) else format(value * scale, spec)


def _plain(value: Any) -> str:
    if pd.isna(value):
        return ""
    return str(value).replace("|", "\\|")  # a pipe would split the markdown cell


def _members(front: pd.DataFrame) -> list[dict[str, Any]]:
    members = []
    for row in front.itertuples(index=False):
        if not row.config:
            raise ResultsError(f"trial {row.number} has no config to export")
        config = GhostNetConfig.from_dict(row.config)
        reason = config.official_incompatibility()
        members.append({
            "trial": int(row.number),
            "baseline": _text(row.baseline),
            "scores": {name: _json_number(getattr(row, name)) for name in OBJECTIVES},
            "accuracy_runs": None if pd.isna(row.accuracy_runs) else int(row.accuracy_runs),
            "accuracy_sd": _json_number(row.accuracy_sd),
            "config_id": _text(row.config_id),
            "config": config.to_dict(),
            "official": config.to_official(strict=False),
            "official_compatible": reason is None,
            "official_incompatibility": reason,
            "timm_version": config.timm_version(),
            "timm_incompatibility": config.timm_incompatibility(),
            "feature_info": config.feature_taps(),
        })  # fmt: skip
    return members


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _text(value: Any) -> str | None:
    return None if pd.isna(value) else str(value)


def _json(front: pd.DataFrame) -> str:
    return json.dumps(_members(front), indent=2) + "\n"


def _python(front: pd.DataFrame) -> str:
    name = front.attrs.get("study_name", "?")
    lines = [
        f"# Pareto front of GhostNAS study {name!r}, objectives {front.attrs.get('objectives')}.",
        "#",
        "# Official GhostNet code: GhostNet(cfgs_N, width=width_N) for trial N; timm's class:",
        "# timm.models.ghostnet.GhostNet(cfgs_N, width=width_N, version=...) with the version each",
        "# member names. Members marked 'not official-compatible' / 'not timm-compatible' build a",
        "# different network there; build them exactly with this project:",
        "# spaces.build_model(spaces.GhostNetConfig.from_dict(CONFIGS[N])). Feature maps are what",
        "# spaces.build_model(..., features_only=True) returns, for sizing a detection neck.",
        "# Plain literals only: read back with results.read_exported(path), never import it.",
        "",
    ]
    configs = {}
    for member in _members(front):
        n = member["trial"]
        scores = ", ".join(f"{k} {v:g}" for k, v in member["scores"].items() if v is not None)
        baseline = f" (baseline {member['baseline']!r})" if member["baseline"] else ""
        lines.append(f"# trial {n}{baseline}: {scores}")
        if not member["official_compatible"]:
            lines.append(f"# not official-compatible: {member['official_incompatibility']}")
        if member["timm_version"]:
            lines.append(f"# timm: GhostNet(cfgs_{n}, width=width_{n}, version={member['timm_version']!r})")
        else:
            lines.append(f"# not timm-compatible: {member['timm_incompatibility']}")
        taps = ", ".join(f"{t['num_chs']} ch at stride {t['reduction']}" for t in member["feature_info"])
        lines.append(f"# feature maps: {taps}")
        lines.append(f"cfgs_{n} = [")
        lines += [f"    {stage!r}," for stage in member["official"]["cfgs"]]
        lines += ["]", f"width_{n} = {member['official']['width']!r}", ""]
        configs[n] = member["config"]
    lines.append("CONFIGS = " + pprint.pformat(configs, sort_dicts=False, width=100))
    return "\n".join(lines) + "\n"


# -- readers ------------------------------------------------------------------------------------


def _configs_from_json(text: str, path: Path) -> list[GhostNetConfig]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:  # a hostile file nested 100,000 levels deep
        raise ResultsError(f"{path} is nested too deeply to be a config or an export (a hostile or broken file)") from None
    if isinstance(data, dict):  # a single config file rather than an export
        return [GhostNetConfig.from_dict(data)]
    if not isinstance(data, list) or not all(isinstance(m, dict) and "config" in m for m in data):
        raise ResultsError(f"{path} is neither a config nor a GhostNAS json export (a list of members with 'config')")
    return [_config(member["config"], path, i) for i, member in enumerate(data)]


def _configs_from_python(text: str, path: Path) -> list[GhostNetConfig]:
    try:
        module = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise ResultsError(f"{path} is not valid Python: {exc.msg} (line {exc.lineno})") from None
    for node in module.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["CONFIGS"]:
            try:
                configs = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                raise ResultsError(f"{path}: CONFIGS must be a plain literal (line {node.lineno})") from None
            if not isinstance(configs, dict):
                raise ResultsError(f"{path}: CONFIGS must be a dict of configs")
            return [_config(config, path, key) for key, config in configs.items()]
    raise ResultsError(f"{path} defines no CONFIGS: it is not a GhostNAS py export")


def _config(data: Any, path: Path, where: Any) -> GhostNetConfig:
    try:
        return GhostNetConfig.from_dict(data)
    except ConfigError as exc:
        raise ResultsError(f"{path}: config {where!r}: {exc}") from None
