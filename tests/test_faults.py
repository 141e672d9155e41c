"""Faults and random data against real redis-server processes, checked by reading the data back.

1. The server is SIGKILLed part-way through the keys or the index merge: the run stops with a
   MigrationError naming the endpoint, the counts so far and that a rerun is safe. After a
   restart on the same port and dir a rerun completes, and no session, expiry or index entry
   is lost.
2. The application writes db 0 while the migration runs: its writes are never overwritten.
   An app instance still on db 1 swaps an index entry during the cleanup: none is lost.
3. A copy disappears from db 0 between its write and its read-back: verification says so.
4. The network fails, through a TCP proxy: a connection dropped after Redis has answered is
   not taken for a TLS problem; a call whose reply is lost is said to have maybe written up
   to its batch beyond the counts, and a rerun completes; a call held in a stalled network
   and delivered after the run gave up on it does not run.
5. Hypothesis: random datasets (every type, TTLs, binary and glob key names, keys already in
   the target, overlapping indexes) migrate, rerun and clean up with every invariant holding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from helpers import (
    INDEX,
    SESSION,
    assert_same_value_and_expiry,
    data_of,
    engine,
    expiries,
    expiry,
    free_port,
    migrate_with_engine,
    options,
    seed_sessions,
    snapshot,
    zset,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

STRATEGIES = ("copy", "dump-restore")
# Every write the server acknowledged survives a SIGKILL (later config lines win over the
# conftest's 'appendonly no').
DURABLE = ("appendonly yes", "appendfsync always")
TOTAL = 3000
BATCH = 100
KILL_AT = 4  # the batch (keys or index entries) at which the server dies
DAY_MS = 86_400_000


def read_back(client, keys):
    """DUMP payload and absolute expiry (ms, -1 none, -2 no key) of each key."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
    return dict(zip(keys, zip(pipe.execute(), expiries(client, keys))))


def everything(client):
    """Every key of the client's db with its DUMP payload and absolute expiry."""
    return read_back(client, list(client.scan_iter(count=1000)))


def same(actual, expected):
    """Compare two big dicts (or sets); on a difference fail with a short, readable list."""
    if actual == expected:
        return True
    if isinstance(actual, dict):
        wrong = {key for key in {*actual, *expected} if actual.get(key) != expected.get(key)}
        shown = {key: (actual.get(key), expected.get(key)) for key in sorted(wrong)[:5]}
        pytest.fail(f"{len(wrong)} entries differ (actual, expected), e.g. {shown}")
    pytest.fail(f"extra {sorted(actual - expected)[:5]}, missing {sorted(expected - actual)[:5]}")
    return False


def reloaded_source(after, before, server):
    """Whether the source db ``after`` a crash and its AOF reload is the one ``before``: the
    same keys and payloads and, from 7.0 on, the same expiries.

    Before 7.0 the AOF stores SET ... EX as an absolute time computed a moment after the
    command ran, so a reload moves an expiry later, by however long the server took in between
    (a few ms on a busy machine), never earlier: Redis's own doing, seen with no migration at
    all. So the copies are compared with their source as it is after the reload
    (copied_exactly), and the source with itself before only where the reload keeps it.
    """
    if server.version >= (7, 0):
        return same(after, before)
    payloads = {key: payload for key, (payload, _at) in after.items()}
    assert same(payloads, {key: payload for key, (payload, _at) in before.items()})
    earlier = [key for key, (_payload, at) in after.items() if at < before[key][1]]
    assert not earlier, f"{len(earlier)} source expiries moved earlier, e.g. {earlier[:5]}"
    return True


def copied_exactly(copies, sources, before):
    """Whether each copy has its source's payload and exact expiry: the source's as it is now,
    or as it was before the crash. A copy restored before the crash (RESTORE ... ABSTTL) keeps
    the expiry it was given then while the reload may move its source's (reloaded_source); a
    COPY the reload replays takes the reloaded one."""
    wrong = {
        key: (copy, sources.get(key), before.get(key))
        for key, copy in copies.items()
        if copy not in (sources.get(key), before.get(key))
    }
    sample = {key: wrong[key] for key in sorted(wrong)[:5]}
    assert not wrong, f"{len(wrong)} copies differ (copy, source, source before), e.g. {sample}"
    return True


# 1. The server dies mid-run ------------------------------------------------------------------


class KillsTheServer(engine.Hooks):
    """SIGKILLs the server at one point of the run, then lets the engine carry on into it."""

    def __init__(self, server, where):
        self.server = server
        self.where = where
        self.key_batches = 0
        self.index_batches = 0

    def _kill_if(self, where, batches):
        if where == self.where and batches == KILL_AT:
            self.server.kill()

    def before_batch(self, keys):
        self.key_batches += 1
        self._kill_if("keys:before-copy", self.key_batches)

    def after_batch(self, keys):
        self._kill_if("keys:between-batches", self.key_batches)

    def before_read_back(self, keys):  # the batch is written, its read-back not yet done
        self._kill_if("keys:before-read-back", self.key_batches)

    def before_index_page(self, index):  # one call merges one page of the index
        self.index_batches += 1
        self._kill_if("index:before-merge", self.index_batches)

    def after_index_page(self, index, members):
        self._kill_if("index:before-read-back", self.index_batches)


KILL_POINTS = (
    "keys:before-copy",
    "keys:before-read-back",
    "keys:between-batches",
    "index:before-merge",
    "index:before-read-back",
)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("where", KILL_POINTS)
def test_server_killed_mid_run_stops_clearly_and_a_rerun_after_restart_loses_nothing(
    redis_factory, where, strategy
):
    server = redis_factory(*DURABLE)
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, TOTAL)
    source_before = everything(src)
    index_before = zset(src)
    port = server.port
    kills = KillsTheServer(server, where)

    with pytest.raises(engine.MigrationError) as raised:
        engine.migrate(server.settings(), options(batch_size=BATCH, strategy=strategy), kills)

    assert server.process.poll() is not None, "the hook did not kill the server"
    error = raised.value
    message = str(error)
    print(f"\nMigrationError: {message}")
    report = error.report
    assert report is not None
    assert report.aborted
    assert report.verified is None
    assert report.ok is False
    assert f"127.0.0.1:{port}" in message
    assert "Counts so far" in message
    assert f"migrated {report.migrated} (" in message
    assert "rerun" in message
    assert "STOPPED before the end" in message
    assert report.failed == 0
    assert report.missing == 0
    phase, point = where.split(":")
    if phase == "keys":
        assert "while copying keys" in message
        assert report.indexes == []
        # Each call finds its batch and copies it: what it found counts once it has run.
        done = KILL_AT - (point == "before-copy")  # the batches whose call ran
        assert report.found == report.migrated + report.skipped == done * BATCH
        assert 0 < report.migrated < TOTAL
    else:
        assert "while merging indexes" in message
        assert (report.found, report.migrated, report.skipped) == (TOTAL, TOTAL, 0)
        [index] = report.indexes
        # index batches are pages of about BATCH entries: KILL_AT - 1 or KILL_AT were merged
        assert (KILL_AT - 1) * BATCH // 2 <= index.added <= index.found < TOTAL
        assert (index.present, index.failed) == (0, 0)
        assert f"added {index.added}," in message

    server.start()

    assert server.port == port
    # The source was never written; every copy and index entry the report counts is there.
    assert reloaded_source(everything(src), source_before, server)
    assert zset(src) == index_before
    if phase == "keys":
        assert dst.dbsize() == report.migrated
    else:
        assert dst.dbsize() == TOTAL + 1
        assert dst.zcard(INDEX) == report.indexes[0].added

    again = migrate_with_engine(server, strategy=strategy)

    assert again.verified is True
    assert again.ok
    assert again.found == TOTAL
    assert again.migrated == TOTAL - report.migrated
    assert again.skipped == report.migrated
    [index] = again.indexes
    assert index.found == TOTAL
    assert index.added == TOTAL - (report.indexes[0].added if report.indexes else 0)
    copies, sources = read_back(dst, sessions), read_back(src, sessions)
    assert copied_exactly(copies, sources, source_before)
    assert all(expiry > 0 for _, expiry in copies.values())
    assert dst.zcard(INDEX) == src.zcard(INDEX) == TOTAL
    assert same(zset(dst), index_before)
    assert same(set(everything(dst)), {*sessions, INDEX})
    assert reloaded_source(everything(src), source_before, server)


# 2. The application writes db 0 meanwhile --------------------------------------------------------


class App:
    """The StoryArt application writing db 0 while the migration runs: its writes must win.

    Whether a write came before the engine's copy or merge of that session is read from db 0
    itself (the app never deletes): a session not in db 0 yet, an entry not in its index yet.
    """

    def __init__(self, server, sessions, index):
        self.db0 = server.client(0)
        self.sessions = list(sessions)
        self.index = index  # the source index: member -> score
        self.written = {}  # key -> (value, absolute expiry) the app wrote last
        self.scores = {}  # index member -> score the app wrote last
        self.written_first = set()  # source sessions the app wrote before their copy
        self.scored_first = set()  # source index members the app scored before their merge
        self.far = int(time.time() * 1000) + 30 * DAY_MS
        self.count = 0

    def write_session(self, key):
        if key in self.index and not self.db0.exists(key):
            self.written_first.add(key)
        self.count += 1
        value = b'{"story":"newer version %d, written by the app"}' % self.count
        expires = self.far + self.count
        self.db0.set(key, value, pxat=expires)
        self.written[key] = (value, expires)

    def score(self, member):
        if member in self.index and self.db0.zscore(INDEX, member) is None:
            self.scored_first.add(member)
        self.count += 1
        score = float(1_800_000_000_000 + self.count)  # newer than any seeded timestamp
        self.db0.zadd(INDEX, {member: score})
        self.scores[member] = score

    def new_session(self):
        key = SESSION + b"app-only-%d" % self.count
        self.write_session(key)
        self.score(key)

    def untouched(self, present):
        """Source sessions the app has not written, in db 0 (``present``) or not yet."""
        return [
            key
            for key in self.sessions
            if key not in self.written and bool(self.db0.exists(key)) is present
        ]

    def before_batch(self, keys):
        pending = self.untouched(present=False)
        if pending:
            self.write_session(pending[-1])  # not copied yet: the copy must skip it

    def after_batch(self, keys):
        # A call whose SCAN pages matched nothing handled no key.
        if keys:
            self.write_session(keys[-1])  # copied a moment ago: the app replaces its copy
            self.score(keys[-1])  # its index entry is not merged yet
        pending = self.untouched(present=False)
        if pending:
            self.write_session(pending[len(pending) // 2])  # not even found by SCAN yet
            self.score(pending[0])
        self.new_session()

    def merged(self):
        return {member for member in zset(self.db0) if member in self.index}

    def before_merge(self):
        merged = self.merged()
        waiting = [member for member in self.index if member not in merged]
        if waiting:
            self.score(waiting[len(waiting) // 2])  # not merged yet: the merge must keep it
        return self.merged()

    def after_merge(self, merged_before):
        just_merged = sorted(self.merged() - merged_before - set(self.scores))
        if just_merged:
            self.score(just_merged[0])  # merged a moment ago: the app updates it
        self.new_session()


class WithApp(engine.Hooks):
    """Lets the app write db 0 right before and right after each batch of keys and entries."""

    def __init__(self, app):
        self.app = app
        self.merged_before = set()

    def before_batch(self, keys):
        self.app.before_batch(keys)

    def after_batch(self, keys):
        self.app.after_batch(keys)

    def before_index_page(self, index):  # one call merges one page of the index
        self.merged_before = self.app.before_merge()

    def after_index_page(self, index, members):
        self.app.after_merge(self.merged_before)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_application_writes_to_db0_during_the_run_are_never_overwritten(redis_server, strategy):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 300)
    source_index = zset(src)
    source_before = everything(src)
    app = App(server, sessions, source_index)
    report = engine.migrate(
        server.settings(), options(batch_size=10, strategy=strategy), WithApp(app)
    )

    # The app wrote all three kinds of write, racing both phases.
    assert len(app.written_first) >= 40
    assert 20 <= len(app.scored_first) < len(source_index)
    assert len(set(app.written) - set(sessions)) >= 40
    # Every write of the app is in db 0 exactly as it wrote it.
    for key, (value, expires) in app.written.items():
        assert dst.get(key) == value, key
        assert expiry(dst, key) == expires, key
    merged = zset(dst)
    for member, score in app.scores.items():
        assert merged[member] == score, member
    # Every other session is migrated with its value and exact expiry; the index is the union.
    untouched = [key for key in sessions if key not in app.written]
    assert len(untouched) > 100
    assert same(read_back(dst, untouched), read_back(src, untouched))
    assert same(merged, {**source_index, **app.scores})
    assert same(set(everything(dst)), {*sessions, *app.written, INDEX})
    assert same(everything(src), source_before)
    # The report: what the app wrote first is skipped, the rest copied, all verified.
    assert report.found == 300
    assert report.skipped == len(app.written_first)
    assert report.migrated == 300 - len(app.written_first)
    [index] = report.indexes
    assert index.present == len(app.scored_first)
    assert index.added == 300 - len(app.scored_first)
    assert report.failed == index.failed == report.missing == 0
    assert report.verified is True
    assert report.ok is True
    check = engine.verify(server.settings(), options())
    assert check.verified is True
    assert (check.migrated, check.index_total("added")) == (0, 0)


def test_cleanup_keeps_the_source_index_when_an_entry_is_swapped_during_the_check(redis_server):
    """An app instance still on db 1 drops one session's entry and adds a new one while the
    cleanup checks the index: same size, but the new entry is in no index of db 0. Deleting
    the source index would lose it; the new session's key stays in db 1 without an entry."""
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 10)
    migrate_with_engine(server)
    late = SESSION + b"1999999999999"

    class AppSwapsAnEntry(engine.Hooks):
        def before_index_delete(self, index):
            src.set(late, b'{"story":"started during the cleanup"}', ex=3600)
            src.zadd(INDEX, {late: 1999999999999})
            src.zrem(INDEX, sessions[0])  # logged out: same index size as when checked

    report = engine.cleanup(server.settings(), options(), AppSwapsAnEntry())

    assert report.deleted == 10
    assert src.get(late) == b'{"story":"started during the cleanup"}'
    assert dst.zscore(INDEX, late) is None
    # the late session's index entry must survive somewhere: in db 1's index
    assert src.zscore(INDEX, late) == 1999999999999
    [index] = report.indexes
    assert index.deleted is False
    assert index.kept_because


# 3. A copy lost before its read-back ---------------------------------------------------------


class LosesCopies(engine.Hooks):
    """Something else (eviction, an operator's DEL or ZREM) removes the first copied key and
    the first merged index entry from db 0 between their write and the engine's read-back."""

    def __init__(self, server):
        self.other = server.client(0)
        self.lost_key = self.lost_member = None
        self.index_before = set()

    def before_read_back(self, keys):
        if keys and self.lost_key is None:
            self.lost_key = keys[0]
            self.other.delete(self.lost_key)

    def before_index_page(self, index):
        self.index_before = set(zset(self.other))

    def after_index_page(self, index, members):
        if self.lost_member is None:
            self.lost_member = min(set(zset(self.other)) - self.index_before)
            self.other.zrem(INDEX, self.lost_member)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_copy_lost_before_its_read_back_fails_verification_and_a_rerun_restores_it(
    redis_server, strategy
):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 50)
    loses = LosesCopies(server)

    report = engine.migrate(server.settings(), options(batch_size=10, strategy=strategy), loses)

    key, member = loses.lost_key, loses.lost_member
    assert dst.exists(key) == 0
    assert dst.zscore(INDEX, member) is None
    assert report.migrated == 50
    assert report.missing == 2
    assert report.missing_sample == [
        f"key {engine.shown(key)}",
        f"index {INDEX.decode()} member {engine.shown(member)}",
    ]
    assert report.indexes[0].missing == 1
    assert report.verified is False
    assert report.ok is False
    assert "VERIFICATION FAILED: 2 missing in db 0" in report.summary()
    check = engine.verify(server.settings(), options())
    assert check.verified is False
    assert (check.migrated, check.index_total("added")) == (1, 1)

    again = migrate_with_engine(server, strategy=strategy)

    assert (again.migrated, again.skipped, again.index_total("added")) == (1, 49, 1)
    assert again.verified is True
    assert again.ok
    assert same(read_back(dst, sessions), read_back(src, sessions))
    assert same(zset(dst), zset(src))


# 4. The network fails -----------------------------------------------------------------------


def through(proxy, **kwargs):
    """The engine's settings for the server behind ``proxy``."""
    return engine.ConnectionSettings(host="127.0.0.1", port=proxy.port, **kwargs)


def test_a_connection_dropped_during_preflight_is_said_to_be_dropped_not_a_tls_problem(
    redis_server, proxy
):
    seed_sessions(redis_server.client(1), 10)
    network = proxy(redis_server)
    network.reset_at(b"SCRIPT")  # the probe's second round trip: Redis has answered INFO

    with pytest.raises(engine.MigrationError) as raised:
        engine.preflight(through(network), options())

    message = str(raised.value)
    print(f"\nMigrationError: {message}")
    assert message.startswith(f"Lost the connection to Redis at 127.0.0.1:{network.port} while")
    assert "dropped" in message
    assert "tls" not in message.lower()
    assert "Cannot connect" not in message


def test_a_connection_closed_before_redis_ever_answered_may_be_a_tls_only_server(
    redis_server, proxy
):
    network = proxy(redis_server)
    network.reset_at(b"INFO")  # the run's first command

    with pytest.raises(engine.MigrationError) as raised:
        engine.preflight(through(network), options())

    message = str(raised.value)
    assert f"Cannot connect to Redis at 127.0.0.1:{network.port}" in message
    assert "closed before Redis answered" in message
    assert "If the server only accepts TLS, set tls: true" in message


def test_a_refused_connection_says_so_without_tls_advice():
    settings = engine.ConnectionSettings(host="127.0.0.1", port=free_port())

    with pytest.raises(engine.MigrationError) as raised:
        engine.preflight(settings, options())

    message = str(raised.value)
    assert "Cannot connect to Redis" in message
    assert "refused" in message.lower()
    assert "tls" not in message.lower()


class AtCall(engine.Hooks):
    """Calls ``act`` right before the ``at``-th call of a run's ``phase``: "keys", a copy or
    clean-up call of keys; "index", the merge of an index page or the deletion of an index."""

    def __init__(self, phase, at, act):
        self.phase, self.at, self.act = phase, at, act
        self.calls = 0

    def _count(self, phase):
        if phase == self.phase:
            self.calls += 1
            if self.calls == self.at:
                self.act()

    def before_batch(self, keys):
        self._count("keys")

    def before_index_page(self, index):
        self._count("index")

    def before_index_delete(self, index):
        self._count("index")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("phase", ["keys", "index"])
def test_a_lost_reply_of_a_copy_says_what_it_may_have_copied_and_a_rerun_completes(
    redis_server, proxy, phase, strategy
):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 500)
    network = proxy(server)
    loses = AtCall(phase, 3, lambda: network.lose_reply(b"EVALSHA"))

    with pytest.raises(engine.MigrationError) as raised:
        engine.migrate(through(network), options(batch_size=BATCH, strategy=strategy), loses)

    message, report = str(raised.value), raised.value.report
    print(f"\nMigrationError: {message}")
    assert message.startswith(f"Lost the connection to Redis at 127.0.0.1:{network.port} while")
    assert "tls" not in message.lower()
    assert "nothing this run sent can still run" in message
    assert report.as_dict()["unknown"] == report.unknown
    if phase == "keys":
        # The call ran: its batch is in db 0, beyond the counts, and the message says so.
        assert report.migrated == 2 * BATCH
        assert dst.dbsize() == 3 * BATCH
        call = f"may have copied up to {BATCH} more keys (its batch)"
        assert report.unknown == dict(keys=BATCH, index_entries=0, call=call)
        assert f"NOT COUNTED: the reply of the last call was lost; it {call}" in message
    else:
        [index] = report.indexes
        assert report.migrated == 500
        assert report.unknown["keys"] == 0
        # The call ran: its page of the index is in db 0, beyond the counts.
        assert dst.zcard(INDEX) == index.added + BATCH
        assert report.unknown["index_entries"] == BATCH
        assert f"may have added up to {BATCH} more entries to index" in message

    again = engine.migrate(server.settings(), options(batch_size=BATCH, strategy=strategy))

    assert again.ok
    assert again.verified is True
    assert again.unknown == dict(keys=0, index_entries=0, call=None)
    assert again.migrated + again.skipped == 500
    assert_same_value_and_expiry(src, dst, sessions)
    assert same(zset(dst), zset(src))


@pytest.mark.parametrize("phase", ["keys", "index"])
def test_a_lost_reply_of_a_clean_up_says_what_it_may_have_deleted_and_a_rerun_completes(
    redis_server, proxy, phase
):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 500)
    migrate_with_engine(server, batch_size=BATCH)
    copies = read_back(dst, sessions)
    network = proxy(server)
    loses = AtCall(phase, 3 if phase == "keys" else 1, lambda: network.lose_reply(b"EVALSHA"))

    with pytest.raises(engine.MigrationError) as raised:
        engine.cleanup(through(network), options(batch_size=BATCH), loses)

    message, report = str(raised.value), raised.value.report
    print(f"\nMigrationError: {message}")
    assert "nothing this run sent can still run" in message
    assert "The source db was not written" not in message
    if phase == "keys":
        assert report.deleted == 2 * BATCH
        assert src.dbsize() == 500 + 1 - 3 * BATCH  # the sessions left, and the index
        call = (
            f"may have deleted up to {BATCH} more keys from db 1, each only with an identical "
            f"copy in db 0"
        )
        assert report.unknown == dict(keys=BATCH, index_entries=0, call=call)
    else:
        assert report.deleted == 500
        assert src.exists(INDEX) == 0
        assert report.indexes[0].kept_because == "the reply to its deletion was lost (NOT COUNTED)"
        call = (
            f"may have deleted index '{INDEX.decode()}' (500 entries, each in db 0), as it "
            f"does only if nothing changed the index since it was checked"
        )
        assert report.unknown == dict(keys=0, index_entries=500, call=call)
    assert f"NOT COUNTED: the reply of the last call was lost; it {call}" in message

    again = engine.cleanup(server.settings(), options(batch_size=BATCH))

    assert again.ok
    assert src.dbsize() == 0
    assert same(read_back(dst, sessions), copies)


@pytest.mark.parametrize("mode", ["migrate", "cleanup"])
def test_a_call_held_in_a_stalled_network_does_not_run_once_the_run_has_given_up(
    redis_server, proxy, mode
):
    """The call reaches Redis only after the run has stopped and reported, as TCP delivers
    what a stalled network held once it recovers: its deadline has passed, it changes nothing."""
    server = redis_server
    src, dst = server.client(1), server.client(0)
    seed_sessions(src, 500)
    if mode == "cleanup":
        migrate_with_engine(server, batch_size=BATCH)
    network = proxy(server)
    stalls = AtCall("keys", 2, network.hold)
    settings = through(network, socket_timeout=3.0)

    with pytest.raises(engine.MigrationError) as raised:
        getattr(engine, mode)(settings, options(batch_size=BATCH), stalls)

    message, report = str(raised.value), raised.value.report
    print(f"\nMigrationError: {message}")
    assert f"Redis at 127.0.0.1:{network.port} did not answer within the timeout" in message
    assert report.unknown["keys"] == BATCH
    assert "nothing this run sent can still run" in message
    assert network.held_bytes() > 0
    state = (server.rdb_changes(), dst.dbsize(), src.dbsize())

    late = network.release()

    # Redis has now run what was held: the call found its deadline passed, answered EXPIRED
    # (4) with the server's time, and wrote nothing.
    assert any(reply.startswith(b"*2\r\n:4\r\n") for reply in late), late
    assert (server.rdb_changes(), dst.dbsize(), src.dbsize()) == state


# 5. Random datasets ----------------------------------------------------------------------------

# Key name suffixes: arbitrary bytes, and glob characters, escapes and non-UTF-8 bytes mixed.
NAME_BYTES = [b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b":", b"\x00", b"\x80", b"\xff"]
suffixes = st.one_of(
    st.binary(max_size=6),
    st.lists(st.sampled_from([*NAME_BYTES, "é".encode()]), max_size=5).map(b"".join),
)
small = st.binary(max_size=10)
scores = st.one_of(st.integers(-(10**15), 10**15), st.floats(allow_nan=False))
# Small collections keep listpack/intset encodings; string sets are hashtables on Redis 7.0,
# compared by content where their DUMP depends on bucket order.
values = st.one_of(
    st.tuples(st.just("string"), st.binary(max_size=40)),
    st.tuples(st.just("hash"), st.dictionaries(small, small, min_size=1, max_size=6)),
    st.tuples(st.just("list"), st.lists(small, min_size=1, max_size=6)),
    st.tuples(
        st.just("set"),
        st.one_of(
            st.sets(st.integers(-1000, 1000).map(b"%d".__mod__), min_size=1, max_size=6),
            st.sets(small, min_size=1, max_size=6),
        ),
    ),
    st.tuples(st.just("zset"), st.dictionaries(small, scores, min_size=1, max_size=6)),
    st.tuples(
        st.just("stream"),
        st.lists(st.dictionaries(small, small, min_size=1, max_size=3), min_size=1, max_size=4),
    ),
)
# None: no TTL. Otherwise ms from now, far enough that nothing expires during the test.
ttls = st.one_of(st.none(), st.integers(DAY_MS // 24, 30 * DAY_MS))
entries = st.tuples(values, ttls)


@dataclass
class Dataset:
    source: dict  # key -> entry, in db 1
    target: dict  # key -> entry, in db 0 before the run
    source_index: dict
    target_index: dict
    strategy: str
    batch_size: int
    dropped_copies: set  # deleted from db 0 before the cleanup
    dropped_members: set  # removed from db 0's index before the cleanup


def pick(draw, pool, **kwargs):
    pool = sorted(pool)
    return draw(st.sets(st.sampled_from(pool), **kwargs)) if pool else set()


@st.composite
def datasets(draw):
    source = {SESSION + name: draw(entries) for name in draw(st.lists(suffixes, unique=True))}
    target = {}
    for key, (value, _) in source.items():
        already = draw(st.sampled_from(("no", "no", "same value", "other")))
        if already == "same value":  # with a TTL of its own
            target[key] = (value, draw(ttls))
        elif already == "other":
            target[key] = draw(entries)
    for name in draw(st.lists(suffixes, max_size=3)):
        target.setdefault(SESSION + name, draw(entries))
    for name in draw(st.lists(suffixes, unique=True, max_size=2)):
        # never matched by the pattern: never copied, never cleaned up
        source[b"storyart:other:" + name] = draw(entries)
    orphans = {SESSION + name for name in draw(st.lists(suffixes, max_size=3))}
    members = sorted({*source, *target, *orphans})
    source_index = target_index = {}
    if members:
        source_index = draw(st.dictionaries(st.sampled_from(members), scores, max_size=12))
        target_index = draw(st.dictionaries(st.sampled_from(members), scores, max_size=8))
    sessions = {key for key in source if key.startswith(SESSION)}
    return Dataset(
        source=source,
        target=target,
        source_index=source_index,
        target_index=target_index,
        strategy=draw(st.sampled_from(STRATEGIES)),
        batch_size=draw(st.integers(1, 5)),
        dropped_copies=pick(draw, sessions, max_size=3),
        dropped_members=pick(draw, source_index, max_size=3),
    )


def write(client, key, entry):
    (kind, value), ttl = entry
    if kind == "string":
        client.set(key, value)
    elif kind == "hash":
        client.hset(key, mapping=value)
    elif kind == "list":
        client.rpush(key, *value)
    elif kind == "set":
        client.sadd(key, *value)
    elif kind == "zset":
        client.zadd(key, value)
    else:
        for n, fields in enumerate(value, 1):
            client.xadd(key, fields, id=f"{n}-1")
    if ttl is not None:
        client.pexpire(key, ttl)


def seed(server, data):
    src, dst = server.client(1), server.client(0)
    src.flushall()
    for key, entry in data.source.items():
        write(src, key, entry)
    for key, entry in data.target.items():
        write(dst, key, entry)
    if data.source_index:
        src.zadd(INDEX, data.source_index)
    if data.target_index:
        dst.zadd(INDEX, data.target_index)
    return src, dst


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    # On a failure: shrink to one minimal example, skip the slow 'explain' phase.
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=datasets())
def test_random_datasets_migrate_rerun_and_clean_up_with_every_invariant(redis_server, data):
    server = redis_server
    src, dst = seed(server, data)
    source_before, target_before = snapshot(src), snapshot(dst)
    source_index, target_index = zset(src), zset(dst)
    sessions = [key for key in source_before if key.startswith(SESSION)]
    new = [key for key in sessions if key not in target_before]
    opts = options(strategy=data.strategy, batch_size=data.batch_size)

    report = engine.migrate(server.settings(), opts)

    # (a) the source db is byte for byte unchanged, its index included
    assert snapshot(src) == source_before
    # (b) every source session not in the target before is there with value and expiry
    if new:  # none when the source has no session or db 0 had them all
        assert_same_value_and_expiry(src, dst, new)
    # (c) keys already in the target are untouched; nothing else is written
    target_after = snapshot(dst)
    for key, before in target_before.items():
        if key != INDEX:
            assert target_after[key] == before, key
    indexed = {INDEX} if source_index or target_index else set()
    assert set(target_after) == {*target_before, *sessions, *indexed}
    # (d) the target index is the union of both, the target's scores winning
    assert zset(dst) == {**source_index, **target_index}
    assert report.found == len(sessions)
    assert (report.migrated, report.skipped) == (len(new), len(sessions) - len(new))
    assert (report.expired, report.failed, report.missing) == (0, 0, 0)
    assert report.index_total("added") == len(set(source_index) - set(target_index))
    assert report.verified is True
    assert report.ok is True

    # (e) a second run changes nothing
    writes = server.rdb_changes()
    again = engine.migrate(server.settings(), opts)
    assert again.changed is False
    assert server.rdb_changes() == writes
    assert snapshot(dst) == target_after
    assert snapshot(src) == source_before
    assert again.verified is True

    # (f) cleanup, after the app dropped some copies and index entries from db 0
    for key in data.dropped_copies:
        dst.delete(key)
    for member in data.dropped_members:
        dst.zrem(INDEX, member)
    source_before, target_before = snapshot(src), snapshot(dst)
    merged = zset(dst)
    same = {key for key in sessions if dst.exists(key) and data_of(dst, key) == data_of(src, key)}
    different = {key for key in sessions if dst.exists(key)} - same
    index_goes = bool(source_index) and set(source_index) <= set(merged)

    cleaned = engine.cleanup(server.settings(), opts)

    assert snapshot(dst) == target_before
    kept = {key: value for key, value in source_before.items() if key not in same}
    if index_goes:
        del kept[INDEX]
    assert snapshot(src) == kept
    assert (cleaned.found, cleaned.deleted, cleaned.kept_different, cleaned.kept_missing) == (
        len(sessions), len(same), len(different), len(sessions) - len(same) - len(different),
    )  # fmt: skip
    [index] = cleaned.indexes
    assert index.deleted is index_goes
    assert index.missing == len(set(source_index) - set(merged))
    assert cleaned.ok is True
