"""Numbers and checks in the words of the one-line summaries."""

from __future__ import annotations


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


def not_checked(checks):
    """The checks that did not run, as the end of a summary line."""
    return "".join(f"; NOT CHECKED: {check}" for check in checks)
