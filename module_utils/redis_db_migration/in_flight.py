"""Calls in flight: the deadline each call that writes carries on the server's clock, and what a
call whose reply was lost may have done.

A request can outlive the run that sent it: held in a stalled network or proxy, TCP delivers it
once the path recovers, though redis-py gave up waiting long before (socket_timeout) and the
run has reported. So each call that writes carries the last moment it may start, on the
server's own clock (this host's clock may be set differently), and a call that reaches the
server later returns EXPIRED having changed nothing (lua.LUA_DEADLINE). That moment is never
after the caller gives up on the call:

* The server's clock is read with TIME. Its reply was made at some moment between the request
  leaving and the reply arriving: taking it as made on arrival can only make deadlines earlier.
* redis-py gives up on a call no sooner than socket_timeout after it starts sending it: each
  read of a reply waits socket_timeout afresh, so a WAIT ahead of the call in the same round
  trip only makes that later.
* The two clocks may tick at different rates, by at most what NTP lets a clock slew (500 ppm):
  DRIFT allows twice that, and TIME is read again every RESYNC_SECONDS. Only a clock set back
  by hand, or stepped back by NTP, on the server can move a deadline later.

A call that started before its deadline may still be running when its caller gives up: what it
may have written is its InFlight, which the report keeps as ``unknown``.
"""

from __future__ import annotations

import time
from collections import namedtuple

DRIFT = 1e-3
RESYNC_SECONDS = 60.0


class ServerClock:
    """The server's clock, read with TIME on ``client``, to give calls their deadline.
    ``reading``: the reply of a TIME just received in another round trip, which saves one."""

    def __init__(self, client, socket_timeout, reading=None):
        self.client = client
        self.window = socket_timeout
        self._read(reading)

    def _read(self, reading=None):
        seconds, micros = reading or self.client.time()
        self.read_at = time.monotonic()
        self.origin_ms = seconds * 1000 + micros // 1000

    def not_after(self):
        """The deadline of a call about to be sent: ms on the server's clock. The script rounds
        the server's time down to the ms, so the deadline is 1 ms earlier still."""
        if time.monotonic() - self.read_at > RESYNC_SECONDS:
            self._read()
        given_up = time.monotonic() - self.read_at + self.window
        return self.origin_ms + int(given_up * (1 - DRIFT) * 1000) - 1


class InFlight(namedtuple("InFlight", "keys index_entries what")):
    """What one call that writes may do, counted once its reply is read: up to ``keys`` keys
    and ``index_entries`` index entries; ``what`` in words, e.g. "may have copied up to 100
    more keys (its batch)"."""

    def as_dict(self):
        return dict(keys=self.keys, index_entries=self.index_entries, call=self.what)


# A report's ``unknown`` when every reply arrived.
NOTHING_UNKNOWN = dict(keys=0, index_entries=0, call=None)
