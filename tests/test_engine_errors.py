"""Bad input against real redis-server processes: every case must end in a MigrationError.

Each message must name the problem and the fix, never carry the password or a traceback, and
a failed preflight must leave both databases exactly as they were.
"""

from __future__ import annotations

import pytest
import redis
from helpers import (
    INDEX,
    PATTERN,
    assert_same_value_and_expiry,
    engine,
    expiries,
    free_port,
    hello,
    migrate_with_engine,
    options,
    seed_sessions,
    snapshot,
    start_tls_server,
    wait_for,
    zset,
)

PASSWORD = "s3cr3t-Pa55-do-not-leak"  # noqa: S105 - a test server's password
WRONG_PASSWORD = "wr0ng-Pa55-also-do-not-leak"  # noqa: S105
SESSIONS = 20


# Helpers -------------------------------------------------------------------------------------


def expect_error(call, *facts, secrets=()):
    """Run ``call``; it must raise MigrationError whose message holds every fact (any case)."""
    with pytest.raises(engine.MigrationError) as caught:
        call()
    message = str(caught.value)
    print(f"\nMigrationError: {message}")
    for fact in facts:
        assert fact.lower() in message.lower(), f"{fact!r} missing from: {message}"
    for secret in (PASSWORD, WRONG_PASSWORD, *secrets):
        assert secret not in message, f"secret leaked in: {message}"
    assert "Traceback" not in message
    assert 'File "' not in message
    return caught.value


def state(server, dbs=(0, 1)):
    """Everything a run could change: the server's write counter and a snapshot of each db."""
    return server.rdb_changes(), {db: snapshot(server.client(db)) for db in dbs}


def seed(server, count=SESSIONS):
    """Sessions and their index in db 1, plus an unrelated key and one old session in db 0."""
    names = seed_sessions(server.client(1), count)
    target = server.client(0)
    target.set(b"app:config", b"keep me")
    seed_sessions(target, 1, start=1600000000000)
    return names


def assert_migrated(server, names):
    """Every session of db 1 is in db 0 with the same value and expiry; the index is merged."""
    source, target = server.client(1), server.client(0)
    source_sessions = list(source.scan_iter(match=PATTERN))
    assert set(names) <= set(source_sessions)
    assert all(expires > 0 for expires in expiries(source, source_sessions))
    assert_same_value_and_expiry(source, target, source_sessions)
    assert zset(source).items() <= zset(target).items()


def nowhere(**kwargs):
    """Settings for a port where nothing listens: any connection attempt would fail."""
    return engine.ConnectionSettings(
        host="127.0.0.1", port=free_port(), password=PASSWORD, **kwargs
    )


def secured(redis_factory, *config):
    return redis_factory(f"requirepass {PASSWORD}", *config, password=PASSWORD)


# 1. Unreachable ------------------------------------------------------------------------------


def test_unreachable_server_names_the_endpoint():
    settings = nowhere()
    expect_error(
        lambda: engine.migrate(settings, options()),
        f"127.0.0.1:{settings.port}",
        "login_host",
        "login_port",
    )


# 2. Authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize("password", [WRONG_PASSWORD, None], ids=["wrong-password", "none"])
def test_requirepass_authentication_failure(redis_factory, password):
    server = secured(redis_factory)
    seed(server)
    before = state(server)
    expect_error(
        lambda: migrate_with_engine(server, settings=server.settings(password=password)),
        "authentication",
        "failed",
        f"127.0.0.1:{server.port}",
        "login_password",
    )
    assert state(server) == before


def test_acl_user_wrong_password(redis_factory):
    server = redis_factory(f"user migrator on >{PASSWORD} ~* &* +@all")
    seed(server)
    before = state(server)
    settings = server.settings(username="migrator", password=WRONG_PASSWORD)
    expect_error(
        lambda: migrate_with_engine(server, settings=settings),
        "authentication",
        "failed",
        "migrator",
        f"127.0.0.1:{server.port}",
    )
    assert state(server) == before


# 3. TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(redis_factory, certificates):
    """A server that listens on TLS only (its plain port is 0), with sessions seeded."""
    server = start_tls_server(
        redis_factory,
        certificates.server,
        certificates.ca,
        f"requirepass {PASSWORD}",
        password=PASSWORD,
    )
    server.names = seed(server)
    return server


def tls_settings(server, **kwargs):
    kwargs.setdefault("tls", True)
    return engine.ConnectionSettings(
        host="127.0.0.1", port=server.tls_port, password=PASSWORD, **kwargs
    )


def test_tls_with_the_right_ca_migrates(tls_server, certificates):
    source_before = snapshot(tls_server.client(1))
    report = migrate_with_engine(
        tls_server, settings=tls_settings(tls_server, ca_certs=certificates.ca)
    )
    assert report.ok
    assert report.migrated == SESSIONS
    assert report.verified is True
    assert_migrated(tls_server, tls_server.names)
    assert snapshot(tls_server.client(1)) == source_before


def test_tls_with_a_wrong_ca_fails_clearly(tls_server, certificates):
    before = state(tls_server)
    expect_error(
        lambda: migrate_with_engine(
            tls_server, settings=tls_settings(tls_server, ca_certs=certificates.wrong_ca)
        ),
        "TLS",
        "certificate",
        "ca_certs",
        f"127.0.0.1:{tls_server.tls_port}",
    )
    assert state(tls_server) == before


def test_tls_server_reached_without_tls_hints_tls_true(tls_server):
    before = state(tls_server)
    expect_error(
        lambda: migrate_with_engine(tls_server, settings=tls_settings(tls_server, tls=False)),
        f"127.0.0.1:{tls_server.tls_port}",
        "tls: true",
    )
    assert state(tls_server) == before


def test_tls_without_validation_accepts_a_wrong_ca(tls_server, certificates):
    settings = tls_settings(tls_server, ca_certs=certificates.wrong_ca, validate_certs=False)
    report = migrate_with_engine(tls_server, settings=settings)
    assert report.ok
    assert report.migrated == SESSIONS
    assert_migrated(tls_server, tls_server.names)


@pytest.mark.parametrize("option", ["ca_certs", "client_cert_file", "client_key_file"])
def test_tls_file_that_does_not_exist_names_the_option(tmp_path, option):
    missing = str(tmp_path / "no-such-file.pem")
    settings = nowhere(tls=True, **{option: missing})
    error = expect_error(lambda: engine.migrate(settings, options()), option, missing)
    assert "Cannot connect" not in str(error)  # refused before any connection attempt


# 4. Same db ----------------------------------------------------------------------------------


def test_same_source_and_target_db_is_refused_before_connecting():
    error = expect_error(
        lambda: engine.migrate(nowhere(), options(source_db=1, target_db=1)),
        "source_db",
        "target_db",
    )
    assert "Cannot connect" not in str(error)


# 5. Db out of range --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config", [(), ('rename-command CONFIG ""',)], ids=["config-get", "select-only"]
)
@pytest.mark.parametrize(
    ("option", "dbs"),
    [("target_db", dict(source_db=1, target_db=16)), ("source_db", dict(source_db=16))],
)
def test_db_out_of_range_names_the_db(redis_factory, config, option, dbs):
    server = secured(redis_factory, *config)
    if config:  # the scenario: CONFIG really is unavailable, only SELECT can tell
        with pytest.raises(redis.exceptions.ResponseError):
            server.client().config_get("databases")
    seed(server)
    before = state(server)
    expect_error(
        lambda: migrate_with_engine(server, **dbs),
        "16",
        option,
        f"127.0.0.1:{server.port}",
        "databases",
    )
    assert state(server) == before


# 6. Patterns ---------------------------------------------------------------------------------


@pytest.mark.parametrize("patterns", [(), ("",), (PATTERN, "")], ids=["none", "empty", "mixed"])
def test_empty_patterns_are_refused(patterns):
    error = expect_error(
        lambda: engine.migrate(nowhere(), options(patterns=patterns)),
        "patterns must list at least one non-empty glob pattern",
    )
    assert "Cannot connect" not in str(error)


# 7. Cluster ----------------------------------------------------------------------------------


def test_cluster_mode_server_is_refused(redis_factory):
    server = secured(redis_factory, "cluster-enabled yes", "cluster-config-file nodes.conf")
    before = state(server, dbs=(0,))
    expect_error(
        lambda: migrate_with_engine(server), "cluster", f"127.0.0.1:{server.port}", "standalone"
    )
    assert state(server, dbs=(0,)) == before


# 8. Replica ----------------------------------------------------------------------------------


def test_read_only_replica_is_refused(redis_factory):
    primary = secured(redis_factory)
    seed(primary)
    replica = secured(
        redis_factory, f"replicaof 127.0.0.1 {primary.port}", f"masterauth {PASSWORD}"
    )
    wait_for(
        lambda: replica.client().info("replication").get("master_link_status") == "up",
        "the replica to sync",
    )
    assert replica.client(1).dbsize() == primary.client(1).dbsize()
    before = state(primary), state(replica)
    expect_error(
        lambda: migrate_with_engine(replica),
        "replica",
        "primary",
        f"127.0.0.1:{replica.port}",
        "login_host",
    )
    assert (state(primary), state(replica)) == before


# 9. Index of the wrong type ------------------------------------------------------------------


def test_source_index_that_is_a_string_stops_before_any_write(redis_server):
    source, target = redis_server.client(1), redis_server.client(0)
    seed_sessions(source, SESSIONS)
    source.delete(INDEX)
    source.set(INDEX, b"not an index")
    target.zadd(INDEX, {b"storyart:session:1": 1})
    before = state(redis_server)
    expect_error(
        lambda: migrate_with_engine(redis_server), INDEX.decode(), "db 1", "sorted set", "indexes"
    )
    assert state(redis_server) == before
    assert source.get(INDEX) == b"not an index"
    assert target.type(INDEX) == b"zset"
    assert zset(target) == {b"storyart:session:1": 1.0}
    assert list(target.scan_iter(match=PATTERN)) == []


def test_target_index_that_is_a_hash_stops_before_any_write(redis_server):
    source, target = redis_server.client(1), redis_server.client(0)
    seed_sessions(source, SESSIONS)
    target.hset(INDEX, mapping={"owner": "someone else"})
    before = state(redis_server)
    expect_error(
        lambda: migrate_with_engine(redis_server), INDEX.decode(), "db 0", "sorted set", "indexes"
    )
    assert state(redis_server) == before
    assert target.hgetall(INDEX) == {b"owner": b"someone else"}
    assert len(zset(source)) == SESSIONS
    assert list(target.scan_iter(match=PATTERN)) == []


# 10. ACL users -------------------------------------------------------------------------------


def acl_server(redis_factory, rules):
    """A server whose user 'migrator' has ``rules`` on top of +@all; db 1 seeded."""
    server = redis_factory(f"user migrator on >{PASSWORD} ~* &* +@all {rules}")
    server.names = seed(server)
    server.acl_settings = server.settings(username="migrator", password=PASSWORD)
    return server


def test_user_without_copy_falls_back_to_dump_restore(redis_factory):
    server = acl_server(redis_factory, "-copy")
    source_before = snapshot(server.client(1))
    report = migrate_with_engine(server, settings=server.acl_settings)
    assert report.strategy == "dump-restore"
    assert report.ok
    assert report.migrated == SESSIONS
    assert report.failed == 0
    assert_migrated(server, server.names)  # values and exact expiries
    assert snapshot(server.client(1)) == source_before


# Each user lacks something a run needs: the ACL rules, the run's options, and what the
# refusal must name. Nothing is written.
REFUSED_USERS = {
    "copy, strategy copy": ("-copy", dict(strategy="copy"), ("COPY", "strategy", "port")),
    "copy and restore": ("-copy -restore", {}, ("RESTORE", "ACL SETUSER migrator", "port")),
    "scripting": (
        "-@scripting",
        {},
        ("may not run SCRIPT LOAD, EVALSHA", "ACL SETUSER migrator +script|load +evalsha", "port"),
    ),
}


@pytest.mark.parametrize("case", REFUSED_USERS)
def test_a_user_without_what_the_run_needs_is_refused_by_name(redis_factory, case):
    rules, overrides, facts = REFUSED_USERS[case]
    server = acl_server(redis_factory, rules)
    before = state(server)
    facts = [f"127.0.0.1:{server.port}" if fact == "port" else fact for fact in facts]

    expect_error(
        lambda: migrate_with_engine(server, settings=server.acl_settings, **overrides), *facts
    )

    assert state(server) == before


# How a server can withhold a command: an ACL rule for user 'migrator', or a rename-command in
# its configuration (as managed services do). The renamed command keeps working under a name
# only this test knows, so the test can still read the server.
WITHHELD = {
    "denied": lambda factory, command: acl_server(factory, f"-{command.split()[0].lower()}"),
    "renamed": lambda factory, command: renamed_server(factory, command.split()[0]),
}
# What the refusal says of each: ACL can grant a denied command, nothing brings a renamed one
# back but the option that does without it (permissions.py).
REFUSAL = {"denied": "may not run {}", "renamed": "does not know {}"}


def renamed_server(redis_factory, command):
    server = redis_factory(f"rename-command {command} {command}-renamed-for-the-test")
    server.names = seed(server)
    server.acl_settings = server.settings()
    return server


def both_dbs(server):
    return snapshot(server.client(0)), snapshot(server.client(1))


@pytest.mark.parametrize("how", WITHHELD)
def test_without_info_the_guard_is_refused_until_switched_off_and_named(redis_factory, how):
    """Without INFO the memory guard cannot read used_memory, maxmemory or evicted_keys: the
    run refuses to go unguarded, and with memory_check: false it runs and says so. The
    server's version and role then come from HELLO."""
    server = WITHHELD[how](redis_factory, "INFO")
    before = both_dbs(server)
    expect_error(
        lambda: migrate_with_engine(server, settings=server.acl_settings),
        REFUSAL[how].format("INFO"),
        "memory_check: false",
        f"127.0.0.1:{server.port}",
    )
    assert both_dbs(server) == before

    report = migrate_with_engine(server, settings=server.acl_settings, memory_check=False)

    assert report.ok
    assert report.migrated == SESSIONS
    assert report.server_version == hello(server.client())["version"]
    assert report.checks_not_run == [
        "memory guard: memory_check is false",
        "primary identity: without INFO the node's run_id and replication ID are unknown, so a "
        "connection that reopens stops the run, and the node is not asked again before the "
        "verdict",
    ]
    assert "NOT CHECKED: memory guard: memory_check is false" in report.summary()
    assert report.as_dict()["memory"]["guard"] is False
    assert_migrated(server, server.names)


@pytest.mark.parametrize("how", WITHHELD)
def test_without_memory_usage_the_checks_are_named_never_skipped_silently(redis_factory, how):
    """MEMORY USAGE sizes the estimate, the guard and the byte budget. Without it the run is
    refused; with memory_check: false it runs with batches bounded by batch_size alone, and
    the result names both checks it could not make."""
    server = WITHHELD[how](redis_factory, "MEMORY USAGE")
    before = both_dbs(server)
    refusal = REFUSAL[how].format("MEMORY USAGE")
    grant = "ACL SETUSER migrator +memory|usage"
    message = str(
        expect_error(
            lambda: migrate_with_engine(server, settings=server.acl_settings),
            refusal,
            "memory_check: false",
        )
    )
    assert (grant in message) is (how == "denied"), message
    expect_error(lambda: engine.preflight(server.acl_settings, options()), refusal)
    assert both_dbs(server) == before

    report = migrate_with_engine(server, settings=server.acl_settings, memory_check=False)

    assert report.ok
    assert report.migrated == SESSIONS
    assert report.checks_not_run == [
        "memory guard: memory_check is false",
        "byte budget: MEMORY USAGE is not available, so each server call is bounded by "
        "batch_size keys only",
    ]
    assert_migrated(server, server.names)


# 11. Option values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "facts"),
    [
        (dict(batch_size=0), ("batch_size", "10000")),
        (dict(batch_size=100000), ("batch_size", "10000", "100000")),
        (dict(strategy="bogus"), ("strategy", "bogus", "auto", "copy", "dump-restore")),
        (dict(source_db=-1), ("source_db", "-1")),
        (dict(target_db=-3), ("target_db", "-3")),
    ],
    ids=["batch-0", "batch-100000", "strategy-bogus", "source-negative", "target-negative"],
)
def test_bad_option_values_are_refused_before_connecting(overrides, facts):
    error = expect_error(lambda: engine.migrate(nowhere(), options(**overrides)), *facts)
    assert "Cannot connect" not in str(error)


# 12. Timeouts --------------------------------------------------------------------------------


class WritesPaused:
    """CLIENT PAUSE WRITE for the duration of the block: reads answer, writes and scripts wait."""

    def __init__(self, server):
        self.admin = server.client()

    def __enter__(self):
        self.admin.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
        return self

    def __exit__(self, *exc_info):
        self.admin.execute_command("CLIENT", "UNPAUSE")


def test_timeout_in_preflight_names_socket_timeout_and_loses_nothing(redis_factory):
    server = secured(redis_factory)
    names = seed(server)
    before = state(server)
    settings = server.settings(socket_timeout=0.5)
    with WritesPaused(server):
        expect_error(
            lambda: migrate_with_engine(server, settings=settings),
            "timeout",
            "socket_timeout",
            f"127.0.0.1:{server.port}",
        )
    assert state(server) == before
    report = migrate_with_engine(server)
    assert report.ok
    assert report.migrated == SESSIONS
    assert_migrated(server, names)


class PausedAfterTheFirstBatch(engine.Hooks):
    """Writes pause on the server once the first batch of keys is copied."""

    def __init__(self, server):
        self.pause = WritesPaused(server)
        self.batches = 0

    def before_batch(self, keys):
        self.batches += 1
        if self.batches == 2:
            self.pause.__enter__()


def test_timeout_mid_run_names_socket_timeout_and_a_rerun_completes(redis_factory):
    server = secured(redis_factory)
    names = seed(server)
    source_before = snapshot(server.client(1))
    hooks = PausedAfterTheFirstBatch(server)
    try:
        error = expect_error(
            lambda: engine.migrate(
                server.settings(socket_timeout=0.5), options(batch_size=5), hooks
            ),
            "timeout",
            "socket_timeout",
            f"127.0.0.1:{server.port}",
            "while copying keys",
            "rerun",
        )
    finally:
        hooks.pause.__exit__()
    assert hooks.batches == 2
    assert error.report is not None
    assert error.report.migrated == 5
    assert error.report.aborted
    assert snapshot(server.client(1)) == source_before
    report = migrate_with_engine(server)
    assert report.ok
    assert report.migrated + report.skipped == SESSIONS
    assert_migrated(server, names)
    assert snapshot(server.client(1)) == source_before


def test_redis_py_older_than_4_3_is_refused_by_name(monkeypatch):
    """Debian 11's python3-redis is 3.5: the message names the version and the way out."""
    monkeypatch.setattr(redis, "__version__", "3.5.3")
    with pytest.raises(engine.MigrationError) as raised:
        engine.migrate(
            engine.ConnectionSettings(port=free_port()),
            engine.MigrationOptions(source_db=1, target_db=0, patterns=(PATTERN,)),
        )
    message = str(raised.value)
    assert "redis-py 3.5.3" in message
    assert "4.3 or newer" in message
    assert "controller" in message
