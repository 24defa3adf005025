"""Data that are read chunk by chunk, pass after pass, instead of held in memory.

A :class:`Stream` is a re-readable source of ``(x, y, sigma)`` chunks: a
Parquet or CSV file, ``.npy`` files (read through the page cache, each chunk's
pages released after use, so memory stays constant however large the file),
NumPy arrays (memory-mapped ones included), or a function that returns a fresh
iterator of chunks for every pass. Every chunk is checked as it is read: a
NaN, a non-numeric cell or a column that changes type names its row.

Rows of files are numbered from 1 (the first data row); positions in arrays
and iterators are 0-based indices, as in :mod:`jaxpro.io`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpro.errors import InputError

__all__ = ["Chunk", "Stream", "stream"]

DEFAULT_ROWS = 1 << 20


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows: ``x`` ``(n,)`` or ``(k, n)``, ``y`` ``(n,)``, ``sigma`` ``(n,)`` or None."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    start: int  # position of the first row in the whole source (0-based)


class Stream:
    """Base class: a source that can be read from the start any number of times.

    Attributes:
        n: number of rows when known in advance (None for iterators).
        variables: number of independent variables (rows of ``x``).
        description: one line for plans and messages.
        one_based: row numbers in messages count from 1 (files) or 0 (arrays).
    """

    n: int | None = None
    variables: int = 1
    description: str = "stream"
    one_based: bool = False

    def chunks(self, rows: int = DEFAULT_ROWS) -> Iterator[Chunk]:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, size: int) -> Chunk | None:
        """A deterministic, evenly spread sample of ``size`` rows, or None without random access."""
        return None

    # -- shared checks -----------------------------------------------------------------------

    def _checked(self, x, y, sigma, start: int, where: str) -> Chunk:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape[-1] != y.shape[0]:
            raise InputError(
                f"{where}: a chunk at row {self._row(start)} has {x.shape[-1]} x values for {y.shape[0]} y values",
                argument="data",
            )
        arrays = [("x", x), ("y", y)]
        if sigma is not None:
            sigma = np.asarray(sigma, dtype=np.float64)
            arrays.append(("sigma", sigma))
        for name, values in arrays:
            bad = ~np.isfinite(values)
            if bad.any():
                index = int(np.flatnonzero(bad.reshape(-1, values.shape[-1]).any(axis=0))[0])
                raise InputError(
                    f"{where}: {name} is not finite (NaN or Inf) at row {self._row(start + index)}",
                    argument="data",
                )
        if sigma is not None and np.any(sigma <= 0):
            index = int(np.flatnonzero(sigma <= 0)[0])
            raise InputError(
                f"{where}: sigma must be > 0; row {self._row(start + index)} has {sigma[index]:g}",
                argument="sigma",
            )
        return Chunk(x, y, sigma, start)

    def _row(self, position: int) -> str:
        return str(position + 1) if self.one_based else f"{position} (0-based)"


class _ArrayStream(Stream):
    """NumPy arrays, memory-mapped or not; mapped pages are released after each chunk."""

    def __init__(self, x, y, sigma=None):
        self.x, self.y, self.sigma = x, y, sigma
        self.n = int(np.shape(y)[0])
        self.variables = 1 if np.ndim(x) == 1 else int(np.shape(x)[0])
        self.description = f"arrays of {self.n} points" + (
            " (memory-mapped)" if isinstance(y, np.memmap) else ""
        )

    def chunks(self, rows: int = DEFAULT_ROWS) -> Iterator[Chunk]:
        for start in range(0, self.n, rows):
            stop = min(self.n, start + rows)
            parts = [
                np.array(a[..., start:stop]) if a is not None else None
                for a in (self.x, self.y, self.sigma)
            ]
            yield self._checked(*parts, start, self.description)
            for a in (self.x, self.y, self.sigma):
                _release(a, start, stop)

    def sample(self, size: int) -> Chunk | None:
        index = _spread(self.n, size)
        parts = [None if a is None else _gather(a, index) for a in (self.x, self.y, self.sigma)]
        return self._checked(*parts, 0, self.description + " (sample)")


# Sample rows gathered between releases of a mapping's pages: a scattered read
# faults in a whole page-cache folio, which on current kernels can be up to 2 MB
# (256 rows per release measured a 380 MB spike on a 16 GB file; 8 rows: 30 MB).
_GATHER_BLOCK = 8


def _gather(array, index: np.ndarray) -> np.ndarray:
    """``array[..., index]`` for sorted ``index``, releasing mapped pages as it goes.

    Each scattered read of a memory-mapped file faults in a neighbourhood of pages (the
    kernel's fault-around, or a whole large folio of up to 2 MB) that stays in this
    process's RSS; a 10^5-row sample of a 10^9-row file would otherwise hold gigabytes.
    """
    if getattr(array, "_mmap", None) is None:
        return np.asarray(array[..., index])
    blocks = []
    for first in range(0, index.size, _GATHER_BLOCK):
        block = index[first : first + _GATHER_BLOCK]
        blocks.append(np.array(array[..., block]))
        _release(array, int(block[0]), int(block[-1]) + 1)
    return np.concatenate(blocks, axis=-1)


def _release(array, start: int, stop: int) -> None:
    """Drop a memory-mapped range's pages from this process (the file is unchanged)."""
    base = getattr(array, "_mmap", None)
    if base is None or not hasattr(base, "madvise") or array.ndim != 1:
        return
    offset = getattr(array, "offset", 0)
    first = offset + start * array.itemsize
    last = offset + stop * array.itemsize
    page = mmap.PAGESIZE
    first -= first % page
    # not every platform or mapping allows it; it is only a hint
    with contextlib.suppress(OSError, ValueError):
        base.madvise(mmap.MADV_DONTNEED, first, last - first)


def _spread(n: int, size: int) -> np.ndarray:
    size = min(size, n)
    rng = np.random.default_rng(20261125)
    edges = (np.arange(size + 1) * n) // size
    return edges[:-1] + (rng.random(size) * (edges[1:] - edges[:-1])).astype(np.int64)


class _ParquetStream(Stream):
    one_based = True

    def __init__(self, path: Path, x: Sequence[str], y: str, sigma: str | None):
        import pyarrow.parquet as pq

        self.path, self.x_names, self.y_name, self.sigma_name = path, tuple(x), y, sigma
        try:
            handle = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputError(f"cannot read {path} as parquet: {exc}", argument="data") from None
        names = handle.schema_arrow.names
        for column in (*self.x_names, y, *([sigma] if sigma else [])):
            if column not in names:
                raise InputError(
                    f"column {column!r} not found in {path}; available: {', '.join(names[:12])}",
                    argument="data",
                )
        self.n = handle.metadata.num_rows
        self.variables = len(self.x_names)
        self.description = f"{path.name} ({self.n} rows, parquet)"

    def chunks(self, rows: int = DEFAULT_ROWS) -> Iterator[Chunk]:
        import pyarrow.parquet as pq

        columns = [*self.x_names, self.y_name, *([self.sigma_name] if self.sigma_name else [])]
        start = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=rows, columns=columns):
            values = {}
            for name in columns:
                column = batch.column(name)
                try:
                    values[name] = column.to_numpy(zero_copy_only=False).astype(np.float64)
                except (TypeError, ValueError):
                    raise InputError(
                        f"{self.description}: column {name!r} is not numeric from row {start + 1} "
                        f"(type {column.type})",
                        argument="data",
                    ) from None
            x = (
                values[self.x_names[0]]
                if self.variables == 1
                else np.stack([values[c] for c in self.x_names])
            )
            sigma = values[self.sigma_name] if self.sigma_name else None
            yield self._checked(x, values[self.y_name], sigma, start, self.description)
            start += batch.num_rows


class _CsvStream(Stream):
    one_based = True

    def __init__(self, path: Path, x: Sequence[str], y: str, sigma: str | None, sep: str):
        self.path, self.x_names, self.y_name, self.sigma_name, self.sep = (
            path,
            tuple(x),
            y,
            sigma,
            sep,
        )
        from jaxpro.io import column_names

        names = column_names(path)
        for column in (*self.x_names, y, *([sigma] if sigma else [])):
            if column not in names:
                raise InputError(
                    f"column {column!r} not found in {path}; available: {', '.join(names[:12])}",
                    argument="data",
                )
        self.variables = len(self.x_names)
        self.description = f"{path.name} (csv)"

    def chunks(self, rows: int = DEFAULT_ROWS) -> Iterator[Chunk]:
        import pandas as pd

        columns = [*self.x_names, self.y_name, *([self.sigma_name] if self.sigma_name else [])]
        start = 0
        reader = pd.read_csv(
            self.path, sep=self.sep, usecols=columns, chunksize=rows, skipinitialspace=True
        )
        for frame in reader:
            for name in columns:
                if frame[name].dtype.kind not in "biuf":
                    values = pd.to_numeric(frame[name], errors="coerce")
                    bad = int(np.flatnonzero(values.isna() & frame[name].notna())[0])
                    raise InputError(
                        f"{self.description}: column {name!r} changes to non-numeric values at row "
                        f"{start + bad + 1}: {frame[name].iloc[bad]!r}",
                        argument="data",
                    )
            x = (
                frame[self.x_names[0]].to_numpy(np.float64)
                if self.variables == 1
                else frame[list(self.x_names)].to_numpy(np.float64).T
            )
            sigma = frame[self.sigma_name].to_numpy(np.float64) if self.sigma_name else None
            yield self._checked(
                x, frame[self.y_name].to_numpy(np.float64), sigma, start, self.description
            )
            start += len(frame)


class _CallableStream(Stream):
    """A function returning a fresh iterator of ``(x, y)`` or ``(x, y, sigma)`` chunks."""

    def __init__(self, factory: Callable[[], object]):
        self.factory = factory
        self.description = "chunks from a function"

    def chunks(self, rows: int = DEFAULT_ROWS) -> Iterator[Chunk]:
        start = 0
        for item in self.factory():
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise InputError(
                    "each chunk must be a tuple (x, y) or (x, y, sigma)",
                    argument="chunks",
                    received=item,
                )
            x, y, *rest = item
            chunk = self._checked(x, y, rest[0] if rest else None, start, self.description)
            self.variables = 1 if chunk.x.ndim == 1 else chunk.x.shape[0]
            # the caller's chunks may be any size: cut them to at most `rows`
            for offset in range(0, chunk.y.shape[0], rows):
                piece = slice(offset, offset + rows)
                sigma = None if chunk.sigma is None else chunk.sigma[piece]
                yield Chunk(chunk.x[..., piece], chunk.y[piece], sigma, start + offset)
            start += chunk.y.shape[0]


def stream(
    source=None,
    *,
    x: str | Sequence[str] | np.ndarray | os.PathLike | None = None,
    y: str | np.ndarray | os.PathLike | None = None,
    sigma: str | np.ndarray | os.PathLike | None = None,
    chunks: Callable[[], object] | None = None,
) -> Stream:
    """Describe data to be read in chunks, once per pass.

    Forms:
        ``stream("data.parquet", x="t", y="counts", sigma="err")`` (or ``.csv``/``.tsv``);
        ``stream(x="x.npy", y="y.npy")`` (``.npy`` files, memory-mapped);
        ``stream(x=x_array, y=y_array)`` (arrays, memory-mapped or not);
        ``stream(chunks=make_iterator)``: ``make_iterator()`` returns a new
        iterator of ``(x, y)`` or ``(x, y, sigma)`` tuples each time.

    Returns:
        A :class:`Stream` for :func:`jaxpro.fit`.
    """
    if chunks is not None:
        if not callable(chunks):
            raise InputError(
                "must be a function returning a new iterator for every pass (a fit reads the data "
                "several times; a one-shot iterator would be empty on the second pass)",
                argument="chunks",
                received=chunks,
            )
        return _CallableStream(chunks)
    if source is not None:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"file not found: {source}", argument="data")
        if x is None or y is None:
            raise InputError("name the x and y columns: stream(path, x=..., y=...)", argument="x")
        xs = (x,) if isinstance(x, str) else tuple(x)
        suffix = path.suffix.lower()
        if suffix in (".parquet", ".pq"):
            return _ParquetStream(path, xs, y, sigma)
        if suffix in (".csv", ".tsv", ".tab"):
            return _CsvStream(path, xs, y, sigma, "," if suffix == ".csv" else "\t")
        raise InputError(
            f"cannot stream {path.suffix} files; use parquet, csv or tsv (or npy arrays via x=, y=)",
            argument="data",
        )
    if x is None or y is None:
        raise InputError("give a file, x= and y= arrays or .npy paths, or chunks=", argument="data")
    arrays = [
        _open_array(v, name) if v is not None else None
        for v, name in ((x, "x"), (y, "y"), (sigma, "sigma"))
    ]
    if arrays[0].shape[-1] != arrays[1].shape[0]:
        raise InputError(
            f"x has {arrays[0].shape[-1]} points but y has {arrays[1].shape[0]}", argument="x"
        )
    return _ArrayStream(*arrays)


def _open_array(value, name: str) -> np.ndarray:
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise InputError(f"file not found: {value}", argument=name)
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {value} as .npy: {exc}", argument=name) from None
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if array.dtype.kind not in "biuf":
        raise InputError("must be numeric", argument=name, received=value)
    return array
