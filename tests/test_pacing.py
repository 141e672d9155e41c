"""Pacing at max_keys_per_second: the pacer's schedule, read on an injected clock (never the
wall clock), and a paced run on a real redis-server, whose calls are counted and whose keys
are read back with their expiries.

The rate counts every key and index entry a run goes through, in each pass (the copy, the
index merge, full_verify's second reading); a call takes a tenth of a second's worth of them.
"""

from __future__ import annotations

import pytest
from helpers import INDEX, PATTERN, engine, options, seed_sessions, snapshot, zset


class Clock:
    """Time that passes only when the pacer sleeps or a call is said to take some."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class Connection:
    """Records when the pacer PINGs it."""

    def __init__(self, clock):
        self.clock = clock
        self.pings = []

    def ping(self):
        self.pings.append(self.clock.now)


def paced(rate):
    clock = Clock()
    pacer = engine.Pacer(rate, clock=clock, sleep=clock.sleep)
    pacer.start()
    return clock, pacer, Connection(clock)


def run_calls(clock, pacer, connection, total, *, call_size, call_seconds):
    """Calls of ``call_size`` keys, each taking ``call_seconds``, paced after each as the
    engine does. Returns each call's start, relative to the start."""
    starts = []
    done = 0
    while done < total:
        starts.append(clock.now - pacer.started)
        keys = min(call_size, total - done)
        clock.now += call_seconds
        pacer.wait(keys, [connection])
        done += keys
    return starts


# 1. The schedule, on an injected clock -------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "batch_size", "size"),
    [(1, 1000, 1), (100, 1000, 10), (500, 1000, 50), (5000, 1000, 500), (100000, 1000, 1000),
     (500, 20, 20), (0, 1000, 1000)],
)  # fmt: skip
def test_a_call_takes_a_tenth_of_a_seconds_worth_of_keys_at_most(rate, batch_size, size):
    assert engine.Pacer(rate).call_size(batch_size) == size


@pytest.mark.parametrize("rate", [100, 500, 5000])
def test_calls_start_evenly_at_the_rate_and_the_run_takes_what_it_asks(rate):
    clock, pacer, connection = paced(rate)
    size = pacer.call_size(1000)
    total = 20 * size

    starts = run_calls(clock, pacer, connection, total, call_size=size, call_seconds=0.003)

    # Call n starts once n calls' keys are due, never sooner: the time the calls take is
    # part of the schedule, not added to it.
    assert starts == pytest.approx([n * size / rate for n in range(20)])
    assert clock.now - pacer.started == pytest.approx(total / rate)
    assert pacer.achieved(clock.now - pacer.started) == dict(
        max_keys_per_second=rate, keys_and_entries=total, per_second=rate
    )
    # Each wait is a tenth of a second less the call; the connections are PINGed every half
    # second of the run, not at each wait.
    assert clock.sleeps == pytest.approx([size / rate - 0.003] * 20)
    pings = connection.pings
    assert all(later - earlier >= 0.5 for earlier, later in zip(pings, pings[1:]))
    assert len(pings) <= total / rate / 0.5


def test_a_run_behind_its_schedule_does_not_wait_until_it_is_ahead_again():
    clock, pacer, connection = paced(500)

    clock.now += 0.35  # a first call that took 3.5 tenths of a second for its 50 keys
    pacer.wait(50, [connection])
    assert clock.sleeps == []
    starts = run_calls(clock, pacer, connection, 200, call_size=50, call_seconds=0.001)

    # 250 keys are due at 0.5 s: the calls catch up, then keep to the rate.
    assert starts[:3] == pytest.approx([0.35, 0.351, 0.352])
    assert clock.now - pacer.started == pytest.approx(0.5)


def test_a_long_wait_pings_the_connections_every_half_second():
    clock, pacer, connection = paced(1)

    starts = run_calls(clock, pacer, connection, 3, call_size=1, call_seconds=0.01)

    assert starts == pytest.approx([0, 1, 2])
    # From the start to the end, no connection idles more than half a second and a call.
    times = [pacer.started, *connection.pings, clock.now]
    assert len(connection.pings) == 5
    assert max(later - earlier for earlier, later in zip(times, times[1:])) <= 0.5 + 0.01 + 1e-9


def test_without_a_rate_nothing_waits_but_everything_is_counted():
    clock, pacer, connection = paced(0)

    run_calls(clock, pacer, connection, 3000, call_size=1000, call_seconds=0.002)

    assert (clock.sleeps, connection.pings) == ([], [])
    assert pacer.achieved(0.006)["keys_and_entries"] == 3000


# 2. A paced run on a real server -------------------------------------------------------------


class Calls(engine.Hooks):
    """The keys each copy call and clean-up batch handled, and each index page, by pass."""

    def __init__(self):
        self.keys = {"copy": [], "full check": [], "cleanup": []}
        self.pages = []
        self.phase = "copy"

    def after_batch(self, keys):
        self.keys[self.phase].append(len(keys))

    def after_index_page(self, index, members):
        self.pages.append(len(members))

    def before_full_check(self):
        self.phase = "full check"


def test_a_paced_run_makes_the_calls_its_rate_implies_and_copies_every_key_exactly(redis_server):
    """At 500 keys and index entries a second, every call takes 50; 300 sessions and their
    300 entries, read twice with full_verify, are 1,200 and announced as such."""
    source = redis_server.client(1)
    seed_sessions(source, 300)
    before = snapshot(source, PATTERN)
    paced = options(max_keys_per_second=500, full_verify=True)

    plan = engine.preflight(redis_server.settings(), paced)
    calls = Calls()
    report = engine.migrate(redis_server.settings(), paced, calls)

    # Preflight announced 1,200 keys and entries, 2.4 s at 500 a second.
    assert (plan["pace"]["passes"], plan["pace"]["seconds"]) == (2, 2.4)
    # Each copy call, and each of the full check's, handles 50 keys, the last the rest; a call
    # whose SCAN pages found no key left handles none. (SCAN may give a key twice while the
    # server rehashes the db: the counts then hold it twice, as the pacer does.)
    for phase, found in (("copy", report.found), ("full check", report.full_check["found"])):
        handled = [n for n in calls.keys[phase] if n]
        assert handled[:-1] == [50] * (len(handled) - 1)
        assert 0 < handled[-1] <= 50
        assert sum(handled) == found >= 300
    # Each page of the index holds 50 entries, in 6 calls.
    assert calls.pages == [50] * 6
    # The pacer counted every key and entry of both passes, the 1,200 preflight announced.
    paced_items = report.found + report.full_check["found"] + 2 * 300
    assert report.pace["max_keys_per_second"] == 500
    assert report.pace["keys_and_entries"] == paced_items >= 1200
    assert f"paced: {paced_items} keys and index entries gone through" in report.summary()
    assert (report.migrated, report.verified, report.full_check["verified"]) == (300, True, True)
    # Every session in db 0 with its value and its absolute expiry, the index whole.
    assert snapshot(redis_server.client(0), PATTERN) == before
    assert zset(redis_server.client(0)) == zset(source)

    calls.phase = "cleanup"
    cleaned = engine.cleanup(redis_server.settings(), paced, calls)

    # Batches of 50 keys; SCAN may give a key twice while the deletions shrink the db, and a
    # batch holds it once.
    batches = calls.keys["cleanup"]
    assert max(batches) == 50
    assert sum(batches) == cleaned.found >= 300
    assert cleaned.pace["keys_and_entries"] == cleaned.found + 300
    assert (cleaned.deleted, cleaned.indexes[0].deleted) == (300, True)
    assert source.dbsize() == 0
    assert len(zset(redis_server.client(0), INDEX)) == 300
