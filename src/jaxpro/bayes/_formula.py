"""Formulas to model data: ``"y ~ x + (1 + x | g)"`` read with formulae, checked, indexed.

The common (population-level) part is built by formulae, bambi's parser, so
its encodings (categorical contrasts, interactions, ``center``, ``poly``...)
are bambi's. The group-level terms are not: formulae would build a dense
rows x groups matrix for each (bambi runs out of memory there). Here every
group term keeps the rows' group index and its few expression columns, so 1M
rows and 10K groups cost 1M integers and 1M x k floats.

Formula syntax (brms / lme4):

- ``y ~ x + z``, ``x:z``, ``x*z``, ``C(x)``, ``log(x)``, ``center(x)``, ``0 +``
  (no intercept), ``offset(log(exposure))``;
- ``(1 | g)``, ``(1 + x | g)`` (correlated: LKJ prior on the correlation),
  ``(1 + x || g)`` (uncorrelated), ``(1 | g/h)`` (h nested in g: ``g`` and
  ``g:h``), crossed ``(1 | g) + (1 | h)``;
- binomial responses as ``successes | trials(n) ~ ...``.

Nothing in a formula is evaluated as Python: formulae parses it, and before
anything runs every function call in it is checked against a whitelist and
every name against the data's columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxpro.bayes._families import Family
from jaxpro.errors import InputError

__all__ = ["Design", "GroupBlock", "build_design"]

MAX_FORMULA = 10_000

# numpy functions a formula may call, and formulae's own transforms that are safe
_NUMPY_FUNCTIONS = ("log", "log2", "log10", "log1p", "exp", "expm1", "sqrt", "abs")
_TRANSFORMS = ("C", "center", "scale", "standardize", "poly", "offset", "I", "bs", "cr", "cc")
ALLOWED_FUNCTIONS = frozenset(_NUMPY_FUNCTIONS + _TRANSFORMS)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class GroupBlock:
    """One group-level term: effects of ``columns`` varying by ``factor``.

    Attributes:
        name: the grouping, as written ("g", or "g:h" for h nested in g).
        factor: the data columns whose combination identifies a group.
        expression: the formula of the varying terms ("1 + x").
        columns: labels of the varying terms ("Intercept", "x").
        correlated: whether the effects get a correlation matrix (``|``, not ``||``).
        levels: the groups seen in the data, in index order.
        rows: number of rows in each group.
    """

    name: str
    factor: tuple[str, ...]
    expression: str
    columns: tuple[str, ...]
    correlated: bool
    levels: tuple[str, ...]
    rows: np.ndarray = field(repr=False)
    column_scales: np.ndarray = field(repr=False)  # sd of each varying column (1 for constants)

    def effect_label(self, column: str, level: str) -> str:
        """``g[A]`` for a varying intercept, ``x|g[A]`` for a varying slope."""
        prefix = "" if column == "Intercept" else f"{column}|"
        return f"{prefix}{self.name}[{level}]"


@dataclass
class Design:
    """A formula evaluated on data: what the model needs, and how to evaluate new data.

    Attributes:
        formula: as given.
        response: the response's label; ``y`` its values.
        intercept: whether the common part has an intercept.
        common: labels of the common columns of ``X`` (intercept and offsets excluded).
        X: ``(rows, len(common))`` common design; ``X_mean`` its column means.
        offset: ``(rows,)`` summed offsets, or None.
        trials: ``(rows,)`` binomial trials, or None.
        blocks, Z, codes: group terms, their ``(rows, k)`` columns and ``(rows,)`` group index.
    """

    formula: str
    family: Family
    response: str
    y: np.ndarray
    intercept: bool
    common: tuple[str, ...]
    X: np.ndarray
    X_mean: np.ndarray
    offset: np.ndarray | None
    trials: np.ndarray | None
    trials_column: str | None
    blocks: tuple[GroupBlock, ...]
    Z: tuple[np.ndarray, ...]
    codes: tuple[np.ndarray, ...]
    _common_matrix: Any = field(repr=False, default=None)
    _offset_slices: tuple = field(repr=False, default=())
    _common_slices: tuple = field(repr=False, default=())
    _block_matrices: tuple = field(repr=False, default=())

    @property
    def rows(self) -> int:
        return int(self.y.shape[0])

    # ------------------------------------------------------------------ new data

    def evaluate(self, data) -> dict:
        """The model's inputs for new rows (no response needed).

        Returns:
            dict with ``X``, ``offset``, ``trials``, ``Z`` (tuple) and ``codes``
            (tuple; -1 marks a group not seen in the fitted data) and
            ``new_levels`` (tuple of arrays of the unseen group labels per block).
        """
        frame = _as_frame(data, "newdata")
        needed = set()
        for matrix in (self._common_matrix, *self._block_matrices):
            if matrix is not None:
                needed |= _variables_of(matrix)
        for block in self.blocks:
            needed |= set(block.factor)
        if self.trials_column:
            needed.add(self.trials_column)
        _check_columns(frame, needed, "newdata")
        _check_missing(frame, needed, "newdata")
        rows = len(frame)
        if rows == 0:
            raise InputError("has no rows", argument="newdata")
        if self._common_matrix is not None:
            try:
                full = np.asarray(
                    self._common_matrix.evaluate_new_data(frame).design_matrix, dtype=np.float64
                )
            except Exception as exc:  # formulae raises plain errors for unseen categories
                raise InputError(
                    f"cannot evaluate the formula on it: {exc}", argument="newdata"
                ) from None
            X = full[:, list(self._common_slices)] if self._common_slices else np.zeros((rows, 0))
            offset = full[:, list(self._offset_slices)].sum(axis=1) if self._offset_slices else None
        else:
            X, offset = np.zeros((rows, 0)), None
        Z, codes, new_levels = [], [], []
        for block, matrix in zip(self.blocks, self._block_matrices, strict=True):
            Z.append(_block_columns(matrix, frame, rows))
            labels = _group_labels(frame, block.factor, "newdata")
            index = {level: i for i, level in enumerate(block.levels)}
            code = np.array([index.get(label, -1) for label in labels], dtype=np.int64)
            codes.append(code)
            new_levels.append(np.array(labels, dtype=object)[code < 0])
        trials = (
            _numeric(frame[self.trials_column], self.trials_column, "newdata")
            if self.trials_column
            else None
        )
        return {
            "X": X,
            "offset": offset,
            "trials": trials,
            "Z": tuple(Z),
            "codes": tuple(codes),
            "new_levels": tuple(new_levels),
        }


# ---------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Parsed:
    response: str
    trials: str | None
    common: str
    blocks: tuple[tuple[str, str, bool], ...]  # (expression, factor, correlated)


def parse_formula(formula: object) -> _Parsed:
    """Split a formula into response, common part and group blocks (syntax only)."""
    if not isinstance(formula, str):
        raise InputError(
            "must be a string like 'y ~ x + (1 | g)'", argument="formula", received=formula
        )
    if len(formula) > MAX_FORMULA:
        raise InputError(f"is longer than {MAX_FORMULA} characters", argument="formula")
    if formula.count("~") != 1:
        raise InputError(
            "needs exactly one '~' (response ~ terms)", argument="formula", received=formula
        )
    lhs, rhs = (part.strip() for part in formula.split("~"))
    if not lhs:
        raise InputError("has no response before '~'", argument="formula", received=formula)
    trials = None
    if "|" in lhs:
        response, extra = (part.strip() for part in lhs.split("|", 1))
        match = re.fullmatch(r"trials\(\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\)", extra)
        if not match:
            raise InputError(
                "only 'y | trials(n)' is understood left of '~'", argument="formula", received=lhs
            )
        lhs, trials = response, match.group(1)
    if not rhs:
        raise InputError(
            "has no terms after '~' (write '~ 1' for an intercept only)", argument="formula"
        )
    common, blocks = [], []
    for sign, piece in _top_level_terms(rhs, formula):
        block = _group_block(piece)
        if block is None:
            common.append((sign, piece))
            continue
        if sign == "-":
            raise InputError(
                f"cannot subtract a group term: -{piece}", argument="formula", received=formula
            )
        blocks.append(block)
    common_text = " ".join(
        f"{'' if i == 0 and sign == '+' else sign + ' '}{piece}"
        for i, (sign, piece) in enumerate(common)
    ).strip()
    return _Parsed(lhs, trials, common_text or "1", tuple(blocks))


def _top_level_terms(rhs: str, formula: str) -> list[tuple[str, str]]:
    pieces, depth, start, sign = [], 0, 0, "+"
    for i, char in enumerate(rhs):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise InputError(
                    f"unbalanced ')' at position {i}", argument="formula", received=formula
                )
        elif char in "+-" and depth == 0:
            text = rhs[start:i].strip()
            if text or (i > start and pieces):
                pieces.append((sign, text))
            sign, start = char, i + 1
    if depth != 0:
        raise InputError("has an unclosed '('", argument="formula", received=formula)
    text = rhs[start:].strip()
    if not text:
        raise InputError("ends with an operator", argument="formula", received=formula)
    pieces.append((sign, text))
    return pieces


def _group_block(piece: str) -> tuple[str, str, bool] | None:
    if not (piece.startswith("(") and piece.endswith(")")):
        return None
    inner, depth = piece[1:-1], 0
    for i, char in enumerate(inner):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:  # "(a) + (b)" is not one parenthesis
                return None
        elif char == "|" and depth == 0:
            correlated = inner[i + 1 : i + 2] != "|"
            expression = inner[:i].strip()
            factor = inner[i + (1 if correlated else 2) :].strip()
            if not expression or not factor:
                raise InputError(f"incomplete group term {piece}", argument="formula")
            return expression, factor, correlated
    return None


def _factors(text: str) -> list[tuple[str, ...]]:
    """'g' -> [(g,)]; 'g:h' -> [(g, h)]; 'g/h' -> [(g,), (g, h)] (h nested in g)."""
    nested = [part.strip() for part in text.split("/")]
    out, prefix = [], ()
    for part in nested:
        names = tuple(name.strip() for name in part.split(":"))
        for name in names:
            if not _NAME.match(name):
                raise InputError(
                    f"a grouping must be column names joined by ':' or '/'; got {text!r}",
                    argument="formula",
                )
        prefix = prefix + names
        out.append(prefix)
    return out


# ---------------------------------------------------------------------------------- checks


def _as_frame(data, argument: str):
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        try:
            return pd.DataFrame(data)
        except ValueError as exc:
            raise InputError(f"cannot make a table of it: {exc}", argument=argument) from None
    raise InputError(
        "must be a pandas DataFrame or a dict of columns", argument=argument, received=data
    )


def _calls_and_names(node, calls: set, names: set) -> None:
    """Walk formulae's lazy expression objects, collecting function names and variables."""
    from formulae.terms.call_resolver import LazyCall, LazyOperator, LazyVariable

    if isinstance(node, LazyCall):
        calls.add(node.callee)
        for arg in (*node.args, *node.kwargs.values()):
            _calls_and_names(arg, calls, names)
    elif isinstance(node, LazyOperator):
        for arg in node.args:
            _calls_and_names(arg, calls, names)
    elif isinstance(node, LazyVariable):
        names.add(node.name)


def _describe(text: str):
    import formulae as fm

    try:
        description = fm.model_description(text)
    except Exception as exc:  # formulae's ParseError and ScanError derive from Exception
        raise InputError(f"cannot parse {text!r}: {exc}", argument="formula") from None
    calls: set = set()
    names: set = set()
    terms = list(description.common_terms)
    if description.response is not None:
        terms.append(description.response.term)
    for term in terms:
        for component in getattr(term, "components", ()):
            if hasattr(component, "call"):
                _calls_and_names(component.call, calls, names)
    refused = sorted(c for c in calls if c not in ALLOWED_FUNCTIONS)
    if refused:
        raise InputError(
            f"function {refused[0]!r} is not allowed in a formula; allowed: "
            + ", ".join(sorted(ALLOWED_FUNCTIONS)),
            argument="formula",
        )
    return description


def _check_columns(frame, names, argument: str) -> None:
    missing = sorted(n for n in names if n not in frame.columns)
    if missing:
        shown = ", ".join(repr(str(c)) for c in list(frame.columns)[:12])
        raise InputError(
            f"column {missing[0]!r} not found in {argument}; available: {shown}", argument=argument
        )


def _check_missing(frame, names, argument: str) -> None:
    for name in sorted(names):
        column = frame[name]
        bad = column.isna().to_numpy()
        if column.dtype.kind == "f":
            bad = bad | ~np.isfinite(column.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            rows = np.flatnonzero(bad)
            listed = ", ".join(str(int(r) + 1) for r in rows[:5]) + (
                " ..." if rows.size > 5 else ""
            )
            raise InputError(
                f"column {name!r} has {rows.size} missing or non-finite value(s) (rows {listed}); "
                "drop or impute them first",
                argument=argument,
            )


def _numeric(column, name: str, argument: str) -> np.ndarray:
    if column.dtype.kind == "b":
        return column.to_numpy(dtype=np.float64)
    if column.dtype.kind not in "iuf":
        examples = ", ".join(repr(v) for v in column.unique()[:3])
        raise InputError(f"column {name!r} must be numeric; it holds {examples}", argument=argument)
    return column.to_numpy(dtype=np.float64)


def _variables_of(matrix) -> set:
    names: set = set()
    for term in matrix.terms.values():
        for component in getattr(term, "components", ()):
            if hasattr(component, "call"):
                _calls_and_names(component.call, set(), names)
            elif hasattr(component, "name"):
                names.add(component.name)
    return names


def _group_labels(frame, factor: tuple[str, ...], argument: str) -> list[str]:
    if len(factor) == 1:
        return [str(v) for v in frame[factor[0]].tolist()]
    parts = [frame[name].astype(str).tolist() for name in factor]
    return [":".join(values) for values in zip(*parts, strict=True)]


def _evaluate(text: str, frame):
    from formulae.environment import Environment
    from formulae.matrices import DesignMatrices

    description = _describe(text)
    namespace = {name: getattr(np, name) for name in _NUMPY_FUNCTIONS}
    try:
        return DesignMatrices(description, frame, Environment([namespace]))
    except InputError:
        raise
    except Exception as exc:  # formulae raises ValueError, KeyError, TypeError for bad data
        raise InputError(
            f"cannot evaluate {text!r} on the data: {exc}", argument="formula"
        ) from None


def _block_columns(matrix, frame, rows: int) -> np.ndarray:
    values = np.asarray(matrix.evaluate_new_data(frame).design_matrix, dtype=np.float64)
    return values.reshape(rows, -1)


# ---------------------------------------------------------------------------------- build


def build_design(formula: str, data, family: Family) -> Design:
    """Parse ``formula``, check it against ``data`` and evaluate it, group terms indexed.

    Raises:
        InputError: syntax, a disallowed function, a missing column, missing
            values, a response the family cannot produce, an empty group.
    """
    frame = _as_frame(data, "data")
    if len(frame) == 0:
        raise InputError("has no rows", argument="data")
    parsed = parse_formula(formula)
    common_text = f"{parsed.response} ~ {parsed.common}"
    description = _describe(common_text)
    needed = set(description.var_names)
    factor_lists = []
    for expression, factor, _ in parsed.blocks:
        needed |= set(_describe(f"{parsed.response} ~ {expression}").var_names)
        factor_lists.append(_factors(factor))
        for names in factor_lists[-1]:
            needed |= set(names)
    if parsed.trials:
        needed.add(parsed.trials)
    _check_columns(frame, needed, "data")
    _check_missing(frame, needed, "data")

    # response
    if parsed.response in frame.columns:
        response_column = frame[parsed.response]
        if response_column.dtype.kind not in "biuf":
            examples = ", ".join(repr(v) for v in response_column.unique()[:3])
            raise InputError(
                f"column {parsed.response!r} is categorical ({examples}); family "
                f"{family.name!r} needs a numeric response"
                + (" (code it as 0/1)" if family.name == "bernoulli" else ""),
                argument="data",
            )
    trials = None
    if family.needs_trials:
        if parsed.trials is None:
            raise InputError(
                "family 'binomial' needs the trials: write 'successes | trials(n) ~ ...'",
                argument="formula",
                received=formula,
            )
        trials = _numeric(frame[parsed.trials], parsed.trials, "data")
        if np.any(trials < 1) or np.any(trials != np.round(trials)):
            raise InputError(
                f"column {parsed.trials!r} must hold whole numbers >= 1", argument="data"
            )
    elif parsed.trials is not None:
        raise InputError(
            f"'| trials(...)' is for family 'binomial', not {family.name!r}", argument="formula"
        )

    matrices = _evaluate(common_text, frame)
    y = np.asarray(matrices.response.design_matrix, dtype=np.float64).reshape(len(frame), -1)
    if y.shape[1] != 1:
        raise InputError(
            f"the response {parsed.response!r} must be one numeric column for family {family.name!r}",
            argument="data",
        )
    y = y[:, 0]
    family.check_response(y, parsed.response, trials)

    common_matrix = matrices.common
    intercept, names, common_slices, offset_slices = False, [], [], []
    if common_matrix is not None:
        labels = list(common_matrix.as_dataframe().columns)
        for term_name, term_slice in common_matrix.slices.items():
            term = common_matrix.terms[term_name]
            kind = getattr(term, "kind", None)
            columns = list(range(term_slice.start, term_slice.stop))
            if kind == "intercept":
                intercept = True
            elif kind == "offset":
                offset_slices += columns
            else:
                common_slices += columns
                names += [labels[c] for c in columns]
        full = np.asarray(common_matrix.design_matrix, dtype=np.float64)
        X = full[:, common_slices] if common_slices else np.zeros((len(frame), 0))
        offset = full[:, offset_slices].sum(axis=1) if offset_slices else None
    else:
        X, offset = np.zeros((len(frame), 0)), None
    X_mean = X.mean(axis=0) if intercept else np.zeros(X.shape[1])

    blocks, Z, codes, block_matrices = [], [], [], []
    for (expression, factor_text, correlated), factors in zip(
        parsed.blocks, factor_lists, strict=True
    ):
        block_matrix = _evaluate(f"{parsed.response} ~ {expression}", frame).common
        if block_matrix is None:
            raise InputError(
                f"group term ({expression} | {factor_text}) has no columns", argument="formula"
            )
        columns = tuple(str(c) for c in block_matrix.as_dataframe().columns)
        values = np.asarray(block_matrix.design_matrix, dtype=np.float64).reshape(len(frame), -1)
        scales = values.std(axis=0)
        scales = np.where(scales > 0, scales, 1.0)
        for factor in factors:
            _check_empty_groups(frame, factor)
            code, levels = _factorize(frame, factor)
            name = ":".join(factor)
            pieces = [(columns, correlated)] if correlated else [((c,), False) for c in columns]
            for piece_columns, piece_correlated in pieces:
                chosen = [columns.index(c) for c in piece_columns]
                blocks.append(
                    GroupBlock(
                        name=name,
                        factor=factor,
                        expression=expression,
                        columns=piece_columns,
                        correlated=piece_correlated and len(piece_columns) > 1,
                        levels=tuple(str(v) for v in levels),
                        rows=np.bincount(code, minlength=len(levels)),
                        column_scales=scales[chosen],
                    )
                )
                Z.append(np.ascontiguousarray(values[:, chosen]))
                codes.append(code.astype(np.int32))
                block_matrices.append(_Subset(block_matrix, chosen))
    _check_duplicates(names, blocks)
    return Design(
        formula=formula,
        family=family,
        response=parsed.response,
        y=y,
        intercept=intercept,
        common=tuple(str(n) for n in names),
        X=np.ascontiguousarray(X),
        X_mean=X_mean,
        offset=offset,
        trials=trials,
        trials_column=parsed.trials,
        blocks=tuple(blocks),
        Z=tuple(Z),
        codes=tuple(codes),
        _common_matrix=common_matrix,
        _offset_slices=tuple(offset_slices),
        _common_slices=tuple(common_slices),
        _block_matrices=tuple(block_matrices),
    )


class _Subset:
    """Some columns of a formulae design, evaluated on new data the same way."""

    def __init__(self, matrix, columns):
        self.matrix, self.columns, self.terms = matrix, list(columns), matrix.terms

    def evaluate_new_data(self, frame):
        class _Values:
            pass

        out = _Values()
        out.design_matrix = np.asarray(
            self.matrix.evaluate_new_data(frame).design_matrix, dtype=np.float64
        ).reshape(len(frame), -1)[:, self.columns]
        return out


def _factorize(frame, factor: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Group index per row and the group labels, sorted by value (numbers numerically)."""
    import pandas as pd

    if len(factor) == 1:
        code, uniques = pd.factorize(frame[factor[0]], sort=True)
        return code, [str(v) for v in uniques]
    index = pd.MultiIndex.from_frame(frame[list(factor)])
    code, uniques = index.factorize(sort=True)
    return code, [":".join(str(v) for v in values) for values in uniques]


def _check_empty_groups(frame, factor: tuple[str, ...]) -> None:
    for name in factor:
        column = frame[name]
        if hasattr(column, "cat"):
            empty = [c for c, n in column.value_counts(sort=False).items() if n == 0]
            if empty:
                raise InputError(
                    f"column {name!r} has group(s) with no rows: {', '.join(map(repr, empty[:5]))}; "
                    f"drop them with df[{name!r}].cat.remove_unused_categories()",
                    argument="data",
                )


def _check_duplicates(common: list[str], blocks: list[GroupBlock]) -> None:
    seen = set()
    for block in blocks:
        for column in block.columns:
            key = (column, block.name)
            if key in seen:
                raise InputError(
                    f"group term {column}|{block.name} appears twice in the formula",
                    argument="formula",
                )
            seen.add(key)
