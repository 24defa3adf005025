"""Core JAX: work split over every device, the scale-out pieces every domain shares.

Entry points: :func:`pmap_batch` (a function mapped over a batch, the batch
split over every device with ``jit`` and ``NamedSharding``; returns a
:class:`BatchResult`), :func:`device_mesh` and :func:`resolve_devices` (the one
place a ``devices=`` argument becomes a ``Mesh``), :func:`lint` and
:func:`lint_source` (JAX anti-patterns found statically; ``jaxpro lint`` on the
command line; :data:`RULES` lists the rules), :func:`checkpointed_scan`
(``lax.scan`` with gradients in O(sqrt(length)) memory) and :func:`fixed_point`
(a ``jax.custom_vjp`` example: a solve differentiated implicitly), and
:func:`check` (run a function under jit, grad and checkify and report what goes
wrong; ``jaxpro check`` on the command line). JAX loads on first call.
"""

from jaxpro.core._check import CheckFinding as CheckFinding
from jaxpro.core._check import CheckReport as CheckReport
from jaxpro.core._check import check as check
from jaxpro.core._checkpoint import Restored as Restored
from jaxpro.core._checkpoint import checkpoint_steps as checkpoint_steps
from jaxpro.core._checkpoint import restore_checkpoint as restore_checkpoint
from jaxpro.core._checkpoint import save_checkpoint as save_checkpoint
from jaxpro.core._implicit import fixed_point as fixed_point
from jaxpro.core._lint import Finding as Finding
from jaxpro.core._lint_api import LintReport as LintReport
from jaxpro.core._lint_api import lint as lint
from jaxpro.core._lint_api import lint_source as lint_source
from jaxpro.core._lint_rules import RULES as RULES
from jaxpro.core._mesh import device_mesh as device_mesh
from jaxpro.core._mesh import resolve_devices as resolve_devices
from jaxpro.core._mesh import use_cpu_cores as use_cpu_cores
from jaxpro.core._parallel import BatchLayout as BatchLayout
from jaxpro.core._parallel import BatchResult as BatchResult
from jaxpro.core._parallel import pmap_batch as pmap_batch
from jaxpro.core._scan import checkpointed_scan as checkpointed_scan

__all__ = [
    "RULES",
    "BatchLayout",
    "BatchResult",
    "CheckFinding",
    "CheckReport",
    "Finding",
    "LintReport",
    "Restored",
    "check",
    "checkpoint_steps",
    "checkpointed_scan",
    "device_mesh",
    "fixed_point",
    "lint",
    "lint_source",
    "pmap_batch",
    "resolve_devices",
    "restore_checkpoint",
    "save_checkpoint",
    "use_cpu_cores",
]
