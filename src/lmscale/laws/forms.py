"""Every law form of [K] and [H], written once.

A :class:`LawForm` knows its named parameters, its inputs and their units,
the paper's equation, and how to evaluate itself two ways:

* ``predict(params, **inputs)`` in natural units (what users call), and
* ``log_predict(theta, inputs)`` in the fitting parameterisation ``theta``
  (log-scales and raw exponents), vectorised over leading axes of ``theta``
  so a grid of starting points is evaluated in one call, with the analytic
  Jacobian ``d log f / d theta`` for L-BFGS.

Units: losses in nats/token, N non-embedding parameters, D tokens,
C FLOPs (never PF-days inside the code), S optimizer steps, B tokens.
Pure numpy: no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from lmscale.errors import LmscaleError

Array = np.ndarray


def _lse2(u: Array, v: Array) -> tuple[Array, Array]:
    """log(e^u + e^v) and the weight e^u / (e^u + e^v), stably."""
    m = np.maximum(u, v)
    eu, ev = np.exp(u - m), np.exp(v - m)
    total = eu + ev
    return m + np.log(total), eu / total


def _lse3(u: Array, v: Array, w: Array) -> tuple[Array, Array, Array, Array]:
    """log(e^u + e^v + e^w) and the three softmax weights, stably."""
    m = np.maximum(np.maximum(u, v), w)
    eu, ev, ew = np.exp(u - m), np.exp(v - m), np.exp(w - m)
    total = eu + ev + ew
    return m + np.log(total), eu / total, ev / total, ew / total


@dataclass(frozen=True)
class LawForm:
    """A parametric law ``output = f(inputs; params)``.

    Attributes:
        name: registry key (``lmscale fit --law NAME``).
        title: human name, e.g. ``"L(N)"``.
        equation: where the form is written in the papers.
        params: natural parameter names, in order.
        inputs: input column names (``N``, ``D``, ``C``, ``S``, ``L``, ...).
        output: output column name (``loss`` for losses, ``B`` for B_crit).
        units: unit of every input, output and parameter.
        theta_names: names of the fitting parameters (log-scales, exponents).
        grid: starting values per theta component for the vectorised grid.
        formula: the law written out.
    """

    name: str
    title: str
    equation: str
    params: tuple[str, ...]
    inputs: tuple[str, ...]
    output: str
    units: Mapping[str, str]
    theta_names: tuple[str, ...]
    grid: tuple[tuple[float, ...], ...]
    formula: str
    fittable: bool = field(default=True)

    # -- to implement per form ---------------------------------------------------
    def log_predict(self, theta: Array, X: Mapping[str, Array], jac: bool = False):
        """log of the output; theta has shape (..., k), inputs shape (n,).

        Returns ``f`` of shape (..., n), and with ``jac=True`` also the
        Jacobian of shape (..., n, k).
        """
        raise NotImplementedError

    def to_theta(self, params: Mapping[str, float]) -> Array:
        raise NotImplementedError

    def from_theta(self, theta: Array) -> dict[str, float]:
        """Natural parameters; a runaway log-scale gives inf (callers check finiteness)."""
        with np.errstate(over="ignore"):
            return self._from_theta(np.asarray(theta, dtype=float))

    def _from_theta(self, theta: Array) -> dict[str, float]:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------
    def predict(self, params: Mapping[str, float], **inputs: object) -> Array | float:
        """Evaluate in natural units, e.g. ``form.predict(p, N=1e9, D=2e10)``."""
        missing = [x for x in self.inputs if x not in inputs]
        if missing:
            raise LmscaleError(f"law {self.name} needs input(s) {', '.join(missing)}; got {', '.join(inputs) or 'none'}")
        self.check_params(params)
        arrays = {x: np.asarray(inputs[x], dtype=float) for x in self.inputs}
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
        flat = {x: np.broadcast_to(a, shape).ravel() for x, a in arrays.items()}
        out = np.exp(self.log_predict(self.to_theta(params), flat)).reshape(shape)
        return float(out) if out.ndim == 0 else out

    def check_params(self, params: Mapping[str, float]) -> None:
        missing = [p for p in self.params if p not in params]
        if missing:
            raise LmscaleError(f"law {self.name} needs parameter(s) {', '.join(missing)}")

    def theta_grid(self) -> Array:
        """All combinations of the grid values, shape (n_starts, k)."""
        mesh = np.meshgrid(*self.grid, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)


# ---------------------------------------------------------------------------
# Pure power law  y = (X_c / X)^alpha        [K] eqs. 1.1, 1.2, 1.3
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLaw(LawForm):
    """``y = (X_c / X)^alpha``; theta = (log X_c, alpha)."""

    def log_predict(self, theta, X, jac=False):
        x = np.log(X[self.inputs[0]])
        log_c, alpha = theta[..., 0:1], theta[..., 1:2]
        d = log_c - x
        f = alpha * d
        if not jac:
            return f
        J = np.stack([np.broadcast_to(alpha, f.shape), d * np.ones_like(alpha)], axis=-1)
        return f, J

    def to_theta(self, params):
        scale, alpha = self.params
        return np.array([np.log(params[scale]), params[alpha]], dtype=float)

    def _from_theta(self, theta):
        scale, alpha = self.params
        return {scale: float(np.exp(theta[0])), alpha: float(theta[1])}


def _power_law(name, title, equation, x, scale, alpha, units, log_grid) -> PowerLaw:
    return PowerLaw(
        name=name, title=title, equation=equation, params=(scale, alpha), inputs=(x,),
        output="loss", units=units, theta_names=(f"log_{scale}", alpha),
        grid=(tuple(log_grid), (0.02, 0.05, 0.1, 0.2, 0.4)),
        formula=f"L = ({scale} / {x})^{alpha}",
    )


# ---------------------------------------------------------------------------
# Power law with an irreducible term  y = E + (X_0 / X)^alpha
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OffsetPowerLaw(LawForm):
    """``y = E + (X_0 / X)^alpha``; theta = (log E, log X_0, alpha).

    Used for a single variable with an irreducible loss, and for the loss per
    context position L(t) of [K] section 8 / figure 20.
    """

    def log_predict(self, theta, X, jac=False):
        x = np.log(X[self.inputs[0]])
        e, log_x0, alpha = theta[..., 0:1], theta[..., 1:2], theta[..., 2:3]
        d = log_x0 - x
        f, w_e = _lse2(e, alpha * d)
        if not jac:
            return f
        w_p = 1.0 - w_e
        J = np.stack([w_e, w_p * alpha, w_p * d], axis=-1)
        return f, J

    def to_theta(self, params):
        e_name, x0, alpha = self.params
        return np.array([np.log(params[e_name]), np.log(params[x0]), params[alpha]], dtype=float)

    def _from_theta(self, theta):
        e_name, x0, alpha = self.params
        return {e_name: float(np.exp(theta[0])), x0: float(np.exp(theta[1])), alpha: float(theta[2])}


# ---------------------------------------------------------------------------
# [H] eq. 2: L = E + A / N^alpha + B / D^beta
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChinchillaLaw(LawForm):
    """[H] eq. 2; theta = (a, b, e, alpha, beta) with A = e^a, B = e^b, E = e^e.

    log L = LSE(a - alpha log N, b - beta log D, e)   ([H] eq. 11)
    """

    def log_predict(self, theta, X, jac=False):
        ln, ld = np.log(X["N"]), np.log(X["D"])
        a, b, e, alpha, beta = (theta[..., i:i + 1] for i in range(5))
        f, wa, wb, we = _lse3(a - alpha * ln, b - beta * ld, np.broadcast_to(e, np.broadcast_shapes(e.shape, ln.shape)))
        if not jac:
            return f
        J = np.stack([wa, wb, we, -wa * ln, -wb * ld], axis=-1)
        return f, J

    def to_theta(self, params):
        return np.array(
            [np.log(params["A"]), np.log(params["B"]), np.log(params["E"]), params["alpha"], params["beta"]],
            dtype=float,
        )

    def _from_theta(self, theta):
        return {
            "E": float(np.exp(theta[2])), "A": float(np.exp(theta[0])), "B": float(np.exp(theta[1])),
            "alpha": float(theta[3]), "beta": float(theta[4]),
        }


@dataclass(frozen=True)
class TiedChinchillaLaw(LawForm):
    """[H] eq. 2 with alpha = beta (Gadre et al. 2024); theta = (a, b, e, alpha).

    Gadre et al. write it as L(C, M) = E + (a M^eta + b M^-eta) C^-eta with
    C = 6 N D, M = D / N, eta = alpha / 2, a = A 6^eta, b = B 6^eta
    (:func:`overtraining_params`). Evaluated by the [H] form itself.
    """

    def log_predict(self, theta, X, jac=False):
        theta = np.asarray(theta, dtype=float)
        full = np.concatenate([theta, theta[..., 3:4]], axis=-1)
        if not jac:
            return CHINCHILLA.log_predict(full, X)
        f, J = CHINCHILLA.log_predict(full, X, jac=True)
        return f, np.concatenate([J[..., :3], J[..., 3:4] + J[..., 4:5]], axis=-1)

    def to_theta(self, params):
        return np.array([np.log(params["A"]), np.log(params["B"]), np.log(params["E"]), params["alpha"]],
                        dtype=float)

    def _from_theta(self, theta):
        return {"E": float(np.exp(theta[2])), "A": float(np.exp(theta[0])), "B": float(np.exp(theta[1])),
                "alpha": float(theta[3])}


# ---------------------------------------------------------------------------
# [K] eq. 1.5 / 4.1: L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KaplanNDLaw(LawForm):
    """[K] eq. 1.5; theta = (log N_c, log D_c, alpha_N, alpha_D).

    log L = alpha_D * LSE((alpha_N/alpha_D)(log N_c - log N), log D_c - log D).
    Not a sum of two power laws.
    """

    def log_predict(self, theta, X, jac=False):
        ln, ld = np.log(X["N"]), np.log(X["D"])
        lnc, ldc, an, ad = (theta[..., i:i + 1] for i in range(4))
        dn = lnc - ln
        u = (an / ad) * dn
        v = ldc - ld
        s, wu = _lse2(u, v)
        f = ad * s
        if not jac:
            return f
        wv = 1.0 - wu
        J = np.stack([an * wu, ad * wv, wu * dn, s - wu * u], axis=-1)
        return f, J

    def to_theta(self, params):
        return np.array(
            [np.log(params["N_c"]), np.log(params["D_c"]), params["alpha_N"], params["alpha_D"]], dtype=float
        )

    def _from_theta(self, theta):
        return {
            "N_c": float(np.exp(theta[0])), "D_c": float(np.exp(theta[1])),
            "alpha_N": float(theta[2]), "alpha_D": float(theta[3]),
        }


# ---------------------------------------------------------------------------
# [K] eq. 1.6 / 5.6: L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KaplanNSLaw(LawForm):
    """[K] eq. 1.6; theta = (log N_c, log S_c, alpha_N, alpha_S); input S is S_min."""

    def log_predict(self, theta, X, jac=False):
        ln, ls = np.log(X["N"]), np.log(X["S"])
        lnc, lsc, an, a_s = (theta[..., i:i + 1] for i in range(4))
        dn, ds = lnc - ln, lsc - ls
        f, wn = _lse2(an * dn, a_s * ds)
        if not jac:
            return f
        ws = 1.0 - wn
        J = np.stack([wn * an, ws * a_s, wn * dn, ws * ds], axis=-1)
        return f, J

    def to_theta(self, params):
        return np.array(
            [np.log(params["N_c"]), np.log(params["S_c"]), params["alpha_N"], params["alpha_S"]], dtype=float
        )

    def _from_theta(self, theta):
        return {
            "N_c": float(np.exp(theta[0])), "S_c": float(np.exp(theta[1])),
            "alpha_N": float(theta[2]), "alpha_S": float(theta[3]),
        }


# ---------------------------------------------------------------------------
# [K] eq. 1.4 / 5.3: B_crit(L) = B_* / L^(1/alpha_B)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CriticalBatchLaw(LawForm):
    """[K] eq. 5.3; theta = (log B_*, alpha_B); input L (nats), output B (tokens)."""

    def log_predict(self, theta, X, jac=False):
        ll = np.log(X["L"])
        lb, ab = theta[..., 0:1], theta[..., 1:2]
        f = lb - ll / ab
        if not jac:
            return f
        J = np.stack([np.ones_like(f), ll / ab**2 * np.ones_like(f)], axis=-1)
        return f, J

    def to_theta(self, params):
        return np.array([np.log(params["B_star"]), params["alpha_B"]], dtype=float)

    def _from_theta(self, theta):
        return {"B_star": float(np.exp(theta[0])), "alpha_B": float(theta[1])}


# ---------------------------------------------------------------------------
# Generalization ([K] section 3.2.2): L_other = slope * L_train + offset
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearTransferLaw(LawForm):
    """Loss on another distribution as a linear map of the training loss.

    theta = (slope, offset); log-residuals like every other law.
    """

    def log_predict(self, theta, X, jac=False):
        lt = X["L_train"]
        k, c = theta[..., 0:1], theta[..., 1:2]
        y = np.maximum(k * lt + c, 1e-12)
        f = np.log(y)
        if not jac:
            return f
        J = np.stack([lt / y, 1.0 / y], axis=-1)
        return f, J

    def to_theta(self, params):
        return np.array([params["slope"], params["offset"]], dtype=float)

    def _from_theta(self, theta):
        return {"slope": float(theta[0]), "offset": float(theta[1])}


# ---------------------------------------------------------------------------
# Overfitting ([K] eq. 4.3): delta_L(N, D) = L(N, D) / L(N, inf) - 1
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OverfittingLaw(LawForm):
    """[K] eq. 4.3 with the parameters of L(N, D); derived, not fitted directly.

    delta_L = [1 + (N/N_c)^(alpha_N/alpha_D) * D_c/D]^alpha_D - 1.
    ``log_predict`` returns log(1 + delta_L), so ``predict`` gives 1 + delta_L;
    use :func:`overfitting` for delta_L itself.
    """

    def log_predict(self, theta, X, jac=False):
        if jac:
            raise LmscaleError("delta_L is derived from an L(N, D) fit (law kaplan_nd), not fitted itself")
        ln, ld = np.log(X["N"]), np.log(X["D"])
        lnc, ldc, an, ad = (theta[..., i:i + 1] for i in range(4))
        r = (an / ad) * (ln - lnc) + ldc - ld
        return ad * np.logaddexp(0.0, r)  # log(1 + e^r) without overflow for r > 709

    to_theta = KaplanNDLaw.to_theta
    _from_theta = KaplanNDLaw._from_theta


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

_LOSS = "nats/token"
_LOG_SCALE_GRID = (10.0, 20.0, 30.0, 40.0)  # e^10 ~ 2e4 ... e^40 ~ 2e17

KAPLAN_N = _power_law(
    "kaplan_n", "L(N)", "[K] eq. 1.1", "N", "N_c", "alpha_N",
    {"N": "non-embedding parameters", "N_c": "non-embedding parameters", "loss": _LOSS}, _LOG_SCALE_GRID,
)
KAPLAN_D = _power_law(
    "kaplan_d", "L(D)", "[K] eq. 1.2", "D", "D_c", "alpha_D",
    {"D": "tokens", "D_c": "tokens", "loss": _LOSS}, _LOG_SCALE_GRID,
)
KAPLAN_C = _power_law(
    "kaplan_c", "L(C) at fixed batch", "[K] figure 13, table 5", "C", "C_c", "alpha_C",
    {"C": "FLOPs", "C_c": "FLOPs", "loss": _LOSS}, (40.0, 50.0, 60.0, 70.0, 80.0),
)
KAPLAN_CMIN = _power_law(
    "kaplan_cmin", "L(C_min)", "[K] eq. 1.3", "C_min", "C_c_min", "alpha_C_min",
    {"C_min": "FLOPs (compute at a batch far below critical, [K] eq. 5.5)", "C_c_min": "FLOPs", "loss": _LOSS},
    (40.0, 50.0, 60.0, 70.0, 80.0),
)
KAPLAN_ND = KaplanNDLaw(
    name="kaplan_nd", title="L(N, D)", equation="[K] eq. 1.5 / 4.1",
    params=("N_c", "D_c", "alpha_N", "alpha_D"), inputs=("N", "D"), output="loss",
    units={"N": "non-embedding parameters", "D": "tokens", "N_c": "parameters", "D_c": "tokens", "loss": _LOSS},
    theta_names=("log_N_c", "log_D_c", "alpha_N", "alpha_D"),
    grid=(_LOG_SCALE_GRID, _LOG_SCALE_GRID, (0.05, 0.1, 0.3), (0.05, 0.1, 0.3)),
    formula="L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D",
)
KAPLAN_NS = KaplanNSLaw(
    name="kaplan_ns", title="L(N, S_min)", equation="[K] eq. 1.6 / 5.6",
    params=("N_c", "S_c", "alpha_N", "alpha_S"), inputs=("N", "S"), output="loss",
    units={"N": "non-embedding parameters", "S": "steps S_min ([K] eq. 5.4)", "N_c": "parameters",
           "S_c": "steps", "loss": _LOSS},
    theta_names=("log_N_c", "log_S_c", "alpha_N", "alpha_S"),
    grid=(_LOG_SCALE_GRID, (2.0, 5.0, 8.0, 12.0), (0.05, 0.1, 0.3), (0.3, 0.7, 1.2)),
    formula="L = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S",
)
BCRIT = CriticalBatchLaw(
    name="bcrit", title="B_crit(L)", equation="[K] eq. 1.4 / 5.3",
    params=("B_star", "alpha_B"), inputs=("L",), output="B",
    units={"L": _LOSS, "B": "tokens", "B_star": "tokens"},
    theta_names=("log_B_star", "alpha_B"),
    grid=((5.0, 10.0, 15.0, 20.0), (0.1, 0.2, 0.4, 0.8)),
    formula="B_crit = B_star / L^(1/alpha_B)",
)
CHINCHILLA = ChinchillaLaw(
    name="chinchilla", title="L(N, D), [H] form", equation="[H] eq. 2 (fit: eq. 11)",
    params=("E", "A", "B", "alpha", "beta"), inputs=("N", "D"), output="loss",
    units={"N": "parameters", "D": "tokens", "E": _LOSS, "A": "nats/token * params^alpha",
           "B": "nats/token * tokens^beta", "loss": _LOSS},
    theta_names=("a", "b", "e", "alpha", "beta"),
    # [H] eq. 11 / appendix D.2: a, b in {0, 5, ..., 25}, e in {-1, -.5, ..., 1},
    # alpha, beta in {0, 0.5, ..., 2}.
    grid=(
        (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
        (-1.0, -0.5, 0.0, 0.5, 1.0), (0.0, 0.5, 1.0, 1.5, 2.0), (0.0, 0.5, 1.0, 1.5, 2.0),
    ),
    formula="L = E + A/N^alpha + B/D^beta",
)
CHINCHILLA_TIED = TiedChinchillaLaw(
    name="chinchilla_tied", title="L(N, D), [H] form, alpha = beta",
    equation="Gadre et al. 2024 eq. 4 ([H] eq. 2 with tied exponents)",
    params=("E", "A", "B", "alpha"), inputs=("N", "D"), output="loss",
    units={"N": "parameters", "D": "tokens", "E": _LOSS, "A": "nats/token * params^alpha",
           "B": "nats/token * tokens^alpha", "loss": _LOSS},
    theta_names=("a", "b", "e", "alpha"),
    grid=CHINCHILLA.grid[:4],
    formula="L = E + A/N^alpha + B/D^alpha",
)
POWER_OFFSET = OffsetPowerLaw(
    name="power_offset", title="L(X) with irreducible loss", equation="E + (X_0/X)^alpha",
    params=("E", "X_0", "alpha"), inputs=("X",), output="loss",
    units={"X": "any positive quantity", "X_0": "same as X", "E": _LOSS, "loss": _LOSS},
    theta_names=("log_E", "log_X_0", "alpha"),
    grid=((-1.0, 0.0, 0.5, 1.0), (0.0, 5.0, 10.0, 20.0, 30.0), (0.05, 0.2, 0.5, 1.0)),
    formula="L = E + (X_0/X)^alpha",
)
POSITION = OffsetPowerLaw(
    name="position", title="L(t) per context position", equation="[K] section 8 / figure 20",
    params=("L_inf", "t_0", "alpha_t"), inputs=("t",), output="loss",
    units={"t": "context position (1-based)", "t_0": "positions", "L_inf": _LOSS, "loss": _LOSS},
    theta_names=("log_L_inf", "log_t_0", "alpha_t"),
    grid=((-1.0, 0.0, 0.5, 1.0, 1.5), (-2.0, 0.0, 2.0, 5.0), (0.1, 0.3, 0.6, 1.0)),
    formula="L(t) = L_inf + (t_0/t)^alpha_t",
)
TRANSFER = LinearTransferLaw(
    name="transfer", title="L_other(L_train)", equation="[K] section 3.2.2 / figure 8",
    params=("slope", "offset"), inputs=("L_train",), output="loss",
    units={"L_train": _LOSS, "loss": f"{_LOSS} on the other distribution", "offset": _LOSS, "slope": "1"},
    theta_names=("slope", "offset"),
    grid=((0.5, 1.0, 1.5), (-1.0, 0.0, 1.0)),
    formula="L_other = slope * L_train + offset",
)
OVERFITTING = OverfittingLaw(
    name="overfitting", title="1 + delta_L(N, D)", equation="[K] eq. 4.3",
    params=("N_c", "D_c", "alpha_N", "alpha_D"), inputs=("N", "D"), output="loss_ratio",
    units={"N": "non-embedding parameters", "D": "tokens", "loss_ratio": "L(N, D) / L(N, inf)"},
    theta_names=("log_N_c", "log_D_c", "alpha_N", "alpha_D"),
    grid=(), formula="delta_L = [1 + (N/N_c)^(alpha_N/alpha_D) D_c/D]^alpha_D - 1", fittable=False,
)

FORMS: dict[str, LawForm] = {
    f.name: f
    for f in (KAPLAN_N, KAPLAN_D, KAPLAN_C, KAPLAN_CMIN, KAPLAN_ND, KAPLAN_NS, BCRIT, CHINCHILLA,
              CHINCHILLA_TIED, POWER_OFFSET, POSITION, TRANSFER, OVERFITTING)
}


def register_form(form: LawForm) -> LawForm:
    """Add a law form to the registry (used by forms defined in other modules)."""
    FORMS[form.name] = form
    return form


def get_form(name: str) -> LawForm:
    """The law form called ``name``; the error lists the known ones."""
    try:
        return FORMS[name]
    except KeyError:
        raise LmscaleError(f"unknown law {name!r}; known laws: {', '.join(sorted(FORMS))}") from None


# ---------------------------------------------------------------------------
# Derived quantities: one function per formula
# ---------------------------------------------------------------------------


def chinchilla_params(law: str, params: Mapping[str, float]) -> dict[str, float]:
    """The [H] parameters (E, A, B, alpha, beta) of a ``chinchilla`` or ``chinchilla_tied`` law."""
    if law == "chinchilla_tied":
        return {**{k: float(params[k]) for k in ("E", "A", "B", "alpha")}, "beta": float(params["alpha"])}
    return {k: float(params[k]) for k in ("E", "A", "B", "alpha", "beta")}


def overtraining_params(params: Mapping[str, float]) -> dict[str, float]:
    """Gadre et al. 2024's (E, a, b, eta) of L = E + (a M^eta + b M^-eta) C^-eta, M = D/N, C = 6ND."""
    eta = float(params["alpha"]) / 2.0
    return {"E": float(params["E"]), "a": float(params["A"]) * 6.0**eta, "b": float(params["B"]) * 6.0**eta,
            "eta": eta}


def overfitting(params: Mapping[str, float], N, D):
    """delta_L(N, D) of [K] eq. 4.3 from L(N, D) parameters."""
    return np.asarray(OVERFITTING.predict(params, N=N, D=D)) - 1.0


def overfitting_data_rule(N, coefficient: float = 5e3, exponent: float = 0.74):
    """Tokens needed to keep delta_L below ~0.02: D >= 5e3 N^0.74 ([K] eq. 4.4)."""
    return coefficient * np.asarray(N, dtype=float) ** exponent


def critical_batch(params: Mapping[str, float], L):
    """B_crit(L) = B_* / L^(1/alpha_B) in tokens ([K] eq. 5.3)."""
    return BCRIT.predict(params, L=L)


def min_steps(S, B, B_crit):
    """S_min = S / (1 + B_crit / B): fewest steps to reach the same loss ([K] eq. 5.4)."""
    return np.asarray(S, dtype=float) / (1.0 + np.asarray(B_crit, dtype=float) / np.asarray(B, dtype=float))


def min_examples(E, B, B_crit):
    """E_min = E / (1 + B / B_crit): fewest tokens to reach the same loss ([K] eq. 5.5)."""
    return np.asarray(E, dtype=float) / (1.0 + np.asarray(B, dtype=float) / np.asarray(B_crit, dtype=float))


def min_compute(C, B, B_crit):
    """C_min = C / (1 + B / B_crit) = 6 N E_min ([K] eq. 5.5, applied to compute)."""
    return min_examples(C, B, B_crit)


def predicted_alpha_c_min(alpha_N: float, alpha_B: float, alpha_S: float) -> float:
    """alpha_C^min = 1 / (1/alpha_S + 1/alpha_B + 1/alpha_N)  ([K] eq. 1.8)."""
    return 1.0 / (1.0 / alpha_S + 1.0 / alpha_B + 1.0 / alpha_N)
