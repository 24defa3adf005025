"""Convergence diagnostics for MCMC draws and SVI fits, and the gate a run must pass.

MCMC: ArviZ's rank-normalised split R-hat, bulk and tail ESS and MCSE
(Vehtari et al. 2021), next to the sampler's own signals: divergent
transitions, tree-depth saturation and E-BFMI. NumPyro's own R-hat and ESS
are optimistic (on centred eight schools its worst R-hat was 1.048 where
ArviZ's was 1.123), so the gate reads ArviZ's.

SVI: whether the ELBO has levelled off, and the Pareto-k of the importance
weights ``log p(x, z) - log q(z)`` (PSIS), which says whether the guide
covers the posterior.

ArviZ (and pandas) load on the first call, not on import.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxpro._result import format_table, jsonable
from jaxpro.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "COLUMNS",
    "Diagnostics",
    "Gate",
    "Problem",
    "SVIDiagnostics",
    "mcmc_diagnostics",
    "svi_diagnostics",
]

COLUMNS = (
    "mean",
    "sd",
    "median",
    "lower",
    "upper",
    "ess_bulk",
    "ess_tail",
    "r_hat",
    "mcse_mean",
    "mcse_sd",
)

# Tail ESS is the smaller ESS of the 5% and 95% quantiles (Vehtari et al. 2021;
# Stan, posterior, ArviZ 0.x). ArviZ 1.x's summary instead takes the quantiles
# from rcParams["stats.ci_prob"] (0.89 -> 11% and 89%), which measures less of
# the tails; the 400 threshold was set for 5%/95%, so they are fixed here.
TAIL_PROBS = (0.05, 0.95)

_CODES = ("rhat", "ess_bulk", "ess_tail", "divergences", "bfmi", "treedepth", "pareto_k", "elbo")


# ----------------------------------------------------------------------------- gate


def _is_real(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool | np.bool_)
        and not math.isnan(float(value))
    )


@dataclass(frozen=True)
class Gate:
    """The thresholds a run must meet to be trusted; ``None`` switches a check off.

    Attributes:
        rhat_max: every variable's rank-normalised R-hat must be below this.
        ess_bulk_min: every variable's bulk ESS must be at least this.
        ess_tail_min: every variable's tail ESS must be at least this.
        divergences_max: at most this many divergent transitions (all chains).
        bfmi_min: every chain's E-BFMI must be at least this.
        treedepth_saturation_max: at most this fraction of transitions may hit
            the maximum tree depth.
        pareto_k_max: SVI only: the Pareto-k of the importance weights must not
            exceed this.

    Raises:
        InputError: a threshold is not a number in its range; the message names the field.
    """

    rhat_max: float | None = 1.01
    ess_bulk_min: float | None = 400
    ess_tail_min: float | None = 400
    divergences_max: int | None = 0
    bfmi_min: float | None = 0.3
    treedepth_saturation_max: float | None = 0.05
    pareto_k_max: float | None = 0.7

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, wanted: str) -> None:
            value = getattr(self, name)
            if value is not None and not ok:
                raise InputError(
                    f"must be {wanted}, or None to switch the check off",
                    argument=name,
                    received=value,
                )

        value = self.rhat_max
        check("rhat_max", _is_real(value) and value > 1, "a number > 1")
        for name in ("ess_bulk_min", "ess_tail_min", "bfmi_min"):
            value = getattr(self, name)
            check(name, _is_real(value) and 0 <= value < math.inf, "a finite number >= 0")
        value = self.divergences_max
        check(
            "divergences_max",
            isinstance(value, numbers.Integral)
            and not isinstance(value, bool | np.bool_)
            and value >= 0,
            "an integer >= 0",
        )
        value = self.treedepth_saturation_max
        check(
            "treedepth_saturation_max", _is_real(value) and 0 <= value <= 1, "a fraction in [0, 1]"
        )
        value = self.pareto_k_max
        check("pareto_k_max", _is_real(value) and math.isfinite(value), "a finite number")


@dataclass(frozen=True)
class Problem:
    """One failed check, in words.

    Attributes:
        code: which check: "rhat", "ess_bulk", "ess_tail", "divergences", "bfmi",
            "treedepth", "pareto_k" or "elbo".
        message: what failed, the worst value and where
            (e.g. "R-hat 1.123 >= 1.01 for tau (and 3 more)").
        sites: the table rows involved (flattened names such as ``theta[0]``),
            worst first; empty where the check is not per variable (divergences,
            E-BFMI, tree depth, SVI).
        worst: the worst value seen (NaN where it could not be computed).
    """

    code: str
    message: str
    sites: tuple[str, ...]
    worst: float

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {"code": self.code, "message": self.message, "sites": self.sites, "worst": self.worst}
        )


def _row_problem(
    code: str,
    label: str,
    values: np.ndarray,
    bad: np.ndarray,
    names: list[str],
    op: str,
    threshold: float,
    fmt: str,
    *,
    high_is_bad: bool,
) -> Problem | None:
    """The Problem for the rows flagged in ``bad`` (worst finite value first), or None."""
    flagged = np.flatnonzero(bad)
    if flagged.size == 0:
        return None
    finite = flagged[np.isfinite(values[flagged])]
    undefined = flagged[~np.isfinite(values[flagged])]
    key = -values[finite] if high_is_bad else values[finite]
    ordered = [*finite[np.argsort(key, kind="stable")], *undefined]
    first = ordered[0]
    if finite.size:
        message = f"{label} {format(values[first], fmt)} {op} {threshold:g} for {names[first]}"
    else:
        message = f"{label} could not be computed (non-finite draws) for {names[first]}"
    if len(ordered) > 1:
        message += f" (and {len(ordered) - 1} more)"
    return Problem(code, message, tuple(names[i] for i in ordered), float(values[first]))


# ----------------------------------------------------------------------------- MCMC


@dataclass(frozen=True, eq=False)
class Diagnostics:
    """Per-variable summary and sampler diagnostics of an MCMC run.

    Attributes:
        table: a pandas DataFrame, one row per scalar variable (index: flattened
            names, 0-based: ``tau``, ``theta[0]``, ``L[1,2]``), columns
            :data:`COLUMNS`: ``mean, sd, median, lower, upper`` (the credible
            interval), ``ess_bulk, ess_tail, r_hat, mcse_mean, mcse_sd``.
        divergences: divergent transitions over all chains (None: not recorded).
        divergences_per_chain: the same per chain (None: not recorded).
        treedepth_saturation: fraction of transitions that hit the maximum tree
            depth (None: not recorded).
        bfmi: E-BFMI per chain (None: energy not recorded).
        num_chains: chains.
        num_draws: draws per chain.
        interval: "hdi" (highest density) or "eti" (equal-tailed).
        level: the interval's probability mass.
        max_tree_depth: the tree depth counted as saturated.
    """

    table: pd.DataFrame
    divergences: int | None
    divergences_per_chain: np.ndarray | None
    treedepth_saturation: float | None
    bfmi: np.ndarray | None
    num_chains: int
    num_draws: int
    interval: str
    level: float
    max_tree_depth: int = 10

    @property
    def max_rhat(self) -> float:
        """The largest R-hat over the variables (NaN when none could be computed)."""
        return _nan_reduce(np.nanmax, self.table["r_hat"].to_numpy())

    @property
    def min_ess_bulk(self) -> float:
        """The smallest bulk ESS over the variables (NaN when none could be computed)."""
        return _nan_reduce(np.nanmin, self.table["ess_bulk"].to_numpy())

    @property
    def min_ess_tail(self) -> float:
        """The smallest tail ESS over the variables (NaN when none could be computed)."""
        return _nan_reduce(np.nanmin, self.table["ess_tail"].to_numpy())

    def problems(self, gate: Gate | None = None) -> tuple[Problem, ...]:
        """The checks of ``gate`` (default :class:`Gate()`) this run fails; empty when it passes.

        Variables whose draws are all equal (constants, such as a fixed
        deterministic site) have no R-hat and are skipped; any other variable
        whose R-hat or ESS could not be computed (non-finite draws) fails.
        """
        gate = Gate() if gate is None else gate
        names = [str(n) for n in self.table.index]
        # ddof=1 sd is exactly 0 for constant draws and NaN for non-finite ones
        varying = ~(self.table["sd"].to_numpy() == 0)
        found: list[Problem | None] = []

        if gate.rhat_max is not None and names:
            if self.num_chains < 2:
                found.append(
                    Problem(
                        "rhat",
                        f"R-hat needs at least 2 chains; got {self.num_chains}",
                        (),
                        math.nan,
                    )
                )
            else:
                rhat = self.table["r_hat"].to_numpy()
                bad = varying & ~(rhat < gate.rhat_max)
                found.append(
                    _row_problem(
                        "rhat",
                        "R-hat",
                        rhat,
                        bad,
                        names,
                        ">=",
                        gate.rhat_max,
                        ".3f",
                        high_is_bad=True,
                    )
                )
        for code, label, minimum in (
            ("ess_bulk", "bulk ESS", gate.ess_bulk_min),
            ("ess_tail", "tail ESS", gate.ess_tail_min),
        ):
            if minimum is None:
                continue
            ess = self.table[code].to_numpy()
            bad = varying & ~(ess >= minimum)
            found.append(
                _row_problem(code, label, ess, bad, names, "<", minimum, ".0f", high_is_bad=False)
            )

        if (
            gate.divergences_max is not None
            and self.divergences is not None
            and self.divergences > gate.divergences_max
        ):
            per_chain = ", ".join(str(int(n)) for n in self.divergences_per_chain)
            found.append(
                Problem(
                    "divergences",
                    f"{self.divergences} divergent transitions ({per_chain} per chain; "
                    f"at most {gate.divergences_max} allowed)",
                    (),
                    float(self.divergences),
                )
            )
        if gate.bfmi_min is not None and self.bfmi is not None:
            low = np.flatnonzero(~(self.bfmi >= gate.bfmi_min))
            if low.size:
                worst = low[np.argsort(self.bfmi[low], kind="stable")][0]
                message = f"E-BFMI {self.bfmi[worst]:.3f} < {gate.bfmi_min:g} in chain {worst}"
                if low.size > 1:
                    message += f" (and {low.size - 1} more)"
                found.append(Problem("bfmi", message, (), float(self.bfmi[worst])))
        if (
            gate.treedepth_saturation_max is not None
            and self.treedepth_saturation is not None
            and self.treedepth_saturation > gate.treedepth_saturation_max
        ):
            found.append(
                Problem(
                    "treedepth",
                    f"{self.treedepth_saturation:.1%} of transitions hit the maximum tree depth "
                    f"{self.max_tree_depth} (at most {gate.treedepth_saturation_max:.1%} allowed)",
                    (),
                    float(self.treedepth_saturation),
                )
            )
        return tuple(p for p in found if p is not None)

    def summary(self, floatfmt: str = ".4g") -> str:
        """A plain-text report: the per-variable table, then the sampler diagnostics."""
        headers = ["", *COLUMNS]
        rows = [
            [name, *row] for name, row in zip(self.table.index, self.table.to_numpy(), strict=True)
        ]
        lines = [
            format_table(headers, rows, floatfmt=floatfmt),
            f"interval: {self.level:.0%} {self.interval.upper()}; "
            f"{self.num_chains} chains x {self.num_draws} draws",
        ]
        if self.divergences is not None:
            per_chain = ", ".join(str(int(n)) for n in self.divergences_per_chain)
            lines.append(f"divergences: {self.divergences} ({per_chain} per chain)")
        if self.treedepth_saturation is not None:
            lines.append(
                f"tree depth {self.max_tree_depth} reached: {self.treedepth_saturation:.1%} of transitions"
            )
        if self.bfmi is not None:
            lines.append("E-BFMI per chain: " + ", ".join(f"{b:.3g}" for b in self.bfmi))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary: the table by row, then the sampler diagnostics."""
        return jsonable(
            {
                "table": {
                    str(name): dict(zip(COLUMNS, row, strict=True))
                    for name, row in zip(self.table.index, self.table.to_numpy(), strict=True)
                },
                "divergences": self.divergences,
                "divergences_per_chain": self.divergences_per_chain,
                "treedepth_saturation": self.treedepth_saturation,
                "bfmi": self.bfmi,
                "num_chains": self.num_chains,
                "num_draws": self.num_draws,
                "interval": self.interval,
                "level": self.level,
                "max_tree_depth": self.max_tree_depth,
            }
        )

    def __repr__(self) -> str:
        return self.summary()


def _nan_reduce(reduce, values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(reduce(finite)) if finite.size else math.nan


def _check_draws(draws: object) -> tuple[dict[str, np.ndarray], int, int]:
    """The draws as float64 arrays (chains, draws, *event), with the chain and draw counts."""
    if not isinstance(draws, Mapping) or not draws:
        raise InputError(
            "must be a non-empty dict mapping site names to arrays of shape (chains, draws, ...)",
            argument="draws",
            received=draws,
        )
    out: dict[str, np.ndarray] = {}
    shape: tuple[int, int] | None = None
    for name, value in draws.items():
        where = f"draws[{name!r}]"
        if not isinstance(name, str):
            raise InputError("site names must be strings", argument="draws", received=name)
        array = np.asarray(value)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or np.iscomplexobj(
            array
        ):
            raise InputError("must hold real numbers", argument=where, received=value)
        if array.ndim < 2:
            raise InputError(
                "must have shape (chains, draws, ...); a single chain is shape (1, draws)",
                argument=where,
                received=value,
            )
        if shape is None:
            shape = array.shape[:2]
        elif array.shape[:2] != shape:
            raise InputError(
                f"every site must have the same (chains, draws) = {shape}",
                argument=where,
                received=value,
            )
        out[name] = array.astype(np.float64)
    chains, count = shape
    if chains < 1 or count < 4:
        raise InputError(
            "needs at least 1 chain of at least 4 draws",
            argument="draws",
            received=f"{chains} x {count}",
        )
    return out, chains, count


def _check_extra(extra: object, chains: int, count: int) -> dict[str, np.ndarray]:
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise InputError(
            "must be a dict of sampler fields or None", argument="extra", received=extra
        )
    out = {}
    for key in ("diverging", "num_steps", "energy"):
        if extra.get(key) is None:
            continue
        array = np.asarray(extra[key])
        if array.shape != (chains, count):
            raise InputError(
                f"must have shape (chains, draws) = {(chains, count)}, like the draws",
                argument=f"extra[{key!r}]",
                received=extra[key],
            )
        out[key] = array
    return out


def _site_stats(azs, array: np.ndarray, level: float, interval: str) -> dict[str, np.ndarray]:
    """Every column of the table for one site, each of the site's event shape."""
    # Plain arrays go straight to arviz_stats' array layer (the same functions
    # its xarray accessors, and so az.summary, apply per variable) with the
    # chain and draw axes named: no DataTree to build, and no dimension names
    # to invent and parse back into row names.
    axes = {"chain_axis": 0, "draw_axis": 1}
    if interval == "hdi":
        bounds = azs.hdi(array, prob=level, axis=(0, 1))
    else:
        bounds = azs.eti(array, prob=level, axis=(0, 1))
    bounds = np.asarray(bounds)
    return {
        "mean": array.mean(axis=(0, 1)),
        "sd": array.std(axis=(0, 1), ddof=1),  # ddof=1 as az.summary
        "median": np.median(array, axis=(0, 1)),
        "lower": bounds[..., 0],
        "upper": bounds[..., 1],
        "ess_bulk": azs.ess(array, method="bulk", **axes),
        "ess_tail": azs.ess(array, method="tail", prob=TAIL_PROBS, **axes),
        "r_hat": azs.rhat(array, method="rank", **axes),
        "mcse_mean": azs.mcse(array, method="mean", **axes),
        "mcse_sd": azs.mcse(array, method="sd", **axes),
    }


def mcmc_diagnostics(
    draws: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
    level: float = 0.9,
    interval: str = "hdi",
    max_tree_depth: int = 10,
) -> Diagnostics:
    """Summarise MCMC draws and diagnose the run.

    Args:
        draws: site name -> array of shape (chains, draws, *event_shape)
            (NumPy or JAX; scalar sites are (chains, draws)), e.g.
            ``mcmc.get_samples(group_by_chain=True)``.
        extra: NumPyro sampler fields of shape (chains, draws), each optional:
            ``diverging`` (bool), ``num_steps`` (leapfrog steps per transition),
            ``energy`` (Hamiltonian energy), e.g.
            ``mcmc.get_extra_fields(group_by_chain=True)``; other keys are ignored.
        level: probability mass of the credible interval, in (0, 1).
        interval: "hdi" (highest density interval) or "eti" (equal-tailed).
        max_tree_depth: the sampler's maximum tree depth; a transition of
            ``num_steps >= 2**max_tree_depth - 1`` leapfrog steps hit it.

    Returns:
        A :class:`Diagnostics`; ``.problems(gate)`` says what fails a :class:`Gate`.

    Raises:
        InputError: the draws or fields are not arrays of consistent shape, or
            an option is out of range.
    """
    arrays, chains, count = _check_draws(draws)
    if not (_is_real(level) and 0 < level < 1):
        raise InputError("must be a probability in (0, 1)", argument="level", received=level)
    if interval not in ("hdi", "eti"):
        raise InputError('must be "hdi" or "eti"', argument="interval", received=interval)
    if not (
        isinstance(max_tree_depth, numbers.Integral)
        and not isinstance(max_tree_depth, bool)
        and max_tree_depth >= 1
    ):
        raise InputError(
            "must be an integer >= 1", argument="max_tree_depth", received=max_tree_depth
        )
    fields = _check_extra(extra, chains, count)

    import arviz_stats as azs
    import pandas as pd

    names: list[str] = []
    columns: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
    # Constant sites make ArviZ divide 0 by 0 (R-hat is NaN there, by design).
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, array in arrays.items():
            event = array.shape[2:]
            stats = _site_stats(azs, array, float(level), interval)
            for column in COLUMNS:
                columns[column].append(
                    np.broadcast_to(np.asarray(stats[column]), event).reshape(-1)
                )
            names.extend(
                f"{name}[{','.join(str(i) for i in index)}]" if index else name
                for index in np.ndindex(*event)
            )
        bfmi = None
        if "energy" in fields:
            energy = fields["energy"].astype(np.float64)
            # E-BFMI = sum(diff(E)^2) / sum((E - mean E)^2) per chain: ArviZ's
            # mean(diff^2) / var(ddof=1) is the same ratio (both divide by n - 1).
            bfmi = np.asarray(azs.bfmi(energy, chain_axis=0, draw_axis=1), dtype=np.float64)

    table = pd.DataFrame(
        {c: np.concatenate(columns[c]) if columns[c] else np.empty(0) for c in COLUMNS},
        index=pd.Index(names, name="variable"),
    )
    divergences = per_chain = saturation = None
    if "diverging" in fields:
        per_chain = fields["diverging"].astype(bool).sum(axis=1).astype(np.int64)
        divergences = int(per_chain.sum())
    if "num_steps" in fields:
        saturation = float(np.mean(fields["num_steps"] >= 2**max_tree_depth - 1))
    return Diagnostics(
        table=table,
        divergences=divergences,
        divergences_per_chain=per_chain,
        treedepth_saturation=saturation,
        bfmi=bfmi,
        num_chains=chains,
        num_draws=count,
        interval=interval,
        level=float(level),
        max_tree_depth=int(max_tree_depth),
    )


# ----------------------------------------------------------------------------- SVI


@dataclass(frozen=True)
class SVIDiagnostics:
    """Whether an SVI fit has levelled off, and whether its guide covers the posterior.

    Attributes:
        plateau: the ELBO has levelled off (see :func:`svi_diagnostics`).
        relative_change: change of the window-mean ELBO over the last window,
            relative to its size (at least 1); NaN when the trace is not finite there.
        pareto_k: Pareto-k of the importance weights (None: no weights given);
            below 0.5 the guide is good, above 0.7 its draws should not be trusted.
        window: steps per window used.
        rtol: relative change counted as level.
        num_steps: length of the ELBO trace.
    """

    plateau: bool
    relative_change: float
    pareto_k: float | None
    window: int
    rtol: float
    num_steps: int

    def problems(self, gate: Gate | None = None) -> tuple[Problem, ...]:
        """The checks this fit fails: "elbo" (no plateau) and "pareto_k" (above ``gate.pareto_k_max``)."""
        gate = Gate() if gate is None else gate
        found = []
        if not self.plateau:
            if math.isfinite(self.relative_change):
                message = (
                    f"ELBO still changing: relative change {self.relative_change:.3g} over the "
                    f"last {self.window} steps (level below {self.rtol:g})"
                )
            else:
                message = f"ELBO not finite in the last {2 * self.window} steps"
            found.append(Problem("elbo", message, (), float(self.relative_change)))
        k = self.pareto_k
        if k is not None and gate.pareto_k_max is not None and not k <= gate.pareto_k_max:
            if math.isnan(k):
                message = "Pareto k of the importance weights could not be estimated"
            else:
                message = (
                    f"Pareto k {k:.2f} > {gate.pareto_k_max:g}: the importance weights are "
                    "heavy-tailed, so the guide misses part of the posterior"
                )
            found.append(Problem("pareto_k", message, (), float(k)))
        return tuple(found)

    def summary(self) -> str:
        """One line per check."""
        lines = [
            f"ELBO {'level' if self.plateau else 'still changing'}: relative change "
            f"{self.relative_change:.3g} over the last {self.window} of {self.num_steps} steps"
        ]
        if self.pareto_k is not None:
            lines.append(f"Pareto k of the importance weights: {self.pareto_k:.3g}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "plateau": self.plateau,
                "relative_change": self.relative_change,
                "pareto_k": self.pareto_k,
                "window": self.window,
                "rtol": self.rtol,
                "num_steps": self.num_steps,
            }
        )

    def __repr__(self) -> str:
        return self.summary()


def svi_diagnostics(
    elbo_trace: Any,
    log_weights: Any = None,
    *,
    window: int = 500,
    rtol: float = 1e-4,
) -> SVIDiagnostics:
    """Check that an SVI fit has levelled off and, given importance weights, that its guide fits.

    Plateau: the mean ELBO over the last ``window`` steps is compared with the
    mean over the window before. The ELBO is level when their difference is
    at most ``rtol`` times the ELBO's size (at least 1, so an ELBO near zero is
    judged on its absolute change), or when it is within two standard errors
    of the windows' noise: a one-particle ELBO is noisy, and a change smaller
    than its noise cannot be told from none.

    Args:
        elbo_trace: the ELBO (or the loss, its negative: only the size of the
            change matters) at each optimisation step, 1-D.
        log_weights: ``log p(x, z) - log q(z)`` at independent draws ``z`` from
            the guide, any shape (flattened), at least 25 of them; None skips
            the Pareto-k check.
        window: steps per window; traces shorter than two windows use half their length.
        rtol: relative change counted as level.

    Returns:
        An :class:`SVIDiagnostics`; ``.problems(gate)`` says what fails.

    Raises:
        InputError: the trace is not 1-D with at least 4 steps, the weights are
            NaN or +inf or too few, or an option is out of range.
    """
    trace = np.asarray(elbo_trace)
    if trace.ndim != 1 or not np.issubdtype(trace.dtype, np.number) or trace.size < 4:
        raise InputError(
            "must be a 1-D array of at least 4 ELBO values",
            argument="elbo_trace",
            received=elbo_trace,
        )
    if not (isinstance(window, numbers.Integral) and not isinstance(window, bool) and window >= 2):
        raise InputError("must be an integer >= 2", argument="window", received=window)
    if not (_is_real(rtol) and 0 < rtol < math.inf):
        raise InputError("must be a finite number > 0", argument="rtol", received=rtol)

    trace = trace.astype(np.float64)
    used = int(min(window, trace.size // 2))
    last, previous = trace[-used:], trace[-2 * used : -used]
    with np.errstate(invalid="ignore", over="ignore"):
        change = abs(last.mean() - previous.mean())
        relative = float(change / max(abs(last.mean()), 1.0))
        noise = math.sqrt((last.var(ddof=1) + previous.var(ddof=1)) / used)
    plateau = bool(math.isfinite(relative) and (relative <= rtol or change <= 2.0 * noise))
    return SVIDiagnostics(
        plateau=plateau,
        relative_change=relative,
        pareto_k=None if log_weights is None else _pareto_k(log_weights),
        window=used,
        rtol=float(rtol),
        num_steps=int(trace.size),
    )


def _pareto_k(log_weights: Any) -> float:
    """Pareto-k of the right tail of the importance weights (PSIS, Vehtari et al. 2024)."""
    weights = np.asarray(log_weights)
    if not np.issubdtype(weights.dtype, np.number) or np.iscomplexobj(weights):
        raise InputError("must hold real numbers", argument="log_weights", received=log_weights)
    weights = weights.astype(np.float64).reshape(-1)
    if weights.size < 25:
        raise InputError(
            "needs at least 25 draws to fit the Pareto tail",
            argument="log_weights",
            received=log_weights,
        )
    if np.isnan(weights).any() or np.isposinf(weights).any():
        raise InputError("must not hold NaN or +inf", argument="log_weights", received=log_weights)
    finite = weights[np.isfinite(weights)]
    if finite.size == 0 or np.ptp(finite) == 0:
        # equal weights: the guide is the posterior; the tail has no weight to fit
        return -math.inf

    from arviz_stats.base import array_stats

    # psislw fits the generalised Pareto to the right tail of the weights
    # exp(log_weights) and returns (smoothed log weights, k). It takes
    # log-likelihood values and negates them (the LOO convention: log ratio =
    # -log lik), hence the minus. Not pareto_khat(..., log_weights=True): that
    # fits the tail of the log weights themselves, which is light even when the
    # weights are heavy-tailed (k 0.03 where psislw gives 0.87, the true 0.89).
    # r_eff=1: the guide's draws are independent.
    try:
        _, khat = array_stats.psislw(-weights, r_eff=1.0)
    except ValueError as error:
        if "same" not in str(error):
            raise
        return -math.inf  # the largest weights are all equal: a bounded tail
    return float(khat)
