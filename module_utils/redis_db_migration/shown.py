"""Key names as the operator is shown them, in the diff, messages, samples, errors, reports and
warnings. A key name is whatever bytes an application chose: printed raw, a newline forges a
line of the diff, an escape sequence clears or retitles the terminal, a carriage return
overwrites a line. Escaping is for showing only: the engine works on the names' bytes.
"""

from __future__ import annotations

import unicodedata

# Characters shown of one name, escapes included; the rest is cut, and counted in bytes.
SHOWN_CHARS = 200
# Ends a cut name. A name that holds it shows it escaped, so the mark cannot be forged.
CUT = "\u2026"

# Unicode categories that move the cursor, end a line, or hide or reorder text: controls (C0,
# DEL, and C1 with its CSI and OSC), format characters (bidi overrides and isolates, zero-width
# characters), surrogates, and the line and paragraph separators.
HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}
NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", CUT: "\\u2026"}
# Where Python's surrogateescape puts a byte that is not UTF-8: U+DC80..U+DCFF.
RAW_BYTES = range(0xDC80, 0xDD00)


def shown(name, limit=SHOWN_CHARS):
    """``name`` (bytes or str) as text that is safe to print and tells every name apart.

    A literal backslash shows as ``\\\\``; a byte that is not UTF-8 as ``\\xNN``; a control
    character as ``\\n``, ``\\r``, ``\\t``, ``\\xNN`` (ASCII) or ``\\uNNNN``; so
    ``b"\\xff"`` and the four characters ``\\xff`` look different. After ``limit`` characters
    the name is cut, and the cut says how many bytes it left out: ``…(+99,800 bytes)``.
    """
    text = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else str(name)
    pieces, length = [], 0
    for position, char in enumerate(text):
        piece = escaped(char)
        if length + len(piece) > limit:
            return "".join(pieces) + f"{CUT}(+{byte_count(text[position:]):,} bytes)"
        pieces.append(piece)
        length += len(piece)
    return "".join(pieces)


def escaped(char):
    """One character as it is shown."""
    if char in NAMED:
        return NAMED[char]
    code = ord(char)
    if code in RAW_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(char) not in HIDDEN:
        return char
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def byte_count(text):
    """The bytes ``text`` stands for, a byte that is not UTF-8 counting one."""
    try:
        return len(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return len(text.encode("utf-8", "surrogatepass"))
