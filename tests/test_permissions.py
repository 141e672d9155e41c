"""What the user may run, probed before anything is written, against real servers: ACL users
and commands renamed away as managed services do.

1. One pass: the user of the issue, ``~storyart:* +@read +@write``, gets one refusal naming
   every command it lacks, with one ACL SETUSER line; that line, run verbatim, lets the
   preflight pass and the migration and the clean-up run.
2. A command the server does not know (renamed or disabled) is told apart from one ACL denies:
   no ACL grant is offered for it, only the option that does without it, or the provider.
3. The clean-up's commands are part of the preflight: a user allowed the migration but not the
   clean-up passes the preflight with the clean-up's refusal named, and the clean-up refuses
   before it deletes anything.
4. Keys outside the user's ACL key patterns are named with the patterns that grant them.

Every refused run is checked to have written nothing: the server's write counter and both dbs.
"""

from __future__ import annotations

import contextlib
import re

import pytest
import redis
from helpers import INDEX, SESSION, RedisServer, engine, options, seed_sessions, snapshot

PASSWORD = "probe-user-pw"  # noqa: S105 - a throwaway user on a throwaway server
SESSIONS = 12
# The commands the issue saw refused one run at a time, as ACL names them: +@read +@write
# grants none of them.
ISSUE_COMMANDS = ("PING", "SELECT", "SCRIPT LOAD", "EVALSHA", "INFO")
# What the clean-up adds that +@read +@write does not grant: it deletes an index in a WATCHed
# transaction.
TRANSACTION = ("WATCH", "MULTI", "EXEC", "UNWATCH")
ACL_LINE = re.compile(r"ACL SETUSER \S+(?: [+~]\S+)+")


def server_with_user(redis_factory, rules, *config):
    """A server whose user 'mig' has exactly ``rules``; sessions and their index in db 1."""
    server = redis_factory(f"user mig on >{PASSWORD} {rules}", *config)
    server.names = seed_sessions(server.client(1), SESSIONS)
    server.user = server.settings(username="mig", password=PASSWORD)
    return server


def state(server):
    """What a run could change: the server's write counter and both dbs."""
    return server.rdb_changes(), snapshot(server.client(0)), snapshot(server.client(1))


def refused(call):
    """The MigrationError ``call`` raises."""
    with pytest.raises(engine.MigrationError) as caught:
        call()
    return caught.value


def the_acl_line(message):
    """The one ACL SETUSER line of a message, as the words an operator pastes."""
    lines = ACL_LINE.findall(message)
    assert len(lines) == 1, message
    return lines[0].split()


# 1. One pass ------------------------------------------------------------------------------------


def test_the_issue_user_gets_one_refusal_whose_line_lets_preflight_migration_and_cleanup_run(
    redis_factory,
):
    server = server_with_user(redis_factory, "~storyart:* +@read +@write")
    before = state(server)

    error = refused(lambda: engine.preflight(server.user, options()))

    message = str(error)
    assert state(server) == before
    found = error.fields["permissions"]
    # Every command the issue met one refusal at a time is named in the first refusal, denied
    # by ACL, the clean-up's transaction as well.
    for command in (*ISSUE_COMMANDS, *TRANSACTION):
        assert command in found["denied"], (command, found)
    assert f"User 'mig' on Redis at 127.0.0.1:{server.port} may not run PING, SELECT" in message
    assert "The clean-up would be refused as well: it also needs WATCH, MULTI, EXEC" in message
    assert found["renamed"] == []
    assert found["keys"] == []
    assert found["ready"] == {"migrate": False, "cleanup": False}
    # One line grants exactly what ACL denies, under the login user's own name.
    words = the_acl_line(message)
    assert words[:3] == ["ACL", "SETUSER", "mig"]
    assert words[3:] == ["+" + name.lower().replace(" ", "|") for name in found["denied"]]
    assert " ".join(words) == found["acl_setuser"]
    assert message.endswith(found["acl_setuser"])

    server.client().execute_command(*words)

    ready = engine.preflight(server.user, options())
    assert ready["permissions"]["ready"] == {"migrate": True, "cleanup": True}
    assert ready["permissions"]["acl_setuser"] is None
    assert "every command the migration and the clean-up send may run" in ready["msg"]
    migrated = engine.migrate(server.user, options())
    assert migrated.ok
    assert migrated.verified is True
    assert migrated.migrated == SESSIONS
    cleaned = engine.cleanup(server.user, options())
    assert cleaned.deleted == SESSIONS
    assert cleaned.indexes[0].deleted is True
    assert server.client(1).dbsize() == 0
    assert server.client(0).exists(*server.names) == SESSIONS


def test_the_probe_itself_writes_nothing_and_leaves_no_probe_key(redis_factory):
    """A user who may run everything: the preflight's probe (UNLINK, RESTORE, ZADD, COPY and a
    transaction among its commands) changes no key and counts no write."""
    server = server_with_user(redis_factory, "~* &* +@all")
    before = state(server)

    result = engine.preflight(server.user, options())

    assert result["permissions"]["ready"] == {"migrate": True, "cleanup": True}
    assert state(server) == before
    for db in (0, 1):
        assert list(server.client(db).scan_iter(match="*redis-db-migrate-probe*")) == []


# 2. Renamed or disabled, told apart from denied -------------------------------------------------


def test_a_renamed_command_is_told_apart_from_a_denied_one_with_the_option_that_avoids_it(
    redis_factory,
):
    """MEMORY renamed away, as managed services do, and INFO denied by ACL: INFO gets an ACL
    grant, MEMORY USAGE none; memory_check: false does without both."""
    server = server_with_user(
        redis_factory,
        "~* &* +@all -info",
        "rename-command MEMORY memory-renamed-by-the-provider",
    )
    before = state(server)

    error = refused(lambda: engine.migrate(server.user, options()))

    message = str(error)
    found = error.fields["permissions"]
    assert state(server) == before
    assert found["denied"] == ["INFO"]
    assert found["renamed"] == ["MEMORY USAGE"]
    assert "may not run INFO, which mode migrate with strategy copy needs: ACL denies it" in message
    assert (
        f"Redis at 127.0.0.1:{server.port} does not know MEMORY USAGE, which mode migrate with "
        "strategy copy needs: renamed or disabled, as managed services do, and ACL cannot bring "
        "it back." in message
    )
    assert "With memory_check: false it runs without INFO, MEMORY USAGE" in message
    assert the_acl_line(message) == ["ACL", "SETUSER", "mig", "+info"]
    assert "Grant what ACL can with one line" in message
    assert found["options"] == ["memory_check: false runs migrate without INFO, MEMORY USAGE"]

    report = engine.migrate(server.user, options(memory_check=False))

    assert report.ok
    assert report.migrated == SESSIONS


def test_a_renamed_command_no_option_avoids_sends_the_operator_to_the_provider(redis_factory):
    """UNLINK renamed away: the migration may run, the preflight says the clean-up cannot and
    that no ACL grant or option changes that; the clean-up refuses before any delete."""
    server = server_with_user(
        redis_factory, "~* &* +@all", "rename-command UNLINK unlink-renamed-by-the-provider"
    )

    ready = engine.preflight(server.user, options())

    found = ready["permissions"]
    assert found["ready"] == {"migrate": True, "cleanup": False}
    assert found["renamed"] == ["UNLINK"]
    assert found["denied"] == []
    assert found["acl_setuser"] is None
    [warning] = found["warnings"]
    assert warning.startswith(f"the clean-up would be refused: Redis at 127.0.0.1:{server.port}")
    assert "does not know UNLINK, which mode cleanup needs" in warning
    assert "No option does without UNLINK: have the provider enable it." in warning
    assert "ACL SETUSER" not in warning
    assert f"WARNING: {warning}" in ready["msg"]
    assert engine.migrate(server.user, options()).migrated == SESSIONS
    before = state(server)

    error = refused(lambda: engine.cleanup(server.user, options()))

    assert "does not know UNLINK" in str(error)
    assert state(server) == before


def test_hello_renamed_away_is_named_not_a_raw_error(tmp_path):
    """HELLO renamed away. A redis-py that speaks RESP3 (the default of recent ones) opens
    every connection with it; one that speaks RESP2 (4.3) sends it only to read the version
    where INFO is refused, as it is here. Either way the refusal says what is missing."""
    server = RedisServer(
        tmp_path / "redis",
        [f"user mig on >{PASSWORD} ~* &* +@all -info", 'rename-command HELLO ""'],
    )
    try:
        # The helpers' own client may open with HELLO too: the server is up all the same.
        with contextlib.suppress(redis.exceptions.ResponseError):
            server.start()
        user = server.settings(username="mig", password=PASSWORD)
        error = str(refused(lambda: engine.preflight(user, options())))
    finally:
        server.stop()

    if getattr(redis.connection, "DEFAULT_RESP_VERSION", 2) == 3:
        assert error.startswith(
            f"Redis at 127.0.0.1:{server.port} does not know HELLO, with which redis-py opens "
            f"each connection ("
        ), error
        assert error.endswith(
            "Have the provider enable HELLO, or run the module with redis-py 4, "
            "which opens connections with AUTH alone."
        ), error
    else:
        assert error.startswith(
            f"Cannot read the server's version and role at 127.0.0.1:{server.port}: ACL denies "
            f"INFO to user 'mig', and HELLO failed too ("
        ), error
        assert error.endswith("Nothing was written. Grant it with ACL SETUSER mig +info."), error


def test_a_renamed_copy_asked_for_by_name_offers_the_other_strategy(redis_factory):
    server = server_with_user(redis_factory, "~* &* +@all", "rename-command COPY copy-renamed")

    error = refused(lambda: engine.preflight(server.user, options(strategy="copy")))

    assert "does not know COPY, which mode migrate with strategy copy needs" in str(error)
    assert "With strategy: dump-restore it runs without COPY." in str(error)
    assert error.fields["permissions"]["acl_setuser"] is None
    # Left to choose, the run takes DUMP + RESTORE without a word of refusal.
    assert engine.preflight(server.user, options())["strategy"] == "dump-restore"


# 3. The clean-up's commands in the preflight ---------------------------------------------------


def test_a_user_allowed_the_migration_but_not_the_cleanup_is_told_at_preflight(redis_factory):
    server = server_with_user(
        redis_factory, "~storyart:* +@all -unlink -watch -multi -exec -unwatch"
    )

    ready = engine.preflight(server.user, options())

    found = ready["permissions"]
    assert found["ready"] == {"migrate": True, "cleanup": False}
    assert found["missing"]["cleanup"] == ["UNLINK", *TRANSACTION]
    assert found["acl_setuser"] == "ACL SETUSER mig +unlink +watch +multi +exec +unwatch"
    [warning] = found["warnings"]
    assert warning.startswith(
        f"the clean-up would be refused: User 'mig' on Redis at 127.0.0.1:{server.port} may not "
        f"run UNLINK, WATCH, MULTI, EXEC, UNWATCH, which mode cleanup needs"
    )
    assert "every command the migration sends may run" in ready["msg"]
    assert engine.migrate(server.user, options()).migrated == SESSIONS
    before = state(server)

    error = refused(lambda: engine.cleanup(server.user, options()))

    assert state(server) == before
    assert str(error).startswith(
        f"User 'mig' on Redis at 127.0.0.1:{server.port} may not run UNLINK, WATCH, MULTI, "
        f"EXEC, UNWATCH, which mode cleanup needs: ACL denies them (NOPERM)."
    )
    assert error.fields["permissions"]["checked"] == ["cleanup"]
    server.client().execute_command(*the_acl_line(str(error)))

    assert engine.cleanup(server.user, options()).deleted == SESSIONS


# 4. Keys outside the user's key patterns -------------------------------------------------------


def test_keys_outside_the_users_key_patterns_are_named_with_the_patterns_that_grant_them(
    redis_factory,
):
    server = server_with_user(redis_factory, "~other-app:* &* +@all")
    before = state(server)

    error = refused(lambda: engine.preflight(server.user, options()))

    found = error.fields["permissions"]
    assert state(server) == before
    assert found["denied"] == []
    assert found["renamed"] == []
    assert found["keys"] == [f"~{SESSION.decode()}*", f"~{INDEX.decode()}"]
    assert (
        f"ACL keeps user 'mig' on Redis at 127.0.0.1:{server.port} from the keys "
        f"{SESSION.decode()}*, {INDEX.decode()}, which mode migrate reads and writes."
    ) in str(error)
    server.client().execute_command(*the_acl_line(str(error)))

    assert engine.preflight(server.user, options())["permissions"]["ready"] == {
        "migrate": True,
        "cleanup": True,
    }
