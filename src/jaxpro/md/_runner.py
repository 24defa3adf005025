"""The chunk loop of a run: compiled chunks, overflow re-runs, blow-up and box checks, checkpoints.

Between chunks the host checks what a compiled program cannot act on: a neighbour
list that overflowed (re-allocated, the chunk run again from its start), energies
that turned NaN or exploded, a barostatted box squeezed under twice the cutoff
(both stop the run with the step), and checkpoints to write.
"""

from __future__ import annotations

import time

import numpy as np

from jaxpro.errors import SimulationError
from jaxpro.md import _engine as eng

__all__ = ["MAX_REALLOCATIONS", "Runner"]

MAX_REALLOCATIONS = 6


def _records_of(run) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in run.items()}


class Runner:
    """The chunk loop of one run (also used for the dt trial)."""

    def __init__(self, system, engine, settings, neighbors, key, frames_every):
        self.system, self.engine, self.settings = system, engine, settings
        self.neighbors, self.key, self.frames_every = neighbors, key, frames_every
        self.compile_seconds = 0.0
        self.reallocations = 0

    def _compiled(self, state, neighbors):
        program = eng.chunk_program(self.engine, self.settings)
        import jax

        # the whole input structure (list capacities are pytree metadata) and every
        # leaf's shape and dtype (float32 and float64 runs of one system): a
        # program is reused only for inputs it was compiled for
        leaves, structure = jax.tree.flatten((state, neighbors))
        key = (
            program,
            structure,
            tuple((np.shape(x), getattr(x, "dtype", type(x))) for x in leaves),
        )
        compiled = _COMPILED.get(key)
        if compiled is None:
            start = time.perf_counter()
            compiled = program.lower(state, neighbors).compile()
            self.compile_seconds += time.perf_counter() - start
            _COMPILED[key] = compiled
            while len(_COMPILED) > 32:
                _COMPILED.pop(next(iter(_COMPILED)))
        return compiled

    def run(self, chunks: int, progress=None, resume=None, checkpoint=None):
        """Run ``chunks`` chunks (from a checkpoint when ``resume`` is given).

        ``checkpoint`` is ``(directory, chunks_between, fingerprint)`` or None.
        """
        import jax

        from jaxpro.md import _restart

        state = eng.initial_state(self.engine, self.settings, self.system, self.neighbors, self.key)
        neighbors = self.neighbors
        steps_per_chunk = self.settings.records * self.settings.record_every
        if resume is not None:
            state, neighbors = _restart.rebuild(state, neighbors, resume)
            parts = [resume.records]
            done = resume.step // steps_per_chunk
            if progress is not None:
                progress(resume.step)
        else:
            first = {k: np.asarray(v)[None] for k, v in
                     jax.jit(eng.observe, static_argnums=0)(self.engine, state, neighbors).items()}  # fmt: skip
            parts = [first]
            done = 0
        first = parts[0]
        while done < chunks:
            new_state, new_neighbors, records = self._compiled(state, neighbors)(state, neighbors)
            if neighbors is not None and bool(new_neighbors.overflow):
                neighbors = self._reallocate(state, new_state, done * steps_per_chunk)
                continue
            records = _records_of(records)
            total = records["potential"] + records["kinetic"]
            # NaN, or an energy grown a thousandfold: the integration has blown up
            scale = max(abs(float(first["potential"][0] + first["kinetic"][0])),
                        self.system.n * self.settings.kT)  # fmt: skip
            broken = ~np.isfinite(total) | (np.abs(total - total[0]) > 1e3 * scale)
            if np.any(broken):
                step = self._step_of(done, int(np.argmax(broken)))
                raise SimulationError(
                    f"the energy became NaN, infinite or exploded by step {step}: the time step"
                    f" ({self.settings.dt:g}) is too large for this system or particles overlap;"
                    " try a smaller dt",
                    step=step,
                    partial=parts,
                )
            if "box" in records and self.system.potential is not None:
                self._check_box(records["box"], done)
            parts.append(records)
            state, neighbors = new_state, new_neighbors
            done += 1
            if checkpoint is not None and (done % checkpoint[1] == 0 or done == chunks):
                so_far = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                parts = [so_far]
                _restart.save(checkpoint[0], done * steps_per_chunk, state, neighbors, so_far,
                              checkpoint[2])  # fmt: skip
            if progress is not None:
                progress(steps_per_chunk)
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        self.final_neighbors = neighbors
        return out, state

    def _step_of(self, done: int, record: int) -> int:
        """The step of record ``record`` in the chunk after ``done`` finished chunks."""
        return (done * self.settings.records + record + 1) * self.settings.record_every

    def _check_box(self, sides: np.ndarray, done: int) -> None:
        """A barostatted box must stay wider than twice the cutoff (one image per pair)."""
        least = 2 * self.system.potential.cutoff
        if np.min(sides) < least:
            bad = int(np.argmax(sides < least))
            step = self._step_of(done, bad)
            raise SimulationError(
                f"the box side shrank to {float(sides[bad]):.4g} by step {step}, under twice the"
                f" cutoff ({least:g}): pairs would meet more than one image; simulate more"
                " particles",
                step=step,
            )

    def _reallocate(self, start_state, end_state, step: int):
        """A larger list, sized from the chunk's end positions, then placed at its start."""
        self.reallocations += 1
        if self.reallocations > MAX_REALLOCATIONS:
            raise SimulationError(
                f"the neighbour list overflowed {MAX_REALLOCATIONS} times by step {step}: the"
                " system is far from uniform (a collapse or an explosion); check dt and density",
                step=step,
            )
        extra = 0 if self.reallocations == 1 else 8 * 2 ** (self.reallocations - 2)
        end, end_box = self.engine.real(end_state)
        start, start_box = self.engine.real(start_state)
        if not (np.all(np.isfinite(np.asarray(end))) and np.isfinite(float(end_box))):
            # the missing neighbours let particles overlap and the chunk blew up: size
            # the list at the start, with room growing at each attempt (a box that a
            # barostat squeezes fills its rows as it goes)
            end, end_box = start, start_box
            extra += self.reallocations * max(self.neighbors.capacity // 4, 4)
        bigger = self.engine.allocate(end, extra_capacity=extra, box=end_box)
        return self.engine.lister.place(start, bigger, box=start_box)


_COMPILED: dict = {}
