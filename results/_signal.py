"""Does the accuracy objective carry signal? A check on the trained models of a study.

A study whose accuracies the ridge predicted (``search --accuracy-estimator ridge``, the CIFAR-10
default) trained nothing: the note says so, and how large a margin its error hides.

At a small proxy budget every model can score chance (0.1000 on ten classes): the front is then
ranked on the other objectives alone, and nothing in it says so. The check warns when every
trained model's accuracy lies within ``Z`` binomial standard deviations of chance (``1 /
classes``, on a validation split of the study's size), or when all the accuracies are equal.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["Z", "signal_note"]

# Standard deviations of binomial noise around chance within which a model counts as chance-level.
Z = 3.0
_KNOBS = "raise the proxy budget (--subset, --epochs, --input-size)"


def signal_note(frame: pd.DataFrame) -> str | None:
    """One sentence saying the trained models' accuracies are indistinguishable from chance or all
    equal, with the figures and the budget knobs, or that they are predictions; None when the
    accuracies carry signal.

    Trained models: feasible COMPLETE trials with an accuracy (a confirmed trial counts with its
    mean). Chance and the validation size come from the study's ``proxy`` record
    (docs/STUDY_FORMAT.md); without one only the all-equal test applies.
    """
    accuracy = frame.loc[frame["feasible"].astype(bool), "accuracy"].dropna()
    n = len(accuracy)
    if n == 0:
        return None
    low, high = float(accuracy.min()), float(accuracy.max())
    proxy = frame.attrs.get("proxy") or {}
    if proxy.get("accuracy_estimator"):
        # Run 4 (docs/BENCHMARKS.md, "Search quality"): both margins the ridge predicted over a
        # baseline (+0.2 and +1.9 points) were losses of 1.3-1.8 points when trained.
        return (
            f"accuracy is predicted by the {proxy['accuracy_estimator'].get('name', 'fitted')} accuracy model, not trained: "
            f"margins of a few points are within its error; train the members you consider (ghostnas train --member N)"
        )
    classes = len(proxy.get("classes") or [])
    chance = 1.0 / classes if classes > 1 else None
    chance_text = f"chance is {chance:.1%} for {classes} classes" if chance else "chance level unknown: the study has no proxy record"
    if n >= 2 and math.isclose(low, high, abs_tol=1e-9):
        return (
            f"accuracy carries no signal: all {n} trained models scored {low:.2%} ({chance_text}), so the front "
            f"ranks them on the other objectives alone; {_KNOBS}"
        )
    val = _validation_size(proxy)
    if chance is None or not val:
        return None
    band = Z * math.sqrt(chance * (1 - chance) / val)
    if all(abs(a - chance) <= band for a in accuracy):
        spread = f"{low:.2%}" if n == 1 else f"{low:.2%} to {high:.2%}"
        return (
            f"accuracy is indistinguishable from chance: the {n} trained model(s) scored {spread}, within "
            f"{Z:g} sd ({band:.1%}) of chance, {chance:.1%} for {classes} classes on {val} validation images; {_KNOBS}"
        )
    return None


def _validation_size(proxy: dict) -> int:
    """About how many validation images the proxy split holds (``evaluators.data.proxy_split``)."""
    total = proxy.get("subset") or proxy.get("images")
    fraction = proxy.get("val_fraction")
    if not isinstance(total, int) or not isinstance(fraction, float):
        return 0
    return max(0, round(total * fraction))
