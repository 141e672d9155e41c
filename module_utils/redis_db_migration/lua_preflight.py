"""The script of the preflight: the memory estimate, with the builder of its arguments and
the type of its reply. (What the user may run: probe.py.)"""

from __future__ import annotations

from typing import NamedTuple

from .lua import LUA_HEADER

# KEYS: the index names, which are never counted as keys. Its arguments: estimate_arguments().
# One SCAN page of the source for the memory estimate: how many keys match, how many of those
# the target lacks, and the bytes (MEMORY USAGE) these take. Returns an EstimateReply.
ESTIMATE_SCRIPT = (
    LUA_HEADER
    + """
local skip = {}
for _, name in ipairs(KEYS) do skip[name] = true end
local src, dst, cursor, pattern, count = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call('SELECT', src)
local page = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)
local names, sizes = {}, {}
for _, key in ipairs(page[2]) do
  local bytes = not skip[key] and redis.call('MEMORY', 'USAGE', key)
  if bytes then
    names[#names + 1] = key
    sizes[#names] = bytes
  end
end
redis.call('SELECT', dst)
local to_copy, total = 0, 0
for i, key in ipairs(names) do
  if redis.call('EXISTS', key) == 0 then
    to_copy = to_copy + 1
    total = total + sizes[i] + KEY_OVERHEAD
  end
end
return {page[1], #names, to_copy, total, took_us()}
"""
)


def estimate_arguments(source_db, target_db, *, cursor, pattern, count):
    """The estimate script's ARGV. It writes nothing, so it has no deadline."""
    return [
        source_db,  # ARGV[1]
        target_db,  # ARGV[2]
        cursor,  # ARGV[3]: the SCAN cursor
        pattern,  # ARGV[4]
        count,  # ARGV[5]: SCAN COUNT
    ]


class EstimateReply(NamedTuple):
    """What a call of the estimate script returns: one SCAN page's share of the estimate."""

    cursor: bytes  # where the next page starts, b'0' once the walk is over
    matching: int  # keys matching the pattern
    to_copy: int  # of these, the keys the target lacks
    bytes_to_copy: int  # their MEMORY USAGE, with KEY_OVERHEAD each
    took_us: int  # the call's own server time, 0 when unknown (lua.LUA_HEADER)

    @classmethod
    def from_reply(cls, raw):
        return cls(*raw)

    @property
    def counts(self):
        """What the estimate adds up over the pages."""
        return self.matching, self.to_copy, self.bytes_to_copy
