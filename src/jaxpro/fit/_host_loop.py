"""Small fits of a function that runs only on the host: SciPy's own drivers iterate.

A model JAX cannot trace (and whose jax.numpy translation is not exact) runs in
Python whichever way it is driven. jaxpro's compiled LM/TRF loop calls it
through ``jax.pure_callback``, and each crossing costs ~60-120 us of JAX's
callback machinery (the arguments are ``device_put`` each time) besides a
compiled program (0.2-0.8 s the first time). On small data that overhead is
the whole fit: 1.4 ms against SciPy's 0.18 ms for a 1,000-point decay. There
the expert's choice is MINPACK's loop itself (``lmdif``, as
``scipy.optimize.leastsq`` runs it; ``lmder`` with the user's ``jac``) and
SciPy's ``least_squares`` for TRF and dogbox: the algorithms jaxpro's compiled
LM and TRF reproduce, iterating in C or NumPy with one plain Python call per
evaluation. Above :data:`HOST_LOOP_MAX` points (per method) the compiled
loop's cheaper linear algebra wins.

The answer comes back as the compiled engine's :class:`~jaxpro.fit._engine.Outcome`,
so everything after the solve (covariance, statistics, plan, SciPy's return
values) is shared with the compiled path.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from jaxpro.fit._engine import Outcome, Solved
from jaxpro.fit._host import HostClock, _forward_differences, dense_jacobian

__all__ = [
    "HOST_LOOP_MAX",
    "HostProblem",
    "curve_problem",
    "describe",
    "run_curve",
    "solve",
    "used_for",
]

# Points up to which a host-only model is driven by SciPy's loop, per method.
# Measured on a 2-core CPU (exp3 and gauss6 written with NumPy in place,
# warm, against the compiled loop calling the model through pure_callback):
# MINPACK's LM is 2.5-5x faster at 1e3, 1.5-2x at 1e4, even at 3e4-6e4 and
# 1.1-1.2x slower at 1e5; SciPy's TRF (an SVD per iteration) is 1.3x faster
# at 1e3, already 1.1-1.3x slower at 1e4 and 2.5-4x slower at 3e4.
HOST_LOOP_MAX = {"lm": 1 << 15, "trf": 1 << 12, "dogbox": 1 << 12}

_EPS = float(np.finfo(np.float64).eps)

# SciPy's default tolerances (ftol, xtol, gtol): scipy.optimize.leastsq (as
# curve_fit's LM runs it) and least_squares. Where the caller gave none,
# SciPy's loop stops where SciPy stops: jaxpro's own defaults (1e-15) cost a
# host-only model 40-70% more evaluations for digits far below the
# parameters' standard errors.
_SCIPY_TOLERANCES = {"lm": (1.49012e-08, 1.49012e-08, 0.0), "trf": (1e-8, 1e-8, 1e-8)}


def tolerances(settings) -> tuple[float, float, float]:
    """``(ftol, xtol, gtol)`` for SciPy's loop: the caller's, else SciPy's defaults."""
    scipy = _SCIPY_TOLERANCES["lm" if settings.method == "lm" else "trf"]
    given = (settings.ftol, settings.xtol, settings.gtol)
    return tuple(
        d if was_defaulted else g
        for g, d, was_defaulted in zip(given, scipy, settings.defaulted, strict=True)
    )


# MINPACK's info -> least_squares' status (SciPy's FROM_MINPACK_TO_COMMON);
# 6-8 ("no further reduction is possible" at tolerances near eps) converged
# as far as float64 allows, as the compiled engine reports it
_MINPACK_STATUS = {0: -1, 1: 2, 2: 3, 3: 4, 4: 1, 5: 0, 6: 2, 7: 3, 8: 1}


@dataclass(frozen=True)
class HostProblem:
    """A least-squares problem in NumPy: ``residual(theta) -> (m,)`` (weighted) and its options.

    Attributes:
        residual: the weighted residual vector at ``theta`` (a new array).
        jacobian: ``jacobian(theta) -> (m, p)`` of ``residual`` (the user's
            ``jac``, weighted), or None for forward differences.
        n_rows: rows of the covariance threshold (the data points).
        diff_step: relative forward-difference step (SciPy's ``diff_step``), or None.
        workers: a map-like callable for TRF's difference evaluations, or None.
    """

    residual: Callable
    jacobian: Callable | None
    n_rows: int
    diff_step: float | None = None
    workers: Callable | None = None


def used_for(route, n: int, settings, distributed: bool = False) -> bool:
    """Whether a fit of ``n`` points whose function took ``route`` runs in SciPy's loop."""
    from jaxpro.fit._numpy_model import HOST

    return (
        route.path == HOST
        and not distributed
        and n <= HOST_LOOP_MAX.get(settings.method, 0)
        and isinstance(settings.loss, str)  # a callable loss is JAX's (translated) version
    )


def describe(settings, user_jac: bool) -> str:
    """The driver that :func:`solve` runs for ``settings``, in words (plan and timings)."""
    if settings.method == "lm":
        if user_jac:
            return "MINPACK lmder on the host (the user's jac), as scipy.optimize.leastsq runs it"
        return (
            "MINPACK lmdif on the host (forward differences), as scipy.optimize.leastsq"
            " and curve_fit run it"
        )
    return f"scipy.optimize.least_squares(method='{settings.method}') on the host"


def _memo(function: Callable, theta0: np.ndarray, f0: np.ndarray | None) -> Callable:
    """``function`` answering calls at ``theta0`` with ``f0`` until another point comes.

    jaxpro has already evaluated the start (to refuse a non-finite one);
    leastsq's shape check and MINPACK's first evaluation ask for it again, as
    they do inside SciPy's curve_fit, whose own memoizer answers them.
    """
    if f0 is None:
        return function
    key = np.asarray(theta0, dtype=np.float64).tolist()
    live = [True]

    def call(theta):
        if live[0]:
            # lists of floats: 0.4 us, where np.array_equal takes 2.5
            if np.asarray(theta).tolist() == key:
                return f0.copy()
            live[0] = False
        return function(theta)

    return call


def _counted(function: Callable, clock: HostClock, calls: list) -> Callable:
    """``function`` timed into ``clock`` and counted in ``calls[0]``."""

    def run(theta):
        start = time.perf_counter()
        value = function(theta)
        clock.seconds += time.perf_counter() - start
        calls[0] += 1
        return value

    return run


class _LmdifCounter:
    """Tells MINPACK lmdif's difference evaluations from its evaluations at points.

    lmdif's forward differences (``fdjac2``) move coordinate j of the current
    point to exactly ``x_j + h_j``, ``h_j = sqrt(max(epsfcn, eps)) * |x_j|``
    (``sqrt(...)`` where x_j = 0), for j = 0..p-1 in turn; every other call is
    a trial point, which becomes the point the next differences start from.
    Only the counts (nfev, njev) depend on this; it costs ~0.5 us a call.
    Given ``theta0`` and ``f0`` (the start, already evaluated and counted by
    the caller), calls at ``theta0`` are answered from ``f0`` until another
    point comes, as :func:`_memo` does, without a second Python layer per call.
    """

    def __init__(
        self,
        residual: Callable,
        epsfcn: float,
        clock: HostClock,
        theta0: np.ndarray | None = None,
        f0: np.ndarray | None = None,
    ):
        self.residual = residual
        self.clock = clock
        self.eps = float(np.sqrt(max(epsfcn, _EPS)))
        self.shifted: list[float] = []  # x_j + h_j for the current point
        self.next_j = 0
        self.points = 0  # calls at trial points (the function ran)
        self.differences = 0
        self.sweeps = 0
        # the start as a list of floats: compared in 0.4 us, np.array_equal takes 2.5
        self.key = None if f0 is None else np.asarray(theta0, dtype=np.float64).tolist()
        self.f0 = f0
        if f0 is not None:
            self.at(self.key)

    def at(self, theta) -> None:
        """A new current point: the next differences start there."""
        eps = self.eps
        self.shifted = [v + (eps * abs(v) or eps) for v in np.asarray(theta).tolist()]
        self.next_j = 0

    def __call__(self, theta):
        if self.key is not None:
            if theta.tolist() == self.key:
                return self.f0.copy()
            self.key = self.f0 = None
        j = self.next_j
        if self.shifted and theta[j] == self.shifted[j]:
            self.differences += 1
            self.sweeps += j == 0
            self.next_j = (j + 1) % len(self.shifted)
        else:
            self.points += 1
            self.at(theta)
        start = time.perf_counter()
        value = self.residual(theta)
        self.clock.seconds += time.perf_counter() - start
        return value


def _covariance(R: np.ndarray, n_rows: int) -> tuple[np.ndarray, int]:
    """``(R^T R)^{-1}`` through the SVD with SciPy's rank threshold (the engine's rule).

    SciPy's LAPACK called directly: for a p x p matrix the wrappers of
    ``np.linalg.svd`` cost more than the factorisation (8 against 3 us).
    """
    from scipy.linalg import lapack

    p = R.shape[0]
    _, s, vt, info = lapack.dgesdd(R) if p else (None, np.zeros(0), np.zeros((0, 0)), 0)
    if info != 0:  # gesdd did not converge: numpy's driver raises LinAlgError
        _, s, vt = np.linalg.svd(R)
    threshold = _EPS * max(n_rows, p) * (s[0] if s.size else 0.0)
    if p and s[-1] > threshold:  # of full rank (gesdd sorts s descending): the common case
        return (vt.T * (1.0 / (s * s))) @ vt, p
    kept = s > threshold
    inverse_sq = np.where(kept, 1.0 / np.where(kept, s, 1.0) ** 2, 0.0)
    rank = int(kept.sum())
    if rank < p:
        return np.full(R.shape, np.inf), rank
    return (vt.T * inverse_sq) @ vt, rank


def _outcome(x, f, R, qtr, gradient, status, nfev, njev, active, optimality, cost, n_rows, first):
    covariance, rank = _covariance(R, n_rows)
    chi2 = float(f @ f)
    finite = bool(np.isfinite(chi2) and np.isfinite(R).all())
    return Outcome(
        np.asarray(x, dtype=np.float64),
        float(cost),  # 0.5 * sum(rho): 0.5 * chi2 for the linear loss
        chi2,
        R,
        qtr,
        gradient,
        int(status),
        int(nfev),
        int(njev),
        int(njev),
        np.asarray(active, dtype=np.int64),
        float(optimality),
        covariance,
        rank,
        finite,
        *first,
    )


def _lm(problem: HostProblem, theta0, settings, clock: HostClock, f0=None):
    """MINPACK on the host: ``(values for _outcome, J at the answer)``."""
    from scipy.optimize import leastsq

    p = theta0.shape[0]
    diag = None if settings.jac_scale else 1.0 / np.asarray(settings.x_scale, np.float64)
    ftol, xtol, gtol = tolerances(settings)
    options = {"full_output": True, "ftol": ftol, "xtol": xtol, "gtol": gtol, "diag": diag}
    # the start, when the caller evaluated it, was counted there
    given = f0 is not None
    if problem.jacobian is None:
        # lmdif's budget counts the difference evaluations too (SciPy's
        # least_squares allows 100 * p * (p + 1) there): jaxpro's max_nfev
        # counts passes, each a point and p differences
        epsfcn = 0.0 if problem.diff_step is None else float(problem.diff_step) ** 2
        counter = _LmdifCounter(problem.residual, epsfcn, clock, theta0, f0)
        x, _, info, _, ier = leastsq(
            counter,
            theta0,
            epsfcn=epsfcn,
            maxfev=settings.max_nfev * (p + 1),
            **options,
        )
        nfev, njev = counter.points + given, counter.sweeps
        clock.evaluations += counter.points
        clock.difference_evaluations += counter.differences
    else:
        calls = [0]
        residual = _memo(_counted(problem.residual, clock, calls), theta0, f0)
        jacobian = _counted(problem.jacobian, clock, [0])
        x, _, info, _, ier = leastsq(
            residual, theta0, Dfun=jacobian, maxfev=settings.max_nfev, **options
        )
        nfev, njev = calls[0] + given, int(info["njev"])
        clock.evaluations += calls[0]
    x = np.asarray(x, dtype=np.float64)
    f = np.asarray(info["fvec"], dtype=np.float64)
    # The Jacobian at the answer (MINPACK's fjac is from the last iteration
    # that computed one, a step behind): the covariance is the answer's, as
    # SciPy's least_squares(method='lm') computes it. Its evaluations are not
    # counted in nfev (nor in SciPy's).
    start = time.perf_counter()
    if problem.jacobian is not None:
        J = np.asarray(problem.jacobian(x.copy()), dtype=np.float64)
    else:
        J = _forward_differences(
            problem.residual, x, f, rel_step=problem.diff_step, workers=problem.workers
        )
    clock.seconds += time.perf_counter() - start
    gradient = J.T @ f
    R, qtr = _factor(J, f, gradient)
    status = _MINPACK_STATUS.get(int(ier), -1)
    optimality = float(np.max(np.abs(gradient))) if p else 0.0
    values = (x, f, R, qtr, gradient, status, nfev, njev, np.zeros(p), optimality, 0.5 * (f @ f))
    return values, J


def _factor(J: np.ndarray, f: np.ndarray | None, gradient: np.ndarray) -> tuple:
    """``(R, Q^T f)`` of the QR of ``J`` (``R^T (Q^T f) = gradient = J^T f``).

    SciPy's LAPACK, not NumPy's: SciPy's solvers just ran on SciPy's
    OpenBLAS, whose threads still spin for a while; NumPy's own OpenBLAS
    starved by them took 2-7 ms instead of 60 us for 4,000 x 6 on 2 cores.
    Only R is formed (no Q), by LAPACK's geqrf called directly (4 us for
    1,000 x 3, where ``scipy.linalg.qr``'s wrappers take 9); J is not overwritten.
    """
    from scipy.linalg import lapack, qr

    p = J.shape[1]
    factored, _, _, info = lapack.dgeqrf(J) if 0 < p <= J.shape[0] else (None, None, None, 1)
    if info == 0:
        R = factored[:p] * _upper(p)
    else:  # no rows to factor, or an illegal argument: SciPy's driver decides
        R = qr(J, mode="r", check_finite=False)[0][:p]
    # R^T qtr = gradient: a triangular solve where R is clearly of full rank
    # (LAPACK directly: 2 us, where lstsq's wrappers take 8-10); near a rank
    # deficiency it would blow up, and least squares (minimum norm) answers
    d = np.abs(np.diagonal(R))
    if d.min() > _EPS * max(J.shape) * d.max():
        qtr, info = lapack.dtrtrs(R, gradient, lower=0, trans=1)
        if info == 0:
            return R, qtr
    return R, np.linalg.lstsq(R.T, gradient, rcond=None)[0]


@functools.cache
def _upper(p: int) -> np.ndarray:
    """The p x p upper-triangle mask (``np.triu``'s wrappers cost 3 us for a 3 x 3)."""
    mask = np.triu(np.ones((p, p)))
    mask.flags.writeable = False
    return mask


def _trf(problem: HostProblem, theta0, settings, loss, clock: HostClock, f0=None):
    """SciPy's least_squares (TRF or dogbox) on the host: ``(values for _outcome, J)``."""
    from scipy.optimize import least_squares

    calls = [0]
    residual = _memo(_counted(problem.residual, clock, calls), theta0, f0)
    jac = "2-point" if problem.jacobian is None else problem.jacobian
    ftol, xtol, gtol = tolerances(settings)
    extra = {} if problem.workers is None else {"workers": problem.workers}
    result = least_squares(
        residual,
        theta0,
        jac=jac,
        bounds=(settings.lb, settings.ub),
        method=settings.method,
        # SciPy refuses a run whose every tolerance is below eps (jaxpro's
        # 0 disables a test, as SciPy's None does)
        ftol=ftol if ftol >= _EPS else None,
        xtol=xtol if xtol >= _EPS else None,
        gtol=gtol if gtol >= _EPS else None,
        x_scale="jac" if settings.jac_scale else np.asarray(settings.x_scale, np.float64),
        loss=loss,
        f_scale=settings.f_scale,
        max_nfev=settings.max_nfev,
        diff_step=problem.diff_step,
        tr_solver="exact",
        **extra,
    )
    # SciPy's nfev counts the points (the start included), not the differences
    points = int(result.nfev) - (f0 is not None)
    clock.evaluations += points
    clock.difference_evaluations += max(0, calls[0] - points)
    J = np.atleast_2d(np.asarray(result.jac, dtype=np.float64))
    grad = np.asarray(result.grad, dtype=np.float64)
    # Q^T of the loss-scaled residuals: R^T (Q^T f) is the gradient SciPy reports
    R, qtr = _factor(J, None, grad)
    values = (
        result.x,
        np.asarray(result.fun, dtype=np.float64),
        R,
        qtr,
        grad,
        int(result.status),
        int(result.nfev),
        int(result.njev or 0),
        result.active_mask,
        float(result.optimality),
        float(result.cost),
    )
    return values, J


def solve(
    problem: HostProblem,
    theta0: np.ndarray,
    settings,
    clock: HostClock,
    pre_loss: str | None = None,
    f0: np.ndarray | None = None,
) -> tuple[Solved, np.ndarray, np.ndarray | None]:
    """Run SciPy's driver for ``settings`` from ``theta0``.

    Args:
        problem: the residual, its optional Jacobian and the difference options.
        theta0: a start inside the bounds; settings: the resolved :class:`Settings`.
        clock: the function's :class:`HostClock` (evaluations are added to it).
        pre_loss: a loss to fit with first, from whose answer the main fit
            starts (Huber before a redescending loss, as the compiled path does).
        f0: the residual at ``theta0`` where the caller has it (and has counted
            it in ``clock``): not evaluated again.

    Returns:
        ``(solved, f, J)``: the :class:`Solved` (no compiled program), the
        residual vector at the answer, and the Jacobian SciPy returned there
        (TRF, dogbox: scaled by the robust loss; LM: the user's jac or forward
        differences).
    """
    start = time.perf_counter()
    first = (0, 0)
    theta = np.asarray(theta0, dtype=np.float64).copy()
    if pre_loss is not None and pre_loss != settings.loss:
        warm, _ = _trf(problem, theta, replace(settings, loss=pre_loss), pre_loss, clock, f0)
        f0 = None  # the main fit starts from the warm fit's answer
        if warm[5] > 0 and np.all(np.isfinite(warm[0])):
            theta = np.clip(np.asarray(warm[0], np.float64), settings.lb, settings.ub)
        first = (warm[6], warm[5])
    if settings.method == "lm":
        values, J = _lm(problem, theta, settings, clock, f0)
    else:
        values, J = _trf(problem, theta, settings, settings.loss, clock, f0)
    outcome = _outcome(*values, problem.n_rows, first)
    if first[0]:
        outcome = outcome._replace(nfev=outcome.nfev + first[0])
    solved = Solved(outcome, 0.0, time.perf_counter() - start, ())
    return solved, values[1], J


def curve_problem(model, jac, data) -> HostProblem:
    """``model(x, *p)`` against ``data`` (a CurveData) as SciPy weighs it: ``(f(x, *p) - y) / sigma``."""
    from scipy.linalg import solve_triangular

    n, x, y = data.n, data.x, data.y

    def whiten(values):
        if data.chol is not None:
            return solve_triangular(data.chol, values, lower=True, check_finite=False)
        if data.weights is not None:
            return values * (data.weights if values.ndim == 1 else data.weights[:, None])
        return values

    plain = data.chol is None and data.weights is None

    shape = (n,)
    ndarray, float64 = np.ndarray, np.dtype(np.float64)

    def residual(theta):
        value = model(x, *theta)
        # the common case (a float64 array of n values) checked in ~0.2 us:
        # this runs for every evaluation, 20-40 times in a small fit
        if type(value) is not ndarray or value.dtype != float64 or value.shape != shape:
            value = np.broadcast_to(np.asarray(value, dtype=np.float64), shape)
        return value - y if plain else whiten(value - y)

    jacobian = None
    if jac is not None:

        def jacobian(theta):
            p = theta.shape[0]
            return whiten(np.reshape(dense_jacobian(jac(x, *theta), p), (n, p)))

    return HostProblem(residual, jacobian, n)


def run_curve(model, jac, data, theta0, settings, route, auto_method: bool, what: str):
    """``_orchestrate.run_curve`` for a host-only model on small data: SciPy's loop.

    The start is checked (a non-finite model there is refused as the compiled
    path refuses it), redescending losses start from a Huber fit, and an LM
    answer in trouble gets TRF's second opinion, all as ``run_curve`` does.

    Returns:
        A ``CurveRun`` whose ``host_loop`` names the driver and ``fvec`` holds
        the weighted residuals at the answer.
    """
    # _orchestrate imports this module; its pieces are looked up at call time
    from jaxpro.errors import ModelError
    from jaxpro.fit import _data
    from jaxpro.fit._orchestrate import (
        REDESCENDING,
        CurveRun,
        _lm_trouble,
        _nonfinite_message,
        _start,
        interior_answer,
        interior_reason,
        needs_interior_opinion,
        unbounded_lm,
        warn_host,
    )

    problem = curve_problem(model, jac, data)
    start = _start(theta0, settings)
    clock = route.clock
    f0 = problem.residual(start)
    clock.evaluations += 1
    if not np.isfinite(f0).all():
        raise ModelError(_nonfinite_message(route.model, data, theta0, route.jac, what))
    pre_loss = "huber" if settings.loss in REDESCENDING else None
    solved, fvec, _ = solve(problem, start, settings, clock, pre_loss, f0)
    out = solved.outcome
    fallback = None
    first_method = settings.method
    trouble = _lm_trouble(out, data.n) if auto_method and settings.method == "lm" else None
    if trouble is not None:
        # as run_curve: TRF's second opinion, the better answer kept
        trf = replace(settings, method="trf")
        retry, retry_fvec, _ = solve(problem, _start(theta0, trf), trf, clock)
        better = retry.outcome.status > 0 and (out.status <= 0 or retry.outcome.cost <= out.cost)
        if better:
            settings, fvec = trf, retry_fvec
            fallback = f"LM {trouble}; TRF was run instead and found a better fit"
        else:
            fallback = f"LM {trouble}; TRF was tried too and did no better"
        chosen = retry if better else solved
        solved = replace(chosen, run_seconds=solved.run_seconds + retry.run_seconds)
    if needs_interior_opinion(out, settings, auto_method):
        # as run_curve: LM without the bounds, kept where it converged inside them
        retry, retry_fvec, _ = solve(problem, theta0, unbounded_lm(settings), clock)
        kept = interior_answer(retry.outcome, settings, out)
        fallback = interior_reason(out, retry.outcome, kept)
        if kept:
            settings, fvec = replace(settings, method="lm"), retry_fvec
        chosen = retry if kept else solved
        solved = replace(chosen, run_seconds=solved.run_seconds + retry.run_seconds)
    warm_info = None
    if pre_loss is not None:
        out = solved.outcome
        warm_info = {
            "points": data.n,
            "loss": pre_loss,
            "nfev": out.first_nfev,
            "status": out.first_status,
            "used": out.first_status > 0,
        }
    warn_host(what, route, solved.run_seconds)
    return CurveRun(
        solved,
        _data.Layout("direct", data.n),
        settings,
        fallback,
        warm_info,
        first_method,
        data.n,
        1,
        route,
        describe(settings, jac is not None),
        fvec,
    )
