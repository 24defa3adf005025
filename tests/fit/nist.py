"""NIST StRD nonlinear-regression problems for the curve-fitting tests.

A plain helper module (not a test file): it parses the certified ``.dat`` files in
``tests/data/nist-strd`` and pairs each with its model, transcribed by hand into
``jax.numpy`` from the file's ``y = ...`` line. ``tests/fit/test_nist_data.py`` checks the
transcription against the certified residual sums of squares, independent of any solver.

The models are plain ``jnp`` expressions (no Python control flow on values), so they can
be jitted and differentiated. Enable float64 (``jax_enable_x64``) before evaluating them:
several of these problems cannot be resolved in float32.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

DATA_DIR = Path(__file__).parent.parent / "data" / "nist-strd"

NAMES: tuple[str, ...] = (
    # Lower difficulty
    "Misra1a",
    "Chwirut2",
    "Lanczos3",
    "Gauss1",
    "DanWood",
    # Average difficulty
    "Kirby2",
    "Hahn1",
    "MGH17",
    "Lanczos1",
    "Gauss3",
    "ENSO",
    # Higher difficulty
    "MGH09",
    "BoxBOD",
    "Rat42",
    "Eckerle4",
)

# Certified values are published to 11 significant digits: an LRE above that means
# nothing, so it is the default cap of `log_relative_error`.
CERTIFIED_DIGITS = 11.0


# --- models, transcribed from the "y = ..." line of each .dat file (the "+ e" dropped) ---


def _misra1a(x, b1, b2):
    # y = b1*(1-exp[-b2*x])
    return b1 * (1.0 - jnp.exp(-b2 * x))


def _chwirut2(x, b1, b2, b3):
    # y = exp(-b1*x)/(b2+b3*x)
    return jnp.exp(-b1 * x) / (b2 + b3 * x)


def _lanczos(x, b1, b2, b3, b4, b5, b6):
    # y = b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)
    return b1 * jnp.exp(-b2 * x) + b3 * jnp.exp(-b4 * x) + b5 * jnp.exp(-b6 * x)


def _gauss(x, b1, b2, b3, b4, b5, b6, b7, b8):
    # y = b1*exp( -b2*x ) + b3*exp( -(x-b4)**2 / b5**2 )
    #                     + b6*exp( -(x-b7)**2 / b8**2 )
    return (
        b1 * jnp.exp(-b2 * x)
        + b3 * jnp.exp(-((x - b4) ** 2) / b5**2)
        + b6 * jnp.exp(-((x - b7) ** 2) / b8**2)
    )


def _danwood(x, b1, b2):
    # y  = b1*x**b2   (x > 0 in the data)
    return b1 * x**b2


def _kirby2(x, b1, b2, b3, b4, b5):
    # y = (b1 + b2*x + b3*x**2) / (1 + b4*x + b5*x**2)
    return (b1 + b2 * x + b3 * x**2) / (1.0 + b4 * x + b5 * x**2)


def _hahn1(x, b1, b2, b3, b4, b5, b6, b7):
    # y = (b1+b2*x+b3*x**2+b4*x**3) / (1+b5*x+b6*x**2+b7*x**3)
    return (b1 + b2 * x + b3 * x**2 + b4 * x**3) / (1.0 + b5 * x + b6 * x**2 + b7 * x**3)


def _mgh17(x, b1, b2, b3, b4, b5):
    # y = b1 + b2*exp[-x*b4] + b3*exp[-x*b5]
    return b1 + b2 * jnp.exp(-x * b4) + b3 * jnp.exp(-x * b5)


def _enso(x, b1, b2, b3, b4, b5, b6, b7, b8, b9):
    # y = b1 + b2*cos( 2*pi*x/12 ) + b3*sin( 2*pi*x/12 )
    #        + b5*cos( 2*pi*x/b4 ) + b6*sin( 2*pi*x/b4 )
    #        + b8*cos( 2*pi*x/b7 ) + b9*sin( 2*pi*x/b7 )
    two_pi_x = 2.0 * jnp.pi * x
    return (
        b1
        + b2 * jnp.cos(two_pi_x / 12.0)
        + b3 * jnp.sin(two_pi_x / 12.0)
        + b5 * jnp.cos(two_pi_x / b4)
        + b6 * jnp.sin(two_pi_x / b4)
        + b8 * jnp.cos(two_pi_x / b7)
        + b9 * jnp.sin(two_pi_x / b7)
    )


def _mgh09(x, b1, b2, b3, b4):
    # y = b1*(x**2+x*b2) / (x**2+x*b3+b4)
    return b1 * (x**2 + x * b2) / (x**2 + x * b3 + b4)


def _boxbod(x, b1, b2):
    # y = b1*(1-exp[-b2*x])
    return b1 * (1.0 - jnp.exp(-b2 * x))


def _rat42(x, b1, b2, b3):
    # y = b1 / (1+exp[b2-b3*x])
    return b1 / (1.0 + jnp.exp(b2 - b3 * x))


def _eckerle4(x, b1, b2, b3):
    # y = (b1/b2) * exp[-0.5*((x-b3)/b2)**2]
    return (b1 / b2) * jnp.exp(-0.5 * ((x - b3) / b2) ** 2)


# name -> (model, number of parameters it takes)
_MODELS: dict[str, tuple[Callable[..., jnp.ndarray], int]] = {
    "Misra1a": (_misra1a, 2),
    "Chwirut2": (_chwirut2, 3),
    "Lanczos3": (_lanczos, 6),
    "Gauss1": (_gauss, 8),
    "DanWood": (_danwood, 2),
    "Kirby2": (_kirby2, 5),
    "Hahn1": (_hahn1, 7),
    "MGH17": (_mgh17, 5),
    "Lanczos1": (_lanczos, 6),
    "Gauss3": (_gauss, 8),
    "ENSO": (_enso, 9),
    "MGH09": (_mgh09, 4),
    "BoxBOD": (_boxbod, 2),
    "Rat42": (_rat42, 3),
    "Eckerle4": (_eckerle4, 3),
}


@dataclass(frozen=True)
class NistProblem:
    """One certified NIST StRD nonlinear least-squares problem."""

    name: str
    x: np.ndarray
    y: np.ndarray
    starts: tuple[np.ndarray, np.ndarray]  # ("Start 1" far, "Start 2" near)
    certified_values: np.ndarray
    certified_std_errors: np.ndarray
    certified_rss: float
    certified_residual_sd: float
    degrees_of_freedom: int
    n_params: int
    param_names: tuple[str, ...]
    difficulty: str  # "Lower", "Average" or "Higher"
    model: Callable[..., jnp.ndarray]
    formula: str  # the model text from the file, for messages

    @property
    def n_obs(self) -> int:
        return int(self.x.shape[0])

    def residuals(self, b) -> jnp.ndarray:
        """y - model(x, *b), as a jax array."""
        return jnp.asarray(self.y) - self.model(jnp.asarray(self.x), *b)

    def rss(self, b) -> float:
        r = self.residuals(b)
        return float(jnp.sum(r * r))


# --- parsing ---

_PARAM_RE = re.compile(
    r"^\s*(b\d+)\s*=\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$",
)
_NUM_RE = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def _header_number(text: str, label: str) -> str:
    m = re.search(rf"^\s*{re.escape(label)}\s*:?\s*{_NUM_RE}\s*$", text, re.MULTILINE)
    if m is None:
        raise ValueError(f"no '{label}' line")
    return m.group(1)


def _parse(name: str, text: str) -> dict:
    lines = text.splitlines()

    # Difficulty, from e.g. "               Lower Level of Difficulty".
    m = re.search(r"^\s*(Lower|Average|Higher)\s+Level of Difficulty\s*$", text, re.MULTILINE)
    if m is None:
        raise ValueError(f"{name}: no difficulty line")
    difficulty = m.group(1)

    # Model text: the "y = ..." line after "Model:" and its continuation lines.
    i_model = next(i for i, ln in enumerate(lines) if ln.startswith("Model:"))
    i_y = next(i for i in range(i_model, len(lines)) if re.match(r"^\s*y\s*=", lines[i]))
    formula_lines = []
    for ln in lines[i_y:]:
        if not ln.strip():
            break
        formula_lines.append(ln.strip())
    formula = " ".join(formula_lines)
    formula = re.sub(r"\s*\+\s*e\s*$", "", formula)

    # Declared number of parameters: "N Parameters (b1 to bN)" / "(b1 and b2)".
    m = re.search(r"^\s*(\d+)\s+Parameters\b", text, re.MULTILINE)
    if m is None:
        raise ValueError(f"{name}: no 'N Parameters' line")
    n_params_declared = int(m.group(1))

    # Starting values / certified values table.
    names, start1, start2, values, std_errors = [], [], [], [], []
    for ln in lines:
        pm = _PARAM_RE.match(ln)
        if pm is None:
            continue
        names.append(pm.group(1))
        start1.append(float(pm.group(2)))
        start2.append(float(pm.group(3)))
        values.append(float(pm.group(4)))
        std_errors.append(float(pm.group(5)))
    expected_names = [f"b{k}" for k in range(1, len(names) + 1)]
    if names != expected_names:
        raise ValueError(f"{name}: parameter rows {names}, expected {expected_names}")
    if len(names) != n_params_declared:
        raise ValueError(f"{name}: {len(names)} parameter rows, header says {n_params_declared}")

    rss = float(_header_number(text, "Residual Sum of Squares"))
    residual_sd = float(_header_number(text, "Residual Standard Deviation"))
    dof = int(_header_number(text, "Degrees of Freedom"))
    n_obs = int(_header_number(text, "Number of Observations"))

    # Data section: the "Data:" line whose remaining tokens are column names (the other
    # "Data:" line in the header describes the variables). Its tokens give the column order.
    header_idx = None
    columns: list[str] = []
    for i, ln in enumerate(lines):
        if not ln.startswith("Data:"):
            continue
        toks = ln[len("Data:") :].split()
        if toks and all(re.fullmatch(r"[A-Za-z]\w*", t) for t in toks):
            header_idx, columns = i, [t.lower() for t in toks]
    if header_idx is None:
        raise ValueError(f"{name}: no data column header ('Data:  y  x')")
    if sorted(columns) != ["x", "y"]:
        raise ValueError(f"{name}: data columns {columns}, expected y and x")
    rows = []
    for ln in lines[header_idx + 1 :]:
        if not ln.strip():
            continue
        toks = ln.split()
        if len(toks) != len(columns):
            raise ValueError(f"{name}: data row {ln!r} does not have {len(columns)} columns")
        rows.append([float(t) for t in toks])
    data = np.asarray(rows, dtype=np.float64)
    if data.shape[0] != n_obs:
        raise ValueError(f"{name}: parsed {data.shape[0]} observations, header says {n_obs}")
    m = re.search(r"^\s*(\d+)\s+Observations\s*$", text, re.MULTILINE)
    if m is not None and int(m.group(1)) != n_obs:
        raise ValueError(f"{name}: 'N Observations' line disagrees with {n_obs}")
    if dof != n_obs - len(names):
        raise ValueError(f"{name}: degrees of freedom {dof} != {n_obs} - {len(names)}")

    return {
        "x": np.ascontiguousarray(data[:, columns.index("x")]),
        "y": np.ascontiguousarray(data[:, columns.index("y")]),
        "starts": (np.asarray(start1, np.float64), np.asarray(start2, np.float64)),
        "certified_values": np.asarray(values, np.float64),
        "certified_std_errors": np.asarray(std_errors, np.float64),
        "certified_rss": rss,
        "certified_residual_sd": residual_sd,
        "degrees_of_freedom": dof,
        "n_params": len(names),
        "param_names": tuple(names),
        "difficulty": difficulty,
        "formula": formula,
    }


def load(name: str) -> NistProblem:
    """Parse ``tests/data/nist-strd/<name>.dat`` and attach its transcribed model."""
    if name not in _MODELS:
        raise KeyError(f"unknown NIST problem {name!r}; known: {', '.join(NAMES)}")
    path = DATA_DIR / f"{name}.dat"
    fields = _parse(name, path.read_text())
    model, n_model_params = _MODELS[name]
    if n_model_params != fields["n_params"]:
        raise ValueError(
            f"{name}: model takes {n_model_params} parameters, file has {fields['n_params']}"
        )
    return NistProblem(name=name, model=model, **fields)


def load_all() -> tuple[NistProblem, ...]:
    return tuple(load(name) for name in NAMES)


def log_relative_error(estimate, certified, max_digits: float = CERTIFIED_DIGITS) -> np.ndarray:
    """NIST log relative error, elementwise: the number of agreeing significant digits.

    LRE = -log10(|est - cert| / |cert|), or -log10(|est - cert|) where cert == 0, clipped
    to [0, max_digits]; est == cert gives max_digits and a non-finite estimate gives 0.
    Default cap: the 11 significant digits the certified values are published with.
    """
    est = np.asarray(estimate, dtype=np.float64)
    cert = np.asarray(certified, dtype=np.float64)
    est, cert = np.broadcast_arrays(est, cert)
    abs_err = np.abs(est - cert)
    scale = np.where(cert == 0.0, 1.0, np.abs(cert))
    with np.errstate(divide="ignore", invalid="ignore"):
        lre = -np.log10(abs_err / scale)
    lre = np.where(abs_err == 0.0, max_digits, lre)
    lre = np.where(np.isfinite(est), lre, 0.0)
    return np.clip(lre, 0.0, max_digits)
