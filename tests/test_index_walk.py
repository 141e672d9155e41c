"""The index walk, a page a call in score order: it finds its place again when the source
index changes before it between two calls, and reads each entry once, none skipped, even where
many entries share a score."""

from __future__ import annotations

import pytest
from helpers import INDEX, PATTERN, engine, migrate_with_engine, seed_sessions, zset

PAGE = 10
# 100 entries, seven to a score: equal scores run across the pages' edges, ordered by member.
ENTRIES = {b"storyart:session:%03d" % n: n // 7 for n in range(100)}


class ChangeBeforePage(engine.Hooks):
    """Before page ``at`` of the index (counted from 1), ``change(source, seen)``, ``seen``
    being the entries the pages before have read, in order."""

    def __init__(self, source, at, change):
        self.source, self.at, self.change = source, at, change
        self.pages = 0
        self.read = []

    def before_index_page(self, index):
        self.pages += 1
        if self.pages == self.at:
            self.change(self.source, list(self.read))

    def after_index_page(self, index, members):
        self.read.extend(members)


def remove_the_first_entry(source, seen):
    """An entry before the walk's place leaves: every rank after it moves down one."""
    source.zrem(INDEX, seen[0])


def remove_the_last_entry_seen(source, seen):
    """The entry the walk's place names leaves: the walk goes on after its score and member."""
    source.zrem(INDEX, seen[-1])


def add_entries_before_the_place(source, seen):
    """Entries arrive before the walk's place: every rank after them moves up."""
    source.zadd(INDEX, {b"storyart:session:early-%d" % n: -1 for n in range(3)})


@pytest.mark.parametrize(
    "change",
    [remove_the_first_entry, remove_the_last_entry_seen, add_entries_before_the_place],
)
@pytest.mark.parametrize("at", [2, 5])
def test_a_change_before_the_walks_place_neither_skips_nor_repeats_an_entry(
    redis_server, change, at
):
    source, target = redis_server.client(1), redis_server.client(0)
    source.zadd(INDEX, ENTRIES)
    hooks = ChangeBeforePage(source, at, change)

    report = migrate_with_engine(redis_server, hooks=hooks, batch_size=PAGE, patterns=(PATTERN,))

    [index] = report.indexes
    # Each entry there from the start was read once, in score order, and merged with its score.
    assert hooks.read == sorted(ENTRIES, key=lambda member: (ENTRIES[member], member))
    assert index.found == index.added == len(ENTRIES)
    assert zset(target) == {member: float(score) for member, score in ENTRIES.items()}
    assert report.verified is True


def test_a_page_holds_its_count_in_score_order_and_the_last_needs_no_call_of_its_own(
    redis_server,
):
    source, target = redis_server.client(1), redis_server.client(0)
    names = seed_sessions(source, 3 * PAGE)
    hooks = ChangeBeforePage(source, 0, None)

    report = migrate_with_engine(redis_server, hooks=hooks, batch_size=PAGE)

    assert hooks.pages == 3
    assert hooks.read == names
    assert report.indexes[0].added == 3 * PAGE
    assert zset(target) == zset(source)
