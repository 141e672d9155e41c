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

__all__ = [
    "ANSIBLE",
    "ANSIBLE_DOC",
    "ANSIBLE_PLAYBOOK",
    "BIN",
    "CLEANUP",
    "CONFIRM",
    "DEBUG_CONFIG",
    "FQCN",
    "INDEX",
    "MIGRATE",
    "PATTERN",
    "REDIS_SERVER",
    "ROOT",
    "SESSION",
    "TARBALL",
    "VERSION",
    "OperatorRepo",
    "RedisServer",
    "Run",
    "ansible_env",
    "bare_python",
    "build_collection",
    "call_module",
    "content",
    "data_of",
    "engine",
    "expiries",
    "expiry",
    "free_port",
    "hello",
    "make_certificates",
    "options",
    "play",
    "recap",
    "run",
    "run_ansible",
    "run_checked",
    "run_module",
    "run_tasks",
    "seed_sessions",
    "seed_with_overlap",
    "server_version",
    "snapshot",
    "start_tls_server",
    "task_status",
    "tcp_args",
    "wait_for",
    "write_inventory",
    "zset",
]


# Names of the Ansible helpers, and the module of this package each comes from.
_LAZY = {name: "ansible" for name in (
    "ANSIBLE",
    "ANSIBLE_DOC",
    "ANSIBLE_PLAYBOOK",
    "BIN",
    "CLEANUP",
    "CONFIRM",
    "MIGRATE",
    "Run",
    "ansible_env",
    "bare_python",
    "play",
    "recap",
    "run_ansible",
    "run_module",
    "run_tasks",
    "task_status",
    "tcp_args",
    "write_inventory",
)}  # fmt: skip
_LAZY["call_module"] = "module"
_LAZY.update(
    dict.fromkeys(
        ("FQCN", "TARBALL", "VERSION", "OperatorRepo", "build_collection", "run_checked"),
        "collection",
    )
)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(name)
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
