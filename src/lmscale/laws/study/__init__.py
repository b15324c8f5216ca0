"""Fit every law a study's runs support: ``fit_study(store) -> StudyFits``.

The package follows the flow of one study:

* :mod:`~lmscale.laws.study.frames`: :class:`StudyFrames`, the study's
  results as DataFrames, and the filters shared by every selection;
* :mod:`~lmscale.laws.study.results`: :class:`StudyFits`, what fitting gives;
* one module per family of laws, each choosing the runs that identify its
  laws ([K]'s selection rules, made explicit): ``size_data`` (L(N), L(D),
  L(N, D), the [H] form), ``batch`` (B_crit(L), L(N, S_min)), ``compute``
  (L(C), L(C_min), the compute-optimal frontiers), ``context`` (transfer to
  other distributions, loss per context position);
* :mod:`~lmscale.laws.study.pipeline`: :func:`fit_study`, which runs them in order.
"""

from __future__ import annotations

from lmscale.laws.study.frames import (
    TABLES,
    StudyFrames,
    after_warmup,
    finished_only,
    transformer_curves,
)
from lmscale.laws.study.pipeline import STUDY_LAWS, collapsed_offset, fit_study, holdout_check
from lmscale.laws.study.results import HoldoutCheck, NotEnough, StudyFits

__all__ = [
    "STUDY_LAWS", "TABLES", "HoldoutCheck", "NotEnough", "StudyFits", "StudyFrames", "after_warmup",
    "collapsed_offset", "finished_only", "fit_study", "holdout_check", "transformer_curves",
]
