"""Everything the tests share: servers, data, Ansible runs, TLS, the module in-process.

Test files import from here only, never from each other; fixtures are in conftest.py.
"""

from __future__ import annotations

from importlib.util import find_spec

from .data import (
    INDEX,
    PATTERN,
    SESSION,
    assert_same_value_and_expiry,
    content,
    data_of,
    expiries,
    expiry,
    migrate_with_engine,
    options,
    seed_sessions,
    seed_with_overlap,
    snapshot,
    zset,
)
from .engine import ROOT, engine
from .latency import LatencyProxy
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

__all__ = [
    "DEBUG_CONFIG",
    "INDEX",
    "PATTERN",
    "REDIS_SERVER",
    "ROOT",
    "SESSION",
    "HaTopology",
    "LatencyProxy",
    "Proxy",
    "RedisServer",
    "assert_same_value_and_expiry",
    "content",
    "data_of",
    "engine",
    "expiries",
    "expiry",
    "free_port",
    "hello",
    "link_up",
    "make_certificates",
    "migrate_with_engine",
    "options",
    "role",
    "seed_sessions",
    "seed_with_overlap",
    "server_version",
    "snapshot",
    "start_tls_server",
    "wait_for",
    "zset",
]

# The helpers that run Ansible, or read YAML, only where Ansible is installed: the engine's
# tests run in .venv/redis-py-4.3 too, which has redis-py 4.3, pytest and Hypothesis, and no
# Ansible nor PyYAML (scripts/test.sh runs only the engine's test files there).
if find_spec("ansible") is not None:
    from .ansible import (
        ANSIBLE,
        ANSIBLE_CORE,
        ANSIBLE_DOC,
        ANSIBLE_PLAYBOOK,
        BIN,
        CLEANUP,
        CONFIRM,
        MIGRATE,
        Run,
        ansible_env,
        bare_python,
        not_an_int,
        recap,
        run_ansible,
        run_module,
        run_playbook,
        run_tasks,
        says,
        task_status,
        tcp_args,
        unfolded,
        write_inventory,
    )
    from .collection import (
        FQCN,
        TARBALL,
        VERSION,
        OperatorRepo,
        build_collection,
        run_checked,
    )
    from .jobs import STOP, alive, interrupt, kill_job, running_job, start_play
    from .module import call_module

    __all__ += [
        "ANSIBLE",
        "ANSIBLE_CORE",
        "ANSIBLE_DOC",
        "ANSIBLE_PLAYBOOK",
        "BIN",
        "CLEANUP",
        "CONFIRM",
        "FQCN",
        "MIGRATE",
        "STOP",
        "TARBALL",
        "VERSION",
        "OperatorRepo",
        "Run",
        "alive",
        "ansible_env",
        "bare_python",
        "build_collection",
        "call_module",
        "interrupt",
        "kill_job",
        "not_an_int",
        "recap",
        "run_ansible",
        "run_checked",
        "run_module",
        "run_playbook",
        "run_tasks",
        "running_job",
        "says",
        "start_play",
        "task_status",
        "tcp_args",
        "unfolded",
        "write_inventory",
    ]
