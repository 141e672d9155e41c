"""Patterns and indexes that reach beyond StoryArt's keys.

Run with ``patterns: ["*"]``, the role once copied ``billing:invoice:7`` and ``other:cache:1``
into db 0, and the clean-up then deleted them from db 1. The role now refuses a pattern or
index outside ``storyart:`` unless a variable that names the risk allows it; the module warns
about a pattern SCAN cannot narrow, and about an index merged while the patterns matched no key.
"""

from __future__ import annotations

import json

import pytest
from helpers import (
    CLEANUP,
    CONFIRM,
    INDEX,
    MIGRATE,
    call_module,
    run_playbook,
    seed_sessions,
    snapshot,
    tcp_args,
    write_inventory,
    zset,
)

pytestmark = pytest.mark.ansible

ALLOW = "storyart_session_migration_allow_keys_outside_storyart"
OTHER_APPS = {b"billing:invoice:7": b"EUR 120.00", b"other:cache:1": b"cached"}
UNNARROWED = "pattern '*' has no literal prefix: it matches keys anywhere in db 1"


def ansible_warnings(result):
    """The warnings the module gave Ansible: strings, or on ansible-core 2.19 in-process,
    serialised warning events."""
    return [text if isinstance(text, str) else text["event"]["msg"] for text in result["warnings"]]


def seed_fleet_redis(server):
    """StoryArt's sessions and index in db 1, beside other applications' keys in both dbs."""
    sessions = seed_sessions(server.client(1), 4)
    for name, value in OTHER_APPS.items():
        server.client(1).set(name, value, ex=86_400)
    server.client(0).set(b"billing:invoice:7", b"EUR 99.00 (db 0's own)")
    return sessions


def run_role(tmp_path, server, playbook, **variables):
    """``playbook`` on one StoryArt host against ``server``, with ``variables`` as -e JSON."""
    inventory = write_inventory(
        tmp_path, {"app1": {"storyart_session_migration_login_port": server.port}}
    )
    return run_playbook(
        tmp_path,
        inventory,
        playbook,
        "-e",
        json.dumps(variables),
        report_dir=tmp_path / "reports",
    )


@pytest.mark.parametrize(
    ("playbook", "variables", "refused"),
    [
        (MIGRATE, {"storyart_session_migration_patterns": ["*"]}, ['patterns holds "*"']),
        (
            CLEANUP,
            {
                "storyart_session_migration_patterns": ["storyart:session:*", "billing:*"],
                "storyart_session_migration_indexes": [INDEX.decode(), "billing:index"],
                CONFIRM: "delete-migrated-sessions",
            },
            ['patterns holds "billing:*"', 'indexes holds "billing:index"'],
        ),
    ],
    ids=["migrate-star", "cleanup-billing"],
)
def test_the_role_refuses_patterns_and_indexes_outside_storyart_and_touches_nothing(
    tmp_path, redis_server, playbook, variables, refused
):
    seed_fleet_redis(redis_server)
    dbs = snapshot(redis_server.client(0)), snapshot(redis_server.client(1))
    writes = redis_server.rdb_changes()

    run = run_role(tmp_path, redis_server, playbook, **variables)

    assert run.rc != 0, run.output
    assert "redis_db_migrate in mode" not in run.stdout
    failure = run.reports()["app1"]["failure"]
    assert (
        ", ".join(f"storyart_session_migration_{words}" for words in refused)
        + (", outside StoryArt's keys (no literal storyart: prefix)")
        in failure
    ), failure
    assert failure.count(" holds ") == len(refused), failure
    assert f"set {ALLOW}: true" in failure
    assert "e.g. storyart:session:*" in failure
    assert redis_server.rdb_changes() == writes
    assert (snapshot(redis_server.client(0)), snapshot(redis_server.client(1))) == dbs
    assert redis_server.client(1).get(b"billing:invoice:7") == b"EUR 120.00"
    assert redis_server.client(0).get(b"billing:invoice:7") == b"EUR 99.00 (db 0's own)"


def test_with_the_variable_the_role_moves_keys_outside_storyart_and_warns(tmp_path, redis_server):
    sessions = seed_fleet_redis(redis_server)

    run = run_role(
        tmp_path, redis_server, MIGRATE, storyart_session_migration_patterns=["*"], **{ALLOW: True}
    )

    assert run.rc == 0, run.output
    target = redis_server.client(0)
    assert target.get(b"other:cache:1") == b"cached"
    assert target.get(b"billing:invoice:7") == b"EUR 99.00 (db 0's own)"  # never overwritten
    assert all(target.exists(name) for name in sessions)
    assert zset(target) == zset(redis_server.client(1))
    assert f"[WARNING]: {UNNARROWED}" in run.output
    step = run.reports()["app1"]["migrate"]
    assert [text[: len(UNNARROWED)] for text in step["scope_warnings"]] == [UNNARROWED]
    row = (run.folder / "summary.txt").read_text().splitlines()[2]
    assert row.startswith("app1"), row
    assert f"WARNING: {UNNARROWED}" in row, row


def test_the_module_warns_about_each_pattern_without_a_literal_prefix(redis_server):
    seed_fleet_redis(redis_server)
    patterns = ["storyart:session:*", "*", "*\x1b]0;x\x07"]

    results = [
        call_module(tcp_args(redis_server, patterns=patterns), check=True),
        call_module(tcp_args(redis_server, patterns=patterns, mode="preflight")),
        call_module(tcp_args(redis_server, patterns=patterns, mode="cleanup"), check=True),
    ]

    for result in results:
        warnings = result["scope_warnings"]
        assert [text[: len(UNNARROWED)] for text in warnings][:1] == [UNNARROWED], result
        assert warnings[1].startswith("pattern '*\\x1b]0;x\\x07' has no literal prefix")
        assert len(warnings) == 2, warnings
        assert all(text in ansible_warnings(result) for text in warnings)
        assert f"WARNING: {warnings[0]}" in result["msg"]
    assert redis_server.client(0).dbsize() == 1  # check mode and preflight wrote nothing


@pytest.mark.parametrize(
    ("mode", "check", "done"),
    [
        ("migrate", True, "would be merged"),
        ("migrate", False, "were merged"),
        ("verify", False, "were checked"),
    ],
)
def test_an_index_merged_while_the_patterns_match_no_key_is_warned_about(
    redis_server, mode, check, done
):
    seed_sessions(redis_server.client(1), 6)
    redis_server.client(1).zadd(INDEX, {b"storyart:session:long-gone": 1})
    typo = tcp_args(redis_server, patterns=["storyart:sesion:*"], mode=mode)

    result = call_module(typo, check=check)
    right = call_module(tcp_args(redis_server, mode=mode), check=check)

    assert result["counts"]["found"] == 0
    assert result["scope_warnings"] == [
        f"the patterns matched no key in db 1, yet the 7 entries of index "
        f"'storyart:sessions:index' {done} all the same (1 name a key in neither db): check "
        f"that the patterns match the keys the index lists"
    ]
    assert result["scope_warnings"][0] in ansible_warnings(result)
    assert f"WARNING: {result['scope_warnings'][0]}" in result["msg"]
    assert right["scope_warnings"] == []
