"""Laying data out for the compiled passes: size buckets, chunks, and zero-copy views.

Two layouts, chosen by the number of points ``n``:

- **direct** (``n <= DIRECT_MAX``, or a full covariance): one block padded to
  the next power of two (at least 32), so fits of the same model to data of
  other lengths reuse the compiled program; padded points carry weight 0.
- **chunked**: a *body* of whole chunks read straight from the caller's arrays
  (no copy when they are 64-byte aligned, which is what XLA needs to alias host
  memory) and a *rest* of padded chunks holding the unaligned head and what is
  left over. Up to ``BUCKETED_MAX`` points the body's chunk count is rounded
  down and the rest's rounded up along a ladder of ratio <= 1.34, so a new
  length rarely recompiles and at most about a quarter of the data is copied.
  Beyond that the body takes every whole chunk (copying a quarter of a data set
  this size would cost more memory than a compilation costs time).

Weights are ``1/sigma`` per point, 0 where a point is padding; a chunk without a
``w`` entry has every point valid with weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

DIRECT_MAX = 1 << 12
BUCKETED_MAX = 1 << 22
MID_CHUNK = 1 << 12
LARGE_CHUNK = 1 << 16
_ALIGN = 64
_MIN_DIRECT = 32
# chunk counts: each rung at most 34% above the one before
_LADDER = tuple(sorted({m * 2**e for e in range(12) for m in (4, 5, 6, 7)} | {1, 2, 3}))


@dataclass(frozen=True)
class Layout:
    """Static description of a data layout (part of the compiled program's identity).

    Attributes:
        kind: "direct" or "chunked".
        size: padded length (direct) or points per chunk (chunked).
        body_chunks: chunks read in place (chunked).
        rest_chunks: padded chunks holding the remainder (chunked).
        weighted_body: whether body chunks carry a weight array.
        x_parts: 0 when x is one array over points; k when x has k rows.
        covariance: a full (lower Cholesky) covariance transforms the residuals.
        copied: whether the body had to be copied (unaligned or strided input).
        shards: devices the chunks are split over (1: one device).
    """

    kind: str
    size: int
    body_chunks: int = 0
    rest_chunks: int = 0
    weighted_body: bool = False
    x_parts: int = 0
    covariance: bool = False
    copied: bool = False
    shards: int = 1
    lead: bool = False  # the padded region starts with one extra chunk (see build's lead)

    def describe(self, factor: str = "Householder QR") -> str:
        """The layout in words; ``factor``: how a direct block is factored."""
        if self.kind == "direct":
            return f"one block of {self.size} points ({factor})"
        text = f"{self.body_chunks} chunks of {self.size} points"
        text += " (copied)" if self.copied else " read in place"
        if self.rest_chunks:
            text += f" + {self.rest_chunks} padded chunk{'s' if self.rest_chunks > 1 else ''}"
        if self.shards > 1:
            text += f", split over {self.shards} devices"
        return text


def _power_of_two_at_least(n: int) -> int:
    return max(_MIN_DIRECT, 1 << (int(n) - 1).bit_length())


def _ladder_at_least(k: int) -> int:
    return next(rung for rung in _LADDER if rung >= k)


def _ladder_at_most(k: int) -> int:
    return max((rung for rung in _LADDER if rung <= k), default=0)


def _pad_edge(a: np.ndarray, length: int) -> np.ndarray:
    """Pad along the last axis with copies of the last value (keeps the model finite there)."""
    n = a.shape[-1]
    if n == length:
        return np.ascontiguousarray(a)
    # two slice copies: np.pad(mode="edge") does the same in ~4x the time,
    # which shows in a warm 1,000-point fit
    out = np.empty((*a.shape[:-1], length), dtype=a.dtype)
    out[..., :n] = a
    out[..., n:] = a[..., n - 1 : n]
    return out


def _aligned_empty(n: int) -> np.ndarray:
    raw = np.empty(n + _ALIGN // 8, dtype=np.float64)
    offset = (-raw.ctypes.data % _ALIGN) // 8
    return raw[offset : offset + n]


def device_ready(a: np.ndarray) -> np.ndarray:
    """``a`` as XLA can use it in place: C-contiguous and 64-byte aligned.

    Already so: ``a`` itself (placing it on the CPU device copies nothing).
    Otherwise an aligned copy, made by NumPy: about twice as fast as the copy
    ``jax.device_put`` would make of it (which goes through a generic relayout:
    28 ms for 32,768 curves of 200 points).
    """
    return device_ready_rows(a, slice(None))


def device_ready_rows(a: np.ndarray, used: slice) -> np.ndarray:
    """:func:`device_ready` of ``a``, copying only rows ``used`` (the others read as zeros).

    For a window of rows of which a program reads only some: an aligned copy
    then writes (and faults in) only those, while the rest of the buffer stays
    untouched zero pages.
    """
    a = np.asarray(a)
    if a.dtype != np.float64 or (a.flags.c_contiguous and a.ctypes.data % _ALIGN == 0):
        return a
    raw = np.zeros(a.size + _ALIGN // 8, dtype=np.float64)  # calloc: pages zeroed on first touch
    offset = (-raw.ctypes.data % _ALIGN) // 8
    out = raw[offset : offset + a.size].reshape(a.shape)
    out[used] = a[used]
    return out


def _rows(x: np.ndarray, fn) -> Any:
    """Apply ``fn`` to x, or to each of its rows (kept as a tuple, chunked alike)."""
    if x.ndim == 1:
        return fn(x)
    return tuple(fn(row) for row in x)


def build(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    chol: np.ndarray | None = None,
    *,
    shards: int = 1,
    chunk: int | None = None,
    lead=None,
):
    """Lay out float64 data for the passes.

    Args:
        x: ``(n,)`` or ``(k, n)`` independent variable(s).
        y: ``(n,)`` observations.
        w: ``(n,)`` weights ``1/sigma`` or None (all 1).
        chol: ``(n, n)`` lower Cholesky factor of the covariance of ``y``, or None.
        shards: devices the chunks will be split over; every region's chunk
            count becomes a multiple of it (the body gives its last few whole
            chunks to the padded rest when the count does not divide).
        chunk: points per chunk instead of the default (a model evaluated on
            the host wants few, large chunks: each one is a host round trip).
        lead: ``(x, y, w)`` of at most one chunk of other points (``w`` may be
            None) to lay out as an extra first chunk of the padded region, the
            rest of that chunk weighing 0 (chunked layouts only): the compact
            LM's warm start on a subsample then shares the region's loop.
            :func:`without_lead` gives the layout and data without it (views).

    Returns:
        ``(layout, data)``: the static :class:`Layout` and a pytree of NumPy arrays:
        ``{"block": ...}`` (direct) or ``{"regions": (body?, rest?)}`` (chunked).
    """
    n = y.shape[0]
    x_parts = 0 if x.ndim == 1 else x.shape[0]
    if n <= DIRECT_MAX or chol is not None:
        size = _power_of_two_at_least(n)
        weights = np.zeros(size)
        weights[:n] = 1.0 if w is None else w
        block = {"x": _rows(x, lambda a: _pad_edge(a, size)), "y": _pad_edge(y, size), "w": weights}
        if chol is not None:
            padded = np.eye(size)
            padded[:n, :n] = chol
            block["L"] = padded
        return Layout("direct", size, x_parts=x_parts, covariance=chol is not None), {
            "block": block
        }

    bucketed = n <= BUCKETED_MAX
    if chunk is None:
        chunk = MID_CHUNK if bucketed else LARGE_CHUNK
    first = x if x.ndim == 1 else x[0]
    head = (-first.ctypes.data % _ALIGN) // 8 if first.ctypes.data % 8 == 0 else 0
    whole = (n - head) // chunk
    body_chunks = _ladder_at_most(whole) if bucketed else whole
    body_chunks -= body_chunks % shards
    body = slice(head, head + body_chunks * chunk)
    copied = False

    def in_place(a: np.ndarray) -> np.ndarray:
        nonlocal copied
        view = a[body]
        part = device_ready(view)
        copied = copied or part is not view
        return part.reshape(body_chunks, chunk)

    rest = np.r_[0:head, body.stop : n]
    rest_chunks = -(-rest.size // chunk)
    if bucketed and rest_chunks:
        rest_chunks = _ladder_at_least(rest_chunks)
    rest_chunks = -(-rest_chunks // shards) * shards
    if lead is not None and lead[1].shape[0] > chunk:
        raise ValueError(f"lead has {lead[1].shape[0]} points, more than a chunk ({chunk})")
    start = 0 if lead is None else chunk  # where the rest begins in the padded region
    total = start + rest_chunks * chunk

    def padded(a: np.ndarray, first: np.ndarray | None) -> np.ndarray:
        # aligned, so the region and its view without the lead are used in place
        out = _aligned_empty(total)
        if first is not None:
            out[: first.size] = first
            out[first.size : chunk] = first[-1]
        if rest.size:
            out[start : start + rest.size] = a[rest]
            out[start + rest.size :] = a[rest[-1]]
        return out.reshape(-1, chunk)

    regions = []
    if body_chunks:
        region = {"x": _rows(x, in_place), "y": in_place(y)}
        if w is not None:
            region["w"] = in_place(w)
        regions.append(region)
    if rest_chunks or lead is not None:
        weights = _aligned_empty(total)
        weights[:] = 0.0
        if lead is not None:
            m = lead[1].shape[0]
            weights[:m] = 1.0 if lead[2] is None else lead[2]
        weights[start : start + rest.size] = 1.0 if w is None else w[rest]
        if x.ndim == 1:
            x_part = padded(x, None if lead is None else lead[0])
        else:
            x_part = tuple(
                padded(row, None if lead is None else lead[0][i]) for i, row in enumerate(x)
            )
        regions.append(
            {
                "x": x_part,
                "y": padded(y, None if lead is None else lead[1]),
                "w": weights.reshape(-1, chunk),
            }
        )
    layout = Layout(
        "chunked",
        chunk,
        body_chunks=body_chunks,
        rest_chunks=rest_chunks,
        weighted_body=w is not None,
        x_parts=x_parts,
        copied=copied,
        shards=shards,
        lead=lead is not None,
    )
    return layout, {"regions": tuple(regions)}


def without_lead(layout: Layout, data):
    """``(layout, data)`` of :func:`build` without its lead chunk (views: nothing is copied)."""
    if not layout.lead:
        return layout, data
    *kept, padded = data["regions"]
    if layout.rest_chunks:
        kept.append({key: _rows_of(value, lambda a: a[1:]) for key, value in padded.items()})
    return replace(layout, lead=False), {"regions": tuple(kept)}


def _rows_of(value, fn):
    return tuple(fn(a) for a in value) if isinstance(value, tuple) else fn(value)


def build_shard(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    *,
    chunk: int,
    chunks: int,
    processes: int,
    devices: int,
):
    """This process's rows laid out as ``chunks`` padded chunks (multi-process fits).

    Every process must contribute the same number of chunks, so each pads its
    rows to ``chunks * chunk`` (weight 0 beyond its data); the global region
    is the processes' regions stacked, split over all ``devices``.

    Returns:
        ``(layout, data)`` as :func:`build`, the layout describing the global region.
    """
    n = y.shape[0]
    total = chunks * chunk
    weights = np.zeros(total)
    weights[:n] = 1.0 if w is None else w

    def padded(a):
        return _pad_edge(a, total).reshape(chunks, chunk)

    region = {"x": _rows(x, padded), "y": padded(y), "w": weights.reshape(chunks, chunk)}
    layout = Layout(
        "chunked",
        chunk,
        rest_chunks=chunks * processes,
        x_parts=0 if x.ndim == 1 else x.shape[0],
        copied=True,
        shards=devices,
    )
    return layout, {"regions": (region,)}
