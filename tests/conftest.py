"""Test-session settings shared by every test module."""

import os
from pathlib import Path

# Keep compiled programs between local runs without touching the user's cache;
# a fresh clone (CI) starts empty and measures the real compile times.
os.environ.setdefault(
    "JAXPRO_CACHE_DIR", str(Path(__file__).parent.parent / ".pytest_cache" / "jaxpro-xla")
)
