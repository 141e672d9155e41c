"""redis-py, imported once for the whole package: whether it is there, and whether it is new
enough. The module reports a missing library itself, with Ansible's missing_required_lib."""

from __future__ import annotations

import re
import traceback

try:
    import redis
    from redis import exceptions as redis_errors
except ImportError:
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()
    redis = redis_errors = None
else:
    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None

__all__ = [
    "HAS_REDIS",
    "MIN_REDIS_PY",
    "REDIS_IMPORT_ERROR",
    "redis",
    "redis_errors",
    "redis_py_problem",
]

# The oldest redis-py supported: Debian 12's python3-redis.
MIN_REDIS_PY = (4, 3)


def redis_py_problem():
    """Why the installed redis-py cannot run the engine, or None when it can."""
    if not HAS_REDIS:
        return "the Python library 'redis' (redis-py) is not installed."
    found = tuple(int(part) for part in re.findall(r"\d+", redis.__version__)[:2])
    if found < MIN_REDIS_PY:
        return (
            f"redis-py {redis.__version__} is installed where the module runs; it needs "
            f"{'.'.join(map(str, MIN_REDIS_PY))} or newer (Debian 12's python3-redis). "
            f"Upgrade it, or run the module on the controller."
        )
    return None
