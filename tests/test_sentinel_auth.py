"""Sentinels that require auth: the README's Sentinel grants are enough for a run, and a
Sentinel that refuses says so clearly, without the password.

One Sentinel (quorum 1) watches a standalone primary. Its default user may only PING, INFO
and HELLO; the migration's Sentinel user has exactly the grants the README lists.
"""

from __future__ import annotations

import re

import pytest
from helpers import ROOT, RedisServer, engine, expiries, options, seed_sessions, wait_for, zset

SENTINEL_PASSWORD = "Sentinel-s3cret-xyz"  # noqa: S105 - a test Sentinel's, meant to be spotted


def readme_sentinel_grants():
    """The grants the README says a Sentinel ACL user needs."""
    # The sentence as it reads, whatever its line breaks.
    text = " ".join((ROOT / "README.md").read_text().split())
    [sentence] = re.findall(r"What the Sentinels need, for a Sentinel ACL user[^.]*\.", text)
    return re.findall(r"`([+&][^`]+)`", sentence)


@pytest.fixture
def guarded_sentinel(redis_factory, tmp_path):
    primary = redis_factory()
    grants = " ".join(readme_sentinel_grants())
    sentinel = RedisServer(
        tmp_path / "sentinel",
        (
            f"sentinel monitor storyart 127.0.0.1 {primary.port} 1",
            "user default on nopass -@all +ping +info +hello",
            f"user migrator on >{SENTINEL_PASSWORD} resetchannels {grants}",
        ),
        sentinel=True,
    ).start()
    try:
        probe = sentinel.client(decode_responses=True)
        wait_for(
            lambda: (
                probe.execute_command("INFO", "sentinel").get("master0", {}).get("status") == "ok"
            ),
            "the Sentinel to see its primary",
        )
        yield primary, sentinel
    finally:
        sentinel.stop()


def through(sentinel, **auth):
    return engine.ConnectionSettings(
        sentinel_hosts=(f"127.0.0.1:{sentinel.port}",), sentinel_service_name="storyart", **auth
    )


def test_the_readme_sentinel_grants_let_a_run_find_the_primary_and_watch_it(guarded_sentinel):
    primary, sentinel = guarded_sentinel
    assert readme_sentinel_grants() == [
        "+ping",
        "+sentinel|masters",
        "+subscribe",
        "&+switch-master",
    ]
    sessions = seed_sessions(primary.client(1), 50)

    report = engine.migrate(
        through(sentinel, sentinel_username="migrator", sentinel_password=SENTINEL_PASSWORD),
        options(),
    )

    assert report.ok, report.summary()
    assert report.verified
    assert report.replication["primary"] == f"127.0.0.1:{primary.port}"
    assert report.replication["confirmed"] is True
    assert expiries(primary.client(0), sessions) == expiries(primary.client(1), sessions)
    assert zset(primary.client(0)) == zset(primary.client(1))


@pytest.mark.parametrize(
    "auth",
    [{}, {"sentinel_username": "migrator", "sentinel_password": "wrong-" + SENTINEL_PASSWORD}],
    ids=["no-credentials", "wrong-password"],
)
def test_a_sentinel_that_refuses_is_named_and_nothing_is_written(guarded_sentinel, auth):
    primary, sentinel = guarded_sentinel
    seed_sessions(primary.client(1), 5)
    before = primary.rdb_changes()

    with pytest.raises(engine.MigrationError) as caught:
        engine.migrate(through(sentinel, **auth), options())

    message = str(caught.value)
    print(f"\nMigrationError: {message}")
    assert f"127.0.0.1:{sentinel.port}" in message, message
    assert "sentinel_username" in message
    assert "sentinel_password" in message
    assert SENTINEL_PASSWORD not in message
    assert primary.rdb_changes() == before
