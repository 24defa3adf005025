"""posteriordb reference posteriors and NumPyro ports of their Stan programs.

A plain helper module (not a test file): tests import it as ``from posteriordb import ...``
(pytest puts the test's folder on ``sys.path``; ``tests/bayes`` has no ``__init__.py``).
It reads the extract in ``tests/data/posteriordb`` (copied unchanged from the shared data,
see the README there) and pairs each posterior with a hand transcription of its Stan
program into NumPyro.

Conventions of the ports (so that a test can compare them with the Stan reference):

* Sample sites are named exactly like the Stan parameters (``mu``, ``tau``, ``theta``,
  ``theta_trans``, ``beta``, ``sigma``, ``alpha_raw``, ...) and Stan's transformed
  parameters are ``numpyro.deterministic`` sites of the same name (``theta`` in the
  non-centered eight schools, ``alpha`` and ``beta`` in radon). Locals of Stan's model block
  (radon's ``mu``) are not recorded.
* Every vectorised observation sits in a ``numpyro.plate`` whose size is the number of
  observations (``school`` = J, ``obs`` = N), as do the vector parameters of the same length.
* Each model takes the data as keyword arguments named like the keys of ``data.json``, so
  ``model(**posterior.data)`` conditions on the data; the observed vector defaults to
  ``None`` (prior predictive). Keys of ``data.json`` that the Stan program does not declare
  (``mom_work``, ``log_uppm``) are accepted and ignored.
* A Stan ``real<lower=0> x; x ~ cauchy(0, s);`` is ``HalfCauchy(s)`` (the same density up
  to a constant), ``normal(0, s)`` on a positive parameter is ``HalfNormal(s)``, and a
  parameter with no sampling statement gets Stan's implicit flat prior (``ImproperUniform``
  on its support). Models with an improper prior cannot be sampled forward (prior
  predictive); condition them on data.
* Stan indexes from 1: ``theta[1]`` is ``theta[0]`` here (see `reference_name`), and radon's
  ``county_idx`` (1..J in the data, left as it is) is shifted inside the model.

Enable float64 (``jax_enable_x64``) before sampling: the reference posteriors are
compared to a tenth of a standard deviation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

DATA_DIR = Path(__file__).parent.parent / "data" / "posteriordb"


# --- the NumPyro ports, one per Stan program (the Stan source is quoted in each) ---


def eight_schools_centered(J, sigma, y=None):
    """Eight schools, centered (``eight_schools_centered.stan``).

    parameters { array[J] real theta; real mu; real<lower=0> tau; }
    model { tau ~ cauchy(0, 5); theta ~ normal(mu, tau); y ~ normal(theta, sigma);
            mu ~ normal(0, 5); }
    """
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_noncentered(J, sigma, y=None):
    """Eight schools, non-centered (posteriordb's ``eight_schools_noncentered.stan``).

    parameters { vector[J] theta_trans; real mu; real<lower=0> tau; }
    transformed parameters { vector[J] theta = theta_trans * tau + mu; }
    model { theta_trans ~ normal(0, 1); y ~ normal(theta, sigma); mu ~ normal(0, 5);
            tau ~ cauchy(0, 5); }
    """
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", J):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", theta_trans * tau + mu)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def kidscore_interaction_c(N, mom_hs, mom_iq, kid_score=None, mom_work=None):
    """Kid IQ with an interaction of centered predictors (``kidscore_interaction_c.stan``).

    transformed data { c_mom_hs = mom_hs - mean(mom_hs); c_mom_iq = mom_iq - mean(mom_iq);
                       inter = c_mom_hs .* c_mom_iq; }
    parameters { vector[4] beta; real<lower=0> sigma; }   // no priors: flat, as in Stan
    model { kid_score ~ normal(beta[1] + beta[2] * c_mom_hs + beta[3] * c_mom_iq
                               + beta[4] * inter, sigma); }

    ``mom_work`` is in the data set but not in the Stan program: accepted and ignored.
    """
    del mom_work
    mom_hs = jnp.asarray(mom_hs, dtype=float)
    mom_iq = jnp.asarray(mom_iq, dtype=float)
    c_mom_hs = mom_hs - jnp.mean(mom_hs)
    c_mom_iq = mom_iq - jnp.mean(mom_iq)
    inter = c_mom_hs * c_mom_iq
    beta = numpyro.sample("beta", dist.ImproperUniform(dist.constraints.real, (), (4,)))
    sigma = numpyro.sample("sigma", dist.ImproperUniform(dist.constraints.positive, (), ()))
    mu = beta[0] + beta[1] * c_mom_hs + beta[2] * c_mom_iq + beta[3] * inter
    with numpyro.plate("obs", N):
        numpyro.sample("kid_score", dist.Normal(mu, sigma), obs=kid_score)


# The name the issue uses. This is posteriordb's *centered-predictor* program
# (kidscore_interaction_c); its uncentered sibling kidscore_interaction has another posterior.
kidscore_interaction = kidscore_interaction_c


def radon_variable_intercept_slope_noncentered(
    N, J, county_idx, floor_measure, log_radon=None, log_uppm=None
):
    """Minnesota radon, varying intercepts and slopes by county, non-centered.

    parameters { real<lower=0> sigma_y, sigma_alpha, sigma_beta; vector[J] alpha_raw,
                 beta_raw; real mu_alpha, mu_beta; }
    transformed parameters { alpha = mu_alpha + sigma_alpha * alpha_raw;
                             beta = mu_beta + sigma_beta * beta_raw; }
    model { sigma_y, sigma_beta, sigma_alpha ~ normal(0, 1); mu_alpha, mu_beta ~ normal(0, 10);
            alpha_raw, beta_raw ~ normal(0, 1);
            log_radon[n] ~ normal(alpha[county_idx[n]] + floor_measure[n] * beta[county_idx[n]],
                                  sigma_y); }

    ``county_idx`` is Stan's 1-based county index (1..J); ``log_uppm`` is in the data set but
    not in this Stan program: accepted and ignored.
    """
    del log_uppm
    county = jnp.asarray(county_idx) - 1
    floor_measure = jnp.asarray(floor_measure, dtype=float)
    sigma_y = numpyro.sample("sigma_y", dist.HalfNormal(1.0))
    sigma_alpha = numpyro.sample("sigma_alpha", dist.HalfNormal(1.0))
    sigma_beta = numpyro.sample("sigma_beta", dist.HalfNormal(1.0))
    with numpyro.plate("county", J):
        alpha_raw = numpyro.sample("alpha_raw", dist.Normal(0.0, 1.0))
        beta_raw = numpyro.sample("beta_raw", dist.Normal(0.0, 1.0))
    mu_alpha = numpyro.sample("mu_alpha", dist.Normal(0.0, 10.0))
    mu_beta = numpyro.sample("mu_beta", dist.Normal(0.0, 10.0))
    alpha = numpyro.deterministic("alpha", mu_alpha + sigma_alpha * alpha_raw)
    beta = numpyro.deterministic("beta", mu_beta + sigma_beta * beta_raw)
    mu = alpha[county] + floor_measure * beta[county]
    with numpyro.plate("obs", N):
        numpyro.sample("log_radon", dist.Normal(mu, sigma_y), obs=log_radon)


# --- the catalogue: model name -> (posteriordb folder, Stan file, port, observed site) ---


class _Entry(NamedTuple):
    folder: str
    stan_file: str
    model: Callable[..., None]
    observed: str  # the observed site (a data.json key)


MODELS: dict[str, _Entry] = {
    "eight_schools_noncentered": _Entry(
        "eight_schools-eight_schools_noncentered", "model.stan", eight_schools_noncentered, "y"
    ),
    # Same data and reference posterior; the folder holds the centered program beside it.
    "eight_schools_centered": _Entry(
        "eight_schools-eight_schools_noncentered",
        "eight_schools_centered.stan",
        eight_schools_centered,
        "y",
    ),
    "kidscore_interaction_c": _Entry(
        "kidiq_with_mom_work-kidscore_interaction_c",
        "model.stan",
        kidscore_interaction_c,
        "kid_score",
    ),
    "radon_variable_intercept_slope_noncentered": _Entry(
        "radon_mn-radon_variable_intercept_slope_noncentered",
        "model.stan",
        radon_variable_intercept_slope_noncentered,
        "log_radon",
    ),
}
_ALIASES = {"kidscore_interaction": "kidscore_interaction_c"}
# posteriordb posterior name (the folder) -> the model its model.stan is
_ALIASES.update(
    {entry.folder: key for key, entry in MODELS.items() if entry.stan_file == "model.stan"}
)

NAMES: tuple[str, ...] = tuple(MODELS)


@dataclass(frozen=True)
class Posterior:
    """One posteriordb posterior with the NumPyro port of one of its Stan programs."""

    name: str  # posteriordb posterior name (the folder), e.g. "eight_schools-eight_schools_noncentered"
    data: dict[str, Any]  # data.json: ints as int, vectors as float64 / int64 numpy arrays
    reference_summary: dict[str, dict[str, float]] | None  # Stan name -> {mean, sd, q05, ...}
    reference_draws: dict[str, np.ndarray] | None  # Stan name -> (10 chains, 1000 draws)
    stan_code: str
    model_name: str = ""  # key of MODELS, e.g. "eight_schools_centered"
    model: Callable[..., None] | None = field(default=None, repr=False)  # the NumPyro port
    observed: str = ""  # the observed site, e.g. "y"
    info: dict[str, Any] = field(default_factory=dict, repr=False)  # info.json
    reference_info: dict[str, Any] = field(default_factory=dict, repr=False)  # how it was drawn


def _stan_data_kinds(stan_code: str) -> dict[str, str]:
    """Name -> "int" or "real" for each declaration in the Stan ``data`` block."""
    match = re.search(r"^\s*data\s*\{(.*?)^\s*\}", stan_code, re.S | re.M)
    if match is None:
        return {}
    block = re.sub(r"//[^\n]*|/\*.*?\*/", "", match.group(1), flags=re.S)
    kinds = {}
    for statement in block.split(";"):
        words = re.findall(r"[A-Za-z_]\w*", re.sub(r"<[^>]*>", "", statement))
        if words:
            kinds[words[-1]] = "int" if "int" in words[:-1] else "real"
    return kinds


def _convert(value: Any, kind: str | None) -> Any:
    if isinstance(value, list):
        if kind is None:
            return np.asarray(value)
        return np.asarray(value, dtype=np.int64 if kind == "int" else np.float64)
    if kind == "real":
        return float(value)
    return value


def load(name: str) -> Posterior:
    """Load a posterior by model name (a key of `MODELS`, or ``kidscore_interaction``) or by
    posteriordb posterior name (the folder, meaning its ``model.stan``).

    The data are typed by the Stan data block (``vector``/``real`` as float64, ``int`` as
    int64 or int), so the eight-schools ``y`` and ``sigma``, written as integers in the JSON,
    come back as floats. Undeclared extra keys keep the JSON's own types.
    """
    key = _ALIASES.get(name, name)
    if key not in MODELS:
        raise KeyError(f"unknown posterior {name!r}; known: {sorted(MODELS) + sorted(_ALIASES)}")
    entry = MODELS[key]
    folder = DATA_DIR / entry.folder
    stan_code = (folder / entry.stan_file).read_text()
    kinds = _stan_data_kinds(stan_code)
    raw = json.loads((folder / "data.json").read_text())
    data = {k: _convert(v, kinds.get(k)) for k, v in raw.items()}

    summary = None
    reference_info: dict[str, Any] = {}
    if (folder / "reference_summary.json").exists():
        reference_info = json.loads((folder / "reference_summary.json").read_text())
        summary = reference_info.pop("parameters")
    draws = None
    if (folder / "reference_draws.npz").exists():
        with np.load(folder / "reference_draws.npz", allow_pickle=False) as npz:
            draws = {k: np.array(npz[k]) for k in npz.files}
    info = json.loads((folder / "info.json").read_text())
    return Posterior(
        name=entry.folder,
        data=data,
        reference_summary=summary,
        reference_draws=draws,
        stan_code=stan_code,
        model_name=key,
        model=entry.model,
        observed=entry.observed,
        info=info,
        reference_info=reference_info,
    )


# --- Stan names <-> our sites ---

_NAME = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\[\s*([0-9,\s]+)\])?\s*$")


def reference_name(stan_name: str) -> tuple[str, int | tuple[int, ...] | None]:
    """Stan's ``theta[1]`` -> (``"theta"``, 0); ``mu`` -> (``"mu"``, None).

    The index is 0-based: an int for a vector element, a tuple for a matrix element
    (``x[2,3]`` -> (1, 2)), None for a scalar. The site names of the ports are Stan's, so
    the site is the name before the bracket.
    """
    match = _NAME.match(stan_name)
    if match is None:
        raise ValueError(f"not a Stan parameter name: {stan_name!r}")
    site, index = match.group(1), match.group(2)
    if index is None:
        return site, None
    idx = tuple(int(i) - 1 for i in index.split(","))
    if min(idx) < 0:
        raise ValueError(f"Stan indices start at 1: {stan_name!r}")
    return site, idx[0] if len(idx) == 1 else idx


def site_value(samples: np.ndarray, index: int | tuple[int, ...] | None) -> np.ndarray:
    """Select one element of a site's draws (index from `reference_name`) over its trailing
    (event) axes, keeping the leading sample axes."""
    samples = np.asarray(samples)
    if index is None:
        return samples
    idx = index if isinstance(index, tuple) else (index,)
    return samples[(..., *idx)]


class ReferenceRow(NamedTuple):
    site: str
    index: int | tuple[int, ...] | None
    mean: float
    sd: float


def reference_table(posterior: Posterior) -> dict[str, ReferenceRow]:
    """Stan scalar name -> (site, index, mean, sd) for each entry of the reference summary,
    in the summary's order."""
    if posterior.reference_summary is None:
        raise ValueError(f"{posterior.name} has no reference posterior in posteriordb")
    table = {}
    for stan_name, stats in posterior.reference_summary.items():
        site, index = reference_name(stan_name)
        table[stan_name] = ReferenceRow(site, index, float(stats["mean"]), float(stats["sd"]))
    return table
