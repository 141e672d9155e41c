"""The primary watch on a primary with one replica, without Sentinel: what is refused before any
write, what stops a run, and what a reconnect may and may not do.

1. Waits that cannot be kept are refused before any write: more replicas asked for than are
   online, WAIT denied by ACL, WAITAOF on a server without it or without an AOF.
2. The replica acknowledges the run's writes during the run, once ACK_INTERVAL has passed, and
   before the verdict. A replica that stops acknowledging stops the run within
   replica_timeout, naming the replica and how far behind it is; never verified.
3. A connection the server closes between two calls reopens only to the same primary: the run
   then completes; after a restart (a new run_id) it stops, naming the restart.
"""

from __future__ import annotations

import time

import pytest
from helpers import (
    SESSION,
    engine,
    expiries,
    link_up,
    migrate_with_engine,
    options,
    seed_sessions,
    wait_for,
    zset,
)
from redis_db_migration.primary import ACK_INTERVAL

SESSIONS = 400
BATCH = 50


@pytest.fixture
def replicated(redis_factory):
    """A primary holding SESSIONS sessions in db 1, and its replica, synced."""
    primary = redis_factory("repl-diskless-sync-delay 0")
    replica = redis_factory(f"replicaof 127.0.0.1 {primary.port}")
    wait_for(lambda: link_up(replica, primary.port), "the replica's link")
    # The primary counts a replica as online a moment after the replica sees its link up.
    wait_for(
        lambda: primary.client().info("replication").get("slave0", {}).get("state") == "online",
        "the primary to see its replica online",
    )
    seed_sessions(primary.client(1), SESSIONS)
    return primary, replica


class AfterSecondCall(engine.Hooks):
    """Calls ``action`` once, after the run's second copy call."""

    def __init__(self, action):
        self.action = action
        self.calls = 0

    def after_batch(self, keys):
        self.calls += 1
        if self.calls == 2:
            self.action()


def writes(*servers):
    return [server.rdb_changes() for server in servers]


def refused(call, *facts):
    with pytest.raises(engine.MigrationError) as caught:
        call()
    message = str(caught.value)
    for fact in facts:
        assert fact in message, f"{fact!r} missing from: {message}"
    assert "Traceback" not in message
    return message


def test_a_healthy_replica_acknowledges_the_runs_writes_and_holds_every_session(replicated):
    primary, replica = replicated
    sessions = sorted(primary.client(1).scan_iter(match=SESSION + b"*"))

    report = migrate_with_engine(primary, batch_size=BATCH)

    assert report.ok, report.summary()
    assert report.verified
    watch = report.as_dict()["replication"]
    assert watch["replicas"] == [f"127.0.0.1:{replica.port}"]
    assert watch["min_replicas"] == 1
    # The last writes at least were waited for on their own; every wait was answered in full.
    assert watch["acknowledged_waits"] >= 1
    assert report.unacknowledged == 0
    assert watch["confirmed"] is True
    assert "every write acknowledged by 1 replica" in report.summary()
    # WAIT returned: the replica has applied every write, with no sync to wait for. Each copy
    # there has the expiry of the replica's own source key (before Redis 7, a replica turns a
    # relative SET EX into its own absolute time, so it may differ from the primary's by 1 ms).
    assert expiries(replica.client(0), sessions) == expiries(replica.client(1), sessions)
    assert expiries(primary.client(0), sessions) == expiries(primary.client(1), sessions)
    assert zset(replica.client(0)) == zset(primary.client(1))


class SlowCalls(engine.Hooks):
    """Sleeps ``seconds`` after each copy call, and counts the calls."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.calls = 0

    def after_batch(self, keys):
        self.calls += 1
        time.sleep(self.seconds)


def test_a_run_waits_for_its_replica_during_the_run_once_the_interval_has_passed(replicated):
    """Every ACK_INTERVAL, not only before the verdict: with more than that between two calls,
    a wait travels ahead of every call but the first, then ahead of the index's first page,
    then on its own for the last writes."""
    primary, _replica = replicated
    hooks = SlowCalls(ACK_INTERVAL + 0.05)

    report = migrate_with_engine(primary, batch_size=BATCH, hooks=hooks)

    assert report.verified
    # At most BATCH keys a call; SCAN's pages may make it fewer, so more calls.
    assert hooks.calls >= SESSIONS // BATCH
    assert report.as_dict()["replication"]["acknowledged_waits"] >= hooks.calls + 1
    assert report.unacknowledged == 0


def test_preflight_names_the_replicas_and_the_clean_up_waits_for_them_too(replicated):
    primary, replica = replicated
    facts = engine.preflight(primary.settings(), options(replica_timeout=2))
    assert (
        "primary, 1 replica online, writes acknowledged by 1 (replica_timeout 2 s)"
        in (facts["msg"])
    )
    assert facts["replication"]["replicas"] == [f"127.0.0.1:{replica.port}"]
    migrate_with_engine(primary)

    report = engine.cleanup(primary.settings(), options(batch_size=BATCH))

    assert report.deleted == SESSIONS
    assert report.as_dict()["replication"]["acknowledged_waits"] >= 1
    assert report.unacknowledged == 0
    # Acknowledged: the replica has applied every deletion already.
    assert replica.client(1).dbsize() == 0


def test_more_replicas_than_are_online_is_refused_before_any_write(redis_factory):
    server = redis_factory()
    seed_sessions(server.client(1), 10)
    before = writes(server)

    message = refused(
        lambda: migrate_with_engine(server, min_replicas=1), "min_replicas is 1 but 0 replicas"
    )

    assert "Nothing was written" in message
    assert writes(server) == before


def test_wait_denied_by_acl_is_refused_naming_the_grant_before_any_write(replicated):
    primary, replica = replicated
    admin = primary.client()
    admin.acl_setuser(
        "migrator",
        enabled=True,
        passwords=["+migrator-pw"],
        keys=["*"],
        commands=["+@all", "-wait"],
    )
    before = writes(primary, replica)
    settings = primary.settings(username="migrator", password="migrator-pw")  # noqa: S106

    refused(
        lambda: migrate_with_engine(primary, settings=settings),
        "may not run WAIT",
        "ACL SETUSER migrator +wait",
        "min_replicas: 0",
    )
    assert writes(primary, replica) == before

    report = migrate_with_engine(primary, settings=settings, min_replicas=0)
    assert report.ok
    assert report.as_dict()["replication"]["acknowledged_waits"] == 0


def test_wait_aof_is_refused_where_the_server_cannot_keep_it(redis_factory):
    server = redis_factory()
    seed_sessions(server.client(1), 10)
    before = writes(server)

    if server.version < (7, 2):
        refused(
            lambda: migrate_with_engine(server, wait_aof=True),
            "wait_aof needs WAITAOF",
            "Nothing was written",
        )
    else:
        refused(
            lambda: migrate_with_engine(server, wait_aof=True),
            "appendonly no",
            "Nothing was written",
        )
    assert writes(server) == before


def test_wait_aof_waits_for_the_primarys_own_aof(redis_factory):
    server = redis_factory("appendonly yes", "appendfsync everysec")
    if server.version < (7, 2):
        pytest.skip(f"WAITAOF came with Redis 7.2; this server is {server.version}")
    seed_sessions(server.client(1), 100)

    report = migrate_with_engine(server, wait_aof=True, batch_size=BATCH)

    assert report.ok, report.summary()
    assert report.verified
    assert report.as_dict()["replication"]["acknowledged_waits"] >= 1
    assert report.unacknowledged == 0
    assert report.as_dict()["replication"]["wait_aof"] is True


def test_a_replica_that_stops_acknowledging_stops_the_run_naming_it(replicated):
    primary, replica = replicated
    replica_at = f"127.0.0.1:{replica.port}"

    try:
        with pytest.raises(engine.MigrationError) as caught:
            migrate_with_engine(
                primary, batch_size=BATCH, replica_timeout=1, hooks=AfterSecondCall(replica.pause)
            )
    finally:
        replica.resume()
    message = str(caught.value)
    assert "0 of the 1 replicas required (min_replicas) acknowledged" in message, message
    assert f"replica {replica_at} did not acknowledge" in message, message
    assert "bytes behind" in message
    assert "1 s (replica_timeout)" in message
    report = caught.value.report
    assert report.verified is None
    # The first wait after the pause fell short (ahead of a call, or the last one, on its own):
    # the second call's writes at least were never acknowledged, and are counted so.
    assert report.unacknowledged >= BATCH
    # Keys and index entries alike.
    assert report.migrated + report.index_total("added") >= report.unacknowledged
    assert report.failed == 0


class KillsTheRunsConnections(engine.Hooks):
    """CLIENT KILL of every connection of the run, after its first call: redis-py reopens
    them on its own at their next command."""

    def __init__(self, server):
        self.admin = server.client()
        self.killed = 0

    def after_batch(self, keys):
        if not self.killed:
            self.killed = self.admin.client_kill_filter(_type="normal", skipme=True)


def test_a_connection_the_server_closed_reopens_to_the_same_primary(redis_factory):
    server = redis_factory()
    seed_sessions(server.client(1), SESSIONS)
    hooks = KillsTheRunsConnections(server)

    report = migrate_with_engine(server, batch_size=BATCH, hooks=hooks)

    assert hooks.killed >= 3  # the run's source, target and writer connections
    assert report.ok, report.summary()
    assert report.verified
    assert report.migrated == SESSIONS


def test_the_writers_connection_closed_before_its_writes_were_acknowledged_stops_the_run(
    replicated,
):
    """WAIT acknowledges the writes of the connection that sends it: the writes made before a
    reopen can no longer be waited for."""
    primary, _replica = replicated
    hooks = KillsTheRunsConnections(primary)

    with pytest.raises(engine.MigrationError) as caught:
        migrate_with_engine(primary, batch_size=BATCH, hooks=hooks)

    message = str(caught.value)
    assert (
        f"the connection to 127.0.0.1:{primary.port} that wrote {BATCH} keys or index entries "
        f"closed before the replicas acknowledged them" in message
    ), message
    stopped = caught.value.report
    assert stopped.verified is None
    assert stopped.unacknowledged == BATCH
    assert stopped.found == BATCH
    assert migrate_with_engine(primary).verified


def test_a_restart_between_two_calls_stops_the_run_naming_it(redis_factory):
    server = redis_factory("appendonly yes", "appendfsync always")
    seed_sessions(server.client(1), SESSIONS)

    def restart():
        server.kill()
        server.start()

    with pytest.raises(engine.MigrationError) as caught:
        migrate_with_engine(server, batch_size=BATCH, hooks=AfterSecondCall(restart))

    message = str(caught.value)
    assert f"Redis at 127.0.0.1:{server.port} restarted during the run" in message, message
    stopped = caught.value.report
    assert stopped.verified is None
    # At the reconnect of the very next call, not at the check before the verdict.
    assert stopped.found == 2 * BATCH

    report = migrate_with_engine(server, batch_size=BATCH)
    assert report.ok
    assert report.verified
    assert server.client(0).dbsize() == SESSIONS + 1
