"""Pacing: keep a run at max_keys_per_second, evenly, and its connections alive while it waits.

The rate counts every key and index entry the run goes through, in each pass: the copy of the
keys, the merge of the index entries, and with full_verify their second reading. A paced run
of N of them takes N / rate seconds, which is what preflight announces (``paced_seconds``).
"""

from __future__ import annotations

import time

# At a rate, one call takes at most this many seconds' worth of keys: ten small calls a second
# rather than a full batch and then a long sleep. The application then meets a short call at a
# steady pace instead of a batch's burst, and replicas an even stream; ten round trips a
# second cost the server nothing.
CALL_SECONDS = 0.1
# While it waits, the pacer PINGs its connections once this long has passed since it last did,
# so a server 'timeout' (at least 1 s) never closes them as idle: at most twice a second, not
# at each of the short waits between small calls.
KEEPALIVE_SECONDS = 0.5


def paced_seconds(items, rate):
    """Seconds a run of ``items`` keys and index entries takes at ``rate`` (0: no limit)."""
    return items / rate if rate else 0.0


class Pacer:
    """Counts what a run has done since start() and makes it wait when it runs ahead: the
    call after ``done`` keys starts ``done / rate`` seconds after the start, never earlier.
    ``clock`` and ``sleep`` are time's, or a test's."""

    def __init__(self, rate, clock=time.monotonic, sleep=time.sleep):
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.started = self.pinged = clock()
        self.done = 0

    def start(self):
        self.started = self.pinged = self.clock()
        self.done = 0

    def call_size(self, batch_size):
        """Keys one call may handle: ``batch_size``, or fewer at a low rate (CALL_SECONDS)."""
        if not self.rate:
            return batch_size
        return max(1, min(batch_size, int(self.rate * CALL_SECONDS)))

    def wait(self, done, connections):
        """Count ``done`` more keys or index entries, and sleep while the run is ahead of the
        rate, PINGing ``connections`` every KEEPALIVE_SECONDS of it. The schedule is absolute
        (from start()): the time of the calls and of the PINGs is part of it, never added."""
        self.done += done
        if not self.rate:
            return
        due = self.started + paced_seconds(self.done, self.rate)
        while True:
            now = self.clock()
            if now >= due:
                return
            if now >= self.pinged + KEEPALIVE_SECONDS:
                for connection in connections:
                    connection.ping()
                self.pinged = self.clock()
                continue
            self.sleep(min(due, self.pinged + KEEPALIVE_SECONDS) - now)

    def achieved(self, seconds):
        """What the run went through and how fast, against what was asked."""
        return dict(
            max_keys_per_second=self.rate,
            keys_and_entries=self.done,
            per_second=round(self.done / seconds) if seconds > 0 else 0,
        )
