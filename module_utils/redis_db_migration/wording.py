"""Numbers and checks in the words of the one-line summaries."""

from __future__ import annotations

from .keys import literal_prefix
from .shown import shown


def mib(size):
    return f"{size / 1048576:.1f} MiB"


def memory_line(memory):
    """The memory check in a few words."""
    if "needed_bytes" not in memory:
        return "memory guard OFF"
    line = "" if memory["guard"] else "memory guard OFF; "
    line += (
        f"copy needs about {mib(memory['needed_bytes'])} ({memory['keys_to_copy']} keys, "
        f"{memory['estimate']}), "
    )
    if memory["available_bytes"] is None:
        line += "the server's memory limit is unknown"
    else:
        line += (
            f"{mib(max(memory['available_bytes'], 0))} free under "
            f"{'maxmemory' if memory['limit'] == 'maxmemory' else 'the machine memory'} less "
            f"{memory['headroom_percent']}% (policy {memory['policy']})"
        )
    return "; ".join([line, *(f"WARNING: {text}" for text in memory["warnings"])])


def duration(seconds):
    """A duration in the unit an operator reads it in."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_line(plan):
    """What a run will go through, and how long that takes at its rate (runs.pace_plan): the
    announcement of a long, paced run."""
    if plan["matching_keys"] is None:
        return ""
    line = (
        f"; {plan['matching_keys']} matching keys and {plan['index_entries']} index entries to "
        f"go through{', twice with full_verify' if plan['passes'] > 1 else ''}"
    )
    rate, seconds = plan["max_keys_per_second"], plan["seconds"]
    if not rate:
        return f"{line}, no rate limit (max_keys_per_second 0)"
    when = "under 1 s" if seconds < 1 else f"about {duration(seconds)}"
    return f"{line}: {when} at max_keys_per_second {rate}"


def unnarrowed_patterns(patterns, db):
    """A warning for each pattern that starts with a glob character: SCAN cannot narrow it to
    one application's keys, so it may take in any key of the db."""
    return [
        f"pattern '{shown(pattern)}' has no literal prefix: it matches keys anywhere in db {db}, "
        f"other applications' too; begin it with their prefix, e.g. 'app:session:*'"
        for pattern in patterns
        if not literal_prefix(pattern)
    ]


def not_checked(checks):
    """The checks that did not run, as the end of a summary line."""
    return "".join(f"; NOT CHECKED: {check}" for check in checks)


def replication_line(watch):
    """The primary and its replicas, as preflight announces them."""
    via = f" (Sentinel service '{watch.sentinel.name}')" if watch.sentinel else ""
    count = len(watch.replicas)
    line = f"primary{via}, {count} replica{'s' * (count != 1)} online"
    if watch.waits:
        line += f", writes acknowledged by {watch.min_replicas} (replica_timeout "
        line += f"{watch.timeout_ms / 1000:g} s{', WAITAOF' if watch.wait_aof else ''})"
    return line
