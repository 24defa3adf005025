"""Response families of formula models: link, likelihood, auxiliary parameters and simulation.

Each family knows what its response may hold (checked before any sampling,
naming the column), its link, the NumPyro likelihood given the linear
predictor, its auxiliary parameters with their default priors, and how to
simulate new responses in NumPy for ``predict``.

Default auxiliary priors follow brms and bambi in spirit (weakly informative,
scaled to the data where a scale exists):

- gaussian, student_t: sigma ~ half-Student-t(3, 0, 2.5 sd(y)) (brms scales by
  the MAD; sd is close for near-normal data); nu ~ Gamma(2, 0.1) (brms).
- negative binomial, gamma: the shape phi with 1/sqrt(phi) ~ half-normal(0, 1),
  the penalised-complexity prior of the Stan prior-choice recommendations; it
  shrinks towards the simpler (Poisson-like, or low-variance) model instead of
  brms's Gamma(0.01, 0.01), which piles its mass at phi near 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from jaxpro.errors import InputError

__all__ = ["FAMILIES", "Family", "family_named"]


@dataclass(frozen=True)
class Auxiliary:
    """A family parameter other than the mean: its site name and default prior builder."""

    name: str
    prior: Callable  # (y_scale) -> numpyro distribution
    describe: Callable  # (y_scale) -> str


@dataclass(frozen=True)
class Family:
    """A response distribution with its link.

    Attributes:
        name: as given to ``fit(family=...)``.
        link: "identity", "log" or "logit".
        auxiliary: parameters besides the linear predictor.
        needs_trials: the response is a count out of ``trials(n)``.
    """

    name: str
    link: str
    auxiliary: tuple[Auxiliary, ...] = ()
    needs_trials: bool = False
    integer: bool = False
    description: str = ""
    _check: Callable | None = field(default=None, repr=False)

    # -- link ------------------------------------------------------------------------------

    def inverse_link(self, eta, xp=np):
        if self.link == "identity":
            return eta
        if self.link == "log":
            return xp.exp(eta)
        return 1.0 / (1.0 + xp.exp(-eta))

    def link_of(self, value: float) -> float:
        """The link applied to a typical response value (for the intercept's prior centre)."""
        if self.link == "identity":
            return float(value)
        if self.link == "log":
            return float(np.log(max(value, 1e-3)))
        p = min(max(value, 1e-3), 1 - 1e-3)
        return float(np.log(p / (1 - p)))

    # -- data ------------------------------------------------------------------------------

    def check_response(self, y: np.ndarray, column: str, trials: np.ndarray | None) -> None:
        """Raise InputError when ``y`` cannot come from this family, naming the column."""
        if self._check is not None:
            self._check(y, column, trials)

    # -- model -----------------------------------------------------------------------------

    def likelihood(self, eta, aux: dict, trials=None):
        """The NumPyro distribution of the response given the linear predictor ``eta``."""
        import jax.numpy as jnp
        import numpyro.distributions as dist

        if self.name == "gaussian":
            return dist.Normal(eta, aux["sigma"])
        if self.name == "student_t":
            return dist.StudentT(aux["nu"], eta, aux["sigma"])
        if self.name == "bernoulli":
            return dist.BernoulliLogits(eta)
        if self.name == "binomial":
            return dist.BinomialLogits(eta, total_count=trials)
        if self.name == "poisson":
            return dist.Poisson(jnp.exp(eta))
        if self.name == "negative_binomial":
            return dist.NegativeBinomial2(jnp.exp(eta), aux["phi"])
        if self.name == "gamma":
            return dist.Gamma(aux["shape"], aux["shape"] / jnp.exp(eta))
        raise AssertionError(self.name)  # pragma: no cover - FAMILIES is closed

    def simulate(self, rng: np.random.Generator, mu: np.ndarray, aux: dict, trials=None):
        """Responses drawn at mean ``mu`` (draws x rows), ``aux`` arrays broadcast per draw."""
        if self.name == "gaussian":
            return mu + aux["sigma"] * rng.standard_normal(mu.shape)
        if self.name == "student_t":
            return mu + aux["sigma"] * rng.standard_t(np.broadcast_to(aux["nu"], mu.shape))
        if self.name == "bernoulli":
            return (rng.random(mu.shape) < mu).astype(np.float64)
        if self.name == "binomial":
            return rng.binomial(np.broadcast_to(trials, mu.shape).astype(np.int64), mu).astype(
                np.float64
            )
        if self.name == "poisson":
            return rng.poisson(mu).astype(np.float64)
        if self.name == "negative_binomial":
            phi = np.broadcast_to(aux["phi"], mu.shape)
            return rng.poisson(rng.gamma(phi, mu / phi)).astype(np.float64)
        if self.name == "gamma":
            shape = np.broadcast_to(aux["shape"], mu.shape)
            return rng.gamma(shape, mu / shape)
        raise AssertionError(self.name)  # pragma: no cover


# ------------------------------------------------------------------------------ checks


def _values_note(y: np.ndarray, bad: np.ndarray) -> str:
    rows = np.flatnonzero(bad)
    shown = ", ".join(f"row {int(r) + 1} = {y[r]:g}" for r in rows[:3])
    more = f" (and {rows.size - 3} more)" if rows.size > 3 else ""
    return shown + more


def _counts(y, column, trials):
    bad = (y < 0) | (y != np.round(y))
    if bad.any():
        raise InputError(
            f"column {column!r} must hold non-negative whole counts for this family; "
            + _values_note(y, bad),
            argument="data",
        )


def _binary(y, column, trials):
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise InputError(
            f"column {column!r} must be 0/1 for family 'bernoulli'; "
            + _values_note(y, bad)
            + " (for counts out of n use family='binomial' with 'y | trials(n) ~ ...')",
            argument="data",
        )


def _binomial(y, column, trials):
    _counts(y, column, trials)
    bad = y > trials
    if bad.any():
        raise InputError(
            f"column {column!r} has more successes than trials; " + _values_note(y, bad),
            argument="data",
        )


def _positive(y, column, trials):
    bad = y <= 0
    if bad.any():
        raise InputError(
            f"column {column!r} must be > 0 for family 'gamma'; " + _values_note(y, bad),
            argument="data",
        )


# ------------------------------------------------------------------------------ priors


def _sigma_prior(scale):
    import numpyro.distributions as dist

    return dist.FoldedDistribution(dist.StudentT(3.0, 0.0, 2.5 * scale))


def _nu_prior(scale):
    import numpyro.distributions as dist

    return dist.Gamma(2.0, 0.1)


def _shape_prior(scale):
    # phi = u^-2 with u ~ HalfNormal(1): 1/sqrt(phi) ~ half-normal(0, 1)
    import numpyro.distributions as dist
    from numpyro.distributions.transforms import PowerTransform

    return dist.TransformedDistribution(dist.HalfNormal(1.0), PowerTransform(-2.0))


_SIGMA = Auxiliary("sigma", _sigma_prior, lambda s: f"half-Student-t(3, 0, {2.5 * s:.3g})")
_NU = Auxiliary("nu", _nu_prior, lambda s: "Gamma(2, 0.1)")
_PHI = Auxiliary("phi", _shape_prior, lambda s: "1/sqrt(phi) ~ half-normal(0, 1)")
_SHAPE = Auxiliary("shape", _shape_prior, lambda s: "1/sqrt(shape) ~ half-normal(0, 1)")

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("gaussian", "identity", (_SIGMA,), description="normal, identity link"),
        Family("student_t", "identity", (_SIGMA, _NU), description="Student-t, identity link"),
        Family("bernoulli", "logit", (), integer=True, _check=_binary, description="logit link"),
        Family(
            "binomial",
            "logit",
            (),
            needs_trials=True,
            integer=True,
            _check=_binomial,
            description="logit link, 'y | trials(n)'",
        ),
        Family("poisson", "log", (), integer=True, _check=_counts, description="log link"),
        Family(
            "negative_binomial",
            "log",
            (_PHI,),
            integer=True,
            _check=_counts,
            description="log link, mean-dispersion (NB2)",
        ),
        Family("gamma", "log", (_SHAPE,), _check=_positive, description="log link"),
    )
}
_ALIASES = {
    "normal": "gaussian",
    "t": "student_t",
    "studentt": "student_t",
    "logistic": "bernoulli",
    "negbinomial": "negative_binomial",
    "negativebinomial": "negative_binomial",
    "nb": "negative_binomial",
}


def family_named(name: object) -> Family:
    """The :class:`Family` called ``name`` (case and '-'/'_' insensitive)."""
    if isinstance(name, Family):
        return name
    if not isinstance(name, str):
        raise InputError("must be a family name", argument="family", received=name)
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key.replace("_", ""), _ALIASES.get(key, key))
    if key not in FAMILIES:
        raise InputError(
            f"unknown family; choose one of {', '.join(FAMILIES)}",
            argument="family",
            received=name,
        )
    return FAMILIES[key]
