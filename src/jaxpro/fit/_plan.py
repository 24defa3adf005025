"""The fit's plan: which method and data path were chosen, and why, in words a user can check."""

from __future__ import annotations

from dataclasses import replace

from jaxpro._result import Plan
from jaxpro.fit._data import DIRECT_MAX
from jaxpro.fit._orchestrate import CurveRun, Settings

_METHOD_NAMES = {"lm": "Levenberg-Marquardt (MINPACK)", "trf": "Trust Region Reflective"}


def method_reasons(
    requested: str | None, settings: Settings, bounded_names: list[str]
) -> list[str]:
    """Why ``settings.method`` was used."""
    name = _METHOD_NAMES[settings.method]
    if requested == "dogbox":
        return [
            f"{name}: 'dogbox' was requested; jaxpro runs TRF, which solves the same bounded problem"
        ]
    if requested not in (None, "auto"):
        return [f"{name}: requested by the caller"]
    if bounded_names:
        shown = ", ".join(bounded_names[:4]) + (" ..." if len(bounded_names) > 4 else "")
        return [f"{name}: parameters have bounds ({shown}); LM cannot honour bounds"]
    if settings.loss != "linear":
        loss = settings.loss if isinstance(settings.loss, str) else "a custom loss"
        return [f"{name}: robust loss {loss}; MINPACK's LM supports only the linear loss"]
    return [f"{name}: no bounds and the linear loss, where LM converges fastest"]


def build_plan(
    requested: str | None, run: CurveRun, n: int, n_params: int, bounded_names: list[str]
) -> Plan:
    """Assemble the :class:`Plan` recorded in a FitResult."""
    settings, layout = run.settings, run.layout
    chosen = replace(settings, method=run.first_method or settings.method)
    reasons = method_reasons(requested, chosen, bounded_names)
    if run.fallback:
        reasons.append(run.fallback)
    reasons.append(_model_reason(run, n_params))
    if run.host_loop is not None:
        from jaxpro.fit._host_loop import HOST_LOOP_MAX

        reasons.append(
            f"{n} points <= {HOST_LOOP_MAX[settings.method]} with a model that runs only in Python: {run.host_loop},"
            " one plain call per evaluation and nothing to compile (jaxpro's compiled loop would"
            " pay JAX's callback cost at every host round trip and a compile, more than the fit)"
        )
    elif layout.kind == "direct":
        how = (
            "the Gram matrix of [J | r] each evaluation"
            if compact_finished(run)
            else "Householder QR of the whole Jacobian each iteration"
        )
        reasons.append(
            f"{n} points <= {DIRECT_MAX}: {how}, "
            f"data padded to {layout.size} so other lengths reuse the compiled program"
        )
    else:
        reasons.append(
            f"{n} points: Jacobian never stored; each pass accumulates the {n_params}x{n_params} "
            f"factor over {layout.describe()}"
        )
    compact = getattr(run, "compact", None)  # a StreamRun has none
    if compact is not None:
        reasons.append(compact)
    if layout.shards > 1:
        reasons.append(
            f"chunks split over {layout.shards} devices: each sums its share of the Gram matrix of "
            "the preconditioned Jacobian and one psum adds them; with the last factor as "
            "preconditioner the sum is as accurate as gathering and re-factorising the devices' factors"
        )
    if run.processes > 1:
        reasons.append(
            f"split across {run.processes} processes (jax.distributed): each holds only its own "
            "rows; every pass adds the processes' partial sums with one psum"
        )
    warm = run.warm_start
    if warm is not None:
        subsample = warm["points"] < n
        what = f"a {warm['points']}-point random subsample" if subsample else "the data"
        if warm["loss"] != settings_out_loss(settings):
            what += f" with the {warm['loss']} loss ({settings_out_loss(settings)} is redescending: it needs a start near the answer)"
        if warm["used"]:
            reasons.append(f"started from a fit to {what} ({warm['nfev']} evaluations)")
        else:
            reasons.append(
                f"the preliminary fit to {what} failed (status {warm['status']}); started from p0"
            )
    settings_out = {
        "method": settings.method,
        "loss": settings_out_loss(settings),
        "f_scale": settings.f_scale,
        "path": (
            "host loop"
            if run.host_loop is not None
            else "direct"
            if layout.kind == "direct"
            else "chunked"
        ),
        "layout": (
            run.host_loop
            if run.host_loop is not None
            else layout.describe("Gram matrix of [J | r]")
            if compact_finished(run)
            else layout.describe()
        ),
        # the tolerances that ran: SciPy's defaults in its host loop where none were given
        **dict(zip(("ftol", "xtol", "gtol"), _tolerances(run), strict=True)),
        "max_nfev": settings.max_nfev,
        "x_scale": "jac" if settings.jac_scale else [float(v) for v in settings.x_scale],
    }
    if compact is not None:
        # the program that produced the answer
        settings_out["program"] = "compact LM" if compact_finished(run) else settings.method.upper()
    route = getattr(run, "route", None)  # a StreamRun has none: streamed models are traced
    if route is not None:
        settings_out["model"] = route.path
    if layout.kind == "chunked":
        settings_out["chunk"] = layout.size
        settings_out["chunks"] = layout.body_chunks + layout.rest_chunks
    if run.processes > 1:
        settings_out["processes"] = run.processes
    if warm is not None:
        settings_out["warm_start"] = {
            "points": warm["points"],
            "loss": warm["loss"],
            "used": warm["used"],
        }
    return Plan(method=settings.method, reasons=tuple(reasons), settings=settings_out)


def compact_finished(run) -> bool:
    """Whether the compact LM (``_orchestrate._compact_first``) produced the answer."""
    return getattr(run, "compact_finished", False)  # a StreamRun has no such field


def _tolerances(run: CurveRun) -> tuple[float, float, float]:
    settings = run.settings
    if run.host_loop is not None:
        from jaxpro.fit._host_loop import tolerances

        return tolerances(settings)
    return settings.ftol, settings.xtol, settings.gtol


def _model_reason(run: CurveRun, n_params: int) -> str:
    """How the model ran: as written for JAX, translated from NumPy, or on the host."""
    from jaxpro.fit import _numpy_model

    autodiff = f"exact Jacobian by forward-mode autodiff ({n_params} directions per pass)"
    route = getattr(run, "route", None)
    if route is None or route.path == _numpy_model.JAX:
        return autodiff
    if route.path == _numpy_model.TRANSLATED:
        return (
            f"the model is written with NumPy ({route.reason}); it ran as its jax.numpy"
            " translation, which traced and matched NumPy's values at p0 (relative 1e-9): "
            + autodiff
        )
    clock = route.clock
    return (
        f"the model cannot be traced by JAX ({route.reason}); it ran on the host as SciPy runs"
        f" it, with a forward-difference Jacobian ({n_params + 1} evaluations per pass):"
        f" {clock.evaluations + clock.difference_evaluations} evaluations took"
        f" {clock.seconds:.3g} s. Written with jax.numpy it would run compiled, with exact"
        " derivatives"
    )


def settings_out_loss(settings: Settings) -> str:
    return settings.loss if isinstance(settings.loss, str) else "custom"


def build_stream_plan(requested, run, n_params: int, bounded_names: list[str], source: str) -> Plan:
    """The :class:`Plan` of a fit streamed from a source larger than memory."""
    settings = run.settings
    reasons = method_reasons(requested, settings, bounded_names)
    reasons.append(_model_reason(run, n_params))
    reasons.append(
        f"streamed from {source}: {run.n} points read in chunks of {run.chunk_rows} rows, "
        f"{run.passes} passes; reading the next chunk overlaps the device's work on the last, "
        "so memory stays at a chunk or two"
    )
    warm = run.warm_start
    if warm is not None and warm["used"]:
        reasons.append(
            f"started from a fit to a {warm['points']}-point sample read directly from the source "
            f"({warm['nfev']} evaluations)"
        )
    elif warm is None:
        reasons.append("no random access to the source: started from p0 (no subsample warm start)")
    return Plan(
        method=settings.method,
        reasons=tuple(reasons),
        settings={
            "method": settings.method,
            "loss": settings_out_loss(settings),
            "path": "streamed",
            "chunk_rows": run.chunk_rows,
            "passes": run.passes,
            "ftol": settings.ftol,
            "xtol": settings.xtol,
            "gtol": settings.gtol,
            "max_nfev": settings.max_nfev,
        },
    )
