"""Key names: matched as SCAN MATCH matches them, and taken in batches (shown.py shows them)."""

from __future__ import annotations

import re


def display(name):
    """What the server replied (INFO fields, TYPE, an error) as text, to compare and quote.
    Never for a key name, which may hold anything: shown() makes one safe to print."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    return str(name)


def literal_prefix(pattern):
    """The start of a SCAN MATCH ``pattern`` that only its own bytes match: all of it before
    the first glob character (``*``, ``?``, ``[`` or the escaping backslash)."""
    return re.split(rb"[*?\[\\]", pattern, maxsplit=1)[0]


def as_bytes(name):
    return name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogateescape")


def glob_matcher(pattern):
    """A predicate telling whether Redis' SCAN MATCH ``pattern`` matches a key name.

    It is used only to skip a key that an earlier pattern of the same run has handled, so it
    must never claim a match Redis would not make: that key would never be migrated. Where
    Redis differs by platform (range bounds of 0x80 and above compare as signed chars on x86,
    unsigned on ARM), it claims a match only when both readings agree. Missing a match is
    harmless: the key is then handled twice, and the second time counts as skipped.
    """
    regex = re.compile(b"".join(_glob_parts(pattern)), re.DOTALL)
    # SCAN matches the empty key name only with the pattern '*', which it does not even check.
    return lambda key: pattern == b"*" if key == b"" else regex.fullmatch(key) is not None


def _glob_parts(pattern):
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i : i + 1]
        if char == b"*":
            yield b".*"
        elif char == b"?":
            yield b"."
        elif char == b"\\" and i + 1 < n:
            i += 1
            yield re.escape(pattern[i : i + 1])
        elif char == b"[":
            i, char_class = _glob_class(pattern, i + 1)
            yield char_class
        else:
            yield re.escape(char)
        i += 1


def _glob_class(pattern, i):
    """Translate the ``[...]`` class starting after its ``[``; returns (index of ``]``, regex)."""
    n = len(pattern)
    negate = pattern[i : i + 1] == b"^"
    if negate:
        i += 1
    members = set()
    while i < n and pattern[i : i + 1] != b"]":
        if pattern[i : i + 1] == b"\\" and i + 1 < n:
            i += 1
            members.add(pattern[i])
        elif i + 2 < n and pattern[i + 1 : i + 2] == b"-":
            members |= _glob_range(pattern[i], pattern[i + 2], widest=negate)
            i += 2
        else:
            members.add(pattern[i])
        i += 1
    if not members:
        return i, b"." if negate else b"(?!)"
    body = b"".join(re.escape(bytes([byte])) for byte in sorted(members))
    return i, b"[" + (b"^" if negate else b"") + body + b"]"


def _glob_range(first, last, widest):
    """Bytes in a class range under both signed and unsigned char readings (see glob_matcher).

    A negated class must exclude every byte either reading holds, so it takes the union.
    """

    def signed(byte):
        return byte - 256 if byte > 127 else byte

    low, high = sorted((first, last))
    unsigned = set(range(low, high + 1))
    low, high = sorted((signed(first), signed(last)))
    as_signed = {byte for byte in range(256) if low <= signed(byte) <= high}
    return unsigned | as_signed if widest else unsigned & as_signed


def each_pattern(patterns):
    """Each pattern with ``matched_before(key)``: whether a pattern before it matches the key,
    which the run has then handled already."""
    earlier = []
    for pattern in patterns:
        yield pattern, lambda key, before=tuple(earlier): any(match(key) for match in before)
        earlier.append(glob_matcher(pattern))


def scan_count(batch_size):
    """SCAN COUNT for a walk that takes keys ``batch_size`` at a time: never under SCAN's own
    default of 10, so that a small batch does not make the walk take many more round trips."""
    return max(batch_size, 10)


def scanned_share(cursor):
    """The share of a db's keys a SCAN has gone through when it returns ``cursor``.

    SCAN walks the hash table in reverse-binary order of its buckets, so the cursor's bits read
    backwards are the part of the table behind it, whatever the table's size.
    """
    cursor = int(cursor)
    return int(f"{cursor:064b}"[::-1], 2) / 2**64 if cursor else 1.0
