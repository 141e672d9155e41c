"""The probe of what the user may run: every command a run may send, tried once on a connection
of its own, in a way that changes nothing, and each refusal sorted by its cause. The first
round trip finds a probe key; the second tries everything. permissions.py decides from it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import MigrationError, describe_error, is_noperm, is_unknown_command
from .keys import display, literal_prefix
from .lua_preflight import ESTIMATE_SCRIPT
from .redis_py import redis_errors
from .shown import shown

PROBE_SUFFIX = b"redis-db-migrate-probe"
PROBE_KEYS = 10
# No script has this SHA1: EVALSHA of it fails after the server's command lookup and ACL check.
NO_SCRIPT = "0" * 40

# How each command a run may send is tried without changing anything: on a probe key the db
# does not hold, or with arguments the command itself rejects after the server's command lookup
# and ACL check (COPY of a key onto itself, RESTORE of a payload that is not one, ZADD with both
# NX and XX, EVALSHA of no script). '{key}' stands for the probe key. SCRIPT LOAD loads a script
# the run loads anyway; WAIT and WAITAOF for no replica answer at once.
PROBES = {
    "PING": ("PING",),
    "SCRIPT LOAD": ("SCRIPT", "LOAD", ESTIMATE_SCRIPT),
    "EVALSHA": ("EVALSHA", NO_SCRIPT, "0"),
    "INFO": ("INFO", "stats"),
    "DBSIZE": ("DBSIZE",),
    "WAIT": ("WAIT", "0", "0"),
    "WAITAOF": ("WAITAOF", "0", "0", "0"),
    "SCAN": ("SCAN", "0", "MATCH", "{key}", "COUNT", "1"),
    "EXISTS": ("EXISTS", "{key}"),
    "TYPE": ("TYPE", "{key}"),
    "MEMORY USAGE": ("MEMORY", "USAGE", "{key}"),
    "COPY": ("COPY", "{key}", "{key}"),
    "DUMP": ("DUMP", "{key}"),
    "RESTORE": ("RESTORE", "{key}", "0", "not a dump payload"),
    "PEXPIRETIME": ("PEXPIRETIME", "{key}"),
    "TIME": ("TIME",),
    "PTTL": ("PTTL", "{key}"),
    "ZRANGE": ("ZRANGE", "{key}", "0", "-1"),
    "ZRANK": ("ZRANK", "{key}", "m"),
    "ZCOUNT": ("ZCOUNT", "{key}", "-inf", "+inf"),
    "ZSCORE": ("ZSCORE", "{key}", "m"),
    "ZMSCORE": ("ZMSCORE", "{key}", "m"),
    "ZCARD": ("ZCARD", "{key}"),
    "ZADD": ("ZADD", "{key}", "NX", "XX", "0", "m"),
    "GET": ("GET", "{key}"),
    "LRANGE": ("LRANGE", "{key}", "0", "-1"),
    "HGETALL": ("HGETALL", "{key}"),
    "SMEMBERS": ("SMEMBERS", "{key}"),
    "XRANGE": ("XRANGE", "{key}", "-", "+"),
    "UNLINK": ("UNLINK", "{key}"),
}
# Tried last, in this order: MULTI then EXEC runs a transaction of nothing.
TRANSACTION_PROBES = {
    "WATCH": ("WATCH", "{key}"),
    "MULTI": ("MULTI",),
    "EXEC": ("EXEC",),
    "UNWATCH": ("UNWATCH",),
}
# Commands younger than the oldest supported server: one that lacks them refuses nothing, it
# was never asked for them (permissions.needed_commands knows the version too).
SINCE = {"COPY": (6, 2), "ZMSCORE": (6, 2), "PEXPIRETIME": (7, 0), "WAITAOF": (7, 2)}

# Redis 6.2 and 7.0: "...no permissions to access one of the keys used as arguments"; Redis 7.2
# and Valkey: "No permissions to access a key". A command denied itself says "to run".
KEY_DENIAL = re.compile(r"access (?:a|one of the) key", re.IGNORECASE)


def command_names():
    """Every command the probe knows, in the order messages list them: connection first."""
    return list(dict.fromkeys(["PING", "SELECT", *PROBES, *TRANSACTION_PROBES]))


@dataclass
class Findings:
    """What the probe found: the commands refused, by cause, and what could not be tried."""

    denied: set = field(default_factory=set)  # ACL denies the command (NOPERM)
    unknown: set = field(default_factory=set)  # the server does not know it: renamed, disabled
    key_denied: set = field(default_factory=set)  # ACL lets the command run, not on those keys
    # The ACL key patterns ('~...') that would let the user touch the keys it was refused.
    keys: list = field(default_factory=list)
    # UNLINK, when neither EXISTS nor TYPE may prove the probe key absent: never tried blind.
    untried: set = field(default_factory=set)

    @property
    def unavailable(self):
        """Every command the run cannot count on."""
        return self.denied | self.unknown | self.key_denied | self.untried

    def add(self, name, reply):
        """Sort ``reply`` to command ``name`` by its cause, which it returns."""
        cause = refusal(reply)
        if cause:
            {"keys": self.key_denied, "unknown": self.unknown, "denied": self.denied}[cause].add(
                name
            )
        return cause


def refusal(reply):
    """Why the server refused a command: 'unknown' (renamed or disabled), 'denied' (ACL denies
    the command) or 'keys' (ACL denies its keys); None when it ran, or failed only on the
    probe's arguments, which the server checks after the command and the ACL."""
    if not isinstance(reply, redis_errors.ResponseError):
        return None
    text = str(reply)
    if is_unknown_command(text):
        return "unknown"
    if is_noperm(reply):
        return "keys" if KEY_DENIAL.search(text) else "denied"
    return None


def probe_keys(patterns):
    """Names inside the migrated namespace for the probes: the first pattern's literal start,
    so a user whose keys an ACL limits to that namespace may touch them."""
    prefix = literal_prefix(patterns[0])
    for n in range(PROBE_KEYS):
        yield prefix + PROBE_SUFFIX + b":%d" % n


def probe(session):
    """Try, for this user, every command a run of any mode may send; returns the Findings.

    One connection of its own, on which nothing was sent yet: the probe is the first to meet
    a refusal of PING or SELECT, which the run's own connections send first. Closed after,
    whatever state the transaction probes left it in.
    """
    settings = session.settings
    client = settings.client(db=0)
    connection = client.connection_pool.make_connection()
    try:
        return _probe(session, connection)
    except redis_errors.RedisError as exc:
        action = "trying the commands the run needs"
        raise MigrationError(describe_error(exc, settings, action)) from None
    finally:
        connection.disconnect()
        client.close()


def _probe(session, connection):
    """probe()'s two round trips on ``connection``: find the probe key, then try everything."""
    findings = Findings()
    version = session.facts.version
    candidates = list(probe_keys(session.patterns))
    # The probes run in the source db; where SELECT is refused, in db 0. Either way, the probe
    # key is the first that db does not hold.
    first = [
        ("SELECT", session.options.source_db),
        *(("EXISTS", key) for key in candidates),
        *(("TYPE", key) for key in candidates),
    ]
    select, *presence = round_trip(connection, first)
    findings.add("SELECT", select)
    key = _absent_key(session, candidates, presence[:PROBE_KEYS], presence[PROBE_KEYS:])
    if key is None:
        key = candidates[0]
        findings.untried.add("UNLINK")
    names, commands = [], []
    for name, words in {**PROBES, **TRANSACTION_PROBES}.items():
        if version < SINCE.get(name, ()) or name in findings.untried:
            continue
        names.append(name)
        commands.append(tuple(key if word == "{key}" else word for word in words))
    # The key checks go before the transaction probes: what MULTI queues is never run.
    checks = _key_checks(session)
    at = len(commands) - len(TRANSACTION_PROBES)
    replies = round_trip(connection, [*commands[:at], *checks.values(), *commands[at:]])
    checked = replies[at : at + len(checks)]
    causes = [
        findings.add(name, reply)
        for name, reply in zip(names, replies[:at] + replies[at + len(checks) :])
    ]
    if "keys" in causes:
        findings.keys.append(namespace_pattern(session.patterns[0]))
    for pattern, reply in zip(checks, checked):
        if refusal(reply) == "keys" and pattern not in findings.keys:
            findings.keys.append(pattern)
    return findings


def _absent_key(session, candidates, exists, types):
    """The first candidate the db does not hold, by EXISTS or, where that is refused, TYPE;
    None when neither may tell. Refuses a db that holds every candidate."""
    told = False
    for key, found, kind in zip(candidates, exists, types):
        if not isinstance(found, Exception):
            told = True
            if found == 0:
                return key
        elif not isinstance(kind, Exception):
            told = True
            if display(kind) == "none":
                return key
    if told:
        raise MigrationError(
            f"Every probe key name ({shown(candidates[-1])} and the {PROBE_KEYS - 1} before "
            f"it) exists on Redis at {session.settings.endpoint}: delete them, they are never "
            f"written by this module."
        )
    return None


def _key_checks(session):
    """EXISTS of each index, and of a probe key under each other pattern's literal start: what
    the probe key alone does not prove the user may touch. Keyed by the ACL key pattern that
    grants it."""
    checks = {}
    for pattern in session.patterns[1:]:
        checks[namespace_pattern(pattern)] = ("EXISTS", literal_prefix(pattern) + PROBE_SUFFIX)
    checks.pop(namespace_pattern(session.patterns[0]), None)
    for name in session.index_names:
        checks[f"~{glob_escaped(acl_text(name))}"] = ("EXISTS", name)
    return checks


def namespace_pattern(pattern):
    """The ACL key pattern of the keys a SCAN ``pattern`` can match: its literal start, then *."""
    return f"~{acl_text(literal_prefix(pattern))}*"


def acl_text(name):
    """``name`` as it goes into the ACL SETUSER line: as it is, when it is printable UTF-8 of a
    readable length, so that the line pastes as it stands; else as shown(), escaped and cut,
    which no line can paste but which cannot harm the terminal either."""
    try:
        text = name.decode("utf-8") if isinstance(name, bytes) else str(name)
    except UnicodeDecodeError:
        return shown(name)
    # shown() doubles a backslash, which a printable name may hold: glob_escaped() escapes it.
    plain = text.replace("\\", "")
    return text if plain == shown(plain) else shown(name)


def glob_escaped(text):
    """``text`` as an ACL key pattern that matches only itself."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def round_trip(connection, commands):
    """Send ``commands`` at once; their replies, each a reply or the ResponseError it was."""
    connection.send_packed_command(connection.pack_commands(commands))
    replies = []
    for _command in commands:
        try:
            replies.append(connection.read_response())
        except redis_errors.ResponseError as exc:
            replies.append(exc)
    return replies
