"""Key names that attack the operator's terminal, through every output of a run.

A key name is whatever bytes an application chose. These tests seed db 1 with names that, if
printed raw, forge a diff line, clear the screen, retitle the terminal, overwrite a line, flip
text right to left, fill the screen, or pass for one another; then they run the module as an
operator does (ansible-playbook, --check --diff, then for real, then the clean-up) and read
every output: nothing reaches the terminal raw, each name shows one way, and the keys
themselves move byte for byte.
"""

from __future__ import annotations

import pytest
from helpers import (
    INDEX,
    SESSION,
    call_module,
    run_tasks,
    snapshot,
    tcp_args,
    zset,
)

pytestmark = pytest.mark.ansible

# Each hostile name, and how it must be shown: written out here, not computed by the engine.
HOSTILE = {
    SESSION + b"a\n+ storyart:session:forged": r"storyart:session:a\n+ storyart:session:forged",
    SESSION + b"\x1b[2J\x1b[31mred": r"storyart:session:\x1b[2J\x1b[31mred",
    SESSION + b"\x1b]0;pwned\x07": r"storyart:session:\x1b]0;pwned\x07",
    SESSION + b"visible\rhidden": r"storyart:session:visible\rhidden",
    SESSION + "\u202egnp.exe".encode(): r"storyart:session:\u202egnp.exe",
    SESSION + "\u009b2J".encode(): r"storyart:session:\u009b2J",
    # Bytes that are not UTF-8, and the same characters written with a literal backslash.
    SESSION + b"\xff\xfe": r"storyart:session:\xff\xfe",
    SESSION + b"\\xff\\xfe": r"storyart:session:\\xff\\xfe",
    SESSION + b"\\x41": r"storyart:session:\\x41",
    # 17 + 100,000 bytes: the first 200 shown, the rest counted.
    SESSION + b"L" * 100_000: "storyart:session:" + "L" * 183 + "\u2026(+99,817 bytes)",
}
LONG = SESSION + b"L" * 100_000
MIG_PASSWORD = "mig-pass"  # noqa: S105 - a test server's password

# What a terminal acts on: C0 but the newline that ends a printed line, DEL, C1, and the
# characters that reorder or hide text.
TERMINAL_CONTROLS = {chr(c) for c in (*range(0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0))}
TERMINAL_CONTROLS |= {chr(c) for c in (*range(0x200B, 0x2010), *range(0x202A, 0x202F))}
TERMINAL_CONTROLS |= {chr(c) for c in range(0x2066, 0x206A)}


def seed_hostile(client):
    """Every hostile name as a session with a value and a TTL, and in the index."""
    for n, name in enumerate(HOSTILE):
        client.set(name, b"value of %d \x1b[2J\n" % n, px=3_600_000 + n)
    client.zadd(INDEX, {name: n for n, name in enumerate(HOSTILE)})


def raw_controls(text):
    return sorted({repr(char) for char in text if char in TERMINAL_CONTROLS})


def strings(value, path="result"):
    """Every string of a result, with where it is; a diff's lines one by one."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from strings(inner, f"{path}.{key}")
    elif isinstance(value, list):
        for number, inner in enumerate(value):
            yield from strings(inner, f"{path}[{number}]")
    elif isinstance(value, str):
        lines = value.splitlines() if ".diff." in f"{path}." else [value]
        for line in lines:
            yield path, line


def assert_nothing_raw(output, results):
    """No control character in what ansible-playbook printed but its own line ends, and none
    in any string of the results (a diff's line ends apart)."""
    assert raw_controls(output) == [], output
    for result in results:
        for path, text in strings(result):
            assert "\n" not in text, (path, text)
            assert raw_controls(text) == [], (path, text)


def diff_lines(result, side):
    return result["diff"][side].splitlines()


def assert_every_name_shown_once_as_expected(lines, sign, others):
    """The diff lists each hostile name on one line of its own, as HOSTILE says, beside its
    ``others`` lines about the index and the counts: no line forged, none overwritten, the
    long name cut."""
    listed = [line for line in lines if line.startswith(f"{sign} storyart:session:")]
    assert sorted(listed) == sorted(f"{sign} {text}" for text in HOSTILE.values()), lines
    assert len(lines) == len(HOSTILE) + others, lines


def test_hostile_names_reach_no_output_raw_and_move_byte_for_byte(tmp_path, redis_server):
    src, dst = redis_server.client(1), redis_server.client(0)
    seed_hostile(src)
    before = snapshot(src)
    args = tcp_args(redis_server)
    cleanup = dict(args, mode="cleanup")

    rc_dry, dry_output, [dry] = run_tasks(tmp_path, [args], check=True, diff=True)
    assert rc_dry == 0, dry_output
    assert dst.dbsize() == 0
    rc, output, [migrated, verified] = run_tasks(
        tmp_path, [args, dict(args, mode="verify")], diff=True
    )
    assert rc == 0, output
    # The clean-up's dry run, in-process: the whole result as the module prints it.
    cleanup_plan = call_module(cleanup, check=True, diff=True)
    rc_clean, clean_output, [cleaned] = run_tasks(tmp_path, [cleanup], diff=True)
    assert rc_clean == 0, clean_output

    results = [dry, migrated, verified, cleanup_plan, cleaned]
    assert_nothing_raw(dry_output + output + clean_output, results)
    assert_every_name_shown_once_as_expected(diff_lines(dry, "after"), "+", others=1)
    assert_every_name_shown_once_as_expected(diff_lines(migrated, "after"), "+", others=1)
    assert_every_name_shown_once_as_expected(diff_lines(cleanup_plan, "before"), "-", others=2)
    assert_every_name_shown_once_as_expected(diff_lines(cleaned, "before"), "-", others=2)
    for printed, sign in ((dry_output, "+"), (output, "+"), (clean_output, "-")):
        for text in HOSTILE.values():
            assert f"{sign} {text}\n" in printed, text
        assert "\n+ storyart:session:forged" not in printed
    assert sorted(dry["samples"]["migrated"]) == sorted(HOSTILE.values())
    assert sorted(cleaned["samples"]["deleted"]) == sorted(HOSTILE.values())
    assert HOSTILE[SESSION + b"\xff\xfe"] != HOSTILE[SESSION + b"\\xff\\xfe"]
    assert max(len(text) for text in dry["samples"]["migrated"]) < 220
    assert (migrated["counts"]["migrated"], migrated["verified"]) == (len(HOSTILE), True)
    assert verified["verified"] is True
    assert cleaned["counts"]["deleted"] == len(HOSTILE)

    # Escaping is for showing only: every key is in db 0 under its own bytes, with its value
    # and absolute expiry, and the index holds every name as it was.
    index_before = before.pop(INDEX)
    copied = snapshot(dst)
    assert zset(dst) == {name: float(n) for n, name in enumerate(HOSTILE)}
    assert copied.pop(INDEX)[0] == index_before[0] == b"zset"
    assert copied == before
    assert dst.strlen(LONG) > 0
    assert src.dbsize() == 0


def test_a_name_in_an_error_and_a_message_is_shown_escaped(redis_server):
    """A key the user may not write fails, and its name is shown escaped in the errors; an
    index that is no sorted set is refused with its name shown escaped."""
    if redis_server.version < (7, 0):
        pytest.skip("read-only key patterns (%R~) need Redis 7.0")
    src = redis_server.client(1)
    seed_hostile(src)
    redis_server.client().execute_command(
        "ACL", "SETUSER", "mig", "on", f">{MIG_PASSWORD}", "+@all", "%R~storyart:*",
        "~storyart:session:L*", "~storyart:session:redis-db-migrate-probe:*", f"~{INDEX.decode()}",
    )  # fmt: skip
    login = dict(login_user="mig", login_password=MIG_PASSWORD)

    failed = call_module(tcp_args(redis_server, indexes=[], memory_check=False, **login))
    hostile_index = "storyart:\x1b]0;pwned\x07index\n"
    src.set(hostile_index, b"not a sorted set")
    refused = call_module(tcp_args(redis_server, indexes=[hostile_index]))

    assert failed["failed"] is True
    assert failed["counts"]["failed"] == len(HOSTILE) - 1
    shown_keys = sorted(error["key"] for error in failed["errors"])
    assert shown_keys == sorted(text for name, text in HOSTILE.items() if name != LONG)
    assert refused["failed"] is True
    assert "index 'storyart:\\x1b]0;pwned\\x07index\\n' in db 1" in refused["msg"]
    # Ansible echoes the operator's own arguments in "invocation", as they were given.
    refused.pop("invocation")
    assert_nothing_raw("", [failed, refused])
