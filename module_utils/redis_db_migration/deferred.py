"""Reads that wait for the next round trip: what a call wrote is read back in the pipeline of
the call after it (Session.write), or, when none follows, of the run's last round trip
(Session.settle); the clean-up's next SCAN page comes the same way. Over a long link a read of
its own would cost a round trip per call.

The reads run on the writer's connection, right after the next call: on another db than the
writer's, between a SELECT of that db and a SELECT back. Each read's replies go to its
``then`` before the call's own reply is looked at, so what it finds is counted even when that
call fails.
"""

from __future__ import annotations

from collections import namedtuple

Read = namedtuple("Read", "db commands then")


class DeferredReads:
    """The reads waiting for the next round trip of a writer on ``home_db``."""

    def __init__(self, home_db):
        self.home_db = home_db
        self.waiting = []

    def __bool__(self):
        return bool(self.waiting)

    def add(self, db, commands, then):
        """Read ``commands`` (each a tuple of words) on ``db`` in the next round trip, and call
        ``then(replies)`` with their replies once it is back."""
        self.waiting.append(Read(db, list(commands), then))

    def queue(self, pipe):
        """Queue every waiting read in ``pipe``; returns what answer() needs. Once queued, a
        read no longer waits: a round trip that fails leaves it unread, as a round trip of its
        own would."""
        queued, self.waiting = self.waiting, []
        for read in queued:
            elsewhere = read.db != self.home_db
            if elsewhere:
                pipe.execute_command("SELECT", read.db)
            for command in read.commands:
                pipe.execute_command(*command)
            if elsewhere:
                pipe.execute_command("SELECT", self.home_db)
        return queued

    def answer(self, queued, replies):
        """Hand each read of ``queued`` its replies, which ``replies`` holds in order. The first
        error among a read's replies is raised."""
        at = 0
        for read in queued:
            elsewhere = read.db != self.home_db
            count = len(read.commands) + 2 * elsewhere
            own = replies[at : at + count]
            at += count
            for reply in own:
                if isinstance(reply, Exception):
                    raise reply
            read.then(own[1:-1] if elsewhere else own)
