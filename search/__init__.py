"""How configs are chosen: the Optuna study, samplers, hard limits, early stopping, storage and
workers. The only package that imports Optuna's trial API; evaluators never import it."""

from __future__ import annotations

from search._confirm import ConfirmSettings, ConfirmSummary, confirm_study
from search._early_stop import EarlyStopping, Peer
from search._objectives import OBJECTIVES, Limits, SearchError, parse_count, parse_objectives
from search._proxy import ProxyContext, study_settings
from search._samplers import SAMPLERS, make_sampler
from search._search import SearchSummary, create_or_load_study, run_search
from search._settings import EVALUATION_FLAGS, SearchSettings, add_setting_flags
from search._stop import StopRequest
from search._storage import default_storage_url, mask_url, open_storage

__all__ = [
    "EVALUATION_FLAGS",
    "ConfirmSettings",
    "ConfirmSummary",
    "EarlyStopping",
    "Limits",
    "OBJECTIVES",
    "Peer",
    "ProxyContext",
    "SAMPLERS",
    "SearchError",
    "SearchSettings",
    "SearchSummary",
    "StopRequest",
    "add_setting_flags",
    "confirm_study",
    "create_or_load_study",
    "default_storage_url",
    "make_sampler",
    "mask_url",
    "open_storage",
    "parse_count",
    "parse_objectives",
    "run_search",
    "study_settings",
]
