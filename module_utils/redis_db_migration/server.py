"""What the server is, and whether it can take a run: read before anything else is sent."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import (
    MigrationError,
    describe_error,
    is_noperm,
    is_unknown_command,
    is_unknown_hello,
)
from .keys import as_bytes, display
from .redis_py import redis_errors
from .sentinel import address_text
from .shown import shown


@dataclass
class ServerFacts:
    version: tuple
    role: str
    cluster: bool
    info: bool = True  # INFO answered; without it (HELLO) the memory facts are unknown
    databases: int | None = None
    used_memory: int | None = None
    used_memory_rss: int | None = None
    maxmemory: int | None = None
    maxmemory_policy: str | None = None
    total_system_memory: int | None = None
    evicted_keys: int | None = None
    # Who this node is, for the primary watch: unknown (None) without INFO.
    run_id: str | None = None
    replication_id: str | None = None
    master: str | None = None  # a replica's primary, host:port
    replicas: tuple = ()  # online replicas: (host:port, acknowledged offset)
    repl_offset: int | None = None
    aof_enabled: bool | None = None

    @property
    def version_text(self):
        return ".".join(str(part) for part in self.version) or "unknown"


def read_facts(session):
    """The server's version, role and memory (from INFO, or HELLO where INFO is denied or
    renamed) and its number of databases (when CONFIG GET may be run)."""
    settings = session.settings
    admin = settings.client(db=0)
    try:
        # INFO comes first, not PING: a refused PING is for the probe to name, with the rest.
        # CONFIG GET travels in the same round trip.
        pipe = admin.pipeline(transaction=False).info().config_get("databases")
        try:
            info, config = pipe.execute(raise_on_error=False)
        except redis_errors.ResponseError as exc:
            # Refused as the connection opened (HELLO): before INFO could be.
            raise MigrationError(describe_error(exc, settings, "reading INFO")) from None
        except redis_errors.RedisError as exc:
            # The run's first command: a connection closed now may have met a TLS-only server.
            error = describe_error(exc, settings, "connecting", answered=False)
            raise MigrationError(error) from None
        readable = not isinstance(info, redis_errors.ResponseError)
        if not readable:
            if is_unknown_hello(info) or not (is_noperm(info) or is_unknown_command(info)):
                raise MigrationError(describe_error(info, settings, "reading INFO"))
            info = _hello(settings, info_denied=is_noperm(info))
        # CONFIG denied or renamed: SELECT will tell instead.
        refused = isinstance(config, redis_errors.ResponseError)
        databases = None if refused else {display(k): v for k, v in config.items()}.get("databases")
    finally:
        admin.close()
    return ServerFacts(
        version=tuple(int(p) for p in re.findall(rb"\d+", as_bytes(info["redis_version"]))[:3]),
        role=str(info.get("role", "master")),
        cluster=bool(int(info.get("cluster_enabled", 0))),
        info=readable,
        databases=None if databases is None else int(databases),
        used_memory=info.get("used_memory"),
        used_memory_rss=info.get("used_memory_rss"),
        maxmemory=info.get("maxmemory"),
        maxmemory_policy=info.get("maxmemory_policy"),
        total_system_memory=info.get("total_system_memory"),
        evicted_keys=info.get("evicted_keys"),
        **replication_facts(info) if readable else {},
    )


def replication_facts(info):
    """Who the node is and who replicates it, from INFO (parsed by redis-py)."""
    master = None
    if info.get("master_host"):
        master = address_text(display(info["master_host"]), info.get("master_port"))
    replicas = []
    for name, value in info.items():
        listed = re.fullmatch(r"(slave|replica)\d+", str(name)) and isinstance(value, dict)
        if listed and display(value.get("state", "")) == "online":
            address = address_text(display(value.get("ip")), value.get("port"))
            replicas.append((address, int(value.get("offset", 0))))
    aof = info.get("aof_enabled")
    return dict(
        run_id=display(info["run_id"]) if "run_id" in info else None,
        replication_id=display(info["master_replid"]) if "master_replid" in info else None,
        master=master,
        replicas=tuple(replicas),
        repl_offset=info.get("master_repl_offset"),
        aof_enabled=None if aof is None else bool(int(aof)),
    )


def _hello(settings, info_denied):
    """Version and role from HELLO 2, which switches its connection to RESP2: so it runs on a
    client of its own. ``info_denied``: ACL denies INFO (else the server does not know it)."""
    probe = settings.client(db=0)
    try:
        reply = probe.execute_command("HELLO", "2")
    except redis_errors.RedisError as exc:
        user = settings.username or "default"
        if info_denied:
            info = f"ACL denies INFO to user '{user}'"
            fix = f"Grant it with ACL SETUSER {user} +info"
        else:
            info = "the server does not know INFO (renamed or disabled, as managed services do)"
            fix = "Have the provider enable INFO or HELLO"
        raise MigrationError(
            f"Cannot read the server's version and role at {settings.endpoint}: {info}, and "
            f"HELLO failed too ({settings.scrub(exc)}). Nothing was written. {fix}."
        ) from None
    finally:
        probe.close()
    if isinstance(reply, list):
        reply = dict(zip(reply[::2], reply[1::2]))
    reply = {display(k): v for k, v in reply.items()}
    return {
        "redis_version": reply.get("version", b"0"),
        "role": display(reply.get("role", b"master")),
        "cluster_enabled": 1 if display(reply.get("mode", b"")) == "cluster" else 0,
    }


def check_server(facts, settings, options):
    """Refuse a cluster, a replica, and a db number the server does not have."""
    endpoint = settings.endpoint
    if facts.cluster:
        raise MigrationError(
            f"Redis at {endpoint} runs in cluster mode, which has only db 0 and refuses SELECT: "
            f"there is no db {options.source_db} to migrate from. Point the module at a "
            f"standalone Redis."
        )
    if facts.role not in ("master", "primary"):
        of = f" of {facts.master}" if facts.master else ""
        primary = facts.master or "the primary"
        raise MigrationError(
            f"Redis at {endpoint} is a replica{of} ({facts.role}): writes there are refused "
            f"or lost at the next sync. Nothing was written. Point login_host/login_port at "
            f"{primary}, or set sentinel_hosts and sentinel_service_name so that the module "
            f"asks Sentinel for the primary."
        )
    for name in ("source_db", "target_db"):
        db = getattr(options, name)
        if facts.databases is not None and db >= facts.databases:
            raise MigrationError(
                f"{name} {db} does not exist on Redis at {endpoint}: the server has "
                f"{facts.databases} databases (0 to {facts.databases - 1}). Fix {name}, or "
                f"raise 'databases' in redis.conf."
            )


def open_db(settings, db, **extra):
    """A client on ``db``, once SELECT has proved the db exists: opening its connection does,
    with no command of its own."""
    client = settings.client(db=db, **extra)
    try:
        _open_connection(client.connection_pool)
    except redis_errors.ResponseError as exc:
        text = settings.scrub(exc)
        if "out of range" in text or "invalid DB index" in text:
            raise MigrationError(
                f"db {db} does not exist on Redis at {settings.endpoint} ({text}). Fix "
                f"source_db/target_db, or raise 'databases' in redis.conf."
            ) from None
        if "cluster" in text.lower():
            raise MigrationError(
                f"Redis at {settings.endpoint} runs in cluster mode and refuses SELECT "
                f"({text}). Point the module at a standalone Redis."
            ) from None
        raise MigrationError(describe_error(exc, settings, f"selecting db {db}")) from None
    except redis_errors.RedisError as exc:
        raise MigrationError(describe_error(exc, settings, f"selecting db {db}")) from None
    return client


def _open_connection(pool):
    """Open a connection of ``pool``, and give it back to the pool."""
    try:
        connection = pool.get_connection()
    except TypeError:  # redis-py before 5.3 asks what command the connection is for
        connection = pool.get_connection("PING")
    pool.release(connection)


def check_index_types(session):
    """Refuse an index key that is not a sorted set, in either db, before anything is written:
    TYPE of each, read in the round trip that loads the scripts (Session.defer_read)."""
    names = session.index_names
    for db in (session.options.source_db, session.options.target_db):
        types = [("TYPE", name) for name in names]
        session.defer_read(db, types, lambda kinds, db=db: _sorted_sets(session, db, kinds))


def _sorted_sets(session, db, kinds):
    for name, kind in zip(session.index_names, map(display, kinds)):
        if kind not in ("zset", "none"):
            raise MigrationError(
                f"index '{shown(name)}' in db {db} on {session.settings.endpoint} is a "
                f"{kind}, not a sorted set. Nothing was changed. Check the indexes option, "
                f"or move that key away before migrating."
            )
