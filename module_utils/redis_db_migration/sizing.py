"""How many keys (or index entries) each server call takes: as many as take about TARGET_SECONDS
of the server's time, measured by the calls themselves (lua.LUA_HEADER), not a fixed count.

Over a long link each call costs a round trip whatever it holds, so calls as large as the
server can take without stalling make the fewest; on a busy or slow server, or with large
values, the same rule makes them smaller. TARGET_SECONDS stays well under the 50 ms at which
replicas, Sentinel and clients start to notice (README, Performance): a call grows at most
twofold from one to the next, and shrinks at once to what its measure says fits.
"""

from __future__ import annotations

# The server time one call aims at.
TARGET_SECONDS = 0.02
# Keys the first call of each kind takes, before any measure: what a call of 1 KB sessions
# does in about 10 ms (README, Performance).
FIRST_CALL = 1000
# The time past which a call that writes stops itself and leaves the rest to the next one: the
# copy checks it every 64 keys, the index merge after every 1,000 entries. A call can take
# twice as long as the one before it of the same size (the server's housekeeping, a busy
# machine): measured at 1M sessions on 2 cores, calls sized for 20 ms took up to 43 ms. This
# limit, not the sizing, is what keeps each call well under the 50 ms.
CALL_LIMIT_SECONDS = 0.025


def limit_us():
    """CALL_LIMIT_SECONDS in microseconds, as the scripts take it."""
    return int(CALL_LIMIT_SECONDS * 1e6)


class CallSize:
    """The size of the next call of one kind (copy, plan, index page, clean-up...), at most
    ``most``, ``first`` before any measure."""

    def __init__(self, most, first=FIRST_CALL):
        self.most = most
        self.keys = min(most, first)
        self.cost = None  # server microseconds a key, as the calls so far measured it

    def took(self, asked, micros, full=True):
        """A call asked for ``asked`` keys took ``micros`` of server time (0: unknown).
        ``full``: it handled all it asked for; a call cut short (at its byte budget, at the
        end of a walk) says how long fewer keys take, so it may shrink the size but not grow
        it."""
        if micros <= 0 or asked <= 0:
            return
        cost = micros / asked
        # Calls of the same size vary by a quarter from one to the next (the server's own
        # housekeeping): half of each measure counts, but a call twice as slow counts whole.
        if self.cost is not None and cost < 2 * self.cost:
            cost = (cost + self.cost) / 2
        self.cost = cost
        fitting = int(TARGET_SECONDS * 1e6 / cost)
        if fitting < self.keys:
            self.keys = max(1, fitting)
        elif full:
            self.keys = min(self.most, 2 * asked, fitting)
