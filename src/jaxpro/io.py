"""Data input shared by every jaxpro command.

:func:`read_table` reads numeric columns from CSV, TSV, whitespace-delimited
text, Parquet, ``.npy`` and ``.npz`` files; :func:`as_array` validates an
in-memory array argument. Both raise :class:`~jaxpro.errors.InputError` with
a message that names the file, column and position at fault.

Positions are reported the way the user would look for them: **files count
data rows from 1** (the first row after the header is row 1; for ``.npy`` and
``.npz`` row 1 is index 0), **in-memory arrays use 0-based indices**.

``import jaxpro.io`` is light: pandas and pyarrow load only when a file that
needs them is read, and JAX is never imported here.
"""

from __future__ import annotations

import difflib
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpro.errors import InputError, describe

__all__ = [
    "FORMATS",
    "Stream",
    "Table",
    "as_array",
    "column_names",
    "process_rows",
    "read_frame",
    "read_labels",
    "read_table",
    "stream",
]

#: File extension -> format name understood by :func:`read_table`.
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "txt",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npy": "npy",
    ".npz": "npz",
}
_SEPARATORS = {"csv": ",", "tsv": "\t", "txt": r"\s+"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")  # pandas decompresses text files by extension
_SUPPORTED = "csv, tsv (.tsv/.tab), txt (whitespace-delimited), parquet (.parquet/.pq), npy, npz"
_MAX_POSITIONS = 5
_MAX_NAMES = 20


@dataclass(frozen=True, eq=False)
class Table:
    """Numeric columns read from one file.

    Attributes:
        columns: column name -> float64, C-contiguous 1-D array; all arrays
            have the same length and appear in the order they were requested.
        source: the path the data came from (as the user gave it).
    """

    columns: dict[str, np.ndarray]
    source: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """Column names, in order."""
        return tuple(self.columns)

    @property
    def n_rows(self) -> int:
        """Number of data rows (0 for a table without columns)."""
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            where = self.source or "table"
            raise KeyError(
                f"no column {name!r} in {where}; available: {_list_names(self.names)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def to_matrix(self, names: Sequence[str] | None = None) -> np.ndarray:
        """The named columns (all by default) stacked into an ``(n_rows, k)`` float64 array."""
        names = self.names if names is None else [names] if isinstance(names, str) else names
        return np.ascontiguousarray(np.column_stack([self[n] for n in names]), dtype=np.float64)

    def __repr__(self) -> str:
        return f"Table(source={self.source!r}, n_rows={self.n_rows}, names={self.names})"


def read_table(
    path: str | os.PathLike[str],
    columns: Sequence[str] | str | None = None,
    *,
    format: str | None = None,
    allow_nonfinite: bool = False,
    argument: str = "data",
) -> Table:
    """Read numeric columns from a data file.

    Args:
        path: the file. Its format comes from the extension (``.csv``;
            ``.tsv``/``.tab``; ``.txt``, whitespace-delimited with a header row;
            ``.parquet``/``.pq``; ``.npy``; ``.npz``; text files may also end in
            ``.gz``, ``.bz2``, ``.xz`` or ``.zst``) unless ``format`` is given.
        columns: names of the columns to read, in the order wanted; a single
            string selects one column; ``None`` reads every column. Column
            names are the header names (CSV, TSV, text, Parquet), the array
            names (``.npz``, each a 1-D array), the field names (structured
            ``.npy``) or ``"0"``, ``"1"``, ... (plain 1-D or 2-D ``.npy``).
        format: ``"csv"``, ``"tsv"``, ``"txt"``, ``"parquet"``, ``"npy"`` or ``"npz"``.
        allow_nonfinite: keep NaN and ±Inf (empty cells read as NaN) instead
            of rejecting them.
        argument: the name quoted in error messages (``"data"``, ``"--data"``).

    Returns:
        A :class:`Table` of float64 columns (integers and booleans converted),
        in the units stored in the file.

    Raises:
        InputError: the file is missing, a directory, unreadable, corrupt or
            of an unknown format; a column is missing or non-numeric; a value
            is NaN/Inf; or there are no data rows. Rows are numbered from 1,
            the first row after the header being row 1; blank lines are
            skipped and not counted.
    """
    fmt = _explicit_format(format) if format is not None else None
    file = _check_file(path, argument)
    source = os.fspath(path)
    fmt = fmt or _format_from_extension(file, source, argument)
    wanted = _wanted_columns(columns, argument)
    if fmt == "parquet":
        raw = _read_parquet(file, wanted, source, argument)
    elif fmt in ("npy", "npz"):
        raw = _read_numpy(file, fmt, wanted, source, argument)
    else:
        raw = _read_text(file, fmt, wanted, source, argument)
    out = {name: _to_float(name, values, source, argument) for name, values in raw.items()}
    lengths = {name: len(v) for name, v in out.items()}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise InputError(f"columns in {source} have different lengths ({sizes})", argument=argument)
    if not out or not next(iter(lengths.values())):
        raise InputError(f"no data rows in {source}", argument=argument)
    if not allow_nonfinite:
        for name, values in out.items():
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise InputError(
                    f"column {name!r} in {source} has {_count(bad.size, 'non-finite value')}"
                    f" (NaN, Inf or empty) at {_positions(bad + 1, 'row', 'rows')}",
                    argument=argument,
                )
    return Table(out, source)


def as_array(
    value: object,
    *,
    argument: str,
    ndim: int | tuple[int, ...] | None = None,
    allow_nonfinite: bool = False,
    dtype: type | np.dtype = np.float64,
) -> np.ndarray:
    """Validate an in-memory array argument and convert it to ``dtype``.

    Args:
        value: anything ``np.asarray`` accepts (list, NumPy or JAX array, ...).
        argument: the argument's name, quoted in error messages (``"y"``).
        ndim: required number of dimensions (or a tuple of allowed ones).
        allow_nonfinite: keep NaN and ±Inf instead of rejecting them.
        dtype: the returned dtype (float64 by default).

    Returns:
        A C-contiguous array of ``dtype``; it may share memory with ``value``.

    Raises:
        InputError: non-numeric (object, string, ...) or complex values, the
            wrong number of dimensions, an empty array, or NaN/Inf; positions
            are 0-based indices, as in Python.
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists, odd objects
        raise InputError(
            f"cannot be converted to an array: {_one_line(exc)}", argument=argument
        ) from None
    kind = arr.dtype.kind
    if kind == "c":
        raise InputError(f"must be real, got complex dtype {arr.dtype}", argument=argument)
    if kind not in "biuf":
        hint = " (mixed types, None or nested sequences?)" if kind == "O" else ""
        raise InputError(f"must be numeric, got dtype {arr.dtype}{hint}", argument=argument)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and arr.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        raise InputError(
            f"must be {want}, got a {arr.ndim}-D array of shape {arr.shape}", argument=argument
        )
    if arr.size == 0:
        raise InputError(f"is empty (shape {arr.shape})", argument=argument)
    out = np.asarray(arr, dtype=dtype, order="C")
    if not allow_nonfinite:
        finite = np.isfinite(out)
        # positions only when there are any (argwhere costs even when empty)
        bad = () if finite.all() else np.argwhere(~finite)
        if len(bad):
            where = [int(i[0]) if out.ndim == 1 else tuple(int(j) for j in i) for i in bad]
            raise InputError(
                f"has {_count(len(bad), 'non-finite value')} (NaN or Inf)"
                f" at {_positions(where, 'index', 'indices')}",
                argument=argument,
            )
    return out


# --------------------------------------------------------------------------- helpers


def _explicit_format(format: str) -> str:
    fmt = FORMATS.get("." + str(format).lower().lstrip("."))
    if fmt is None:
        raise InputError(f"unknown format {format!r}; supported: {_SUPPORTED}", argument="format")
    return fmt


def _check_file(path: object, argument: str) -> Path:
    try:
        file = Path(os.fspath(path)).expanduser()  # type: ignore[arg-type]
    except TypeError:
        raise InputError("expected a file path", argument=argument, received=path) from None
    if not file.exists():
        raise InputError(f"file not found: {os.fspath(path)}", argument=argument)
    if file.is_dir():
        raise InputError(f"{os.fspath(path)} is a directory, not a file", argument=argument)
    if not os.access(file, os.R_OK):
        raise InputError(f"cannot read {os.fspath(path)}: permission denied", argument=argument)
    return file


def _format_from_extension(file: Path, source: str, argument: str) -> str:
    suffixes = [s.lower() for s in file.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSED
    ext = suffixes[-2] if compressed and len(suffixes) > 1 else suffixes[-1] if suffixes else ""
    fmt = FORMATS.get(ext)
    if fmt is None or (compressed and fmt not in _SEPARATORS):
        raise InputError(
            f"cannot tell the format of {source} from its extension; supported: {_SUPPORTED}"
            " (or pass the format explicitly)",
            argument=argument,
        )
    return fmt


def _wanted_columns(columns: Sequence[str] | str | None, argument: str) -> list[str] | None:
    if columns is None:
        return None
    names = [columns] if isinstance(columns, str) else list(columns)
    if not all(isinstance(c, str | int) and not isinstance(c, bool) for c in names):
        raise InputError("column names must be strings", argument=argument, received=columns)
    names = [str(c) for c in names]  # ints are accepted for the "0", "1", ... of .npy files
    if not names:
        raise InputError("no columns selected", argument=argument)
    if len(set(names)) < len(names):
        raise InputError("a column is selected more than once", argument=argument, received=names)
    return names


def _select(available: list[str], wanted: list[str] | None, source: str, argument: str):
    if wanted is None:
        if not available:
            raise InputError(f"no data columns in {source}", argument=argument)
        return available
    missing = [c for c in wanted if c not in available]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        message = (
            f"{noun} {', '.join(map(repr, missing))} not found in {source};"
            f" available: {_list_names(available)}"
        )
        close = difflib.get_close_matches(missing[0], available, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        raise InputError(message, argument=argument)
    return wanted


def _read_text(file: Path, fmt: str, wanted, source: str, argument: str) -> dict:
    import pandas as pd

    try:
        # Rows longer than the header must fail, not be truncated with a mere
        # warning (index_col=False) or shift the columns (the default); usecols
        # would hide them too, so the whole file is read.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                file,
                sep=_SEPARATORS[fmt],
                engine="c",
                index_col=False,
                skipinitialspace=True,  # "x, y" headers and "1, 2" rows
                low_memory=False,  # one dtype per column, not per chunk
            )
    except pd.errors.EmptyDataError:
        raise InputError(
            f"no data rows in {source} (the file is empty)", argument=argument
        ) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, OSError, EOFError, ValueError) as exc:
        raise InputError(
            f"cannot read {source} as {fmt}: {_one_line(exc)}", argument=argument
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    raw = {}
    for name in _select(list(frame.columns), wanted, source, argument):
        column = frame[name]
        numeric = column.dtype.kind in "biuf"  # anything else holds a non-numeric cell
        raw[name] = column.to_numpy() if numeric else column.to_numpy(object, na_value=np.nan)
    return raw


def _read_parquet(file: Path, wanted, source: str, argument: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import types

    try:
        parquet = pq.ParquetFile(file)
        # pandas stores a non-default index as an extra column; it is not data.
        names = [n for n in parquet.schema_arrow.names if not n.startswith("__index_level_")]
        selected = _select(names, wanted, source, argument)
        table = parquet.read(columns=selected)
    except InputError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(
            f"cannot read {source} as Parquet: {_one_line(exc)}", argument=argument
        ) from None
    raw = {}
    for name in selected:
        column = table.column(name)
        kind = column.type
        if types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        numeric = (types.is_integer, types.is_floating, types.is_boolean, types.is_decimal)
        if any(test(kind) for test in numeric):
            # safe=False: integers above 2**53 round, as they do from CSV; nulls become NaN.
            raw[name] = column.cast(pa.float64(), safe=False).to_numpy()
        elif types.is_string(kind) or types.is_large_string(kind) or types.is_string_view(kind):
            raw[name] = np.array(column.to_pylist(), dtype=object)
        else:
            raise InputError(
                f"column {name!r} in {source} has non-numeric type {kind}", argument=argument
            )
    return raw


def _read_numpy(file: Path, fmt: str, wanted, source: str, argument: str) -> dict:
    # Without these checks np.load falls back to unpickling and reports a
    # misleading "pickled data" error for any file that is not what it claims.
    with open(file, "rb") as handle:
        magic = handle.read(6)
    if fmt == "npy" and magic != b"\x93NUMPY":
        raise InputError(f"{source} is not a valid .npy file", argument=argument)
    if fmt == "npz" and not zipfile.is_zipfile(file):
        raise InputError(
            f"{source} is not a valid .npz file (not a zip archive)", argument=argument
        )
    try:
        if fmt == "npz":
            with np.load(file, allow_pickle=False) as archive:
                selected = _select(list(archive.files), wanted, source, argument)
                return {name: archive[name] for name in selected}
        array = np.load(file, allow_pickle=False)
    except InputError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"cannot read {source} as .{fmt}: {_one_line(exc)}", argument=argument
        ) from None
    if array.dtype.names:
        if array.ndim != 1:
            raise InputError(
                f"{source} holds a structured array of shape {array.shape}; expected 1-D",
                argument=argument,
            )
        columns = {name: array[name] for name in array.dtype.names}
    elif array.ndim == 1:
        columns = {"0": array}
    elif array.ndim == 2:
        columns = {str(j): array[:, j] for j in range(array.shape[1])}
    else:
        raise InputError(
            f"{source} holds an array of shape {array.shape}; expected 1-D or 2-D (rows, columns)",
            argument=argument,
        )
    return {name: columns[name] for name in _select(list(columns), wanted, source, argument)}


def _to_float(name: str, values: np.ndarray, source: str, argument: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise InputError(
            f"column {name!r} in {source} is not 1-D (shape {values.shape})", argument=argument
        )
    if values.dtype.kind in "biuf":
        return np.ascontiguousarray(values, dtype=np.float64)
    if values.dtype.kind != "O":
        raise InputError(
            f"column {name!r} in {source} has non-numeric dtype {values.dtype}", argument=argument
        )
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        try:
            out[i] = np.nan if value is None else float(value)
        except (TypeError, ValueError):
            raise InputError(
                f"column {name!r} in {source} has a non-numeric value {describe(value)}"
                f" at row {i + 1}",
                argument=argument,
            ) from None
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _positions(positions, singular: str, plural: str) -> str:
    shown = ", ".join(str(p) for p in list(positions)[:_MAX_POSITIONS])
    more = ", ..." if len(positions) > _MAX_POSITIONS else ""
    return f"{singular if len(positions) == 1 else plural} {shown}{more}"


def _list_names(names: Sequence[str]) -> str:
    if not names:
        return "(none)"
    shown = ", ".join(names[:_MAX_NAMES])
    return shown if len(names) <= _MAX_NAMES else f"{shown}, ... ({len(names) - _MAX_NAMES} more)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def column_names(
    path: str | os.PathLike[str], *, format: str | None = None, argument: str = "data"
) -> tuple[str, ...]:
    """The column names of a data file, without reading its rows (text, Parquet, npz)."""
    fmt = _explicit_format(format) if format is not None else None
    file = _check_file(path, argument)
    source = os.fspath(path)
    fmt = fmt or _format_from_extension(file, source, argument)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.ParquetFile(file).schema_arrow.names
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise InputError(
                f"cannot read {source} as parquet: {_one_line(exc)}", argument=argument
            ) from None
        return tuple(n for n in names if not n.startswith("__index_level"))
    if fmt in ("npy", "npz"):
        return tuple(_read_numpy(file, fmt, None, source, argument))
    import pandas as pd

    try:
        header = pd.read_csv(file, sep=_SEPARATORS[fmt], nrows=0, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise InputError(
            f"cannot read {source} as {fmt}: {_one_line(exc)}", argument=argument
        ) from None
    return tuple(str(c) for c in header.columns)


def read_labels(
    path: str | os.PathLike[str], column: str, *, format: str | None = None, argument: str = "data"
) -> list[str]:
    """One column read as text labels (e.g. curve or sample identifiers)."""
    fmt = _explicit_format(format) if format is not None else None
    file = _check_file(path, argument)
    source = os.fspath(path)
    fmt = fmt or _format_from_extension(file, source, argument)
    _select(list(column_names(path, format=fmt, argument=argument)), [column], source, argument)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return [str(v) for v in pq.read_table(file, columns=[column]).column(0).to_pylist()]
    if fmt in ("npy", "npz"):
        return [str(v) for v in _read_numpy(file, fmt, [column], source, argument)[column]]
    import pandas as pd

    frame = pd.read_csv(
        file, sep=_SEPARATORS[fmt], usecols=[column], dtype=str, skipinitialspace=True
    )
    return [str(v) for v in frame[column].tolist()]


def read_frame(path: str | os.PathLike[str], *, format: str | None = None, argument: str = "data"):
    """Every column of a data file as a pandas DataFrame, text columns kept as text.

    For tables with categorical columns (group labels, factors), which
    :func:`read_table` rejects. Missing cells stay missing (NaN); the caller
    decides what they mean.

    Args:
        path: csv, tsv, txt, parquet, npz or structured npy file (as :func:`read_table`).
        format: the format, when the extension does not say it.
        argument: the name quoted in error messages.

    Raises:
        InputError: missing or unreadable file, unknown format, no rows.
    """
    import pandas as pd

    fmt = _explicit_format(format) if format is not None else None
    file = _check_file(path, argument)
    source = os.fspath(path)
    fmt = fmt or _format_from_extension(file, source, argument)
    if fmt == "parquet":
        raw = _read_parquet(file, None, source, argument)
    elif fmt in ("npy", "npz"):
        raw = _read_numpy(file, fmt, None, source, argument)
    else:
        raw = _read_text(file, fmt, None, source, argument)
    frame = pd.DataFrame(raw)
    if len(frame) == 0:
        raise InputError(f"no data rows in {source}", argument=argument)
    return frame


def process_rows(n_rows: int) -> slice:
    """The rows this process reads in a multi-process fit (``jax.distributed``).

    ``n_rows`` rows are split into ``jax.process_count()`` contiguous, nearly
    equal ranges (the count need not divide them); with one process, all rows.
    """
    import jax

    count, index = jax.process_count(), jax.process_index()
    edges = [(i * n_rows) // count for i in range(count + 1)]
    return slice(edges[index], edges[index + 1])


# Chunked sources for data larger than memory (defined apart: they read lazily).
from jaxpro._streams import Stream, stream  # noqa: E402
