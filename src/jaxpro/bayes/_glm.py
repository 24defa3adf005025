"""The NumPyro model of a formula: priors scaled to the data, indexed group effects.

The linear predictor is

    eta = Intercept_c + (X - mean X) b + offset + sum_blocks sum_k Z[:, k] r[group, k]

with the common columns centred (as brms does: the intercept's posterior is
then nearly independent of the slopes, which NUTS likes; the reported
``Intercept`` is moved back to the uncentred columns). Group effects are
non-centred: ``r = (z L^T) * sd`` with ``z ~ Normal(0, 1)``, ``L`` the Cholesky
factor of an LKJ-distributed correlation matrix (correlated terms only) and
``sd`` the per-column scales. Rows reach their group's effect by index, never
through a rows x groups matrix.

Default priors (bambi's scaling, brms's shapes; ``s`` = sd(y) for identity
links, 1 on the logit and log scales):

- ``Intercept`` (of the centred predictors) ~ Normal(link(mean y), 2.5 s);
- each common coefficient ~ Normal(0, 2.5 s / sd(x));
- each group sd ~ half-normal(2.5 s / sd(column)); correlations ~ LKJ(2) — mild
  shrinkage towards 0 (brms uses LKJ(1); with few groups LKJ(1) lets the
  correlation stick to +-1);
- family parameters: see :mod:`jaxpro.bayes._families`.

``priors`` overrides any of them by name: a NumPyro distribution, or "flat"
(an improper uniform prior on the parameter's support).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxpro.bayes._formula import Design
from jaxpro.errors import InputError

__all__ = ["ModelSpec", "make_model"]

LKJ_ETA = 2.0
LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class ModelSpec:
    """What the model function was built from: priors (described) and site names."""

    priors: dict  # parameter -> description
    coefficient_sites: tuple[str, ...]
    auxiliary_sites: tuple[str, ...]
    sd_sites: tuple[tuple[str, ...], ...]  # per block
    z_sites: tuple[str, ...]
    r_sites: tuple[str, ...]  # centred terms: each group's coefficients (population value + effect)
    centred: tuple[bool, ...]
    loc_sources: tuple[tuple[str | None, ...], ...]  # population value of each centred column
    cholesky_sites: tuple[str | None, ...]
    intercept_site: str | None


def _flat(support: str):
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

    return dist.ImproperUniform(
        constraints.positive if support == "positive" else constraints.real, (), ()
    )


def _resolve(name: str, given, default, support: str, described: str):
    """The prior for ``name``: the user's (a distribution or "flat") or the default."""
    import numpyro.distributions as dist

    if given is None:
        return default, described
    if isinstance(given, str):
        if given.strip().lower() != "flat":
            raise InputError(
                "a prior must be a numpyro distribution or 'flat'",
                argument=f"priors[{name!r}]",
                received=given,
            )
        return _flat(support), "flat"
    if not isinstance(given, dist.Distribution):
        raise InputError(
            "a prior must be a numpyro distribution or 'flat'",
            argument=f"priors[{name!r}]",
            received=given,
        )
    if given.batch_shape or given.event_shape:
        raise InputError(
            f"must be a scalar distribution (got batch {given.batch_shape}, event {given.event_shape})",
            argument=f"priors[{name!r}]",
        )
    return given, repr(given)


def make_model(design: Design, priors=None, centred=None, collapse: bool = False):
    """The NumPyro model of ``design``, its keyword data and a :class:`ModelSpec`.

    Args:
        design: from :func:`~jaxpro.bayes._formula.build_design`.
        priors: None, "flat" (every common coefficient and family parameter
            flat), or a dict: parameter name ("Intercept", "x", "sigma",
            "sd(x|g)", "cor(g)") -> a NumPyro distribution or "flat"; the key
            "common" sets every common coefficient at once. A "cor(g)" entry
            may be a number: the LKJ concentration.

        centred: per group term, True to sample the effects directly (the
            better geometry when the data inform each group strongly), False
            for the non-centred ``z * sd`` form; default all non-centred.

        collapse: a gaussian model whose likelihood reads per-cell sufficient
            statistics instead of rows (:func:`cell_statistics`); same
            parameters, same posterior.

    Returns:
        ``(model, data_kwargs, spec)``; call ``model(**data_kwargs)``.
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    family = design.family
    if priors is None:
        given: dict = {}
    elif isinstance(priors, str) and priors.strip().lower() == "flat":
        given = {
            "common": "flat",
            "Intercept": "flat",
            **{a.name: "flat" for a in family.auxiliary},
        }
    elif isinstance(priors, dict):
        given = dict(priors)
    else:
        raise InputError(
            "must be None, 'flat' or a dict of name -> prior", argument="priors", received=priors
        )

    y = design.y
    scale = float(np.std(y)) if family.link == "identity" else 1.0
    scale = scale if scale > 0 else 1.0
    centre = family.link_of(float(np.mean(y / design.trials if design.trials is not None else y)))

    known = {"common"}
    described: dict = {}
    coefficient_priors = []
    intercept_prior = None
    if design.intercept:
        known.add("Intercept")
        intercept_prior, described["Intercept"] = _resolve(
            "Intercept",
            given.get("Intercept"),
            dist.Normal(centre, 2.5 * scale),
            "real",
            f"Normal({centre:.3g}, {2.5 * scale:.3g}) (centred predictors)",
        )
    x_sd = design.X.std(axis=0) if design.X.size else np.zeros(0)
    reserved = {"Intercept", *(a.name for a in family.auxiliary)}
    for j, name in enumerate(design.common):
        if name in reserved:
            raise InputError(
                f"the predictor {name!r} has the name of a model parameter; rename the column",
                argument="formula",
            )
        if x_sd[j] == 0:
            raise InputError(
                f"the predictor {name!r} is constant in the data: it cannot be told apart from the intercept",
                argument="data",
            )
        known.add(name)
        width = 2.5 * scale / x_sd[j]
        prior, described[name] = _resolve(
            name,
            given.get(name, given.get("common")),
            dist.Normal(0.0, width),
            "real",
            f"Normal(0, {width:.3g})",
        )
        coefficient_priors.append(prior)
    auxiliary_priors = []
    for aux in family.auxiliary:
        known.add(aux.name)
        prior, described[aux.name] = _resolve(
            aux.name, given.get(aux.name), aux.prior(scale), "positive", aux.describe(scale)
        )
        auxiliary_priors.append(prior)
    sd_sites, sd_priors, z_sites, chol_sites, lkj, r_sites = [], [], [], [], [], []
    centred = (
        tuple(bool(c) for c in centred) if centred is not None else (False,) * len(design.blocks)
    )
    for i, block in enumerate(design.blocks):
        names = []
        block_priors = []
        for column, column_scale in zip(block.columns, block.column_scales, strict=True):
            site = f"sd({column}|{block.name})"
            known.add(site)
            width = 2.5 * scale / float(column_scale)
            prior, described[site] = _resolve(
                site,
                given.get(site),
                dist.HalfNormal(width),
                "positive",
                f"half-normal({width:.3g})",
            )
            names.append(site)
            block_priors.append(prior)
        sd_sites.append(tuple(names))
        sd_priors.append(block_priors)
        z_sites.append(f"z_{i}({block.name})")
        r_sites.append(f"beta_{i}({block.name})")
        if block.correlated:
            site = f"cor({block.name})"
            known.add(site)
            eta = given.get(site, LKJ_ETA)
            if isinstance(eta, bool) or not isinstance(eta, int | float) or eta <= 0:
                raise InputError(
                    "must be a positive LKJ concentration",
                    argument=f"priors[{site!r}]",
                    received=eta,
                )
            described[site] = f"LKJ({eta:g})"
            chol_sites.append(f"L_{i}({block.name})")
            lkj.append(float(eta))
        else:
            chol_sites.append(None)
            lkj.append(None)
    unknown = sorted(set(given) - known)
    if unknown:
        raise InputError(
            f"no parameter named {unknown[0]!r}; priors can be set for: "
            + ", ".join(sorted(known)),
            argument="priors",
        )

    response = design.response
    blocks = design.blocks
    loc_sources = population_locations(design, centred)
    sizes = [len(block.levels) for block in blocks]
    intercept_site = "Intercept_centred" if design.intercept else None
    coefficient_sites = tuple(design.common)
    X_mean = np.asarray(design.X_mean)

    def latent():
        """The parameters' sample sites: ``(intercept, coefficients, family params, effects)``."""
        eta0 = numpyro.sample(intercept_site, intercept_prior) if intercept_site else 0.0
        b = (
            jnp.stack(
                [
                    numpyro.sample(s, p)
                    for s, p in zip(coefficient_sites, coefficient_priors, strict=True)
                ]
            )
            if coefficient_sites
            else None
        )
        aux = {
            a.name: numpyro.sample(a.name, p)
            for a, p in zip(family.auxiliary, auxiliary_priors, strict=True)
        }
        effects = []
        for i in range(len(blocks)):
            sd = jnp.stack(
                [numpyro.sample(s, p) for s, p in zip(sd_sites[i], sd_priors[i], strict=True)]
            )
            k = sd.shape[0]
            L = (
                numpyro.sample(chol_sites[i], dist.LKJCholesky(k, lkj[i]))
                if chol_sites[i] is not None
                else None
            )
            if centred[i]:
                # hierarchical centring: each group's coefficients around the population's
                loc = _locations(loc_sources[i], eta0, b)
                if L is None:
                    coefficients = numpyro.sample(
                        r_sites[i], dist.Normal(loc, sd).expand([sizes[i], k]).to_event(2)
                    )
                else:
                    tril = sd[:, None] * L
                    coefficients = numpyro.sample(
                        r_sites[i],
                        dist.MultivariateNormal(loc, scale_tril=tril)
                        .expand([sizes[i]])
                        .to_event(1),
                    )
                effects.append(coefficients - loc)
                continue
            z = numpyro.sample(z_sites[i], dist.Normal(0.0, 1.0).expand([sizes[i], k]).to_event(2))
            if L is not None:
                z = z @ L.T
            effects.append(z * sd)
        return eta0, b, aux, effects

    def _locations(sources, eta0, b):
        values = []
        for source in sources:
            if source == "Intercept":
                values.append(eta0 - (jnp.dot(X_mean, b) if b is not None else 0.0))
            elif source is None:
                values.append(jnp.zeros(()))
            else:
                values.append(b[coefficient_sites.index(source)])
        return jnp.stack(values)

    def model(X, Z, codes, offset=None, trials=None, **observed):
        y_obs = observed.get(response)
        n = X.shape[0]
        eta0, b, aux, effects = latent()
        with numpyro.plate("rows", n):
            X_rows = numpyro.subsample(X, event_dim=1)
            eta = eta0 + ((X_rows - X_mean) @ b if coefficient_sites else 0.0)
            if offset is not None:
                eta = eta + numpyro.subsample(offset, event_dim=0)
            for i in range(len(blocks)):
                Z_rows = numpyro.subsample(Z[i], event_dim=1)
                index = numpyro.subsample(codes[i], event_dim=0)
                eta = eta + jnp.sum(Z_rows * effects[i][index], axis=-1)
            rows_trials = numpyro.subsample(trials, event_dim=0) if trials is not None else None
            rows_y = numpyro.subsample(y_obs, event_dim=0) if y_obs is not None else None
            numpyro.sample(response, family.likelihood(eta, aux, rows_trials), obs=rows_y)

    def collapsed_model(M, v, s, cell_groups, rows, y_shift):
        """The gaussian likelihood from per-cell sufficient statistics (see :func:`cell_statistics`)."""
        eta0, b, aux, effects = latent()
        parts = [jnp.broadcast_to(eta0 - y_shift, (M.shape[0], 1))] if intercept_site else []
        if coefficient_sites:
            parts.append(jnp.broadcast_to(b, (M.shape[0], b.shape[0])))
        parts += [effect[groups] for effect, groups in zip(effects, cell_groups, strict=True)]
        theta = jnp.concatenate(parts, axis=1)
        quadratic = jnp.einsum("cd,cde,ce->c", theta, M, theta)
        residual_squares = jnp.sum(s) - 2.0 * jnp.sum(theta * v) + jnp.sum(quadratic)
        sigma = aux["sigma"]
        numpyro.factor(
            "gaussian_likelihood",
            -0.5 * residual_squares / sigma**2 - rows * jnp.log(sigma) - 0.5 * rows * LOG_2PI,
        )

    kwargs = {
        "X": design.X,
        "Z": tuple(design.Z),
        "codes": tuple(design.codes),
        "offset": design.offset,
        "trials": design.trials,
        response: design.y,
    }
    spec = ModelSpec(
        priors=described,
        coefficient_sites=coefficient_sites,
        auxiliary_sites=tuple(a.name for a in family.auxiliary),
        sd_sites=tuple(sd_sites),
        z_sites=tuple(z_sites),
        r_sites=tuple(r_sites),
        centred=centred,
        loc_sources=population_locations(design, centred),
        cholesky_sites=tuple(chol_sites),
        intercept_site=intercept_site,
    )
    if collapse:
        return collapsed_model, cell_statistics(design), spec
    return model, kwargs, spec


# informativeness (between-group variance / a group's sampling variance, of the term's
# weakest column) above which the centred form samples better: measured here on a
# 30-group correlated-slopes model (with the earlier, intercept-only ratio), centred +
# dense mass gave 4000 bulk ESS at ratio 80 where non-centred gave 500 (with
# divergences); at ratio 0.75 non-centred gave 1000 and centred 76-140 with divergences. The formula demo (18 subjects x 10 days, columns
# Intercept 2.1 and days 0.6; the intercept-only measure said 15 and centred it):
# centred, 1-4 attempts over 10 seeds with divergences up to target_accept 0.95;
# non-centred, every seed passed its first attempt (2026-12-06).
CENTRE_ABOVE = 2.0
DENSE_MAX = 200  # parameters up to which NUTS adapts a dense mass matrix


def informativeness(design: Design) -> list[float]:
    """Per group term, how strongly the data pin each group's effects: its weakest column.

    The minimum over the term's columns of :func:`column_informativeness`: a
    centred term needs every one of its coefficients pinned down, since the
    funnel of one weakly informed slope is enough to make NUTS diverge.
    """
    return [
        min(ratios) if not any(np.isnan(ratios)) else float("nan")
        for ratios in column_informativeness(design)
    ]


def column_informativeness(design: Design) -> list[tuple[float, ...]]:
    """Per group term and column, between-group variance over a group's sampling variance.

    ``tau_j^2 / median_g(se_gj^2)`` on the link scale (moment estimates): each
    group's own least-squares coefficients on the term's columns, fitted to the
    residuals of a least-squares fit of the (transformed) response on the
    common columns, give the between-group variance ``tau_j^2`` (their spread
    less their mean sampling variance) and the sampling variances
    ``se_gj^2 = sigma^2 [(Z_g' Z_g)^-1]_jj`` (``sigma^2`` pooled within groups).
    For an intercept-only term this is ``median(rows per group) tau^2 / sigma^2``.
    Groups whose rows cannot determine every column are left out; NaN where
    fewer than two groups remain, and for bernoulli and binomial responses,
    whose rows carry too little information on their own for a moment estimate.
    """
    family = design.family
    if family.link == "logit":
        return [(float("nan"),) * len(block.columns) for block in design.blocks]
    y = design.y
    if family.link == "log":
        y = np.log(y + 0.5) if family.integer else np.log(y)
    if design.offset is not None:
        y = y - design.offset
    columns = [np.ones(design.rows)] if design.intercept else []
    A = np.column_stack([*columns, design.X]) if (columns or design.X.size) else None
    residual = y - A @ np.linalg.lstsq(A, y, rcond=None)[0] if A is not None else y
    out = []
    for block, Z, codes in zip(design.blocks, design.Z, design.codes, strict=True):
        groups, k = len(block.levels), Z.shape[1]
        # per-group normal equations by bincount: no loop over (possibly 10^4) groups
        gram, zr = np.zeros((groups, k, k)), np.zeros((groups, k))
        for a in range(k):
            zr[:, a] = np.bincount(codes, weights=Z[:, a] * residual, minlength=groups)
            for b in range(a, k):
                column = np.bincount(codes, weights=Z[:, a] * Z[:, b], minlength=groups)
                gram[:, a, b] = gram[:, b, a] = column
        squares = np.bincount(codes, weights=residual * residual, minlength=groups)
        counts = np.bincount(codes, minlength=groups)
        eig = np.linalg.eigvalsh(gram)
        usable = (counts >= k) & (eig[:, 0] > 1e-10 * np.maximum(eig[:, -1], 1e-300))
        if usable.sum() < 2:
            out.append((float("nan"),) * k)
            continue
        inverse = np.linalg.inv(gram[usable])
        estimates = np.einsum("gab,gb->ga", inverse, zr[usable])
        within = squares[usable] - np.einsum("ga,ga->g", estimates, zr[usable])
        dof = max(int(np.sum(counts[usable] - k)), 1)
        sigma2 = float(np.sum(within)) / dof
        if sigma2 <= 0:
            out.append((float("inf"),) * k)
            continue
        sampling = np.einsum("gaa->ga", inverse) * sigma2
        tau2 = np.maximum(np.var(estimates, axis=0) - sampling.mean(axis=0), 0.0)
        out.append(
            tuple(float(t / m) for t, m in zip(tau2, np.median(sampling, axis=0), strict=True))
        )
    return out


def choose_centring(design: Design) -> tuple[tuple[bool, ...], list[str]]:
    """Centred or non-centred form per group term, with the reasons in words."""
    chosen, reasons = [], []
    for block, ratios in zip(design.blocks, column_informativeness(design), strict=True):
        label = f"({' + '.join(block.columns)} | {block.name})"
        if any(np.isnan(ratios)):
            chosen.append(False)
            why = (
                "binary/binomial rows: weakly informative each"
                if design.family.link == "logit"
                else "too few groups determine their own coefficients to tell"
            )
            reasons.append(f"{label}: non-centred ({why})")
            continue
        ratio = min(ratios)
        detail = ", ".join(f"{c} {r:.3g}" for c, r in zip(block.columns, ratios, strict=True))
        if ratio > CENTRE_ABOVE:
            chosen.append(True)
            reasons.append(
                f"{label}: centred, the data pin each group down (between-group / sampling "
                f"variance {detail}; all > {CENTRE_ABOVE:g})"
            )
        else:
            chosen.append(False)
            reasons.append(
                f"{label}: non-centred, groups weakly informed (between-group / sampling "
                f"variance {detail}; lowest <= {CENTRE_ABOVE:g})"
            )
    return tuple(chosen), reasons


def population_locations(design: Design, centred) -> tuple[tuple[str | None, ...], ...]:
    """For each column of each centred group term, the parameter its groups centre on.

    "Intercept" for a varying intercept (when the model has one), the common
    coefficient of the same name for a varying slope, None (zero) otherwise or
    when an earlier term already centres on that parameter.
    """
    used: set = set()
    out = []
    for block, is_centred in zip(design.blocks, centred, strict=True):
        sources = []
        for column in block.columns:
            source = None
            if is_centred and column not in used:
                if column == "Intercept" and design.intercept:
                    source = "Intercept"
                elif column in design.common:
                    source = column
            if source is not None:
                used.add(column)
            sources.append(source)
        out.append(tuple(sources))
    return tuple(out)


def collapsible(design: Design) -> tuple[bool, str]:
    """Whether the gaussian likelihood is cheaper from per-cell sufficient statistics, and why."""
    if design.family.name != "gaussian":
        return False, f"family {design.family.name}: the likelihood needs every row"
    cells = _cells(design)[1]
    width = int(design.intercept) + design.X.shape[1] + sum(z.shape[1] for z in design.Z)
    per_row, per_cell = design.rows * width, cells * width * width
    if per_cell * 2 > per_row:
        return False, (
            f"{cells:,} cells of crossed groups for {design.rows:,} rows: sufficient statistics "
            "would not save work"
        )
    return True, (
        f"gaussian likelihood from sufficient statistics of {cells:,} cell(s) (rows sharing "
        f"their groups), {width} columns: each evaluation costs {per_cell:,} instead of "
        f"{per_row:,} multiply-adds, exactly the same posterior"
    )


def _cells(design: Design) -> tuple[np.ndarray, int, np.ndarray]:
    """Cell index per row, number of cells, and each cell's group index per block."""
    if not design.codes:
        return np.zeros(design.rows, dtype=np.int64), 1, np.zeros((1, 0), dtype=np.int64)
    stacked = np.stack(design.codes, axis=1).astype(np.int64)
    unique, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return inverse.reshape(-1), unique.shape[0], unique


def cell_statistics(design: Design) -> dict:
    """Sufficient statistics of the gaussian likelihood per cell (rows sharing all their groups).

    With ``w_i = [1, x_i - mean x, z_i]`` and ``y~_i = y_i - offset_i - mean``, each
    cell keeps ``M = sum w w^T``, ``v = sum w y~`` and ``s = sum y~^2``; the residual
    sum of squares at coefficients ``theta_c`` is ``s - 2 theta_c.v + theta_c^T M theta_c``.
    The response is shifted by its mean first (the intercept absorbs it) so the
    expansion does not cancel away float64 digits.
    """
    cell, count, groups = _cells(design)
    y = design.y - (design.offset if design.offset is not None else 0.0)
    shift = float(np.mean(y)) if design.intercept else 0.0
    y = y - shift
    columns = [np.ones(design.rows)] if design.intercept else []
    columns += list((design.X - design.X_mean).T)
    for Z in design.Z:
        columns += list(Z.T)
    width = len(columns)
    M = np.empty((count, width, width))
    for j in range(width):
        for k in range(j, width):
            M[:, j, k] = M[:, k, j] = np.bincount(
                cell, weights=columns[j] * columns[k], minlength=count
            )
    v = np.stack([np.bincount(cell, weights=c * y, minlength=count) for c in columns], axis=1)
    s = np.bincount(cell, weights=y * y, minlength=count)
    return {
        "M": M,
        "v": v,
        "s": s,
        "cell_groups": tuple(groups[:, i] for i in range(groups.shape[1])),
        "rows": float(design.rows),
        "y_shift": shift,
    }
