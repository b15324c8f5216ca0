"""Which runs identify L(N), L(D), L(N, D) and the [H] form ([K] sections 3-4, [H] eq. 2)."""

from __future__ import annotations

import pandas as pd

from lmscale.laws.study.frames import StudyFrames, count_distinct, rule_of
from lmscale.laws.study.results import NotEnough, StudyFits, enough, rule_text


def select_size_sweep(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N) ([K] eq. 1.1): Transformers trained near convergence.

    Runs of a ``converge`` group (early stopping on, a large budget) count as
    converged whatever their status; runs of other groups must pass
    ``selection.converged_runs`` (early stopped, or D >= 5e3 N^0.74), except
    ``data`` and ``isoflop`` groups, whose D is limited on purpose.
    """
    from lmscale.laws.selection import converged_runs

    runs = frames.results("transformer")
    if runs.empty:
        raise NotEnough("needs finished Transformer runs of 3 or more sizes (the study has none)")
    rule = rule_of(runs)
    declared, others = rule == "converge", ~rule.isin(["converge", "data", "isoflop"])
    parts, rules = [], []
    if declared.any():
        parts.append(runs[declared])
        rules.append(f"{int(declared.sum())} runs of 'converge' groups (early stopping on, large budget)")
    if others.any():
        chosen = converged_runs(runs[others])
        parts.append(chosen)
        rules.append("other groups except 'data' and 'isoflop' (their D is limited on purpose): "
                     + rule_text(chosen, "converged_runs"))
    if not parts:
        raise NotEnough("needs Transformers trained near convergence at 3 or more sizes (a 'converge' "
                        "group, or early-stopped runs); the study's Transformer runs are all in 'data' or "
                        "'isoflop' groups")
    pts = pd.concat(parts).sort_values("N")
    distinct = count_distinct(pts["N"]) if len(pts) else 0
    if distinct < 3:
        raise NotEnough(
            f"needs Transformers trained near convergence at 3 or more sizes (a 'converge' group, or "
            f"early-stopped runs); the study has {distinct} size(s)"
        )
    return pts, "; ".join(rules)


def select_data_sweep(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(D) ([K] eq. 1.2): the largest model at each dataset size, from ``data`` groups."""
    from lmscale.laws.selection import largest_model_per_data

    runs = frames.results("transformer")
    runs = runs[rule_of(runs) == "data"] if not runs.empty else runs
    if runs.empty:
        raise NotEnough("needs a 'data' group: a large Transformer trained on 3 or more dataset sizes "
                        "with early stopping (the study has none)")
    pts = largest_model_per_data(runs)
    if len(pts) < 3:
        raise NotEnough(f"needs 3 or more dataset sizes in 'data' groups (the study has {len(pts)})")
    return pts, "runs of 'data' groups; " + rule_text(pts, "largest_model_per_data")


def select_nd_grid(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N, D) ([K] eq. 1.5): every Transformer of the ``data`` groups (a grid of N and D)."""
    runs = frames.results("transformer")
    runs = runs[rule_of(runs) == "data"] if not runs.empty else runs
    n_sizes = count_distinct(runs["N"]) if len(runs) else 0
    d_sizes = count_distinct(runs["D"]) if len(runs) else 0
    if n_sizes < 2 or d_sizes < 2:
        raise NotEnough(f"needs 'data' groups covering 2 or more model sizes and 2 or more dataset sizes "
                        f"(the study has {n_sizes} sizes x {d_sizes} dataset sizes)")
    return enough(runs, "kaplan_nd", 6, "runs in the N x D grid"), \
        f"every Transformer run of the 'data' groups ({n_sizes} sizes x {d_sizes} dataset sizes)"


def select_parametric(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """[H] eq. 2: every finished Transformer run whose D was set by the study (not early stopping)."""
    runs = frames.results("transformer")
    runs = runs[rule_of(runs).isin(["data", "isoflop", "plain"])] if not runs.empty else runs
    n_sizes = count_distinct(runs["N"]) if len(runs) else 0
    d_sizes = count_distinct(runs["D"]) if len(runs) else 0
    if n_sizes < 3 or d_sizes < 3:
        raise NotEnough(f"needs runs of 'data', 'isoflop' or 'plain' groups at 3 or more model sizes and "
                        f"dataset sizes (the study has {n_sizes} sizes x {d_sizes} dataset sizes)")
    return enough(runs, "chinchilla", 8, "runs of varied N and D"), \
        f"every finished Transformer run of 'data', 'isoflop' and 'plain' groups ({len(runs)} runs)"
