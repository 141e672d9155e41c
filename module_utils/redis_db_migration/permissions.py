"""What the user may run: every command a run will send is probed before the first write, and
the strategy is picked from what is there."""

from __future__ import annotations

import re

from .errors import MigrationError, is_refusal
from .keys import display
from .lua_preflight import PROBES, TRANSACTION_PROBES
from .redis_py import redis_errors

PROBE_SUFFIX = b"redis-db-migrate-probe"
COPYING_MODES = ("preflight", "migrate")


def acl_name(command):
    """How ACL SETUSER names a command: 'MEMORY USAGE' is 'memory|usage'."""
    return command.lower().replace(" ", "|")


def probe_keys(patterns):
    """Names inside the migrated namespace for the probes: the first pattern's literal start,
    so a user whose keys an ACL limits to that namespace may touch them."""
    prefix = re.split(rb"[*?\[\\]", patterns[0], maxsplit=1)[0]
    for n in range(10):
        yield prefix + PROBE_SUFFIX + b":%d" % n


def unavailable_commands(session, probe_script):
    """The commands of PROBES and TRANSACTION_PROBES this server lacks, has renamed or denies
    this user. Running the probe script also proves scripting is allowed."""
    names = list(PROBES)
    words = [word for name in names for word in (str(len(PROBES[name])), *PROBES[name])]
    dbs = [session.options.source_db, session.options.target_db]
    for key in probe_keys(session.patterns):
        replies = session.call(
            lambda k=key: probe_script(keys=[k], args=[*dbs, *words]),
            "running a Lua script (EVALSHA)",
        )
        if replies is not None:
            break
    else:
        raise MigrationError(
            f"Every probe key name ({display(key)} and the 9 before it) exists on Redis at "
            f"{session.settings.endpoint}: delete them, they are never written by this module."
        )
    denied = {name for name, reply in zip(names, replies) if is_refusal(display(reply))}
    return denied | session.call(lambda: _transaction_refusals(session, key), "checking WATCH")


def _transaction_refusals(session, key):
    """WATCH, MULTI, EXEC and UNWATCH, which scripts may not send, tried on a connection of
    their own that is closed afterwards, whatever state the probes left it in."""
    probe = session.settings.client(db=session.options.source_db, single_connection_client=True)
    denied = set()
    try:
        for words in TRANSACTION_PROBES:
            try:
                probe.execute_command(*(key if word == "{key}" else word for word in words))
            except redis_errors.ResponseError as exc:
                if is_refusal(str(exc)):
                    denied.add(words[0])
    finally:
        probe.close()
    return denied


def pick_strategy(session):
    """COPY where the server has it and the user may run it (unless told otherwise), else
    DUMP + RESTORE."""
    requested = session.options.strategy
    copy_ok = session.facts.version >= (6, 2) and "COPY" not in session.unavailable
    if copy_ok and requested in ("auto", "copy"):
        return "copy"
    if requested == "copy":
        raise MigrationError(
            f"strategy 'copy' needs the COPY command, which Redis {session.facts.version_text} "
            f"at {session.settings.endpoint} lacks, has renamed or denies to this user. Use "
            f"strategy 'auto' or 'dump-restore'."
        )
    return "dump-restore"


def needed_commands(session, mode):
    """The commands a run of ``mode`` sends: those it cannot do without, and those that only
    feed a check (memory guard, byte budget), which can be switched off."""
    version = session.facts.version
    needed = {"SCAN", "EXISTS", "TYPE"}
    measured = {"MEMORY USAGE"}
    indexed = bool(session.index_names)
    read_back = "ZMSCORE" if version >= (6, 2) else "ZSCORE"
    if indexed:
        needed |= {"ZSCAN", "ZSCORE"}
    if mode in COPYING_MODES:
        if session.strategy == "copy":
            needed.add("COPY")
        else:
            needed |= {"DUMP", "RESTORE"}
            needed |= {"PEXPIRETIME"} if version >= (7, 0) else {"TIME", "PTTL"}
        if indexed:
            needed |= {"ZADD", "ZCARD", read_back}
        measured |= {"INFO", "DBSIZE"}
        if session.options.memory_check:
            needed |= measured
    elif mode == "cleanup":
        needed |= {"GET", "LRANGE", "HGETALL", "SMEMBERS", "ZRANGE", "XRANGE", "DUMP", "UNLINK"}
        if indexed:
            needed |= {"ZCARD", read_back, "WATCH", "MULTI", "EXEC", "UNWATCH"}
    else:
        measured = set()
    return needed, measured - needed


def check_commands(session, mode):
    """Refuse a run that would send a command the user may not run. Returns the checks that
    cannot run for want of a command they alone need, each with why."""
    needed, optional = needed_commands(session, mode)
    missing = sorted(needed & session.unavailable)
    if missing:
        user = session.settings.username or "default"
        them = "them" if len(missing) > 1 else "it"
        grants = " ".join(f"+{acl_name(name)}" for name in missing)
        how = f"strategy {session.strategy}" if mode in COPYING_MODES else "it"
        hint = ""
        if set(missing) <= {"INFO", "DBSIZE", "MEMORY USAGE"}:
            hint = " Or set memory_check: false to run without the memory guard."
        raise MigrationError(
            f"User '{user}' on Redis at {session.settings.endpoint} may not run "
            f"{', '.join(missing)}, which mode {mode} with {how} needs: the server lacks, has "
            f"renamed or denies {them}. Grant {them} with ACL SETUSER {user} {grants} (a "
            f"renamed command must get its name back).{hint}"
        )
    checks = []
    if mode in COPYING_MODES and not session.options.memory_check:
        checks.append("memory guard: memory_check is false")
    if "MEMORY USAGE" in optional & session.unavailable:
        checks.append(
            "byte budget: MEMORY USAGE is not available, so each server call is bounded by "
            "batch_size keys only"
        )
    return checks
