"""The engine on Redis configured the way production servers are, read back after each run.

1. Memory: under maxmemory with allkeys-lru, volatile-lru and noeviction, on a db whose many
   small non-session keys defeat a sampled estimate, the migration never causes an eviction
   (INFO evicted_keys unchanged, every key of both dbs intact) and never takes the
   application's last free memory; a copy that fits comfortably runs under every policy.
2. Stalls: with sessions of 100 KB to 2 MB, no server call takes over 50 ms (SLOWLOG) but one
   holding a single key larger than the byte budget, for both strategies and the clean-up;
   an attached replica never needs a second full resync and ends up identical.
3. Expiry: with AOF on, a restart long after the migration finds every copy at its source's
   absolute expiry, whatever the server version and strategy.
4. Least privilege: the README's ACL SETUSER line, applied verbatim, lets every mode run; and
   without any one of its commands some mode names that command, having written nothing.
5. Clean-up by content: identical hashes and sets are deleted whatever their encoding's byte
   order; a copy that differs in any way is kept.
6. A server 'timeout' shorter than the pacing interval never cuts a paced run or clean-up.
"""

from __future__ import annotations

import random
import re
import time

import pytest
from helpers import (
    INDEX,
    ROOT,
    SESSION,
    assert_same_value_and_expiry,
    data_of,
    engine,
    expiries,
    migrate_with_engine,
    options,
    seed_sessions,
    snapshot,
    wait_for,
    zset,
)

POLICIES = ("allkeys-lru", "volatile-lru", "noeviction")
STRATEGIES = ("copy", "dump-restore")
BIG_SESSIONS = 30
BIG_SESSION_BYTES = 200_000
MIB = 1 << 20


def info(server, section):
    return server.client().info(section)


def every_db(server):
    """Every key of dbs 0, 1 and 2: type, value and absolute expiry. Read with maxmemory
    lifted, since on a full server the replies' own buffers would make Redis evict."""
    admin = server.client()
    limit = admin.config_get("maxmemory")["maxmemory"]
    admin.config_set("maxmemory", 0)
    try:
        return [snapshot(server.client(db)) for db in (0, 1, 2)]
    finally:
        admin.config_set("maxmemory", limit)


def without_index(keys):
    return {key: value for key, value in keys.items() if key != INDEX}


def ceiling(server):
    """The used_memory the guard keeps the server under: maxmemory less 10%."""
    return info(server, "memory")["maxmemory"] * 9 // 10


def fill(server, full, chunk=16 * 1024):
    """Application data in db 2, in keys of ``chunk`` bytes, one command each, until
    ``full(server)``: one big write would hold its whole argument in the query buffer too."""
    client, n = server.client(2), 0
    while not full(server):
        client.set(b"app:filler:%d" % n, b"x" * chunk)
        n += 1


# 1. Memory ---------------------------------------------------------------------------------


def crowded_server(redis_factory, policy, free):
    """db 1: 20,000 small keys that are no sessions and 30 sessions of 200 KB; db 0: 2,000
    live sessions. Every key has a TTL, so volatile policies may evict any of them. maxmemory
    leaves ``free`` bytes above what the server uses."""
    server = redis_factory()
    admin, src, dst = server.client(), server.client(1), server.client(0)
    pipe = src.pipeline(transaction=False)
    for n in range(20_000):
        pipe.set(b"storyart:cache:%d" % n, b"small and not a session", ex=86_400)
    data = random.Random(9)  # noqa: S311 - reproducible test data, not a secret
    for n in range(BIG_SESSIONS):
        key = SESSION + b"big:%d" % n
        pipe.set(key, data.randbytes(BIG_SESSION_BYTES), ex=86_400)
        pipe.zadd(INDEX, {key: n})
    pipe.execute()
    seed_sessions(dst, 2000, start=1_800_000_000_000)
    admin.config_set("maxmemory-policy", policy)
    admin.config_set("maxmemory", info(server, "memory")["used_memory"] + free)
    server.big = [SESSION + b"big:%d" % n for n in range(BIG_SESSIONS)]
    server.before = every_db(server)
    return server


@pytest.mark.parametrize("policy", POLICIES)
def test_a_copy_that_does_not_fit_is_refused_before_any_write_and_nothing_is_evicted(
    redis_factory, policy
):
    server = crowded_server(redis_factory, policy, free=4 * MIB)

    # Seen from the keys that will be copied, not from a sample of the whole db.
    estimate = engine.preflight(server.settings(), options(memory_check=False))["memory"]
    assert estimate["estimate"] == "exact"
    assert estimate["matching_keys"] == estimate["keys_to_copy"] == BIG_SESSIONS
    assert estimate["needed_bytes"] > BIG_SESSIONS * BIG_SESSION_BYTES
    assert (estimate["policy"], estimate["limit"], estimate["fits"]) == (policy, "maxmemory", False)
    for attempt in (
        lambda: migrate_with_engine(server),
        lambda: engine.preflight(server.settings(), options()),
    ):
        with pytest.raises(engine.MigrationError) as refused:
            attempt()
        message = str(refused.value)
        assert "Not enough memory" in message
        assert f"{BIG_SESSIONS} keys not in db 0 yet, exact" in message
        assert f"policy {policy}" in message
        assert "Nothing was written" in message

    assert info(server, "stats")["evicted_keys"] == 0
    assert every_db(server) == server.before


def near_the_ceiling(server):
    return info(server, "memory")["used_memory"] >= ceiling(server) - 500_000


def evicting(server):
    return info(server, "stats")["evicted_keys"] > 0


class AppFillsMemory(engine.Hooks):
    """Once the run has copied 5 sessions or more, the application fills memory until
    ``full(server)``. A call may find fewer sessions than a batch among the other keys."""

    def __init__(self, server, full):
        self.server = server
        self.full = full
        self.handled = 0
        self.copied_before_fill = None

    def after_batch(self, keys):
        self.handled += len(keys)
        if self.copied_before_fill is None and self.handled >= 5:
            self.copied_before_fill = self.handled
            fill(self.server, self.full)


def stopped_run(server, full):
    """Migrate in batches of 5 while the application fills memory after the first sessions
    until ``full(server)``: the run must stop. Its message, report, and how many sessions were
    copied before the fill."""
    hooks = AppFillsMemory(server, full)
    with pytest.raises(engine.MigrationError) as stopped:
        engine.migrate(server.settings(), options(batch_size=5), hooks)
    return str(stopped.value), stopped.value.report, hooks.copied_before_fill


@pytest.mark.parametrize("policy", POLICIES)
def test_the_guard_stops_before_a_write_that_would_not_fit_and_nothing_is_evicted(
    redis_factory, policy
):
    """The preflight finds room, then the application takes it: the next write that would
    leave less than the headroom free is never made."""
    server = crowded_server(redis_factory, policy, free=12 * MIB)

    message, report, before_fill = stopped_run(server, near_the_ceiling)

    assert "Stopped by the memory guard before the next write" in message
    assert "Nothing was evicted" in message
    assert "rerun" in message
    # What was copied before the fill, and what still fitted of the next batch.
    assert before_fill <= report.migrated < before_fill + 5
    assert info(server, "stats")["evicted_keys"] == 0
    # What the engine wrote after the application's fill kept the server under the ceiling.
    assert info(server, "memory")["used_memory"] <= ceiling(server)
    # The application still has its headroom: under noeviction its writes still succeed.
    assert server.client(2).set(b"app:after", b"y" * 100_000)
    live, source, _ = server.before
    copies, now_source, _ = every_db(server)
    assert now_source == source
    assert without_index({key: copies[key] for key in live}) == without_index(live)
    copied = [key for key in copies if key not in live]
    assert len(copied) == report.migrated
    assert_same_value_and_expiry(server.client(1), server.client(0), copied, read=data_of)


def test_the_run_stops_as_soon_as_the_server_evicts_anything(redis_factory):
    """The application pushes the server past maxmemory mid-run, and Redis evicts: the
    migration stops at its next call rather than add to the pressure."""
    server = crowded_server(redis_factory, "allkeys-lru", free=12 * MIB)

    message, report, before_fill = stopped_run(server, evicting)

    assert "has evicted keys since the run started (evicted_keys 0 -> " in message
    assert "maxmemory-policy allkeys-lru" in message
    assert report.migrated == before_fill
    assert info(server, "stats")["evicted_keys"] > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_a_copy_that_fits_comfortably_runs_under_every_policy(redis_factory, policy):
    server = crowded_server(redis_factory, policy, free=64 * MIB)

    report = migrate_with_engine(server, batch_size=7)

    assert report.ok
    assert report.verified is True
    assert report.migrated == BIG_SESSIONS
    assert report.memory["guard"] is True
    assert info(server, "stats")["evicted_keys"] == 0
    live, source, _ = server.before
    copies, now_source, _ = every_db(server)
    assert now_source == source
    assert without_index({key: copies[key] for key in live}) == without_index(live)
    assert_same_value_and_expiry(server.client(1), server.client(0), server.big, read=data_of)
    assert zset(server.client(0)).items() >= zset(server.client(1)).items()


def test_without_maxmemory_the_result_and_the_summary_say_so(redis_server):
    seed_sessions(redis_server.client(1), 20)

    report = migrate_with_engine(redis_server)

    memory = report.as_dict()["memory"]
    assert (memory["maxmemory"], memory["limit"]) == (0, "system memory")
    assert memory["warnings"][0].startswith("no maxmemory: the memory guard judges against")
    assert "WARNING: no maxmemory" in report.summary()
    assert report.ok


# 2. Bounded work per server call ------------------------------------------------------------


def big_sessions(client, count=40):
    """Sessions of 100 KB to 2 MB of incompressible bytes (the worst case for DUMP), with the
    index, about 40 MB in all."""
    data = random.Random(4)  # noqa: S311 - reproducible test data, not a secret
    pipe = client.pipeline(transaction=False)
    keys = []
    for n in range(count):
        key = SESSION + b"large:%d" % n
        keys.append(key)
        # PXAT: Redis 6 would replicate a relative EX, and the replica count it from later.
        size = data.randint(100_000, 2_000_000)
        pipe.set(key, data.randbytes(size), pxat=int(time.time() * 1000) + 86_400_000)
        pipe.zadd(INDEX, {key: n})
    pipe.execute()
    return keys


def replica_in_step(primary, replica):
    offset = info(primary, "replication")["master_repl_offset"]
    state = info(replica, "replication")
    return state["master_link_status"] == "up" and state["slave_repl_offset"] == offset


def slow_calls(server):
    """The SLOWLOG entries since its reset, as (command words, duration in µs)."""
    entries = server.client().slowlog_get(1024)
    return [(entry["command"].split(b" "), entry["duration"]) for entry in entries]


@pytest.mark.serial
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_large_sessions_never_stall_the_server_or_its_replica(redis_factory, strategy):
    primary = redis_factory(
        "slowlog-log-slower-than 50000",
        "slowlog-max-len 1024",
        # A single call writing more than this for its replica would cut the link.
        "client-output-buffer-limit replica 32mb 16mb 60",
    )
    replica = redis_factory(f"replicaof 127.0.0.1 {primary.port}")
    keys = big_sessions(primary.client(1))
    wait_for(lambda: replica_in_step(primary, replica), "the replica's first sync")
    full_syncs = info(primary, "stats")["sync_full"]
    primary.client().slowlog_reset()

    report = migrate_with_engine(primary, strategy=strategy)
    cleaned = engine.cleanup(primary.settings(), options())

    assert (report.migrated, cleaned.deleted) == (len(keys), len(keys))
    slow = slow_calls(primary)
    print(f"\n{strategy}: calls over 50 ms: {[(words[:3], us) for words, us in slow]}")
    for words, _ in slow:
        assert words[0].upper() == b"EVALSHA", words[:3]
        assert int(words[2]) == 1, f"a call of {int(words[2])} keys took over 50 ms"
    wait_for(lambda: replica_in_step(primary, replica), "the replica to catch up")
    stats = info(primary, "stats")
    assert (stats["sync_full"], stats["sync_partial_ok"]) == (full_syncs, 0)
    assert info(primary, "replication")["connected_slaves"] == 1
    for db in (0, 1):
        mine, theirs = primary.client(db), replica.client(db)
        names = sorted(mine.scan_iter(count=1000))
        assert names == sorted(theirs.scan_iter(count=1000))
        if names:  # db 1 is empty after the clean-up
            assert_same_value_and_expiry(mine, theirs, names, read=data_of)


# 3. Absolute expiry through the AOF -----------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_copies_keep_their_absolute_expiry_when_the_server_reloads_its_aof(redis_factory, strategy):
    """What the AOF replays must be the instant the copy expires, not a TTL counted again
    from the restart (RESTORE without ABSTTL on Redis before 7.0 did that)."""
    server = redis_factory("appendonly yes", "appendfsync always")
    src, dst = server.client(1), server.client(0)
    expires_at = int(time.time() * 1000) + 3_600_000
    pipe = src.pipeline(transaction=False)
    keys = [SESSION + b"aof:%d" % n for n in range(300)]
    for n, key in enumerate(keys):
        # PXAT: the source's own AOF entry is absolute too, so only the copy could move.
        pipe.set(key, b'{"story":"draft %d"}' % n, pxat=expires_at + n)
    pipe.execute()

    assert migrate_with_engine(server, strategy=strategy, indexes=()).migrated == len(keys)
    copied = expiries(dst, keys)
    time.sleep(2.5)
    server.stop()
    server.start()

    assert expiries(dst, keys) == copied == expiries(src, keys)
    assert copied == [expires_at + n for n in range(len(keys))]


# 4. Least privilege ----------------------------------------------------------------------------


ACL_PASSWORD = "least-privilege-pw"  # noqa: S105 - a throwaway user on a throwaway server


def readme_acl_line(server):
    """The README's ACL SETUSER line for this server, with a password of the test's."""
    text = (ROOT / "README.md").read_text()
    [line] = re.findall(r"^ACL SETUSER storyart-migrator .*$", text, flags=re.M)
    if server.version < (7, 0):
        # As the README says: Redis 6.2 has no PEXPIRETIME and reads the expiry with PTTL.
        line = line.replace("+pexpiretime", "+pttl")
    return line.replace(">CHANGE-ME", f">{ACL_PASSWORD}").split()


def least_privileged(server, words):
    server.client().execute_command(*words)
    return server.settings(username="storyart-migrator", password=ACL_PASSWORD)


def every_mode(settings):
    """Every mode in the order of a rollout; each step as (name, call)."""
    migrate, cleanup = engine.migrate, engine.cleanup
    return [
        ("preflight copy", lambda: engine.preflight(settings, options(strategy="copy"))),
        ("preflight dump", lambda: engine.preflight(settings, options(strategy="dump-restore"))),
        ("dry run", lambda: migrate(settings, options(dry_run=True))),
        ("migrate copy", lambda: migrate(settings, options(strategy="copy"))),
        ("migrate dump-restore", lambda: migrate(settings, options(strategy="dump-restore"))),
        ("verify", lambda: engine.verify(settings, options())),
        ("clean-up dry run", lambda: cleanup(settings, options(dry_run=True))),
        ("clean-up", lambda: cleanup(settings, options())),
    ]


def seed_namespace(server):
    """Sessions, their index, one key of every other type, and a key outside the namespace."""
    src = server.client(1)
    sessions = seed_sessions(src, 30)
    src.hset(SESSION + b"hash", mapping={b"a": b"1"})
    src.rpush(SESSION + b"list", b"a", b"b")
    src.sadd(SESSION + b"set", b"a")
    src.zadd(SESSION + b"zset", {b"a": 1})
    src.xadd(SESSION + b"stream", {b"a": b"1"})
    src.set(b"other-app:key", b"not ours")
    return sessions


def test_the_readme_acl_line_lets_every_mode_run(redis_factory):
    server = redis_factory()
    sessions = seed_namespace(server)
    settings = least_privileged(server, readme_acl_line(server))

    results = {name: step() for name, step in every_mode(settings)}

    assert results["preflight copy"]["checks_not_run"] == []
    assert results["dry run"].migrated == len(sessions) + 5
    assert results["migrate copy"].migrated == len(sessions) + 5
    assert results["migrate copy"].verified is True
    assert results["migrate dump-restore"].skipped == len(sessions) + 5
    assert results["verify"].verified is True
    assert results["clean-up dry run"].deleted == len(sessions) + 5
    assert results["clean-up"].deleted == len(sessions) + 5
    assert results["clean-up"].indexes[0].deleted is True
    src = server.client(1)
    assert list(src.scan_iter()) == [b"other-app:key"]


def line_commands():
    """The commands the README's line grants, as its +words name them."""
    text = (ROOT / "README.md").read_text()
    words = re.search(r"^ACL SETUSER storyart-migrator .*$", text, flags=re.M).group(0).split()
    return [word[1:] for word in words if word.startswith("+")]


@pytest.mark.parametrize("command", line_commands())
def test_without_any_command_of_the_line_a_mode_names_it_and_writes_nothing(redis_factory, command):
    server = redis_factory()
    words = readme_acl_line(server)
    if f"+{command}" not in words:
        pytest.skip(f"{command} is not in this server's version of the line")
    seed_namespace(server)
    settings = least_privileged(server, [word for word in words if word != f"+{command}"])

    for name, step in every_mode(settings):
        before = (server.rdb_changes(), snapshot(server.client(0)), snapshot(server.client(1)))
        try:
            step()
        except engine.MigrationError as exc:
            message = str(exc).lower()
            assert command.replace("|", " ") in message or command in message, message
            assert (
                server.rdb_changes(),
                snapshot(server.client(0)),
                snapshot(server.client(1)),
            ) == before, f"{name} wrote before it stopped"
            return
    pytest.fail(f"every mode ran without {command}: the line grants more than it needs")


# 5. Clean-up by content ------------------------------------------------------------------------


def test_cleanup_deletes_identical_hashes_and_sets_and_keeps_any_copy_that_differs(
    redis_server,
):
    server = redis_server
    src, dst = server.client(1), server.client(0)
    identical = []
    for n in range(100):
        identical += [SESSION + b"hash:%d" % n, SESSION + b"set:%d" % n]
        src.hset(identical[-2], mapping={b"field %d" % i: b"value %d" % i for i in range(600)})
        src.sadd(identical[-1], *[b"member %d" % i for i in range(600)])
    assert migrate_with_engine(server, indexes=()).migrated == 200
    dumps_differ = sum(src.dump(key) != dst.dump(key) for key in identical)
    if server.version < (7, 2):
        # A hashtable DUMPs in bucket order, which its copy does not keep: bytes can't tell.
        assert dumps_differ > 0
    # One key of each type whose db 0 copy differs from db 1's in one detail.
    differs = {
        b"string": (lambda c, k: c.set(k, b"session v1"), lambda c, k: c.set(k, b"session v2")),
        b"hash": (
            lambda c, k: c.hset(k, mapping={b"a": b"1", b"b": b"2"}),
            lambda c, k: c.hset(k, mapping={b"a": b"1", b"b": b"3"}),
        ),
        b"list": (lambda c, k: c.rpush(k, b"a", b"b"), lambda c, k: c.rpush(k, b"b", b"a")),
        b"set": (lambda c, k: c.sadd(k, b"a", b"b"), lambda c, k: c.sadd(k, b"a", b"c")),
        b"zset": (
            lambda c, k: c.zadd(k, {b"a": 1, b"b": 2}),
            lambda c, k: c.zadd(k, {b"a": 1, b"b": 2.5}),
        ),
        b"stream": (
            lambda c, k: c.xadd(k, {b"a": b"1"}, id="1-1"),
            lambda c, k: c.xadd(k, {b"a": b"2"}, id="1-1"),
        ),
        b"type": (lambda c, k: c.set(k, b"a"), lambda c, k: c.rpush(k, b"a")),
    }
    for kind, (mine, theirs) in differs.items():
        key = SESSION + b"differs:" + kind
        mine(src, key)
        theirs(dst, key)
    kept_before = {key: data_of(src, key) for key in (SESSION + b"differs:" + k for k in differs)}
    target_before = snapshot(dst)

    report = engine.cleanup(server.settings(), options(indexes=()))

    assert (report.deleted, report.kept_different, report.failed) == (200, len(differs), 0)
    assert all(src.exists(key) == 0 for key in identical)
    assert {key: data_of(src, key) for key in kept_before} == kept_before
    assert snapshot(dst) == target_before


# 6. Idle timeout ---------------------------------------------------------------------------------


def test_a_paced_run_and_clean_up_outlast_the_servers_idle_timeout(redis_factory):
    """With 1 key a second, a call a second, 6 s of copy and merge, then 6 s of clean-up:
    the connections a call does not use would idle longer than 'timeout 1' allows. The run
    PINGs them while it waits, the WATCHed one too."""
    server = redis_factory("timeout 1")
    sessions = seed_sessions(server.client(1), 3)

    report = migrate_with_engine(server, batch_size=3, max_keys_per_second=1)
    cleaned = engine.cleanup(server.settings(), options(batch_size=3, max_keys_per_second=1))

    assert report.duration >= 5.5
    assert (report.migrated, report.verified) == (3, True)
    assert cleaned.deleted == len(sessions)
    assert cleaned.indexes[0].deleted is True
    assert server.client(1).dbsize() == 0
