"""Pacing: keep a run under max_keys_per_second, and its connections alive while it waits."""

from __future__ import annotations

import time

# The pacer sleeps in slices this long and PINGs its connections between them, so a server
# 'timeout' (at least 1 s) never closes them as idle.
KEEPALIVE_SECONDS = 0.5


class Pacer:
    """Counts what a run has done since start() and makes it wait when it runs ahead."""

    def __init__(self, rate):
        self.rate = rate
        self.started = time.monotonic()
        self.done = 0

    def start(self):
        self.started = time.monotonic()
        self.done = 0

    def wait(self, done, connections):
        """Count ``done`` more keys or index entries, and sleep while the run is ahead of the
        rate, PINGing ``connections`` between slices."""
        if not self.rate:
            return
        self.done += done
        while True:
            ahead = self.done / self.rate - (time.monotonic() - self.started)
            if ahead <= 0:
                return
            time.sleep(min(ahead, KEEPALIVE_SECONDS))
            for connection in connections:
                connection.ping()
