"""A long link: over a slow network every round trip costs its latency, so the engine spends one a
call. What a call wrote is read back in the round trip of the next call (or, for the last, in
the run's last one), the clean-up's next SCAN page comes the same way, and each call is sized
by the server time it takes. The latency proxy (helpers/latency.py) counts request round trips:
these tests compare counts, never times."""

from __future__ import annotations

import random

import pytest
from helpers import (
    INDEX,
    engine,
    link_up,
    migrate_with_engine,
    options,
    seed_sessions,
    wait_for,
    zset,
)

# Each way: enough that a reply never comes back while its request is still being sent.
DELAY = 0.003
# Keys a call takes at most here: small calls, which never come near the time target.
BATCH = 100
SESSIONS = 10 * BATCH


def through(link):
    return engine.ConnectionSettings(host="127.0.0.1", port=link.port)


class Calls(engine.Hooks):
    """Counts a run's script calls: copy or clean-up calls of keys, and index pages."""

    def __init__(self):
        self.calls = 0
        self.handled = []

    def before_batch(self, keys):
        self.calls += 1

    def after_batch(self, keys):
        self.handled.append(len(keys))

    def before_index_page(self, index):
        self.calls += 1


def over_the_link(server, slow_link, run, **overrides):
    """``run`` (engine.migrate or engine.cleanup) over a fresh slow link: its request round
    trips, its script calls and its report."""
    link = slow_link(server, DELAY)
    calls = Calls()
    report = run(through(link), options(**overrides), calls)
    return link.round_trips, calls, report


@pytest.mark.parametrize("replicas", [0, 1])
def test_over_a_slow_link_each_call_costs_one_round_trip_its_read_back_included(
    redis_factory, slow_link, replicas
):
    """What a run costs beyond its calls (connections, preflight, the last checks) is the same
    whatever its size; each call costs one round trip, its read-back travelling with the next
    call, and the last read-back one more, with the last wait for the replica when there is
    one: the waits for its acknowledgements travel ahead of the calls. (No memory guard: its
    estimate reads a sample of the keys first, in calls of its own.)"""
    server = redis_factory()
    if replicas:
        replica = redis_factory(f"replicaof 127.0.0.1 {server.port}")
        wait_for(lambda: link_up(replica, server.port), "the replica's first sync")
    sized = dict(batch_size=BATCH, memory_check=False)
    empty_trips, empty, _ = over_the_link(server, slow_link, engine.migrate, **sized)
    sessions = seed_sessions(server.client(1), SESSIONS)

    trips, calls, report = over_the_link(server, slow_link, engine.migrate, **sized)

    assert (report.migrated, report.verified) == (SESSIONS, True)
    assert report.indexes[0].added == SESSIONS
    assert report.replication["min_replicas"] == replicas
    assert (report.replication["acknowledged_waits"] > 0) is bool(replicas)
    assert max(calls.handled) <= BATCH
    # At least a call per BATCH keys, and as many index pages.
    assert calls.calls >= 2 * SESSIONS // BATCH
    assert trips - empty_trips == (calls.calls - empty.calls) + 1
    assert server.client(0).dbsize() == len(sessions) + 1


def test_over_a_slow_link_a_clean_up_batch_costs_one_round_trip_its_next_scan_page_included(
    redis_server, slow_link
):
    """The clean-up finds its keys with SCAN: the page its next batch takes comes in the round
    trip of the call before. Only the first page, before any call, costs a round trip of its
    own; a SCAN page may hold fewer keys than it was asked for, so the first batch may need a
    second."""
    sized = dict(batch_size=BATCH, indexes=())
    empty_trips, _empty, _ = over_the_link(redis_server, slow_link, engine.cleanup, **sized)
    seed_sessions(redis_server.client(1), SESSIONS)
    migrate_with_engine(redis_server)

    trips, calls, report = over_the_link(redis_server, slow_link, engine.cleanup, **sized)

    assert report.deleted == SESSIONS
    assert max(calls.handled) <= BATCH
    assert calls.calls >= SESSIONS // BATCH
    # The empty run's one SCAN page is in empty_trips.
    assert trips - empty_trips <= calls.calls + 1


class LosesAWriteOfEveryCall(engine.Hooks):
    """Something else removes, from db 0, the first key each copy call copied and the first
    entry each index page merged, between the write and its read-back."""

    def __init__(self, server):
        self.other = server.client(0)
        self.lost_keys, self.lost_members = [], []
        self.index_before = set()

    def before_read_back(self, keys):
        if keys:
            self.lost_keys.append(keys[0])
            self.other.delete(keys[0])

    def before_index_page(self, index):
        self.index_before = set(zset(self.other))

    def after_index_page(self, index, members):
        added = sorted(set(zset(self.other)) - self.index_before)
        if added:
            self.lost_members.append(added[0])
            self.other.zrem(INDEX, added[0])


def test_over_a_slow_link_what_every_call_wrote_is_still_read_back(redis_server, slow_link):
    """Read back in the next call's round trip, or the last in the run's last one: a write lost
    before its read-back is found, whichever call made it."""
    seed_sessions(redis_server.client(1), SESSIONS)
    link = slow_link(redis_server, DELAY)
    loses = LosesAWriteOfEveryCall(redis_server)

    report = engine.migrate(through(link), options(batch_size=BATCH), loses)

    assert len(loses.lost_keys) >= SESSIONS // BATCH
    assert len(loses.lost_members) >= SESSIONS // BATCH
    [index] = report.indexes
    assert report.missing == len(loses.lost_keys) + len(loses.lost_members)
    assert index.missing == len(loses.lost_members)
    assert report.migrated == SESSIONS
    assert report.verified is False
    check = engine.verify(redis_server.settings(), options())
    assert check.counts()["missing"] == len(loses.lost_keys)
    assert check.index_total("added") == len(loses.lost_members)


def large_sessions(client, count, size):
    """``count`` sessions of ``size`` incompressible bytes, with the index."""
    data = random.Random(7)  # noqa: S311 - reproducible test data, not a secret
    return seed_sessions(client, count, body=lambda _n: data.randbytes(size))


def test_calls_take_fewer_keys_when_each_key_takes_the_server_longer(redis_factory):
    """No byte budget, so only the time decides: DUMP + RESTORE of 256 KB of incompressible
    bytes takes the server 1 to 5 ms a key, so after the first call (which cannot know) each
    takes a few keys, about 20 ms' worth; with 1 KB sessions every call takes all it may."""
    most = 60
    timed = dict(strategy="dump-restore", max_batch_bytes=1 << 40, batch_size=most)
    small, large = redis_factory(), redis_factory()
    seed_sessions(small.client(1), 3 * most)
    large_sessions(large.client(1), 2 * most, 256_000)
    small_calls, large_calls = Calls(), Calls()

    assert migrate_with_engine(small, hooks=small_calls, **timed).verified is True
    assert migrate_with_engine(large, hooks=large_calls, **timed).verified is True

    assert small_calls.handled[:3] == [most] * 3
    assert large_calls.handled[0] == most
    assert max(large_calls.handled[1:]) <= most // 3, large_calls.handled


def test_a_call_size_grows_at_most_twofold_and_shrinks_at_once_to_what_fits():
    """The sizing alone: its measure is the server time each call reports (0 when the server
    cannot tell it, which changes nothing)."""
    size = engine.CallSize(most=10_000)
    first = size.keys
    size.took(first, 1_000)  # 1 ms, where 20 would do: twice as many keys, no more
    assert size.keys == 2 * first
    size.took(size.keys, 0)
    assert size.keys == 2 * first
    size.took(size.keys, 80_000)  # four times the 20 ms: a quarter of the keys, at once
    assert size.keys == 2 * first // 4
    size.took(size.keys, 1_000, full=False)  # a call cut short never makes the next larger
    assert size.keys == 2 * first // 4
    for _ in range(20):
        size.took(size.keys, 1)
    assert size.keys == 10_000
