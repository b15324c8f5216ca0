"""Which runs identify L(N), L(D), L(N, D) and the [H] form ([K] sections 3-4, [H] eq. 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lmscale.laws.io import at_batch
from lmscale.laws.study.frames import (
    StudyFrames,
    count_distinct,
    data_limited,
    peak_learning_rates,
    reference_batch,
    rule_of,
    tolerance_groups,
)
from lmscale.laws.study.results import NotEnough, StudyFits, enough, rule_text

#: A run that did not early-stop counts as converged for L(N) from this many tokens per parameter.
CONVERGED_TOKENS_PER_PARAM = 20.0


def select_size_sweep(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N) ([K] eq. 1.1): Transformers trained to convergence.

    A run of a ``converge`` group counts when it early-stopped on a plateau
    of its test loss or trained on at least ``CONVERGED_TOKENS_PER_PARAM``
    tokens per parameter; runs of other groups must pass
    ``selection.converged_runs`` (early stopped, or D >= 5e3 N^0.74), except
    ``data`` and ``isoflop`` groups, whose D is limited on purpose, and runs
    of a batch-size sweep away from the reference batch (trained to their
    own schedule, a constant rate in kaplan-cpu's; L(C) and the [H] form
    leave them out too).
    """
    from lmscale.laws.selection import converged_runs

    runs = frames.results("transformer")
    if runs.empty:
        raise NotEnough("needs finished Transformer runs of 3 or more sizes (the study has none)")
    rule = rule_of(runs)
    declared, others = rule == "converge", ~rule.isin(["converge", "data", "isoflop"])
    parts, rules = [], []
    if declared.any():
        conv = runs[declared]
        tokens = conv["tokens"] if "tokens" in conv else conv["D"]
        ok = data_limited(conv) | (tokens >= CONVERGED_TOKENS_PER_PARAM * conv["N"])
        parts.append(conv[ok])
        text = (f"{int(ok.sum())} runs of 'converge' groups that early-stopped on a plateau or trained on "
                f">= {CONVERGED_TOKENS_PER_PARAM:g} tokens per parameter")
        if (~ok).any():
            low = conv[~ok]
            text += (f" ({len(low)} left out, not converged: N = "
                     + ", ".join(f"{n:,.0f}" for n in low["N"]) + " ended at "
                     + ", ".join(f"{t / n:.1f}" for t, n in zip(tokens[~ok], low["N"])) + " tokens/param)")
        rules.append(text)
    if others.any():
        batch = reference_batch(frames)
        same_batch = at_batch(runs[others], batch, runs)
        chosen = converged_runs(same_batch) if len(same_batch) else same_batch
        parts.append(chosen)
        away = int(others.sum()) - len(same_batch)
        rules.append("other groups except 'data' and 'isoflop' (their D is limited on purpose)"
                     + (f", at the reference batch of {batch} tokens ({away} run(s) of a batch sweep at other "
                        "batch sizes left out)" if away else "") + ": "
                     + (rule_text(chosen, "converged_runs") if len(same_batch) else "none"))
    if not parts:
        raise NotEnough("needs Transformers trained near convergence at 3 or more sizes (a 'converge' "
                        "group, or early-stopped runs); the study's Transformer runs are all in 'data' or "
                        "'isoflop' groups")
    pts, tuned = best_learning_rate(pd.concat(parts).sort_values("N"), frames)
    if tuned:
        rules.append(tuned)
    distinct = count_distinct(pts["N"]) if len(pts) else 0
    if distinct < 3:
        raise NotEnough(
            f"needs Transformers trained to convergence at 3 or more sizes (a 'converge' group whose runs "
            f"early-stop or reach {CONVERGED_TOKENS_PER_PARAM:g} tokens per parameter); the study has "
            f"{distinct} size(s): " + "; ".join(rules)
        )
    return pts, "; ".join(rules)


def best_learning_rate(pts: pd.DataFrame, frames: StudyFrames) -> tuple[pd.DataFrame, str]:
    """At each size and budget trained at several peak learning rates, the runs of the rate with
    the lowest mean loss: L(N) is the loss a size reaches with its recipe tuned, and a rate too low for a
    size (a short run's best rate falls with N faster than [K] eq. D.1) bends L(N) where it is.
    Seeds at one rate stay together. Returns the kept runs and a sentence for the rule ('' when
    no size had a choice)."""
    peak = peak_learning_rates(frames)
    if pts.empty or peak.empty:
        return pts, ""
    rate = pts["run_id"].map(peak)
    if rate.isna().any():
        return pts, ""
    tokens = pts["tokens"] if "tokens" in pts else pts["D"]
    runs = frames.runs
    if not runs.empty and {"run_id", "budget_tokens"} <= set(runs.columns):  # early stopping ends a run short
        budget = pts["run_id"].map(pd.to_numeric(runs.set_index("run_id")["budget_tokens"], errors="coerce"))
        tokens = budget.fillna(tokens)
    key = pd.DataFrame({"size": list(zip(tolerance_groups(pts["N"]), tolerance_groups(tokens))),  # size, budget
                        "rate": np.round(np.log(rate.to_numpy(dtype=float)), 3),
                        "loss": pts["loss"].to_numpy(dtype=float)}, index=pts.index)
    mean = key.groupby(["size", "rate"])["loss"].mean().reset_index()
    if not mean.duplicated("size").any():
        return pts, ""
    best = mean.loc[mean.groupby("size")["loss"].idxmin(), ["size", "rate"]]
    keep = key.reset_index().merge(best, on=["size", "rate"])["index"]
    kept = pts.loc[sorted(keep)]
    choices = mean.groupby("size").size()
    tuned = int((choices > 1).sum())
    return kept, (f"at {tuned} size(s) trained at {int(choices.max())} learning rates, the runs of the rate "
                  f"with the lowest loss ({len(pts) - len(kept)} run(s) at the others left out)")


def _early_stopped_data_runs(frames: StudyFrames, what: str) -> tuple[pd.DataFrame, str]:
    """The 'data' groups' Transformer runs that early-stopped (their loss is limited by D)."""
    runs = frames.results("transformer")
    runs = runs[rule_of(runs) == "data"] if not runs.empty else runs
    if runs.empty:
        raise NotEnough(f"needs a 'data' group: {what} (the study has none)")
    stopped = data_limited(runs)
    note = (f"{int(stopped.sum())} of {len(runs)} 'data' runs early-stopped (test loss turned up: "
            "limited by D)")
    if (~stopped).any():
        note += (f"; {int((~stopped).sum())} left out: they finished their epochs still improving, so "
                 "their loss follows the tokens processed, not D (give them more epochs)")
    return runs[stopped], note


def select_data_sweep(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(D) ([K] eq. 1.2): the largest early-stopped model at each dataset size, from ``data`` groups.

    A run that used up its epochs while its test loss still fell is not
    data-limited (its loss reflects tokens processed): it is left out.
    """
    from lmscale.laws.selection import largest_model_per_data

    runs, note = _early_stopped_data_runs(
        frames, "a large Transformer early-stopped on 3 or more dataset sizes")
    pts = largest_model_per_data(runs) if not runs.empty else runs
    if len(pts) < 3:
        raise NotEnough(f"needs early-stopped runs at 3 or more dataset sizes in 'data' groups "
                        f"(the study has {len(pts)}; {note})")
    return pts, f"{note}; " + rule_text(pts, "largest_model_per_data")


def select_nd_grid(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """L(N, D) ([K] eq. 1.5): the early-stopped Transformers of the ``data`` groups (a grid of N and D)."""
    runs, note = _early_stopped_data_runs(frames, "2 or more model sizes x 2 or more dataset sizes")
    n_sizes = count_distinct(runs["N"]) if len(runs) else 0
    d_sizes = count_distinct(runs["D"]) if len(runs) else 0
    if n_sizes < 2 or d_sizes < 2:
        raise NotEnough(f"needs early-stopped 'data' runs covering 2 or more model sizes and 2 or more "
                        f"dataset sizes (the study has {n_sizes} sizes x {d_sizes} dataset sizes; {note})")
    return enough(runs, "kaplan_nd", 6, "early-stopped runs in the N x D grid"), \
        f"{note}: {n_sizes} sizes x {d_sizes} dataset sizes"


def select_parametric(frames: StudyFrames, fits: StudyFits) -> tuple[pd.DataFrame, str]:
    """[H] eq. 2: single-pass runs whose D the study set, at the reference batch size.

    'isoflop' and 'plain' groups (fixed budgets, no early stopping, no
    repeated data), at the batch size of most runs: the form has no term for
    the batch, which alone moves the loss at equal N and D. A group whose
    runs all sit at one N and one D (shape variants at fixed size, [K]
    figure 5; or seeds) is left out too: it says nothing of N or D, and the
    form has no term for the shape, which moves the loss at fixed N (by up to 9% in
    kaplan-cpu's shape group).
    """
    runs = frames.results("transformer")
    runs = runs[rule_of(runs).isin(["isoflop", "plain"])] if not runs.empty else runs
    one_point = fixed_size_groups(runs)
    runs = runs[~runs["group"].astype(str).isin(one_point)] if one_point else runs
    batch = reference_batch(frames)
    kept = at_batch(runs, batch, frames.results("transformer"))
    n_sizes = count_distinct(kept["N"]) if len(kept) else 0
    d_sizes = count_distinct(kept["D"]) if len(kept) else 0
    if n_sizes < 3 or d_sizes < 3:
        raise NotEnough(f"needs runs of 'isoflop' or 'plain' groups at the reference batch ({batch} tokens) "
                        f"at 3 or more model sizes and dataset sizes (the study has {n_sizes} sizes x "
                        f"{d_sizes} dataset sizes)")
    left = len(runs) - len(kept)
    fixed = (f"; group(s) {', '.join(repr(g) for g in one_point)} left out (every run at one N and D: "
             "shape or seed variants)" if one_point else "")
    return enough(kept, "chinchilla", 8, "runs of varied N and D"), \
        (f"every finished Transformer run of 'isoflop' and 'plain' groups at the reference batch of {batch} "
         f"tokens ({len(kept)} runs; {left} at other batch sizes left out{fixed})")


def fixed_size_groups(runs: pd.DataFrame) -> list[str]:
    """Groups of 2 or more runs that all share one N and one D (within 5%): variants at one size."""
    if runs.empty or "group" not in runs:
        return []
    return [group for group, g in runs.groupby(runs["group"].astype(str))
            if len(g) >= 2 and count_distinct(g["N"]) == 1 and count_distinct(g["D"]) == 1]
