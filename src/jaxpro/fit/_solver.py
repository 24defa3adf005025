"""What LM and TRF share: their state and options, and the loop that drives them.

A method is a :class:`Method`: pure ``init`` / ``propose`` / ``judge`` /
``update`` pieces. :func:`drive` runs it under one ``lax.while_loop`` in which
every iteration makes exactly one data pass, so the (model-specific, costly
to compile) pass appears once in the program. Stages solve the same problem on
different data in sequence, each starting where the last converged: a fit to
a subsample, then to all the data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxpro.fit import _linalg
from jaxpro.fit._linalg import all_finite, dot, solve_upper
from jaxpro.fit._pass import Linearization

# status while the loop runs; final codes follow SciPy (0 max_nfev, 1 gtol,
# 2 ftol, 3 xtol, 4 ftol and xtol) plus -3: non-finite cost at the start.
RUNNING = -100
NONFINITE_START = -3


class Options(NamedTuple):
    """Termination and scaling settings (arrays are traced, bools are static)."""

    ftol: Any
    xtol: Any
    gtol: Any
    max_nfev: Any
    x_scale: Any  # array of variable scales, used when jac_scale is False
    jac_scale: bool  # scale variables by the Jacobian's column norms
    n_rows: Any  # number of residuals (rank threshold of the trust-region solve)

    @property
    def rounding(self):
        """Relative rounding error of a cost summed over ``n_rows`` terms.

        A predicted relative reduction below it cannot be observed: the fit is
        as converged as float64 allows, and the actual reduction is noise.
        """
        return 4.0 * float(jnp.finfo(jnp.float64).eps) * jnp.sqrt(jnp.maximum(self.n_rows, 1.0))


class SolverState(NamedTuple):
    x: jax.Array
    lin: Linearization
    nfev: jax.Array
    njev: jax.Array
    nit: jax.Array
    status: jax.Array
    extra: Any  # method-specific


def final_newton_step(lin: Linearization, options: Options):
    """The Gauss-Newton step at a point where it can no longer be checked.

    When the full Gauss-Newton step's predicted reduction, ``0.5 ||qtr||^2``,
    is below the cost's rounding, another data pass could not tell whether it
    helps; the linear model is exact to far better than that at this scale, so
    the step is taken without a pass and the fit stops (one pass saved, and the
    last digits gained rather than left on the table).

    Returns:
        ``(step, usable)``.
    """
    decrement = 0.5 * dot(lin.qtr, lin.qtr) / jnp.maximum(lin.cost, jnp.finfo(lin.cost.dtype).tiny)
    step = -solve_upper(lin.R, lin.qtr)
    usable = lin.finite & (decrement <= options.rounding) & all_finite(step)
    return step, usable


def conclude(state, x, lin, accept, status, extra, options, inside=None) -> SolverState:
    """The state after a trial: take the final Gauss-Newton step where it applies, count.

    Args:
        inside: optional ``inside(x) -> bool``; the final step is taken only where true
            (TRF keeps iterates strictly feasible).
    """
    newton, usable = final_newton_step(lin, options)
    polish = accept & usable
    if inside is not None:
        polish = polish & inside(x + newton)
    x = jnp.where(polish, x + newton, x)
    status = jnp.where(polish & (status == RUNNING), 2, status)
    return SolverState(
        x, lin, state.nfev + 1, state.njev + accept, state.nit + accept, status, extra
    )


def column_norms(R: jax.Array) -> jax.Array:
    """Column norms of J, read off its triangular factor."""
    return _linalg.column_norms(R)


def decided(pred):
    """``pred`` computed once, before the arrays it selects between.

    Under ``vmap`` XLA would otherwise fuse a long per-fit test (a verdict,
    a status) into every element of each array it selects, recomputing it
    ``p * p`` times for a factor ``R``; the barrier keeps it one value per fit.
    """
    return lax.optimization_barrier(pred)


def select(pred, on_true, on_false):
    """Elementwise ``where`` over two pytrees of the same structure."""
    pred = decided(pred)
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class Method(NamedTuple):
    """A least-squares method as pure pieces.

    Attributes:
        init: ``(x0, lin0, options, lb, ub) -> SolverState``.
        propose: ``(state, options, lb, ub, active) -> (trial_x, proposal)``; ``active``
            (bool) is false when the proposal will be discarded (a batched program
            computes one for fits that are starting too): costly optional work
            may then be skipped.
        judge: ``(state, proposal, trial_lin, options) -> accept`` (bool).
        update: ``(state, proposal, trial_lin, options, lb, ub) -> SolverState``.
        optimality: ``(state, lb, ub) -> float`` (SciPy's first-order optimality).
        active_mask: ``(state, lb, ub, xtol) -> int array``.
    """

    init: Callable
    propose: Callable
    judge: Callable
    update: Callable
    optimality: Callable
    active_mask: Callable


class Stage(NamedTuple):
    """One problem in a sequence: how to evaluate it and when to stop.

    Attributes:
        evaluate: ``evaluate(theta, reference_R, repeat_if, passes) -> Linearization``:
            one data pass preconditioned by ``reference_R``; a chunked pass whose
            factor came out inaccurate is repeated (up to ``passes`` more times,
            with its own ``R``) while ``repeat_if(lin)`` holds.
        options: the stage's settings.
    """

    evaluate: Callable[..., Linearization]
    options: Options


class _Drive(NamedTuple):
    stage: jax.Array
    starting: jax.Array  # the next pass initialises the stage
    start_x: jax.Array
    start_reference: jax.Array
    state: SolverState
    first_nfev: jax.Array  # evaluations and status of stage 0 when it ended
    first_status: jax.Array


def _stage_options(stages: Sequence[Stage], index) -> Options:
    """The options of stage ``index`` (a traced integer)."""
    first = stages[0].options
    if len(stages) == 1:
        return first
    pick = {}
    for name in Options._fields:
        if name == "jac_scale":
            pick[name] = first.jac_scale
        else:
            pick[name] = jnp.stack([jnp.asarray(st.options._asdict()[name]) for st in stages])[
                index
            ]
    return Options(**pick)


def _zeros_like_shape(tree):
    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)


class Driver:
    """:func:`drive`'s loop as pieces (``start``, ``step``, ``running``, ``result``).

    :func:`drive` runs them under one ``lax.while_loop``; a batched program
    steps many fits at once and replaces finished ones with new ones between
    steps (see :func:`jaxpro.fit._engine.queued_program_fn`).
    """

    def __init__(self, method: Method, stages: Sequence[Stage], lb, ub):
        self.method, self.stages, self.lb, self.ub = method, stages, lb, ub
        self.rows = jnp.stack([jnp.asarray(st.options.n_rows, lb.dtype) for st in stages])

    def start(self, x0, reference) -> _Drive:
        """The loop's initial value: the first pass will initialise stage 0 at ``x0``.

        Args:
            reference: ``(p, p)`` preconditioner for stage 0's first pass.
        """
        method, stages, lb, ub = self.method, self.stages, self.lb, self.ub
        p = x0.shape[0]
        zero_lin = Linearization(
            jnp.zeros((), x0.dtype),
            jnp.eye(p, dtype=x0.dtype),
            jnp.zeros(p, x0.dtype),
            jnp.zeros((), x0.dtype),
            jnp.asarray(True),
            jnp.asarray(False),
        )
        state0 = _zeros_like_shape(
            jax.eval_shape(lambda: method.init(x0, zero_lin, stages[0].options, lb, ub))
        )
        return _Drive(
            jnp.zeros((), jnp.int32),
            jnp.asarray(True),
            x0,
            reference,
            state0,
            jnp.zeros((), jnp.int32),
            jnp.asarray(RUNNING, jnp.int32),
        )

    @staticmethod
    def restart(d: _Drive, x0, reference) -> _Drive:
        """``d`` set to start over from ``x0``, as :meth:`start` would.

        The solver state is left as it is: the next :meth:`step` initialises
        a new one without reading it, so a slot is reused without rebuilding it.
        """
        return d._replace(
            stage=jnp.zeros_like(d.stage),
            starting=jnp.ones_like(d.starting),
            start_x=x0,
            start_reference=reference,
            first_nfev=jnp.zeros_like(d.first_nfev),
            first_status=jnp.full_like(d.first_status, RUNNING),
        )

    def step(self, d: _Drive) -> _Drive:
        """One iteration: a trial point (or the stage's start), its data pass, the update."""
        method, stages, lb, ub = self.method, self.stages, self.lb, self.ub
        last = len(stages) - 1
        options = _stage_options(stages, d.stage)
        no_proposal = _zeros_like_shape(
            jax.eval_shape(lambda s: method.propose(s, options, lb, ub, True)[1], d.state)
        )
        theta, proposal = lax.cond(
            d.starting,
            lambda s: (d.start_x, no_proposal),
            # a batch also proposes for fits that start (or have finished): discarded
            lambda s: method.propose(s, options, lb, ub, ~d.starting & (s.status == RUNNING)),
            d.state,
        )
        chosen = jnp.where(d.starting, d.start_reference, d.state.lin.R)

        def repeat_if(trial):
            return d.starting | method.judge(d.state, proposal, trial, options)

        passes = jnp.where(d.starting, 3, 2)
        lin = lax.switch(
            d.stage,
            [lambda th, ref, st=st: st.evaluate(th, ref, repeat_if, passes) for st in stages],
            theta,
            chosen,
        )
        state = lax.cond(
            d.starting,
            lambda s: method.init(theta, lin, options, lb, ub),
            lambda s: method.update(s, proposal, lin, options, lb, ub),
            d.state,
        )
        if last == 0:  # one stage: nothing to hand on
            return d._replace(starting=jnp.zeros_like(d.starting), state=state)
        finished = (state.status != RUNNING) | (state.nfev >= options.max_nfev)
        advance = decided(finished & (d.stage < last))
        converged = (state.status > 0) & state.lin.finite
        # J^T J grows with the number of points: rescale the factor for the next stage
        growth = jnp.sqrt(self.rows[jnp.minimum(d.stage + 1, last)] / self.rows[d.stage])
        start_x = jnp.where(advance & converged, state.x, d.start_x)
        start_reference = jnp.where(advance & converged, state.lin.R * growth, d.start_reference)
        first_nfev = jnp.where(advance & (d.stage == 0), state.nfev, d.first_nfev)
        first_status = jnp.where(advance & (d.stage == 0), state.status, d.first_status)
        return _Drive(
            d.stage + advance, advance, start_x, start_reference, state, first_nfev, first_status
        )

    def running(self, d: _Drive) -> jax.Array:
        """Whether another :meth:`step` is needed."""
        options = _stage_options(self.stages, d.stage)
        going = (d.state.status == RUNNING) & (d.state.nfev < options.max_nfev)
        return d.starting | going

    @staticmethod
    def result(d: _Drive):
        """``(state, first_nfev, first_status)`` of a finished loop (status 0: out of evaluations)."""
        state = d.state._replace(status=jnp.where(d.state.status == RUNNING, 0, d.state.status))
        return state, d.first_nfev, d.first_status

    def run(self, x0, reference):
        """The whole loop from ``x0``: :meth:`result` of the final value."""
        return self.result(lax.while_loop(self.running, self.step, self.start(x0, reference)))


def drive(method: Method, stages: Sequence[Stage], x0, reference, lb, ub):
    """Run ``method`` through ``stages`` from ``x0``.

    Args:
        reference: ``(p, p)`` preconditioner for stage 0's first pass.

    Returns:
        ``(state, first_nfev, first_status)``: the last stage's final state
        (status 0 if it ran out of evaluations) and how stage 0 ended.
    """
    return Driver(method, stages, lb, ub).run(x0, reference)
