"""What comes out of a search: the trials as a DataFrame, the Pareto front, its hypervolume,
exported config tables and plots. Reads Optuna storage only (docs/STUDY_FORMAT.md); needs
neither training code nor the sampler."""

from __future__ import annotations

from results._export import EXPORT_FORMATS, export, read_exported, render
from results._format import (
    ACCURACY_RUNS_KEY,
    FORMAT_VERSION,
    OBJECTIVES,
    STAGE_SECONDS,
    UNMEASURED,
    StudyAttr,
    TrialAttr,
    is_feasible,
    non_dominated,
)
from results._frame import ResultsError, load_trials, open_study
from results._pareto import REFERENCE_POINT, hypervolume, hypervolume_history, normalisation_bounds, pareto_front
from results._select import Selection, select_model
from results._plots import (
    plot_hypervolume,
    plot_objectives_3d,
    plot_parallel_coordinates,
    plot_param_importances,
    plot_tradeoff,
    write_plots,
)
from results._signal import signal_note

__all__ = [
    "ACCURACY_RUNS_KEY",
    "EXPORT_FORMATS",
    "FORMAT_VERSION",
    "OBJECTIVES",
    "REFERENCE_POINT",
    "ResultsError",
    "STAGE_SECONDS",
    "Selection",
    "StudyAttr",
    "TrialAttr",
    "UNMEASURED",
    "export",
    "hypervolume",
    "hypervolume_history",
    "is_feasible",
    "load_trials",
    "non_dominated",
    "normalisation_bounds",
    "open_study",
    "pareto_front",
    "plot_hypervolume",
    "plot_objectives_3d",
    "plot_parallel_coordinates",
    "plot_param_importances",
    "plot_tradeoff",
    "read_exported",
    "render",
    "select_model",
    "signal_note",
    "write_plots",
]
