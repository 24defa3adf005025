"""The result of :func:`jaxpro.bayes.sample`: draws, diagnostics, the plan and every attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxpro._result import Plan, Result, Timings, format_table

__all__ = ["Posterior"]

_MAX_PLOTTED = 8  # scalar parameters drawn per figure


@dataclass(frozen=True, repr=False)
class Posterior(Result):
    """Posterior draws with their diagnostics.

    Attributes:
        draws: site -> array ``(chains, draws, *shape)`` (deterministic sites included).
        diagnostics: per-parameter table and sampler checks (``.table`` is a DataFrame).
        problems: the gate's failures (empty when ``ok``).
        attempts: every run made, with its settings, time and problems.
        plan: the method chosen and why.
        info: the model's structure (observations, parameters, hierarchy).
        level, interval: credible intervals shown ("hdi" or "eti").
    """

    draws: dict
    diagnostics: Any
    problems: tuple
    attempts: tuple
    plan: Plan
    seconds: float
    model: Any = field(repr=False)
    args: tuple = field(repr=False)
    kwargs: dict = field(repr=False)
    info: Any = None
    level: float = 0.9
    interval: str = "hdi"
    seed: int = 0
    extra: dict = field(default_factory=dict, repr=False)
    kind = "posterior"

    # ------------------------------------------------------------------ verdict

    @property
    def ok(self) -> bool:
        """Whether the draws passed every check of the gate."""
        return not self.problems

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(p.message for p in self.problems)

    @property
    def timings(self) -> Timings:
        # NumPyro compiles inside each run: compilation is part of the run time
        return Timings(compile=None, run=sum(a.seconds for a in self.attempts), total=self.seconds)

    @property
    def table(self):
        """The per-parameter summary as a pandas DataFrame."""
        return self.diagnostics.table

    def __getitem__(self, site: str) -> np.ndarray:
        return self.draws[site]

    def flat(self, site: str) -> np.ndarray:
        """Draws of ``site`` with chains merged: ``(chains * draws, *shape)``."""
        values = self.draws[site]
        return values.reshape(-1, *values.shape[2:])

    # ------------------------------------------------------------------ reports

    def summary(self) -> str:
        table = self.table
        pct = f"{100 * self.level:g}%"
        rows = [
            (
                name,
                row["mean"],
                row["sd"],
                row["median"],
                row["lower"],
                row["upper"],
                f"{row['ess_bulk']:.0f}",
                f"{row['ess_tail']:.0f}",
                f"{row['r_hat']:.3f}",
                row["mcse_mean"],
            )
            for name, row in table.iterrows()
            if "_decentered" not in name  # sampler coordinates: checked, not reported
        ]
        head = (
            "parameter",
            "mean",
            "sd",
            "median",
            f"{pct} {self.interval} low",
            "high",
            "ess_bulk",
            "ess_tail",
            "r_hat",
            "mcse",
        )
        lines = [
            f"jaxpro posterior ({self.plan.method})",
            format_table(head, rows, floatfmt=".4g"),
            "",
        ]
        lines += self._checks_lines()
        lines.append("plan: " + self.plan.summary().replace("\n", "\n      "))
        lines.append(self.timings.summary())
        return "\n".join(lines)

    def _checks_lines(self) -> list[str]:
        """The gate's verdict, its failures and (after a repair) every attempt, for summaries."""
        lines = ["checks: " + ("passed" if self.ok else "FAILED")]
        lines += [f"  - {message}" for message in self.warnings]
        if len(self.attempts) > 1 or (self.attempts and self.attempts[0].problems):
            lines.append("attempts:")
            for i, attempt in enumerate(self.attempts, 1):
                verdict = "ok" if not attempt.problems else "; ".join(attempt.problems)
                lines.append(f"  {i}. {attempt.settings} ({attempt.seconds:.2f} s): {verdict}")
                lines += [f"     because {reason}" for reason in attempt.reasons]
        return lines

    def _fields(self) -> dict[str, Any]:
        table = self.table
        return {
            "ok": self.ok,
            "problems": [p.message for p in self.problems],
            "level": self.level,
            "interval": self.interval,
            "parameters": {
                name: {k: row[k] for k in table.columns} for name, row in table.iterrows()
            },
            "divergences": int(getattr(self.diagnostics, "divergences", 0) or 0),
            "attempts": [a.to_dict() for a in self.attempts],
            "observations": self.info.observations if self.info else None,
        }

    # ------------------------------------------------------------------ analysis

    def _flat_draws(self) -> dict:
        return {k: self.flat(k) for k in self.draws}

    def predictive(self, kind: str = "posterior", num_samples: int | None = None, **data) -> dict:
        """Draws of every site from the prior or posterior predictive distribution.

        The observed sites are simulated (not returned as the data they were
        conditioned on), so ``predictive()["y"]`` holds replicated data sets.

        Args:
            kind: "posterior" (one simulation per posterior draw) or "prior".
            num_samples: for the prior (default: as many as posterior draws).
            **data: model arguments to override (e.g. new predictors).

        Returns:
            site -> array with a leading draws axis.
        """
        import jax
        from numpyro.infer import Predictive

        from jaxpro._precision import float64

        kwargs = {**self.kwargs, **data}
        simulated = _unobserved(self.model, frozenset(self.info.observed) if self.info else None)
        with float64():
            if kind == "posterior":
                predictive = Predictive(simulated, posterior_samples=self._flat_draws())
            elif kind == "prior":
                count = num_samples or next(iter(self._flat_draws().values())).shape[0]
                predictive = Predictive(simulated, num_samples=count)
            else:
                from jaxpro.errors import InputError

                raise InputError("must be 'posterior' or 'prior'", argument="kind", received=kind)
            out = predictive(jax.random.PRNGKey(self.seed + 7), *self.args, **kwargs)
        return {k: np.asarray(v) for k, v in out.items()}

    def observed_data(self) -> dict:
        """The observed sites' values, as the model saw them: site -> array."""
        from jaxpro._precision import float64
        from jaxpro.bayes._model import trace_model

        with float64():
            trace = trace_model(self.model, self.args, self.kwargs, self.seed)
        return {
            name: np.asarray(site["value"])
            for name, site in trace.items()
            if site["type"] == "sample" and site["is_observed"]
        }

    def log_likelihood(self) -> dict:
        """Pointwise log-likelihood of each observed site: ``(chains, draws, n)``."""
        from numpyro.infer.util import log_likelihood

        from jaxpro._precision import float64

        chains, count = next(iter(self.draws.values())).shape[:2]
        with float64():
            values = log_likelihood(self.model, self._flat_draws(), *self.args, **self.kwargs)
        return {k: np.asarray(v).reshape(chains, count, -1) for k, v in values.items()}

    def to_inference_data(self):
        """ArviZ data (a DataTree): posterior, sample stats, log likelihood, observed data."""
        import arviz as az

        groups = {
            "posterior": dict(self.draws),
            "log_likelihood": self.log_likelihood(),
            "observed_data": self.observed_data(),
        }
        extra = self.extra.get("extra") or {}
        if extra:
            groups["sample_stats"] = {
                "diverging": extra.get("diverging"),
                "n_steps": extra.get("num_steps"),
                "energy": extra.get("energy"),
            }
            groups["sample_stats"] = {
                k: v for k, v in groups["sample_stats"].items() if v is not None
            }
        return az.from_dict(groups)

    def to_netcdf(self, path: str | Path) -> Path:
        """Write the ArviZ data to a netCDF file."""
        path = Path(path)
        self.to_inference_data().to_netcdf(path)
        return path

    def loo(self):
        """PSIS leave-one-out cross-validation (ArviZ): expected log predictive density and Pareto k."""
        import arviz as az

        return az.loo(self.to_inference_data())

    def waic(self) -> dict:
        """WAIC from the pointwise log-likelihood: ``{"elpd_waic", "p_waic", "se"}``."""
        from scipy.special import logsumexp

        pointwise = np.concatenate(
            [v.reshape(-1, v.shape[-1]) for v in self.log_likelihood().values()], axis=1
        )
        draws = pointwise.shape[0]
        lppd = logsumexp(pointwise, axis=0) - np.log(draws)
        p_waic = np.var(pointwise, axis=0, ddof=1)
        elpd = lppd - p_waic
        return {
            "elpd_waic": float(elpd.sum()),
            "p_waic": float(p_waic.sum()),
            "se": float(np.sqrt(elpd.size * np.var(elpd))),
        }

    # ------------------------------------------------------------------ plots

    def _scalars(self):
        names = []
        for site, values in self.draws.items():
            if site.endswith("_decentered"):
                continue
            flat = values.reshape(values.shape[0], values.shape[1], -1)
            for j in range(flat.shape[2]):
                label = site if flat.shape[2] == 1 else f"{site}[{j}]"
                names.append((label, flat[:, :, j]))
        return names[:_MAX_PLOTTED]

    def plot(self, kind: str = "trace"):
        """A matplotlib Figure: "trace", "rank", "posterior" or "ppc" (posterior predictive check)."""
        from matplotlib.figure import Figure

        from jaxpro.errors import InputError

        if kind not in ("trace", "rank", "posterior", "ppc"):
            raise InputError(
                "must be 'trace', 'rank', 'posterior' or 'ppc'", argument="kind", received=kind
            )
        if kind == "ppc":
            return self._plot_ppc()
        scalars = self._scalars()
        rows = len(scalars)
        figure = Figure(
            figsize=(9 if kind == "trace" else 5, 1.6 * rows + 0.6), layout="constrained"
        )
        axes = figure.subplots(rows, 2 if kind == "trace" else 1, squeeze=False)
        for i, (label, values) in enumerate(scalars):
            if kind == "trace":
                for chain in values:
                    axes[i, 0].hist(chain, bins=40, histtype="step", density=True)
                    axes[i, 1].plot(chain, lw=0.4)
                axes[i, 0].set_ylabel(label)
            elif kind == "rank":
                ranks = np.argsort(np.argsort(values.ravel())).reshape(values.shape)
                for chain in ranks:
                    axes[i, 0].hist(chain, bins=20, histtype="step")
                axes[i, 0].set_ylabel(label)
            else:
                flat = values.ravel()
                row = self.table.loc[label] if label in self.table.index else None
                axes[i, 0].hist(flat, bins=60, density=True)
                if row is not None:
                    for edge in (row["lower"], row["upper"]):
                        axes[i, 0].axvline(edge, color="k", lw=1)
                axes[i, 0].set_ylabel(label)
        figure.suptitle(f"{kind} ({self.plan.method})", fontsize="medium")
        return figure

    def _plot_ppc(self):
        from matplotlib.figure import Figure

        simulated = self.predictive(
            "posterior", **{name: None for name in self.info.observed if name in self.kwargs}
        )
        figure = Figure(figsize=(5, 3.2 * len(self.info.observed)), layout="constrained")
        axes = np.atleast_1d(figure.subplots(len(self.info.observed), 1))
        for ax, name in zip(axes, self.info.observed, strict=True):
            observed = np.asarray(self.kwargs.get(name, np.nan)).ravel()
            draws = simulated.get(name)
            if draws is not None:
                for replicate in draws[:: max(1, draws.shape[0] // 40)]:
                    ax.hist(
                        np.ravel(replicate),
                        bins=30,
                        histtype="step",
                        density=True,
                        color="C0",
                        alpha=0.2,
                    )
            if np.all(np.isfinite(observed)):
                ax.hist(
                    observed,
                    bins=30,
                    histtype="step",
                    density=True,
                    color="k",
                    lw=1.5,
                    label="observed",
                )
            ax.set_xlabel(name)
            ax.legend(fontsize="small")
        return figure

    def save(self, directory: str | Path, *, figures: bool = True) -> Path:
        """``result.json``, ``posterior.nc`` (ArviZ netCDF) and trace/rank/posterior figures."""
        out = super().save(directory, figures=False)
        self.to_netcdf(out / "posterior.nc")
        if figures:
            for kind in ("trace", "rank", "posterior"):
                self.plot(kind).savefig(out / f"{kind}.png", dpi=110, bbox_inches="tight")
        return out


def _unobserved(model, names):
    """``model`` with its observed sites (all, or those in ``names``) sampled, not conditioned on."""
    from numpyro.primitives import Messenger

    class Unobserved(Messenger):
        def process_message(self, msg):
            if (
                msg["type"] == "sample"
                and msg["is_observed"]
                and (names is None or msg["name"] in names)
            ):
                msg["value"], msg["is_observed"] = None, False

    return Unobserved(model)
