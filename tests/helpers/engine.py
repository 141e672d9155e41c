"""The engine under test, imported from the repository's module_utils, as the module does."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "module_utils"))

from redis_db_migration import api as engine  # noqa: E402

__all__ = ["ROOT", "engine"]
