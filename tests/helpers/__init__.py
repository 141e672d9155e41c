"""Everything the tests share: servers, data, Ansible runs, TLS, the module in-process.

Test files import from here only, never from each other; fixtures are in conftest.py. The
Ansible helpers load on first use: the engine's tests also run in a virtualenv with only
redis-py 4.3 and pytest, which has no Ansible.
"""

from __future__ import annotations

import importlib

from .data import (
    INDEX,
    PATTERN,
    SESSION,
    content,
    data_of,
    expiries,
    expiry,
    options,
    run,
    seed_sessions,
    seed_with_overlap,
    snapshot,
    zset,
)
from .engine import ROOT, engine
from .proxy import Proxy
from .servers import (
    DEBUG_CONFIG,
    REDIS_SERVER,
    RedisServer,
    free_port,
    hello,
    server_version,
    wait_for,
)
from .tls import make_certificates, start_tls_server
from .topology import HaTopology, link_up, role

# Helpers loaded on first use, by the module of this package each comes from.
_LAZY = {
    **dict.fromkeys(
        ("ANSIBLE", "ANSIBLE_CORE", "ANSIBLE_DOC", "ANSIBLE_PLAYBOOK", "BIN", "CLEANUP", "CONFIRM",
         "MIGRATE", "Run", "ansible_env", "bare_python", "not_an_int", "play", "recap",
         "run_ansible", "run_module", "run_tasks", "says", "task_status", "tcp_args",
         "unfolded", "write_inventory"),
        "ansible",
    ),
    "call_module": "module",
    **dict.fromkeys(
        ("STOP", "alive", "interrupt", "kill_job", "running_job", "start_play"), "jobs"
    ),
    **dict.fromkeys(
        ("FQCN", "TARBALL", "VERSION", "OperatorRepo", "build_collection", "run_checked"),
        "collection",
    ),
}  # fmt: skip

# What this package imports at once, then what it loads on first use.
__all__ = [
    "DEBUG_CONFIG",
    "INDEX",
    "PATTERN",
    "Proxy",
    "REDIS_SERVER",
    "ROOT",
    "SESSION",
    "HaTopology",
    "RedisServer",
    "content",
    "data_of",
    "engine",
    "expiries",
    "expiry",
    "free_port",
    "hello",
    "link_up",
    "make_certificates",
    "options",
    "role",
    "run",
    "seed_sessions",
    "seed_with_overlap",
    "server_version",
    "snapshot",
    "start_tls_server",
    "wait_for",
    "zset",
]
__all__ += list(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(name)
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
