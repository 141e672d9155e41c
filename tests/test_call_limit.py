"""A call that writes stops itself at its time limit (sizing.CALL_LIMIT_SECONDS) and leaves the
rest to the next call: whatever the sizing asked of it, no call blocks the server much past
the limit, and every key and index entry still moves exactly once."""

from __future__ import annotations

import pytest
from helpers import (
    assert_same_value_and_expiry,
    engine,
    migrate_with_engine,
    seed_sessions,
    zset,
)
from redis_db_migration import sizing

SESSIONS = 3000


class Calls(engine.Hooks):
    """The keys each copy call handled and the entries each index page merged."""

    def __init__(self):
        self.keys, self.pages = [], []

    def after_batch(self, keys):
        self.keys.append(len(keys))

    def after_index_page(self, index, members):
        self.pages.append(len(members))


@pytest.mark.parametrize("strategy", ["copy", "dump-restore"])
def test_past_its_time_limit_a_call_leaves_the_rest_to_the_next(
    redis_server, monkeypatch, strategy
):
    if strategy == "copy" and redis_server.version < (6, 2):
        pytest.skip("COPY came with Redis 6.2")
    source, target = redis_server.client(1), redis_server.client(0)
    names = seed_sessions(source, SESSIONS)
    # A limit every call passes: the copy stops at its first check (every 64 keys), the merge
    # after its first 1,000 entries.
    monkeypatch.setattr(sizing, "CALL_LIMIT_SECONDS", 0)
    calls = Calls()

    report = migrate_with_engine(redis_server, hooks=calls, batch_size=SESSIONS, strategy=strategy)

    assert report.ok
    assert report.verified is True
    assert (report.found, report.migrated) == (SESSIONS, SESSIONS)
    assert sum(calls.keys) == SESSIONS
    assert max(calls.keys) == 63
    [index] = report.indexes
    assert (index.found, index.added) == (SESSIONS, SESSIONS)
    assert calls.pages == [1000, 1000, 1000]
    assert_same_value_and_expiry(source, target, names)
    assert zset(target) == zset(source)
    assert target.dbsize() == SESSIONS + 1
