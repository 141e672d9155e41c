"""Behaviour of the migration engine against real redis-server processes.

Every test migrates db 1 to db 0 on a throwaway server and then reads the server back: keys,
DUMP payloads, absolute expiries and index scores, not only the report.
"""

from __future__ import annotations

import time

import helpers
import pytest
from helpers import (
    INDEX,
    PATTERN,
    SESSION,
    assert_same_value_and_expiry,
    engine,
    expiry,
    migrate_with_engine,
    seed_sessions,
    snapshot,
    zset,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

STRATEGIES = ("copy", "dump-restore")
KEY_COUNTS = ("found", "migrated", "skipped", "expired", "failed")
INDEX_COUNTS = ("found", "added", "present", "orphans", "failed")


def without_index(state):
    return {key: value for key, value in state.items() if key != INDEX}


def names(keys):
    return {engine.shown(key) for key in keys}


def counts(report):
    """Every count of a report, from its attributes."""
    keys = {name: getattr(report, name) for name in KEY_COUNTS}
    return keys | {f"index_{name}": report.index_total(name) for name in INDEX_COUNTS}


def encoding_and_content(client, key):
    """Encoding, type and value of a key (helpers.content, and the encoding must match too):
    what a copy keeps, on every server version and with both strategies."""
    return (client.object("encoding", key), *helpers.content(client, key))


# 1. Keys found with SCAN ---------------------------------------------------------------------


def test_many_keys_in_small_batches_all_migrate(redis_server):
    src, dst = redis_server.client(1), redis_server.client(0)
    seed_sessions(src, 2500)
    before = snapshot(src)

    report = migrate_with_engine(redis_server, batch_size=100)

    # COPY keeps the absolute expiry: type, payload and PEXPIRETIME all identical.
    assert without_index(snapshot(dst)) == without_index(before)
    assert zset(dst) == zset(src)
    assert len(zset(dst)) == 2500
    assert snapshot(src) == before
    assert counts(report)["found"] == 2500
    assert (report.migrated, report.skipped, report.expired, report.failed) == (2500, 0, 0, 0)
    assert report.verified is True
    assert report.ok


def test_keys_not_matching_the_pattern_are_never_copied(redis_server):
    src, dst = redis_server.client(1), redis_server.client(0)
    sessions = seed_sessions(src, 20)
    others = {
        b"storyart:other:1": b"other",
        b"unrelated": b"x",
        b"storyart:sessionX": b"no colon after session",
        b"Storyart:session:1": b"case differs",
        b"xstoryart:session:1": b"prefix differs",
    }
    for key, value in others.items():
        src.set(key, value, ex=600)
    before = snapshot(src)

    report = migrate_with_engine(redis_server)

    assert set(without_index(snapshot(dst))) == set(sessions)
    for key in others:
        assert dst.exists(key) == 0
    assert snapshot(src) == before
    assert report.found == report.migrated == 20
    assert not names(others) & set(report.samples["migrated"])


@pytest.mark.parametrize(
    "patterns",
    [
        ("storyart:session:*", "storyart:session:17*"),
        ("storyart:session:17*", "storyart:session:*"),
        ("storyart:session:*", "storyart:session:*", "storyart:*:17*"),
    ],
)
def test_overlapping_patterns_handle_each_key_once(redis_server, patterns):
    src, dst = redis_server.client(1), redis_server.client(0)
    sessions = seed_sessions(src, 300)  # all named storyart:session:17...
    extra = [SESSION + b"abc", SESSION + b"20000"]
    for key in extra:
        src.set(key, b"not a 17 key")
    distinct = len(sessions) + len(extra)

    report = migrate_with_engine(redis_server, patterns=patterns, batch_size=50)

    assert set(without_index(snapshot(dst))) == set(sessions) | set(extra)
    assert report.found == distinct
    assert report.migrated == distinct
    assert report.skipped == 0  # a second handling of a key would show up as a skip
    assert report.failed == 0


@pytest.mark.parametrize(
    ("patterns", "key"),
    [
        # Redis compares class ranges as signed chars: [\x80-a] is -128..97, without 'b'.
        ((b"storyart:session:[\x80-a]*", PATTERN), SESSION + b"b1"),
        # SCAN MATCH '**' (unlike '*') does not match the empty key name.
        ((b"**", b"*"), b""),
    ],
    ids=["high-byte-range", "empty-key-name"],
)
def test_key_matched_only_by_a_later_pattern_is_migrated(redis_server, patterns, key):
    src, dst = redis_server.client(1), redis_server.client(0)
    src.set(key, b"value")
    assert key not in set(
        src.scan_iter(match=patterns[0], count=1000)
    )  # Redis itself: the first pattern does not match the key

    report = migrate_with_engine(redis_server, patterns=patterns, indexes=())

    assert dst.get(key) == b"value"
    assert report.found == report.migrated == 1


# 2. Every type, value and exact expiry -------------------------------------------------------


def seed_every_type(client, prefix=SESSION):
    """Every data type, in small and large encodings, each once with a TTL, once without."""
    keys = []
    for suffix, ttl_ms in ((b":ttl", 3_600_123), (b":persistent", None)):
        made = [prefix + b"types:" + kind + suffix for kind in (
            b"string", b"int-string", b"hash", b"big-hash", b"list", b"big-list", b"set",
            b"int-set", b"big-set", b"zset", b"big-zset", b"stream",
        )]  # fmt: skip
        string, intstr, hsh, bhash, lst, blist, st_, iset, bset, zs, bzs, stream = made
        client.set(string, b"\x00binary\xffvalue")
        client.set(intstr, b"12345")
        client.hset(hsh, mapping={b"story": b"draft", b"panels": b"3"})
        client.hset(bhash, mapping={b"f%d" % i: b"v" * (i % 70) for i in range(600)})
        client.rpush(lst, b"a", b"b", b"a")
        client.rpush(blist, *[b"item %d" % i for i in range(2000)])
        client.sadd(st_, b"x", b"y")
        client.sadd(iset, 1, 2, 3, 1000000)
        client.sadd(bset, *[b"member %d" % i for i in range(1000)])
        client.zadd(zs, {b"a": 1.5, b"b": -2, b"c": float("inf")})
        client.zadd(bzs, {b"m%d" % i: i / 7 for i in range(1000)})
        for i in range(5):
            client.xadd(stream, {b"n": i}, id=f"{1704067200000 + i}-{i}")
        client.xgroup_create(stream, b"readers", id="0")
        client.xreadgroup(b"readers", b"alice", {stream: ">"}, count=2)  # pending entries
        if ttl_ms:
            for key in made:
                client.pexpire(key, ttl_ms)
        keys += made
    return keys


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_type_is_copied_with_value_and_exact_expiry(redis_server, strategy):
    src, dst = redis_server.client(1), redis_server.client(0)
    keys = seed_every_type(src)
    assert {src.type(key) for key in keys} == {
        b"string", b"hash", b"list", b"set", b"zset", b"stream",
    }  # fmt: skip
    encodings = {src.object("encoding", key) for key in keys}
    small = b"listpack" if redis_server.version >= (7, 0) else b"ziplist"
    assert {small, b"hashtable", b"quicklist", b"intset", b"skiplist"} <= encodings
    before = snapshot(src)

    report = migrate_with_engine(redis_server, strategy=strategy, indexes=())

    # Value, encoding, (for the stream) consumer group and pending entries, exact expiry.
    assert_same_value_and_expiry(src, dst, keys, read=encoding_and_content)
    for key in keys:
        if key.endswith(b":persistent"):
            assert expiry(dst, key) == -1
    assert set(snapshot(dst)) == set(keys)
    assert snapshot(src) == before
    assert report.strategy == strategy
    assert report.changed is True
    assert report.found == len(keys) == 24
    assert report.migrated == 24
    assert report.verified is True


def test_auto_strategy_uses_dump_restore_when_copy_is_renamed(redis_factory):
    server = redis_factory('rename-command COPY ""')
    src, dst = server.client(1), server.client(0)
    keys = seed_every_type(src)
    sessions = seed_sessions(src, 10)
    before = snapshot(src)

    report = migrate_with_engine(server, strategy="auto")

    assert report.strategy == "dump-restore"
    assert report.as_dict()["strategy"] == "dump-restore"
    assert "strategy dump-restore" in report.summary()
    assert_same_value_and_expiry(src, dst, keys + sessions, read=encoding_and_content)
    assert zset(dst) == zset(src)
    assert snapshot(src) == before
    assert report.failed == 0
    assert report.migrated == len(keys) + len(sessions)
    assert report.verified is True


def test_strategy_copy_is_refused_when_copy_is_renamed(redis_factory):
    server = redis_factory('rename-command COPY ""')
    seed_sessions(server.client(1), 3)
    changes = server.rdb_changes()

    renamed = "does not know COPY, which mode migrate with strategy copy needs.*dump-restore"
    with pytest.raises(engine.MigrationError, match=renamed):
        migrate_with_engine(server, strategy="copy")

    assert server.client(0).dbsize() == 0
    assert server.rdb_changes() == changes


# 3. Keys already in the target ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_existing_target_key_is_skipped_and_keeps_its_value_and_ttl(redis_server, strategy):
    src, dst = redis_server.client(1), redis_server.client(0)
    sessions = seed_sessions(src, 10)
    taken, other_type = sessions[3], sessions[4]
    dst.set(taken, b"the newer session written by the new app", px=86_400_321)
    dst.rpush(other_type, b"a list, not a string")  # persistent, and of another type
    target_before = snapshot(dst)

    report = migrate_with_engine(redis_server, strategy=strategy, indexes=())

    target_after = snapshot(dst)
    assert target_after[taken] == target_before[taken]
    assert target_after[other_type] == target_before[other_type]
    assert dst.get(taken) == b"the newer session written by the new app"
    assert expiry(dst, other_type) == -1
    copied = [key for key in sessions if key not in (taken, other_type)]
    assert_same_value_and_expiry(src, dst, copied, read=encoding_and_content)
    assert report.skipped == 2
    assert set(report.samples["skipped"]) == names([taken, other_type])
    assert report.migrated == 8
    assert report.failed == 0


# 4. Expired keys -----------------------------------------------------------------------------


class OnLeftOver(engine.Hooks):
    """``act(keys)`` once, on the first keys a call found and left for the next ones."""

    def __init__(self, act):
        self.act = act
        self.left_over = None

    def before_batch(self, keys):
        if keys and self.left_over is None:
            self.left_over = list(keys)
            self.act(self.left_over)


# One key per call: a call stops before its second copy, and leaves the keys it found after.
ONE_COPY_PER_CALL = dict(max_batch_bytes=1, batch_size=1000)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_keys_that_expire_or_go_after_a_call_found_them_count_as_expired(redis_factory, strategy):
    """A call found them and left them for a later call; then their TTL runs out (still in
    memory: Redis expires them only when they are next touched) or the application deletes
    one. Each counts as expired, never as failed, and its index entry is merged as an
    orphan."""
    server = redis_factory(debug=True)
    src, dst = server.client(1), server.client(0)
    src.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # expire lazily, on access only
    sessions = seed_sessions(src, 40)
    gone = []

    def lapse(keys):
        gone.extend(keys[5:13])
        for key in gone[1:]:
            src.pexpire(key, 1)
        src.delete(gone[0])
        time.sleep(0.02)  # > 1 ms: the keys are expired, whatever happens to them now

    hooks = OnLeftOver(lapse)
    report = migrate_with_engine(server, hooks=hooks, strategy=strategy, **ONE_COPY_PER_CALL)

    assert len(hooks.left_over) == 39  # the first call found all 40 and copied one
    assert all(dst.exists(key) == 0 for key in gone)
    assert (report.found, report.failed, report.errors) == (40, 0, [])
    assert report.expired == len(gone) == 8
    assert set(report.samples["expired"]) == names(gone)
    assert report.migrated == 40 - len(gone)
    assert report.index_total("orphans") == len(gone)
    assert report.missing == 0
    migrated = [key for key in sessions if key not in gone]
    assert_same_value_and_expiry(src, dst, migrated, read=encoding_and_content)
    assert report.ok


def mixed_keys(src, dst):
    """12 keys: every third goes from the source later, the others are to copy or already in
    the target, with and without a TTL. Returns the keys by the outcome each should have."""
    expected = {"migrated": [], "skipped": [], "expired": []}
    for n in range(12):
        key = SESSION + b"mixed:%d" % n
        src.hset(key, mapping={b"n": n})
        if n % 3 == 2:
            expected["expired"].append(key)
            continue
        if n % 2 == 0:
            src.pexpire(key, 5_000_000 + n)
        if n % 3 == 1:
            dst.set(key, b"already in the target")
            expected["skipped"].append(key)
        else:
            expected["migrated"].append(key)
    return expected


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_copy_mode_classifies_every_key_of_a_call(redis_server, strategy):
    """Copied, present and gone keys interleaved in the calls: every outcome is reported for
    every key. A call handles keys up to its first copy, so each holds several outcomes."""
    src, dst = redis_server.client(1), redis_server.client(0)
    expected = mixed_keys(src, dst)
    target_before = snapshot(dst)

    def delete_the_rest(left_over):
        # What the first call handled before leaving the rest went as it would have anyway.
        for key in list(expected["expired"]):
            if key in left_over:
                src.delete(key)
            else:
                expected["expired"].remove(key)
                expected["migrated"].append(key)

    report = migrate_with_engine(
        redis_server,
        hooks=OnLeftOver(delete_the_rest),
        indexes=(),
        strategy=strategy,
        **ONE_COPY_PER_CALL,
    )

    assert report.expired >= 3  # the first call handles at most one key it copies
    assert (report.found, report.skipped, report.failed) == (12, 4, 0)
    for kind, keys in expected.items():
        assert getattr(report, kind) == len(keys), kind
        assert set(report.samples[kind]) == names(keys), kind
    for key in expected["skipped"]:
        assert snapshot(dst)[key] == target_before[key]
    assert_same_value_and_expiry(src, dst, expected["migrated"], read=encoding_and_content)
    assert dst.dbsize() == 4 + len(expected["migrated"])


def test_the_dry_run_classifies_every_key_of_a_batch(redis_server):
    """Keys to copy and keys the target has, interleaved in one batch; keys gone before the
    walk reached them are not found at all."""
    src, dst = redis_server.client(1), redis_server.client(0)
    expected = mixed_keys(src, dst)
    src.delete(*expected.pop("expired"))
    target_before = snapshot(dst)

    report = migrate_with_engine(redis_server, indexes=(), dry_run=True)

    assert (report.found, report.migrated, report.skipped, report.expired) == (8, 4, 4, 0)
    for kind, keys in expected.items():
        assert set(report.samples[kind]) == names(keys), kind
    assert snapshot(dst) == target_before


# 5. Binary-safe names and values -------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_binary_unicode_glob_and_big_keys_are_copied_byte_identically(redis_server, strategy):
    src, dst = redis_server.client(1), redis_server.client(0)
    odd = {
        SESSION + b"\xff\xfe": b"\x00\x01\x02\xff not utf-8",
        "storyart:session:ünï©ødé".encode(): "välüe ✓".encode(),
        SESSION + b"with spaces and\nnewline\ttab": b"spaced",
        SESSION + b"[a]*?": b"glob characters in the name",
        SESSION + b"\\*\\?": b"backslashes",
        SESSION + b"big": bytes(range(256)) * (5 * 1024 * 1024 // 256),  # 5 MiB, every byte
    }
    for key, value in odd.items():
        src.set(key, value, px=7_200_017)
    big_hash = SESSION + b"big-hash\xff"
    src.hset(big_hash, mapping={b"\xff\xfe": b"x" * 1_000_000, b"k": b"\x00"})
    src.zadd(INDEX, {key: n for n, key in enumerate(odd)})
    before = snapshot(src)

    report = migrate_with_engine(redis_server, strategy=strategy, batch_size=3)

    for key, value in odd.items():
        assert dst.get(key) == value
    assert len(dst.get(SESSION + b"big")) == 5 * 1024 * 1024
    assert_same_value_and_expiry(src, dst, [*odd, big_hash], read=encoding_and_content)
    assert zset(dst) == zset(src)
    assert snapshot(src) == before
    assert report.found == 7
    assert report.migrated == 7
    assert report.failed == 0
    assert report.verified is True
    migrated = report.samples["migrated"]
    assert SESSION.decode() + "\\xff\\xfe" in migrated  # shown escaped, never lost


# 6. Index merge ------------------------------------------------------------------------------


def test_index_merge_keeps_target_scores_and_adds_the_rest_exactly(redis_server):
    src, dst = redis_server.client(1), redis_server.client(0)
    members = ("new", "float", "big", "inf", "neg", "kept", "orphan", "both")
    k = {name: SESSION + name.encode() for name in members}
    for name in ("new", "float", "neg", "kept"):
        src.set(k[name], b"1", ex=600)
    dst.set(k["inf"], b"only in the target")  # its key is in the target only: not an orphan
    src.zadd(INDEX, {
        k["new"]: 1704067200000,
        k["float"]: 1.5,
        k["big"]: 9007199254740993,  # not a double: stored as the nearest one, both sides
        k["inf"]: float("inf"),
        k["neg"]: float("-inf"),
        k["kept"]: 10,
        k["orphan"]: 0.1,  # no session key in either db
        k["both"]: 3,  # no session key either, and already in the target index
    })  # fmt: skip
    dst.zadd(INDEX, {k["kept"]: 99.25, k["both"]: 7, SESSION + b"target-only": 5})
    source_index = zset(src)

    report = migrate_with_engine(redis_server, batch_size=3)

    merged = zset(dst)
    assert merged[k["kept"]] == 99.25
    assert merged[k["both"]] == 7
    assert merged[SESSION + b"target-only"] == 5
    for name in ("new", "float", "big", "inf", "neg", "orphan"):
        assert merged[k[name]] == source_index[k[name]]
    assert merged[k["new"]] == 1704067200000
    assert merged[k["float"]] == 1.5
    assert merged[k["inf"]] == float("inf")
    assert merged[k["neg"]] == float("-inf")
    assert merged[k["orphan"]] == 0.1
    assert len(merged) == 9
    assert zset(src) == source_index
    assert counts(report) == dict(
        found=4, migrated=4, skipped=0, expired=0, failed=0, index_found=8, index_added=6,
        index_present=2, index_orphans=3, index_failed=0,  # orphans: big, orphan and both
    )  # fmt: skip
    assert [index.as_dict() for index in report.indexes] == [
        dict(name=INDEX.decode(), found=8, added=6, present=2, orphans=3, failed=0, missing=0)
    ]
    assert report.verified is True


def test_index_keys_are_never_copied_as_keys(redis_server):
    src, dst = redis_server.client(1), redis_server.client(0)
    sessions = seed_sessions(src, 12)
    src.pexpire(INDEX, 9_000_000)  # a copy of the key would carry this expiry
    src.set(b"storyart:other:1", b"x")
    second_index = b"storyart:other:index"
    src.zadd(second_index, {b"m": 1})
    dst.zadd(second_index, {b"n": 2})

    report = migrate_with_engine(
        redis_server, patterns=["storyart:*"], indexes=[INDEX, second_index]
    )

    assert expiry(dst, INDEX) == -1
    assert zset(dst) == zset(src)
    assert zset(dst, second_index) == {b"m": 1, b"n": 2}
    assert set(snapshot(dst)) == {*sessions, b"storyart:other:1", second_index, INDEX}
    assert report.found == 13  # the sessions and storyart:other:1, not the two indexes
    assert report.migrated == 13
    assert report.skipped == 0
    samples = report.samples["migrated"] + report.samples["skipped"]
    assert INDEX.decode() not in samples
    assert second_index.decode() not in samples


# 7. Check mode -------------------------------------------------------------------------------


def scenario_keys_and_index(server):
    src, dst = server.client(1), server.client(0)
    sessions = seed_sessions(src, 30)
    for key in sessions[:5]:
        dst.set(key, b"already there", ex=100)
    dst.zadd(INDEX, {key: 1 for key in sessions[:3]})
    src.zadd(INDEX, {SESSION + b"orphan": 5})
    return True


def scenario_index_only(server):
    seed_sessions(server.client(1), 20)
    migrate_with_engine(server, indexes=())
    return True


def scenario_nothing_to_do(server):
    seed_sessions(server.client(1), 20)
    migrate_with_engine(server)
    return False


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    "scenario", [scenario_keys_and_index, scenario_index_only, scenario_nothing_to_do]
)
def test_dry_run_returns_the_plan_and_sends_no_write(redis_server, scenario, strategy):
    src, dst = redis_server.client(1), redis_server.client(0)
    expect_changed = scenario(redis_server)
    changes = redis_server.rdb_changes()
    source_before, target_before = snapshot(src), snapshot(dst)

    plan = migrate_with_engine(redis_server, dry_run=True, strategy=strategy)

    assert redis_server.rdb_changes() == changes
    assert snapshot(src) == source_before
    assert snapshot(dst) == target_before
    assert plan.dry_run is True
    assert plan.verified is None
    assert plan.as_dict()["verified"] is None
    assert plan.summary().startswith("DRY RUN, nothing written")
    assert plan.changed is expect_changed

    real = migrate_with_engine(redis_server, strategy=strategy)

    assert zset(dst) == {**zset(src), **zset(dst)}
    assert counts(plan) == counts(real)
    assert plan.samples == real.samples
    assert real.changed is expect_changed
    assert real.verified is True


def test_dry_run_plans_the_exact_counts(redis_server):
    scenario_keys_and_index(redis_server)

    plan = migrate_with_engine(redis_server, dry_run=True)

    assert counts(plan) == dict(
        found=30, migrated=25, skipped=5, expired=0, failed=0, index_found=31,
        index_added=28, index_present=3, index_orphans=1, index_failed=0,
    )  # fmt: skip
    assert "would be migrated 25" in plan.summary()


# 8. Idempotence ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_second_run_changes_nothing(redis_server, strategy):
    src, dst = redis_server.client(1), redis_server.client(0)
    sessions = seed_sessions(src, 50)
    first = migrate_with_engine(redis_server, strategy=strategy)
    assert set(without_index(snapshot(dst))) == set(sessions)
    changes = redis_server.rdb_changes()
    target_before = snapshot(dst)

    second = migrate_with_engine(redis_server, strategy=strategy)

    assert redis_server.rdb_changes() == changes
    assert snapshot(dst) == target_before
    assert second.changed is False
    assert counts(second) == dict(
        found=50, migrated=0, skipped=50, expired=0, failed=0, index_found=50,
        index_added=0, index_present=50, index_orphans=0, index_failed=0,
    )  # fmt: skip
    assert second.verified is True
    assert second.ok
    assert first.changed
    assert first.migrated == 50


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_rerun_on_a_server_over_maxmemory_skips_everything(redis_server, strategy):
    """Redis refuses COPY, RESTORE and ZADD when over maxmemory even if they would write
    nothing: a finished migration must still rerun cleanly there."""
    src, dst = redis_server.client(1), redis_server.client(0)
    seed_sessions(src, 40)
    migrate_with_engine(redis_server, strategy=strategy)
    admin = redis_server.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)  # every deny-OOM command is refused from now on
    target_before = snapshot(dst)
    index_before = zset(dst)

    report = migrate_with_engine(redis_server, strategy=strategy)

    assert report.failed == 0, report.errors
    assert report.index_total("failed") == 0, report.errors
    assert (report.skipped, report.index_total("present")) == (40, 40)
    assert report.verified is True
    assert report.ok
    assert snapshot(dst) == target_before
    assert zset(dst) == index_before


# 9. The source is never written --------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_source_db_is_byte_identical_after_a_real_run(redis_server, strategy):
    src, dst = redis_server.client(1), redis_server.client(0)
    seed_sessions(src, 40)
    seed_every_type(src)
    src.set(b"unrelated", b"x", px=5_000_000)
    dst.set(SESSION + b"1704067205000", b"target wins")  # one skip
    dst.zadd(INDEX, {SESSION + b"1704067205000": 1})
    before = snapshot(src)
    index_before = zset(src)

    migrate_with_engine(redis_server, strategy=strategy)

    assert snapshot(src) == before
    assert zset(src) == index_before
    assert dst.dbsize() == 40 + 24 + 1  # the sessions, the typed keys and the index


# 10. New sessions after a run ----------------------------------------------------------------


def test_sessions_added_after_a_run_are_picked_up_next_time(redis_server):
    src, dst = redis_server.client(1), redis_server.client(0)
    first_sessions = seed_sessions(src, 30)
    assert migrate_with_engine(redis_server).migrated == 30
    target_after_first = snapshot(dst)
    new_sessions = seed_sessions(src, 6, start=1800000000000)

    report = migrate_with_engine(redis_server)

    assert_same_value_and_expiry(src, dst, first_sessions + new_sessions, read=encoding_and_content)
    target_now = snapshot(dst)
    for key in first_sessions:
        assert target_now[key] == target_after_first[key]
    assert zset(dst) == zset(src)
    assert report.found == 36
    assert report.migrated == 6
    assert report.skipped == 30
    assert set(report.samples["migrated"]) == names(new_sessions)
    assert report.index_total("added") == 6
    assert report.index_total("present") == 30


# 11. Return shape ----------------------------------------------------------------------------


def shape(value):
    """The key structure of a result: dicts by their keys, anything else by nothing."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return None


def test_report_has_the_same_keys_on_dry_real_and_no_op_runs(redis_server):
    src = redis_server.client(1)
    seed_sessions(src, 60)
    all_names = names(without_index(snapshot(src)))

    dry_report = migrate_with_engine(redis_server, dry_run=True)
    real_report = migrate_with_engine(redis_server)
    noop_report = migrate_with_engine(redis_server)
    dry, real, noop = dry_report.as_dict(), real_report.as_dict(), noop_report.as_dict()

    assert shape(dry) == shape(real) == shape(noop)
    assert {"msg", "verified", "samples", "errors", "indexes", "strategy"} <= set(real)
    assert shape(dry["samples"]) == {"migrated": None, "skipped": None, "expired": None}
    assert len(dry["indexes"]) == len(real["indexes"]) == len(noop["indexes"]) == 1
    assert set(dry["indexes"][0]) == set(real["indexes"][0]) == set(noop["indexes"][0])
    for msg, would in ((dry["msg"], "would be "), (real["msg"], "")):
        size = f"{real_report.copy_bytes / 1048576:.1f} MiB"
        assert (
            f"keys found 60, {would}migrated 60 ({size}), {would}skipped (already in db 0) 0, "
            in msg
        )
        assert "expired 0, failed 0" in msg
        assert f"60 entries, {would}added 60, already present 0" in msg
    assert "keys found 60, migrated 0 (0.0 MiB), skipped (already in db 0) 60" in noop["msg"]
    assert "60 entries, added 0, already present 60" in noop["msg"]
    assert "; verified;" in real["msg"]
    assert "verification not run (dry run)" in dry["msg"]
    assert (dry_report.changed, real_report.changed, noop_report.changed) == (True, True, False)
    # 60 keys: each sample holds SAMPLE_SIZE names, each a real key of the run.
    assert len(dry["samples"]["migrated"]) == engine.SAMPLE_SIZE
    assert len(real["samples"]["migrated"]) == engine.SAMPLE_SIZE
    assert len(noop["samples"]["skipped"]) == engine.SAMPLE_SIZE
    assert noop["samples"]["migrated"] == []
    assert set(real["samples"]["migrated"]) <= all_names
    assert set(noop["samples"]["skipped"]) <= all_names


# 12. Diff ------------------------------------------------------------------------------------


def test_diff_shows_the_index_and_a_capped_sample_of_keys(redis_server):
    src = redis_server.client(1)
    seed_sessions(src, 25)
    header = f"redis://127.0.0.1:{redis_server.port}/0"

    diff = migrate_with_engine(redis_server).diff()

    assert diff["before_header"] == diff["after_header"] == header
    assert diff["before"] == f"index {INDEX.decode()}: 0 of the source entries present\n"
    after = diff["after"].splitlines()
    assert after[0] == f"index {INDEX.decode()}: 25 of the source entries present (+25)"
    listed = [line for line in after if line.startswith("+ storyart:session:")]
    assert len(listed) == engine.SAMPLE_SIZE
    assert {line[2:] for line in listed} <= names(without_index(snapshot(src)))
    assert after[-1] == f"+ ... and {25 - engine.SAMPLE_SIZE} more keys"
    assert len(after) == 1 + engine.SAMPLE_SIZE + 1

    again = migrate_with_engine(redis_server).diff()

    assert again["before"] == f"index {INDEX.decode()}: 25 of the source entries present\n"
    assert again["after"] == f"index {INDEX.decode()}: 25 of the source entries present (+0)\n"


# 13. Per-key errors --------------------------------------------------------------------------


MIG_PASSWORD = "migpw"  # noqa: S105 - a throwaway test user on a throwaway server


def acl_user_writing_only_some_sessions(server):
    """User 'mig' reads every storyart key but may write only sessions named ...:1*.

    ACL key patterns apply to every db alike. A key is allowed only if ONE pattern grants all
    the access a command needs.
    """
    if server.version < (7, 0):
        pytest.skip("read-only key patterns (%R~) need Redis 7.0")
    server.client().execute_command(
        "ACL", "SETUSER", "mig", "on", f">{MIG_PASSWORD}", "+@all",
        "%R~storyart:*", "~storyart:session:1*", f"~{INDEX.decode()}",
        "~storyart:session:redis-db-migrate-probe:*",
    )  # fmt: skip
    return server.settings(username="mig", password=MIG_PASSWORD)


def denied_access(error):
    """ACL's refusal of a key, as a command in a script gets it (Redis, then Valkey)."""
    return any(
        refusal in error
        for refusal in ("can't access at least one of the keys", "permissions to access a key")
    )


def test_per_key_errors_are_counted_and_do_not_stop_the_run(redis_server):
    src, dst = redis_server.client(1), redis_server.client(0)
    allowed = seed_sessions(src, 8, start=1_000_000_000_000)
    denied = seed_sessions(src, 25, start=2_000_000_000_000)
    before = snapshot(src)
    mig = acl_user_writing_only_some_sessions(redis_server)

    report = migrate_with_engine(redis_server, settings=mig, batch_size=1)

    assert_same_value_and_expiry(src, dst, allowed, read=encoding_and_content)
    assert all(dst.exists(key) == 0 for key in denied)
    assert zset(dst) == zset(src)  # the index is still merged, all 33 entries
    assert snapshot(src) == before
    assert report.found == 33
    assert report.failed == 25
    assert report.migrated == 8
    assert report.index_total("added") == 33
    assert report.ok is False
    assert report.verified is True  # what was written is there
    assert len(report.errors) == engine.ERROR_LIST_SIZE  # capped, the count is not
    assert {error["key"] for error in report.errors} <= names(denied)
    for error in report.errors:
        assert set(error) == {"key", "error"}
        assert denied_access(error["error"]), error
    assert "FAILED: 25 keys or index entries could not be copied" in report.summary()


def test_a_key_the_user_may_not_write_fails_alone_and_the_rest_of_its_batch_is_copied(
    redis_server,
):
    """No key is declared to the copy script, so ACL checks each key where the script writes
    it: in a batch of allowed and denied keys, only the denied ones fail."""
    src, dst = redis_server.client(1), redis_server.client(0)
    allowed = seed_sessions(src, 5, start=1_000_000_000_000)
    denied = seed_sessions(src, 5, start=2_000_000_000_000)
    mig = acl_user_writing_only_some_sessions(redis_server)

    report = migrate_with_engine(redis_server, settings=mig, batch_size=1000, indexes=())

    assert_same_value_and_expiry(src, dst, allowed, read=encoding_and_content)
    assert dst.dbsize() == 5
    assert (report.found, report.migrated, report.failed) == (10, 5, 5)
    assert report.ok is False
    assert {error["key"] for error in report.errors} == names(denied)
    assert all(denied_access(error["error"]) for error in report.errors)


# 14. glob_matcher agrees with SCAN MATCH -------------------------------------------------------

GLOB_BYTES = [b"a", b"b", b"z", b"-", b"[", b"]", b"^", b"\\", b"*", b"?", b"\x80", b"\xff"]
globs = st.lists(st.sampled_from(GLOB_BYTES), min_size=1, max_size=7).map(b"".join)
key_names = st.lists(st.sampled_from(GLOB_BYTES), max_size=5).map(b"".join)


def assert_glob_matcher_agrees_with_scan(client, pattern, keys):
    """Never a match Redis would not make; exactly Redis' matches where no byte is >= 0x80.

    Bytes >= 0x80 in a class range compare as signed chars on some platforms and unsigned on
    others, so there the matcher may only miss matches, never add one.
    """
    client.flushall()
    client.mset({key: b"1" for key in keys})

    by_redis = set(client.scan_iter(match=pattern, count=1000))
    matches = engine.glob_matcher(pattern)
    by_matcher = {key for key in keys if matches(key)}

    assert by_matcher <= by_redis, pattern
    if max(pattern) < 0x80:
        assert by_matcher == by_redis, pattern


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(pattern=globs, keys=st.sets(key_names, min_size=1, max_size=25))
def test_glob_matcher_agrees_with_redis_scan_match(redis_server, pattern, keys):
    assert_glob_matcher_agrees_with_scan(redis_server.client(0), pattern, keys)


@pytest.mark.parametrize(
    ("pattern", "keys"),
    [
        # Redis compares range bounds as chars: signed on x86, where [\x80-a] is -128..97
        # and holds \x80..\xff and \x00..a but not b..\x7f; unsigned on ARM (a..\x80).
        (b"[\x80-a]", {b"a", b"b", b"z", b"\x00", b"\x80", b"\x90", b"\xff"}),
        (b"[a-\xff]", {b"a", b"b", b"\x00", b"\x90", b"\xff"}),
        # Only a lone '*' matches every key; '**' does not match the empty key name.
        (b"**", {b"", b"a"}),
        (b"*", {b"", b"a"}),
    ],
    ids=["range-from-high-byte", "range-to-high-byte", "double-star-empty-key", "star"],
)
def test_glob_matcher_agrees_with_scan_on_edge_cases(redis_server, pattern, keys):
    assert_glob_matcher_agrees_with_scan(redis_server.client(0), pattern, keys)
