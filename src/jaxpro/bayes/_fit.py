"""``jaxpro.bayes.fit("y ~ x + (1 + x | g)", data)``: a table and a formula to credible intervals.

The formula becomes a NumPyro model (:mod:`jaxpro.bayes._formula`,
:mod:`jaxpro.bayes._glm`) and goes through the engine's
:func:`~jaxpro.bayes.sample`: the same method choice, gate and repairs. The
result, a :class:`FormulaPosterior`, speaks the formula's language: the
coefficients are named ``Intercept``, ``x``, ``sd(x|g)``, ``cor(Intercept,x|g)``,
``g[A]`` and ``x|g[A]``, and :meth:`FormulaPosterior.predict` takes new rows.
"""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from jaxpro._result import Plan, format_table
from jaxpro.bayes._posterior import Posterior
from jaxpro.errors import InputError

__all__ = ["FormulaPosterior", "fit"]

_MAX_EFFECT_ROWS = 12  # group effects shown by summary(); the table has all
_PREDICT_CELLS = 20_000_000  # draws x rows evaluated at once by predict()


def _engine_reasons(reasons, collapse: bool) -> tuple[str, ...]:
    """The sampler's reasons as the plan reports them: a collapsed model was handed to
    NUTS by the formula (not by the caller) and has no per-row observations."""
    if not collapse:
        return tuple(reasons)
    dropped = ("NUTS: requested by the caller", "0 observations")
    return tuple(r for r in reasons if not r.startswith(dropped))


def fit(
    formula: str,
    data,
    family: str = "gaussian",
    priors=None,
    *,
    method: str = "auto",
    num_chains: int = 4,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    seed: int = 0,
    **options,
) -> FormulaPosterior:
    """Fit a regression model written as a formula (brms / lme4 syntax) by Bayesian inference.

    Args:
        formula: e.g. ``"y ~ x + C(z) + (1 + x | g)"``; see :mod:`jaxpro.bayes._formula`
            for the syntax (interactions, transformations, correlated ``|`` and
            uncorrelated ``||`` group terms, nesting ``g/h``, offsets,
            ``successes | trials(n)``).
        data: a pandas DataFrame (or dict of columns) holding every column named.
        family: "gaussian", "student_t", "bernoulli", "binomial", "poisson",
            "negative_binomial" or "gamma" (log link for counts and gamma,
            logit for bernoulli and binomial).
        priors: None (weakly informative, scaled to the data), "flat", or a
            dict of parameter name -> NumPyro distribution or "flat" (see
            :func:`jaxpro.bayes._glm.make_model`).
        method, num_chains, num_warmup, num_samples, seed, options: as for
            :func:`jaxpro.bayes.sample` (gate, remedy, level, interval, ...).

    Returns:
        :class:`FormulaPosterior`.

    Raises:
        InputError: bad formula, unknown column, missing values, a response
            the family cannot produce, an empty group, an unknown prior name.
    """
    import time

    from jaxpro._precision import float64
    from jaxpro.bayes._families import family_named
    from jaxpro.bayes._formula import build_design
    from jaxpro.bayes._glm import DENSE_MAX, choose_centring, collapsible, make_model
    from jaxpro.bayes._model import inspect_model
    from jaxpro.bayes._sample import SVI_MAX, _chain_devices, sample

    started = time.perf_counter()
    chosen_family = family_named(family)
    if options.get("parallel_chains", True) and isinstance(num_chains, int):
        # before anything below starts JAX: a device per chain runs the chains in parallel
        devices_note = _chain_devices(num_chains)
    else:
        devices_note = None
    with float64():
        design = build_design(formula, data, chosen_family)
    _check_response_name(design.response)
    centred, centring_notes = choose_centring(design)
    model, data_kwargs, spec = make_model(design, priors, centred=centred)
    parameters = (
        design.intercept
        + len(design.common)
        + len(chosen_family.auxiliary)
        + sum(len(b.columns) * (len(b.levels) + 1) for b in design.blocks)
    )
    if "dense_mass" not in options:
        # centred group effects trade off against the intercept and slopes they vary around:
        # a ridge a diagonal mass matrix crosses slowly (bulk ESS 207 vs 4000 dense, 30
        # groups here); non-centred ones do not (radon: diagonal 43 ESS/s, dense 30)
        options["dense_mass"] = any(centred) and parameters <= DENSE_MAX
    notes = [
        f"formula {formula!r}: {design.rows} rows, {len(design.common) + design.intercept} common "
        f"coefficients, {len(design.blocks)} group term(s)"
        + "".join(f", {len(b.levels)} levels of {b.name}" for b in design.blocks),
        f"family {chosen_family.name} ({chosen_family.description})",
    ]
    if design.blocks:
        notes.append(
            "group effects indexed by row (never a rows x groups matrix); correlated terms with an "
            "LKJ prior on the Cholesky factor of their correlation"
        )
    notes += centring_notes
    notes.append(
        f"NUTS mass matrix {'dense' if options['dense_mass'] else 'diagonal'} "
        f"({parameters} parameters; dense for centred group terms up to {DENSE_MAX})"
    )
    if devices_note:
        notes.append(devices_note)
    if method == "auto" and design.blocks and design.rows > SVI_MAX:
        method = "svi"
        notes.append(
            f"SVI instead of consensus Monte Carlo above {SVI_MAX:,} rows: shards would split "
            "every group's rows, and the per-shard group effects do not combine into a Gaussian"
        )
    collapse, collapse_note = collapsible(design) if method in ("auto", "nuts") else (False, "")
    if collapse:
        # same parameters, likelihood from per-cell sums: NUTS at the cost of the cells
        sampled_model, sampled_kwargs, _ = make_model(
            design, priors, centred=centred, collapse=True
        )
        notes.append(collapse_note)
        notes.append(f"NUTS: {design.rows:,} rows cost as few as their cells, so exact MCMC")
        method = "nuts"
    else:
        sampled_model, sampled_kwargs = model, data_kwargs
    posterior = sample(
        sampled_model,
        method=method,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
        derived=options.pop("derived", None) or _reported(design, spec),
        **options,
        **sampled_kwargs,
    )
    if isinstance(posterior, dict):  # jaxpro.plan asked for the decision only
        return {**posterior, "reasons": tuple(notes) + _engine_reasons(posterior["reasons"],
                                                                        collapse)}  # fmt: skip
    engine_reasons = tuple(posterior.plan.reasons)
    values = {f.name: getattr(posterior, f.name) for f in fields(posterior)}
    if collapse:
        # predictions, log-likelihoods and checks of the data read the per-row model
        info = inspect_model(model, (), data_kwargs)
        values.update(model=model, kwargs=data_kwargs, info=info)
        engine_reasons = (
            *_engine_reasons(engine_reasons, collapse),
            f"{info.observations} observations, {info.parameters} parameters",
        )
    plan = Plan(
        method=posterior.plan.method,
        reasons=tuple(notes) + engine_reasons,
        settings={**posterior.plan.settings, "family": chosen_family.name, "priors": spec.priors},
    )
    # the gate's messages in the formula's names, not the model's internal sites
    values.update(
        problems=tuple(
            replace(p, message=_plain_names(p.message, design)) for p in values["problems"]
        ),
        attempts=tuple(
            replace(a, problems=tuple(_plain_names(m, design) for m in a.problems))
            for a in values["attempts"]
        ),
    )
    values.update(plan=plan, seconds=time.perf_counter() - started)
    return FormulaPosterior(**values, design=design, spec=spec)


_SITE = re.compile(r"\b(z|beta|L)_(\d+)\([^)]*\)(?:\[(\d+)(?:,(\d+))*\])?")


def _plain_names(message: str, design) -> str:
    """``beta_0(g)[12,1]`` -> ``x|g[G12]``, ``Intercept_centred`` -> ``Intercept (centred)``."""

    def name(match: re.Match) -> str:
        kind, block = match.group(1), design.blocks[int(match.group(2))]
        if kind == "L":
            return f"cor({block.name})"
        if match.group(3) is None:
            return f"{block.name} effects"
        level = block.levels[int(match.group(3))]
        column = block.columns[int(match.group(4) or 0)]
        label = block.effect_label(column, level)
        return label if kind == "beta" else f"{label} (non-centred)"

    # reported group effects come as "x|g[12]": their group's label instead of the index
    for block in design.blocks:
        for column in block.columns:
            pattern = re.compile(
                r"(?<![\w|(])" + re.escape(_effect_key(block, column)) + r"\[(\d+)\]"
            )
            message = pattern.sub(
                lambda m, b=block, c=column: b.effect_label(c, b.levels[int(m.group(1))]), message
            )
    return _SITE.sub(name, message.replace("Intercept_centred", "Intercept (centred)"))


def _check_response_name(name: str) -> None:
    from jaxpro.bayes._sample import sample

    taken = set(inspect.signature(sample).parameters) | {
        "X",
        "Z",
        "codes",
        "offset",
        "trials",
        "model",
    }
    if name in taken:
        raise InputError(
            f"the response column {name!r} clashes with an argument name; rename the column",
            argument="formula",
        )


@dataclass(frozen=True, repr=False)
class FormulaPosterior(Posterior):
    """A :class:`~jaxpro.bayes.Posterior` of a formula model, named by the formula.

    Attributes (beyond the engine's):
        design: the evaluated formula (columns, group levels, encodings).
        spec: the priors used and the model's site names.
    """

    design: Any = field(default=None, repr=False)
    spec: Any = field(default=None, repr=False)
    kind = "posterior"

    # ------------------------------------------------------------------ named draws

    @functools.cached_property
    def coefficients(self) -> dict[str, np.ndarray]:
        """Scalar parameters by formula name: ``(chains, draws)`` arrays.

        ``Intercept`` and the common coefficients, family parameters,
        ``sd(column|group)`` and ``cor(a,b|group)``.
        """
        return named_coefficients(self.design, self.spec, self.draws)

    @functools.cached_property
    def group_effects(self) -> dict[str, np.ndarray]:
        """Per-group deviations: ``"x|g"`` (``"g"`` for intercepts) -> ``(chains, draws, groups)``."""
        return named_group_effects(self.design, self.spec, self.draws)

    def _effects(self, draws) -> list[np.ndarray]:
        return group_deviations(self.design, self.spec, draws)

    def __getitem__(self, name: str) -> np.ndarray:
        """Draws ``(chains, draws, ...)`` of a named coefficient, a group term or an engine site."""
        if name in self.coefficients:
            return self.coefficients[name]
        if name in self.group_effects:
            return self.group_effects[name]
        return self.draws[name]

    @functools.cached_property
    def table(self):
        """Every named parameter (group effects as ``g[A]``, ``x|g[A]``): a pandas DataFrame."""
        from jaxpro.bayes._diagnose import mcmc_diagnostics

        named = dict(self.coefficients)
        labels = {}
        for block in self.design.blocks:
            for column in block.columns:
                key = _effect_key(block, column)
                for i, level in enumerate(block.levels):
                    labels[f"{key}[{i}]"] = block.effect_label(column, level)
        named.update(self.group_effects)
        table = mcmc_diagnostics(named, level=self.level, interval=self.interval).table
        return table.rename(index=labels)

    # ------------------------------------------------------------------ reports

    def summary(self) -> str:
        table = self.table
        pct = f"{100 * self.level:g}%"
        scalars = list(self.coefficients)
        effects = [name for name in table.index if name not in self.coefficients]

        def row(name):
            r = table.loc[name]
            return (
                name,
                r["mean"],
                r["sd"],
                r["lower"],
                r["upper"],
                f"{r['ess_bulk']:.0f}",
                f"{r['ess_tail']:.0f}",
                f"{r['r_hat']:.3f}",
            )

        head = (
            "parameter",
            "mean",
            "sd",
            f"{pct} {self.interval} low",
            "high",
            "ess_bulk",
            "ess_tail",
            "r_hat",
        )
        rows = [row(n) for n in scalars] + [row(n) for n in effects[:_MAX_EFFECT_ROWS]]
        lines = [
            f"jaxpro formula posterior: {self.design.formula}  (family {self.design.family.name}, "
            f"{self.plan.method}, {self.design.rows} rows)",
            format_table(head, rows, floatfmt=".4g"),
        ]
        if len(effects) > _MAX_EFFECT_ROWS:
            lines.append(
                f"... and {len(effects) - _MAX_EFFECT_ROWS} more group effects (posterior.table)"
            )
        lines.append("")
        lines += self._checks_lines()
        lines.append("priors: " + "; ".join(f"{k} ~ {v}" for k, v in self.spec.priors.items()))
        lines.append("plan: " + self.plan.summary().replace("\n", "\n      "))
        lines.append(self.timings.summary())
        return "\n".join(lines)

    def _fields(self) -> dict[str, Any]:
        base = super()._fields()
        base.update(
            formula=self.design.formula,
            family=self.design.family.name,
            rows=self.design.rows,
            priors=dict(self.spec.priors),
            groups={
                block.name: {"levels": len(block.levels), "columns": list(block.columns)}
                for block in self.design.blocks
            },
        )
        return base

    def _scalars(self):
        out = []
        for name, values in self.coefficients.items():
            out.append((name, values))
        return out[:8]

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        newdata=None,
        *,
        level: float | None = None,
        seed: int | None = None,
        draws: bool = False,
    ):
        """Expected response and predictions for new rows, with credible and predictive intervals.

        Groups not in the fitted data get effects drawn from the population
        distribution (one per posterior draw), as brms's
        ``allow_new_levels=TRUE, sample_new_levels="gaussian"``.

        Args:
            newdata: a DataFrame (or dict) with the predictor, group and
                trials/offset columns; default the fitted data.
            level: interval probability (default the posterior's).
            seed: for the simulated responses and new groups' effects.
            draws: also return the draws.

        Returns:
            DataFrame indexed like ``newdata``: ``mean``, ``lower``, ``upper``
            (of the expected response: the credible interval), ``predict_lower``
            and ``predict_upper`` (of a new observation: the predictive
            interval, equal-tailed), and ``new_group`` (True where a row's group
            was not in the fitted data). With ``draws=True``:
            ``(frame, {"mean": (draws, rows), "predicted": (draws, rows)})``.
        """
        import pandas as pd

        level = self.level if level is None else level
        if not 0 < level < 1:
            raise InputError("must be in (0, 1)", argument="level", received=level)
        design = self.design
        if newdata is None:
            frame = None
            inputs = {
                "X": design.X,
                "offset": design.offset,
                "trials": design.trials,
                "Z": design.Z,
                "codes": design.codes,
                "new_levels": tuple(np.empty(0, dtype=object) for _ in design.blocks),
            }
            index = pd.RangeIndex(design.rows)
        else:
            from jaxpro.bayes._formula import _as_frame

            frame = _as_frame(newdata, "newdata")
            inputs = design.evaluate(frame)
            index = frame.index
        rng = np.random.default_rng(self.seed + 11 if seed is None else seed)
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in self.draws.items()}
        count = next(iter(flat.values())).shape[0]
        rows = inputs["X"].shape[0]
        effects = self._effects(flat)
        # unseen groups: one population draw per posterior draw and new level
        codes, tables = [], []
        for i, block in enumerate(design.blocks):
            code = inputs["codes"][i].copy()
            table = effects[i]
            unseen = inputs["new_levels"][i]
            if unseen.size:
                names, position = np.unique(unseen, return_inverse=True)
                k = len(block.columns)
                z = rng.standard_normal((count, names.size, k))
                if self.spec.cholesky_sites[i] is not None:
                    L = flat[self.spec.cholesky_sites[i]]
                    z = z @ np.swapaxes(L, -1, -2)
                sd = np.stack([flat[s] for s in self.spec.sd_sites[i]], axis=-1)
                table = np.concatenate([table, z * sd[:, None, :]], axis=1)
                code[code < 0] = len(block.levels) + position
            codes.append(code)
            tables.append(table)
        coefficient = (
            np.stack([flat[s] for s in self.spec.coefficient_sites], axis=-1)
            if self.spec.coefficient_sites
            else np.zeros((count, 0))
        )
        intercept = flat[self.spec.intercept_site] if self.spec.intercept_site else np.zeros(count)
        aux = {name: flat[name][:, None] for name in self.spec.auxiliary_sites}
        mean = np.empty((count, rows))
        predicted = np.empty((count, rows))
        step = max(1, _PREDICT_CELLS // max(count, 1))
        for start in range(0, rows, step):
            stop = min(rows, start + step)
            Xc = inputs["X"][start:stop] - design.X_mean
            eta = intercept[:, None] + coefficient @ Xc.T
            if inputs["offset"] is not None:
                eta = eta + inputs["offset"][start:stop]
            for i in range(len(design.blocks)):
                Z = inputs["Z"][i][start:stop]
                picked = tables[i][:, codes[i][start:stop], :]
                eta = eta + np.einsum("rk,drk->dr", Z, picked)
            mu = design.family.inverse_link(eta)
            trials = inputs["trials"][start:stop] if inputs["trials"] is not None else None
            expected = mu * trials if trials is not None else mu
            mean[:, start:stop] = expected
            predicted[:, start:stop] = design.family.simulate(rng, mu, aux, trials)
        tail = (1 - level) / 2
        result = pd.DataFrame(
            {
                "mean": mean.mean(axis=0),
                "lower": np.quantile(mean, tail, axis=0),
                "upper": np.quantile(mean, 1 - tail, axis=0),
                "predict_lower": np.quantile(predicted, tail, axis=0),
                "predict_upper": np.quantile(predicted, 1 - tail, axis=0),
                "new_group": np.any([c < 0 for c in inputs["codes"]], axis=0)
                if design.blocks
                else np.zeros(rows, dtype=bool),
            },
            index=index,
        )
        if draws:
            return result, {"mean": mean, "predicted": predicted}
        return result


# ---------------------------------------------------------------------------------- named draws


def named_coefficients(design, spec, draws) -> dict[str, np.ndarray]:
    """Scalar parameters by formula name, from the model's draws (any leading shape)."""
    out: dict[str, np.ndarray] = {}
    if spec.intercept_site:
        out["Intercept"] = _uncentred_intercept(design, spec, draws)
    for site in spec.coefficient_sites:
        out[site] = np.asarray(draws[site])
    for site in spec.auxiliary_sites:
        out[site] = np.asarray(draws[site])
    for block, sd_sites, chol in zip(
        design.blocks, spec.sd_sites, spec.cholesky_sites, strict=True
    ):
        for site in sd_sites:
            out[site] = np.asarray(draws[site])
        if chol is not None:
            L = np.asarray(draws[chol])
            correlation = L @ np.swapaxes(L, -1, -2)
            for a in range(len(block.columns)):
                for b in range(a + 1, len(block.columns)):
                    name = f"cor({block.columns[a]},{block.columns[b]}|{block.name})"
                    out[name] = correlation[..., a, b]
    return out


def named_group_effects(design, spec, draws) -> dict[str, np.ndarray]:
    """``"x|g"`` (``"g"`` for intercepts) -> deviations ``(..., groups)``."""
    out = {}
    for block, effect in zip(design.blocks, group_deviations(design, spec, draws), strict=True):
        for k, column in enumerate(block.columns):
            out[_effect_key(block, column)] = effect[..., k]
    return out


def _effect_key(block, column: str) -> str:
    return block.name if column == "Intercept" else f"{column}|{block.name}"


def group_deviations(design, spec, draws) -> list[np.ndarray]:
    """Each group term's deviations ``r`` as ``(..., groups, k)``, whatever the parametrisation."""
    out = []
    for i in range(len(design.blocks)):
        if spec.centred[i]:
            coefficients = np.asarray(draws[spec.r_sites[i]], dtype=np.float64)
            population = _population(design, spec, draws, spec.loc_sources[i])
            out.append(coefficients - population[..., None, :])
            continue
        z = np.asarray(draws[spec.z_sites[i]], dtype=np.float64)
        if spec.cholesky_sites[i] is not None:
            L = np.asarray(draws[spec.cholesky_sites[i]], dtype=np.float64)
            z = z @ np.swapaxes(L, -1, -2)
        sd = np.stack([np.asarray(draws[s], dtype=np.float64) for s in spec.sd_sites[i]], axis=-1)
        out.append(z * sd[..., None, :])
    return out


def _uncentred_intercept(design, spec, draws) -> np.ndarray:
    value = np.asarray(draws[spec.intercept_site], dtype=np.float64)
    for j, site in enumerate(spec.coefficient_sites):
        value = value - design.X_mean[j] * np.asarray(draws[site])
    return value


def _population(design, spec, draws, sources) -> np.ndarray:
    """The population values a centred term's groups vary around: ``(..., k)``."""
    shape = np.shape(draws[spec.sd_sites[0][0]])
    values = []
    for source in sources:
        if source is None:
            values.append(np.zeros(shape))
        elif source == "Intercept":
            values.append(_uncentred_intercept(design, spec, draws))
        else:
            values.append(np.asarray(draws[source], dtype=np.float64))
    return np.stack(values, axis=-1)


def _reported(design, spec):
    """The gate's ``derived`` hook: the named quantities the result will report."""

    def derived(draws):
        return {
            **named_coefficients(design, spec, draws),
            **named_group_effects(design, spec, draws),
        }

    return derived
