"""A migration on a replicated Redis, against real servers: a primary, its replica and three
Sentinels (the ha_topology fixture), or standalone servers made replicas of each other.

Whatever happens to the topology mid-run (a Sentinel failover while copying keys or merging
the index, the primary paused past Sentinel's down-after, a replica that lags, a primary demoted
with REPLICAOF), the run either stops with a MigrationError naming the failover, the demotion
or the replica that did not acknowledge, or it is verified and every session, its expiry and
its index entry are on the node that is primary afterwards. Never verified with anything
missing. A rerun once the topology has settled completes.

After a failover the old primary stays a writable master for about ten seconds before Sentinel
reconfigures it, and Sentinel's REPLICAOF wipes what was written to it meanwhile: a run that
keeps writing there without noticing loses those writes.
"""

from __future__ import annotations

import threading
import time

import pytest
from helpers import (
    HaTopology,
    assert_same_value_and_expiry,
    engine,
    expiries,
    link_up,
    options,
    role,
    seed_sessions,
    wait_for,
    zset,
)

TOTAL = 3000
BATCH = 100
ACT_AT = 5  # the copy call or index page at which the topology changes
# Short, so that a replica which never acknowledges stops the run well before Sentinel
# reconfigures the old primary (about ten seconds after a failover).
REPLICA_TIMEOUT = 3.0
STOP_WORDS = ("failover", "demoted", "did not acknowledge")


def body(n):
    """About 1 KB, like a StoryArt session."""
    return b'{"story":"draft %d","panels":[1,2,3],"text":"%s"}' % (n, b"lorem ipsum " * 80)


def seed(server):
    """TOTAL sessions with a TTL and their index entries in db 1 of ``server``; returns the
    names and the index as it was seeded."""
    names = seed_sessions(server.client(1), TOTAL, body=body)
    return names, zset(server.client(1))


def through_sentinel(topology: HaTopology):
    """Settings that find the primary through the topology's Sentinels. host and port name the
    original replica: the engine must ignore them, or it would be refused as a replica."""
    return engine.ConnectionSettings(
        host="127.0.0.1",
        port=topology.replica.port,
        sentinel_hosts=tuple(topology.sentinel_hosts),
        sentinel_service_name=topology.service,
        sentinel_username=None,
        sentinel_password=None,
    )


def ha_options(**overrides):
    return options(batch_size=BATCH, replica_timeout=REPLICA_TIMEOUT, **overrides)


def attempt(settings, hooks=None, **overrides):
    """Run the migration; return (report, None) when it returns, (None, error) when it stops."""
    try:
        return engine.migrate(settings, ha_options(**overrides), hooks), None
    except engine.MigrationError as error:
        return None, error


def assert_everything_on(server, names, index):
    """Every session is in db 0 of ``server`` with its value and exact absolute expiry, and
    every index entry with its score.

    Expiries are compared with the same node's db 1: Redis 6.2 propagates SET ... EX as a
    relative TTL, so its replica's copies of the seeded keys expire a few ms after the
    primary's, and a promoted replica's sessions keep its own expiries.
    """
    src, dst = server.client(1), server.client(0)
    assert src.mget(names) == [body(n) for n in range(TOTAL)], "db 1 lost or changed sessions"
    assert all(at > 0 for at in expiries(src, names))
    assert_same_value_and_expiry(src, dst, names)
    assert len(index) == TOTAL
    assert zset(dst) == index


def assert_stopped_clearly(error):
    """The run stopped with a message naming what happened, not verified, and without a
    failure for each key or index entry it could no longer write."""
    message = str(error)
    print(f"\nMigrationError: {message}")
    assert any(word in message for word in STOP_WORDS), message
    report = error.report
    assert report is not None
    assert report.aborted
    assert report.verified is None
    assert report.failed < BATCH
    assert report.index_total("failed") < BATCH


def assert_stopped_or_complete(outcome, primary, names, index):
    """Either a clear stop, or a verified run whose every session is on ``primary``, the node
    that is primary once the topology has changed."""
    report, error = outcome
    if error is not None:
        assert_stopped_clearly(error)
    else:
        print(f"\nverified: {report.summary()}")
        assert report.verified is True
        assert_everything_on(primary, names, index)


def assert_rerun_completes(settings, primary, names, index):
    report = engine.migrate(settings, ha_options())
    assert report.verified is True
    assert report.failed == 0
    assert_everything_on(primary, names, index)


class ActsAt(engine.Hooks):
    """Calls ``action`` once, at the ``at``-th copy call or index page of the run."""

    def __init__(self, point, action, at=ACT_AT):
        self.point = point
        self.action = action
        self.at = at
        self.calls = 0
        self.acted = False

    def _reached(self, point):
        if point != self.point:
            return
        self.calls += 1
        if self.calls == self.at:
            self.action()
            self.acted = True

    def after_batch(self, keys):
        self._reached("copy")

    def before_index_page(self, index):
        self._reached("index")


@pytest.fixture
def seeded(ha_topology):
    """The sessions seeded on the primary, and on the replica too before any run starts."""
    names, index = seed(ha_topology.primary)
    ha_topology.wait_for_sync()
    return names, index


# A healthy run ---------------------------------------------------------------------------


def test_a_run_through_sentinel_migrates_everything_and_the_replica_holds_it(ha_topology, seeded):
    names, index = seeded

    report = engine.migrate(through_sentinel(ha_topology), ha_options())

    assert report.verified is True
    assert (report.migrated, report.failed) == (TOTAL, 0)
    assert "replication" in report.as_dict()
    assert_everything_on(ha_topology.primary, names, index)
    ha_topology.wait_for_sync()
    assert_everything_on(ha_topology.replica, names, index)
    assert ha_topology.replica.client(0).dbsize() == TOTAL + 1


# 1-2. Sentinel fails over mid-run ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("point", ["copy", "index"])
@pytest.mark.parametrize("promoted", [True, False], ids=["promoted", "mid-failover"])
def test_a_failover_mid_run_stops_it_or_it_is_all_on_the_new_primary(
    ha_topology, seeded, point, promoted
):
    """SENTINEL FAILOVER after a few copy calls or before an index page. ``promoted``: the
    hook returns once the replica is the new primary, so the run's next writes go to an old
    primary that still accepts them. Otherwise it returns at once, and the run, paced to last
    about 3 s, goes on writing while Sentinel promotes the replica (a few tenths of a second):
    unpaced, it would be over before the promotion."""
    names, index = seeded
    old = ha_topology.primary

    def failover():
        ha_topology.failover()
        if promoted:
            ha_topology.wait_for_new_primary(old.port)

    hooks = ActsAt(point, failover)
    pace = 0 if promoted else 2 * TOTAL // 3  # keys and index entries per second
    outcome = attempt(through_sentinel(ha_topology), hooks, max_keys_per_second=pace)

    assert hooks.acted
    new = ha_topology.wait_for_new_primary(old.port)
    assert new is ha_topology.replica
    assert_stopped_or_complete(outcome, new, names, index)
    ha_topology.wait_until_reconfigured(old)
    assert_rerun_completes(through_sentinel(ha_topology), new, names, index)


# 3. The primary hangs past down-after, then comes back -----------------------------------


class PausesThePrimary:
    """Pauses the primary and returns at once, so the run's next call waits on it; resumes it
    from a thread once Sentinel has promoted the replica."""

    def __init__(self, topology):
        self.topology = topology
        self.old, self.new = topology.primary, topology.replica
        self.thread = threading.Thread(target=self._resume_once_promoted)
        self.promoted = False

    def __call__(self):
        self.topology.pause(self.old)
        self.thread.start()

    def _resume_once_promoted(self):
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline and not self.promoted:
                self.promoted = role(self.new) == "master"
                time.sleep(0.05)
        finally:
            self.topology.resume(self.old)


@pytest.mark.slow
def test_a_primary_paused_until_sentinel_fails_over_stops_the_run_or_it_is_all_there(
    ha_topology, seeded
):
    names, index = seeded
    old = ha_topology.primary
    pauses = PausesThePrimary(ha_topology)
    hooks = ActsAt("copy", pauses)

    outcome = attempt(through_sentinel(ha_topology), hooks)

    assert hooks.acted
    pauses.thread.join()
    assert pauses.promoted, "Sentinel did not promote the replica while the primary was paused"
    new = ha_topology.wait_for_new_primary(old.port)
    assert_stopped_or_complete(outcome, new, names, index)
    ha_topology.wait_until_reconfigured(old)
    assert_rerun_completes(through_sentinel(ha_topology), new, names, index)


# 4. The replica lags, then the primary dies -----------------------------------------------


@pytest.mark.slow
def test_a_lagging_replica_promoted_after_the_primary_dies_holds_all_a_verified_run_wrote(
    ha_topology, seeded
):
    """The replica is paused from the third copy call on, so it has not received what the run
    wrote next; the primary is SIGKILLed once the run ends and Sentinel promotes the replica.
    A run verified without the replica's acknowledgement would have lost those writes."""
    names, index = seeded
    old, lagging = ha_topology.primary, ha_topology.replica
    hooks = ActsAt("copy", lambda: ha_topology.pause(lagging), at=3)

    outcome = attempt(through_sentinel(ha_topology), hooks)

    assert hooks.acted
    old.kill()
    ha_topology.resume(lagging)
    new = ha_topology.wait_for_new_primary(old.port)
    assert new is lagging
    assert_stopped_or_complete(outcome, new, names, index)
    assert_rerun_completes(through_sentinel(ha_topology), new, names, index)


# 5. A standalone primary demoted with REPLICAOF ------------------------------------------


def test_a_primary_demoted_with_replicaof_mid_run_stops_it(redis_factory):
    """No Sentinel: an operator points the primary at another server with REPLICAOF mid-run.
    That server was a replica of the primary until just before the run (so it holds every
    session), then detached; the demoted primary soon holds its data and refuses writes."""
    primary = redis_factory("repl-diskless-sync-delay 0")
    other = redis_factory("repl-diskless-sync-delay 0", f"replicaof 127.0.0.1 {primary.port}")
    names, index = seed(primary)
    offset = int(primary.client().info("replication")["master_repl_offset"])
    wait_for(
        lambda: int(other.client().info("replication")["slave_repl_offset"]) >= offset,
        "the other server to hold every session",
    )
    other.client().replicaof("NO", "ONE")
    wait_for(
        lambda: not primary.client().info("replication")["connected_slaves"],
        "the other server to detach",
    )

    hooks = ActsAt("copy", lambda: primary.client().replicaof("127.0.0.1", other.port))
    outcome = attempt(primary.settings(), hooks)

    assert hooks.acted
    wait_for(lambda: link_up(primary, other.port), "the demoted primary to replicate")
    # The node that is primary now never received the run's writes: the run must stop, at
    # the first call after the demotion, naming it.
    report, error = outcome
    assert report is None, report.summary()
    assert_stopped_clearly(error)
    assert f"demoted to a replica of 127.0.0.1:{other.port}" in str(error)
    assert error.report.found <= (ACT_AT + 1) * BATCH
    assert_rerun_completes(other.settings(), other, names, index)


# 6. A run aimed at the replica ------------------------------------------------------------


def test_a_run_aimed_at_the_replica_is_refused_naming_the_primary(redis_factory):
    primary = redis_factory()
    replica = redis_factory(f"replicaof 127.0.0.1 {primary.port}")
    seed(primary)
    wait_for(lambda: link_up(replica, primary.port), "the replica's link to the primary")
    writes = primary.rdb_changes()

    with pytest.raises(engine.MigrationError) as raised:
        engine.migrate(replica.settings(), ha_options())

    print(f"\nMigrationError: {raised.value}")
    assert f"127.0.0.1:{primary.port}" in str(raised.value)
    assert primary.rdb_changes() == writes
    # Nor did it follow the replica to its primary.
    assert primary.client(0).dbsize() == 0
