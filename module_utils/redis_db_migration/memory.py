"""The memory guard: the copy never makes Redis evict a key or refuse the application's writes.

Before the first write it estimates what the copy adds and refuses what will not fit; the
copy and index scripts then check, before each write, that it still fits and that the
server has evicted nothing since the run started (lua.LUA_MEMORY_GUARD), and the run stops
at once when either fails.
"""

from __future__ import annotations

from .errors import GuardStop, MigrationError
from .keys import display, scan_count, scanned_share
from .lua import EVICTED
from .lua_preflight import EstimateReply, estimate_arguments
from .wording import mib

# The estimate reads SCAN pages of each pattern until it has seen this many matching keys.
ESTIMATE_SAMPLE = 10000
# The guard's arguments to the scripts when it is off.
GUARD_OFF = ("0", "0", "0", "0")


class MemoryGuard:
    """The memory guard of one session; ``script_args`` arms the scripts once check() passed."""

    def __init__(self, session):
        self.session = session
        self.script_args = GUARD_OFF

    def ceiling(self):
        """The used_memory the run must stay under, what it comes from, and a warning.

        With maxmemory: maxmemory less the headroom. Without: what the machine has free, less
        the headroom of its memory; Redis cannot see a container's limit, hence the warning.
        """
        facts, headroom = self.session.facts, self.session.options.memory_headroom
        if facts.maxmemory:
            return facts.maxmemory * (100 - headroom) // 100, "maxmemory", None
        if not (facts.total_system_memory and facts.used_memory_rss):
            return None, None, None
        free = facts.total_system_memory - facts.used_memory_rss
        ceiling = facts.used_memory + free - facts.total_system_memory * headroom // 100
        warning = (
            f"no maxmemory: the memory guard judges against the machine's free memory "
            f"({mib(free)}), and Redis cannot see a container's limit; set maxmemory"
        )
        return ceiling, "system memory", warning

    def estimate(self):
        """The guard's view before the first write: the limit, what Redis uses, and what the
        copy will add.

        The estimate reads, on the server, SCAN pages of each pattern until it has seen
        ESTIMATE_SAMPLE matching keys: the keys the target lacks and their MEMORY USAGE. The
        share of the db those pages cover (read from SCAN's cursor) scales them up, so what
        else the db holds cannot skew it; a db with fewer matching keys is read whole, and the
        estimate is exact. Keys matched by two patterns are counted twice: an upper bound.
        """
        facts, options = self.session.facts, self.session.options
        ceiling, limit, warning = self.ceiling()
        estimate = self._estimate_copy()
        available = None if ceiling is None else ceiling - facts.used_memory
        needed = estimate["needed_bytes"]
        return dict(
            guard=options.memory_check,
            policy=display(facts.maxmemory_policy) if facts.maxmemory_policy else None,
            maxmemory=facts.maxmemory,
            limit=limit,
            headroom_percent=options.memory_headroom,
            ceiling_bytes=ceiling,
            used_memory=facts.used_memory,
            available_bytes=available,
            evicted_keys=facts.evicted_keys,
            **estimate,
            # Nothing to copy always fits: a rerun must work on a full server.
            fits=None if available is None else needed == 0 or needed <= available,
            warnings=[warning] if warning else [],
        )

    def _estimate_copy(self):
        session = self.session
        totals, exact = [0.0, 0.0, 0.0], True
        options = session.options
        # Each key costs the estimate a MEMORY USAGE and an EXISTS, whatever its value (a
        # large collection's is sampled), each a lookup that misses the CPU's caches in a large
        # db: at 3M sessions on 2 cores, 7 µs a key, so a first call of half the sample took
        # 41 ms. The first call takes what any first call does, the next what its time says.
        size = session.call_size("estimate")
        for pattern in session.patterns:
            cursor, seen = 0, [0, 0, 0]
            while True:
                count = scan_count(size.keys)
                args = estimate_arguments(
                    options.source_db,
                    options.target_db,
                    cursor=cursor,
                    pattern=pattern,
                    count=count,
                )
                reply = EstimateReply.from_reply(
                    session.scripts.estimate(keys=session.index_names, args=args)
                )
                size.took(count, reply.took_us)
                cursor = reply.cursor
                seen = [total + part for total, part in zip(seen, reply.counts)]
                if int(cursor) == 0 or seen[0] >= ESTIMATE_SAMPLE:
                    break
            share = scanned_share(cursor)
            exact = exact and int(cursor) == 0
            totals = [total + part / share for total, part in zip(totals, seen)]
        matching, to_copy, needed = totals
        # The index entries come with the keys they index: the same share is still to add.
        if matching:
            index_bytes = sum(used for _entries, used in session.index_sizes.values())
            needed += index_bytes * to_copy / matching
        return dict(
            estimate="exact" if exact else "sampled",
            matching_keys=round(matching),
            keys_to_copy=round(to_copy),
            needed_bytes=round(needed),
        )

    def check(self, always_estimate=False):
        """Preflight's memory check; arms the guard for the run. Refuses a copy that will not
        fit, or a server whose limit it cannot know. With memory_check off it refuses nothing
        and skips the estimate, unless ``always_estimate`` and the server allows it."""
        session = self.session
        if not session.options.memory_check:
            if always_estimate and not {"INFO", "MEMORY USAGE"} & session.unavailable:
                return session.call(self.estimate, "estimating memory")
            return dict(guard=False)
        memory = session.call(self.estimate, "estimating memory")
        endpoint = session.settings.endpoint
        if memory["ceiling_bytes"] is None:
            raise MigrationError(
                f"Cannot tell how much memory Redis at {endpoint} may use: it reports neither "
                f"maxmemory nor the machine's memory. Set maxmemory, or set memory_check: false "
                f"to run without the memory guard."
            )
        if memory["fits"] is False:
            raise MigrationError(
                f"Not enough memory on Redis at {endpoint} to copy the keys: about "
                f"{mib(memory['needed_bytes'])} are needed ({memory['keys_to_copy']} keys not "
                f"in db {session.options.target_db} yet, {memory['estimate']}) but "
                f"{mib(max(memory['available_bytes'], 0))} are free under {self._limit_text()}. "
                f"Nothing was written. Free memory or raise maxmemory; if you know it fits, set "
                f"memory_check: false."
            )
        without_maxmemory = memory["ceiling_bytes"] if memory["limit"] == "system memory" else 0
        self.script_args = (
            "1",
            str(session.options.memory_headroom),
            str(without_maxmemory),
            str(session.facts.evicted_keys),
        )
        return memory

    def _limit_text(self):
        facts, headroom = self.session.facts, self.session.options.memory_headroom
        if facts.maxmemory:
            return (
                f"maxmemory {mib(facts.maxmemory)} with {headroom}% of it kept free (policy "
                f"{display(facts.maxmemory_policy)})"
            )
        return f"the machine's free memory with {headroom}% of its memory kept free"

    def stop(self, ended, need, used, ceiling, evicted):
        """The GuardStop for a script call that ended MEMORY or EVICTED."""
        endpoint = self.session.settings.endpoint
        facts = self.session.facts
        if ended == EVICTED:
            return GuardStop(
                f"Stopped: Redis at {endpoint} has evicted keys since the run started "
                f"(evicted_keys {facts.evicted_keys} -> {display(evicted)}, maxmemory-policy "
                f"{display(facts.maxmemory_policy)}). It is at its memory limit, and each key "
                f"copied now would make it evict more. Free memory or raise maxmemory"
            )
        return GuardStop(
            f"Stopped by the memory guard before the next write: it needs about {mib(need)} "
            f"and only {mib(max(ceiling - used, 0))} are left on Redis at {endpoint} under "
            f"{self._limit_text()}, so the write could make Redis evict keys or refuse the "
            f"application's writes. Nothing was evicted. Free memory or raise maxmemory"
        )
