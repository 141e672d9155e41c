"""The redis_db_migrate module against real redis-server processes.

Most tests run the module in-process (helpers.call_module: the arguments set, main() called,
the JSON it prints read back): its argument handling, check mode, diff and failures, in
seconds. The few marked ``ansible`` run ansible-playbook for what only a real run shows: the
task status Ansible derives, the module and its module_utils package shipped by AnsiballZ,
-vvv output, ansible-doc, and a host without redis-py.
"""

from __future__ import annotations

import ast
import json
import re

import pytest
import yaml
from helpers import (
    ANSIBLE,
    ANSIBLE_DOC,
    INDEX,
    PATTERN,
    ROOT,
    bare_python,
    call_module,
    not_an_int,
    recap,
    run_ansible,
    run_module,
    run_tasks,
    says,
    seed_sessions,
    seed_with_overlap,
    snapshot,
    task_status,
    tcp_args,
    unfolded,
    zset,
)

PASSWORD = "Sup3r-s3cret-xyz"  # noqa: S105 - a test server's password, meant to be spotted
WRONG_PASSWORD = "Wr0ng-s3cret-abc"  # noqa: S105

# The report. Counts are nested under "counts" and "index_counts": a truthy top-level
# "skipped" makes Ansible show the task as skipped, and "failed" is Ansible's failure flag.
REPORT_KEYS = {"counts", "index_counts", "verified", "samples", "strategy", "duration", "msg"}
REPORT_KEYS |= {"keys_per_second", "memory", "checks_not_run"}
KEY_COUNTS = {"found", "migrated", "skipped", "expired", "failed"}
INDEX_COUNTS = {"found", "added", "present", "orphans", "failed"}


def state(server):
    """The server's write counter and both dbs: what a run could change."""
    return server.rdb_changes(), snapshot(server.client(0)), snapshot(server.client(1))


# 1. Check mode and diff ----------------------------------------------------------------------


def test_check_mode_reports_the_plan_and_writes_nothing(redis_server):
    names, _ = seed_with_overlap(redis_server, 20, 5)
    before = state(redis_server)
    index_before = zset(redis_server.client(0))

    result = call_module(tcp_args(redis_server), check=True, diff=True)

    assert result["changed"] is True
    assert "failed" not in result, result
    assert result["dry_run"] is True
    assert result["counts"] == dict(found=20, migrated=15, skipped=5, expired=0, failed=0)
    assert result["index_counts"] == dict(found=20, added=15, present=5, orphans=0, failed=0)
    assert result["verified"] is None
    assert set(result["samples"]["migrated"]) <= {n.decode() for n in names[5:]}
    assert result["msg"].startswith("DRY RUN, nothing written: ")
    # The server saw no write at all, and both dbs are exactly as before.
    assert state(redis_server) == before
    assert zset(redis_server.client(0)) == index_before
    diff = result["diff"]
    assert (
        diff["before_header"] == diff["after_header"] == f"redis://127.0.0.1:{redis_server.port}/0"
    )
    after = diff["after"].splitlines()
    assert after[0] == f"index {INDEX.decode()}: 20 of the source entries present (+15)"
    assert len([line for line in after if line.startswith("+ storyart:session:")]) == 10
    assert after[-1] == "+ ... and 5 more keys"


# 2. A real run, then a no-op rerun -------------------------------------------------------------


def test_real_run_then_noop_rerun(redis_server):
    names, present = seed_with_overlap(redis_server, 20, 5)
    source, target = redis_server.client(1), redis_server.client(0)
    source_before, target_before = snapshot(source), snapshot(target)
    source_index, target_index_before = zset(source), zset(target)

    result = call_module(tcp_args(redis_server))

    assert (result["changed"], result["dry_run"], result["verified"]) == (True, False, True)
    assert result["counts"] == dict(found=20, migrated=15, skipped=5, expired=0, failed=0)
    assert (result["index_counts"]["added"], result["index_counts"]["present"]) == (15, 5)
    target_after = snapshot(target)
    for name in names[5:]:
        # Same type, value (DUMP payload) and absolute expiry in ms as in the source.
        assert target_after[name] == source_before[name], name
    for name in present:
        assert target_after[name] == target_before[name], name  # never overwritten
    assert target_after[b"other:app:key"] == target_before[b"other:app:key"]
    assert set(target_after) == set(target_before) | set(names) | {INDEX}
    # Index merged with ZADD NX: members already in db 0 keep their db 0 score.
    assert zset(target) == {**source_index, **target_index_before}
    assert target_index_before != {k: source_index[k] for k in target_index_before}
    assert snapshot(source) == source_before

    writes_before = redis_server.rdb_changes()
    again = call_module(tcp_args(redis_server))

    assert (again["changed"], again["verified"]) == (False, True)
    assert (again["counts"]["migrated"], again["counts"]["skipped"]) == (0, 20)
    assert (again["index_counts"]["added"], again["index_counts"]["present"]) == (0, 20)
    assert redis_server.rdb_changes() == writes_before
    assert snapshot(target) == target_after


def test_result_keys_are_the_same_for_check_real_and_noop_runs(redis_server):
    names, _ = seed_with_overlap(redis_server, 8, 2)
    expected = {  # (changed, verified, migrated, skipped) per run
        "check": (True, None, 6, 2),
        "real": (True, True, 6, 2),
        "noop": (False, True, 0, 8),
    }
    key_sets = {}
    for label, check in (("check", True), ("real", False), ("noop", False)):
        result = call_module(tcp_args(redis_server), check=check)

        key_sets[label] = set(result) - {"invocation", "changed"}
        assert key_sets[label] >= REPORT_KEYS, (label, REPORT_KEYS - key_sets[label])
        assert set(result["counts"]) == KEY_COUNTS, label
        assert set(result["index_counts"]) == INDEX_COUNTS, label
        assert set(result["samples"]) == {"migrated", "skipped", "expired"}, label
        # Ansible's own status keys must keep their meaning on a successful run.
        assert "skipped" not in result, label
        assert "failed" not in result, label
        assert result["strategy"] == "copy"
        assert isinstance(result["duration"], float)
        assert isinstance(result["keys_per_second"], int)
        counts = result["counts"]
        got = (result["changed"], result["verified"], counts["migrated"], counts["skipped"])
        assert got == expected[label], label
    assert key_sets["check"] == key_sets["real"] == key_sets["noop"], key_sets
    assert redis_server.client(0).exists(*names) == 8


def test_unix_socket_connection_migrates(redis_server):
    names = seed_sessions(redis_server.client(1), 10)
    source_before = snapshot(redis_server.client(1))
    args = dict(
        login_unix_socket=redis_server.unix_socket,
        source_db=1,
        target_db=0,
        patterns=[PATTERN],
        indexes=[INDEX.decode()],
    )

    result = call_module(args)

    assert result["endpoint"] == f"unix:{redis_server.unix_socket}"
    assert (result["counts"]["migrated"], result["verified"]) == (10, True)
    target_after = snapshot(redis_server.client(0))
    assert all(target_after[name] == source_before[name] for name in names)
    assert zset(redis_server.client(0)) == zset(redis_server.client(1))


def test_preflight_mode_reports_the_server_and_writes_nothing(redis_server):
    seed_sessions(redis_server.client(1), 12)
    before = state(redis_server)

    result = call_module(tcp_args(redis_server, mode="preflight"))

    assert result["changed"] is False
    assert "failed" not in result, result
    assert result["msg"].startswith(f"Redis {result['server_version']} at 127.0.0.1:")
    assert result["memory"]["keys_to_copy"] == 12
    assert (result["role"], result["strategy"], result["checks_not_run"]) == ("master", "copy", [])
    assert result["permissions"]["ready"] == {"migrate": True, "cleanup": True}
    assert state(redis_server) == before


def test_preflight_returns_what_the_user_lacks_and_warns_of_the_cleanup(redis_factory):
    """As the module returns it: a refused preflight holds ``permissions`` beside its message;
    a passing one that the clean-up would not pass warns of it, with its grant."""
    server = redis_factory(
        f"user mig on >{PASSWORD} ~storyart:* +@read +@write",
        f"user cleaner on >{PASSWORD} ~storyart:* +@all -unlink",
    )
    seed_sessions(server.client(1), 5)
    before = state(server)
    login = dict(mode="preflight", login_password=PASSWORD)

    refused = call_module(tcp_args(server, login_user="mig", **login))
    warned = call_module(tcp_args(server, login_user="cleaner", **login))

    assert refused["failed"] is True
    assert refused["permissions"]["acl_setuser"].startswith("ACL SETUSER mig +ping +select ")
    assert refused["msg"].endswith(refused["permissions"]["acl_setuser"])
    assert "failed" not in warned, warned
    assert warned["permissions"]["ready"] == {"migrate": True, "cleanup": False}
    [warning] = warned["permissions"]["warnings"]
    assert warning.endswith("Grant all of it with one line: ACL SETUSER cleaner +unlink")
    # Issued as an Ansible warning too (ansible-core 2.19 wraps each in a summary).
    assert warning in json.dumps(warned["warnings"])
    text = json.dumps([refused, warned])
    assert PASSWORD not in text
    assert "Traceback" not in text
    assert state(server) == before


def test_verify_returns_missing_and_present_and_the_deprecated_names_alike(redis_server):
    """mode=verify counts what is ``missing`` from the target and what is ``present``; until
    2.0.0 ``migrated`` and ``skipped`` repeat them, the same numbers. All stay nested in
    "counts", so Ansible never reads them as its own task status."""
    names, _ = seed_with_overlap(redis_server, 12, 5)
    verify = tcp_args(redis_server, mode="verify")
    before = state(redis_server)

    lacking = call_module(verify)

    assert state(redis_server) == before
    assert lacking["failed"] is True
    assert lacking["counts"] == dict(
        found=12, missing=7, present=5, expired=0, failed=0, migrated=7, skipped=5
    )
    assert set(lacking["samples"]["missing"]) == {name.decode() for name in names[5:]}
    assert "MISSING from db 0 7" in lacking["msg"]

    call_module(tcp_args(redis_server))
    complete = call_module(verify)

    assert "failed" not in complete, complete
    assert "skipped" not in complete, complete
    assert (complete["changed"], complete["verified"]) == (False, True)
    assert complete["counts"] == dict(
        found=12, missing=0, present=12, expired=0, failed=0, migrated=0, skipped=12
    )


def test_the_return_doc_names_verifys_counts_and_the_release_that_removes_the_old_ones():
    tree = ast.parse((ROOT / "library" / "redis_db_migrate.py").read_text())
    [doc] = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id == "RETURN"
    ]
    counts = " ".join(yaml.safe_load(doc)["counts"]["description"])

    assert "With O(mode=verify), V(found), V(missing) (in the source, not in the target)" in counts
    assert "V(present) (in the source and the target)" in counts
    assert re.search(
        r"Deprecated with O\(mode=verify\), to be removed in 2\.0\.0, V\(migrated\) and "
        r"V\(skipped\)",
        counts,
    )


# 3. Failures --------------------------------------------------------------------------------


def test_index_of_wrong_type_fails_and_writes_nothing(redis_server):
    seed_sessions(redis_server.client(1), 5)
    redis_server.client(0).set(INDEX, b"not a sorted set")
    before = state(redis_server)

    result = call_module(tcp_args(redis_server))

    assert result["failed"] is True
    assert f"index '{INDEX.decode()}' in db 0" in result["msg"]
    assert "is a string, not a sorted set" in result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert state(redis_server) == before


def test_a_failed_run_returns_the_report_and_no_password(redis_factory):
    server = redis_factory(f"requirepass {PASSWORD}", password=PASSWORD)
    seed_sessions(server.client(1), 3)
    before = state(server)

    result = call_module(tcp_args(server, login_password=WRONG_PASSWORD, target_db=2))

    assert result["failed"] is True
    assert "Authentication to Redis at 127.0.0.1:" in result["msg"]
    assert "Check login_user and login_password" in result["msg"]
    text = json.dumps(result)
    assert PASSWORD not in text
    assert WRONG_PASSWORD not in text
    assert "Traceback" not in text
    assert state(server) == before


# Each bad input: the module's arguments, and what the message must say. Nothing is written.
BAD_INPUT = {
    "wrong type": (dict(source_db="one"), not_an_int("source_db")),
    "bad choice": (dict(strategy="bogus"), "value of strategy must be one of: auto, copy, "),
    "missing": (dict(patterns=None), "missing required arguments: patterns"),
    "same db": (dict(target_db=1), "source_db and target_db are both 1"),
    "negative db": (dict(source_db=-1), "source_db must be a database number of 0 or more"),
    "port": (dict(login_port=70000), "login_port must be a TCP port from 1 to 65535, not 70000"),
    "batch size": (dict(batch_size=0), "batch_size must be between 1 and 10000, not 0"),
    "headroom": (dict(memory_headroom=95), "memory_headroom must be a percentage from 0 to 90"),
    "rate": (dict(max_keys_per_second=-5), "max_keys_per_second must be 0 (no limit) or more"),
    "key without cert": (
        dict(client_key_file="/etc/hostname"),
        "missing parameter(s) required by 'client_key_file': client_cert_file",
    ),
    "unix socket and tls": (
        dict(login_unix_socket="/tmp/redis.sock", tls=True),  # noqa: S108 - never opened
        "tls cannot be used with login_unix_socket",
    ),
    "sentinel without service": (
        dict(sentinel_hosts=["127.0.0.1:26379"]),
        "sentinel_hosts and sentinel_service_name go together",
    ),
    "sentinel address": (
        dict(sentinel_hosts=["sentinel-1", "10.0.0.5:0"], sentinel_service_name="storyart"),
        "sentinel_hosts must be host:port entries with a port from 1 to 65535, not 'sentinel-1', "
        "'10.0.0.5:0'",
    ),
    "min replicas": (dict(min_replicas=-1), "min_replicas must be 0 (wait for no replica) or more"),
    "replica timeout": (dict(replica_timeout=0), "replica_timeout must be a positive number"),
    "replica timeout over socket timeout": (
        dict(replica_timeout=20, socket_timeout=15, min_replicas=0, wait_aof=True),
        "replica_timeout (20 s) must be below socket_timeout (15 s)",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_rejected_with_a_clear_message(redis_server, case):
    seed_sessions(redis_server.client(1), 3)
    before = state(redis_server)
    overrides, message = BAD_INPUT[case]
    args = {k: v for k, v in tcp_args(redis_server, **overrides).items() if v is not None}

    result = call_module(args)

    assert result["failed"] is True
    assert says(result["msg"], message), result["msg"]
    assert "Traceback" not in json.dumps(result)
    assert state(redis_server) == before


# 4. Through ansible-playbook -------------------------------------------------------------------


@pytest.mark.ansible
def test_ansible_doc_renders_options_attributes_and_the_shared_fragment(tmp_path):
    proc = run_ansible(tmp_path, [ANSIBLE_DOC, "redis_db_migrate"])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # Found through ansible.cfg's library path, i.e. the project's own module.
    assert str(ROOT / "library" / "redis_db_migrate.py") in output
    # login_* come from the doc fragment, the rest from the module itself.
    for option in ("login_host", "login_password", "source_db", "patterns", "max_batch_bytes"):
        assert re.search(rf"^\W*{option}\b", proc.stdout, re.M), option
    attributes = proc.stdout.split("ATTRIBUTES", 1)[1]
    assert re.search(r"check_mode:.*?support: full", attributes, re.DOTALL)
    assert re.search(r"diff_mode:.*?support: full", attributes, re.DOTALL)
    assert "ERROR" not in output
    assert "Traceback" not in output


@pytest.mark.ansible
def test_ansible_shows_the_plan_as_changed_the_run_as_changed_and_the_rerun_as_ok(
    tmp_path, redis_factory
):
    """Through AnsiballZ, which ships the module with its module_utils package, with the
    password: Ansible's task status from the result, and the password masked in -vvv."""
    server = redis_factory(f"requirepass {PASSWORD}", password=PASSWORD)
    seed_sessions(server.client(1), 12)
    args = tcp_args(server, login_password=PASSWORD)
    writes_before = server.rdb_changes()

    rc, plan, [planned] = run_tasks(tmp_path, [args], check=True)
    assert server.rdb_changes() == writes_before
    rc_real, real, [done, rerun] = run_tasks(tmp_path, [args, args], verbose=True, diff=True)

    assert (rc, rc_real) == (0, 0), plan + real
    assert task_status(plan) == "changed", plan
    assert recap(plan)["skipped"] == 0, plan
    assert (planned["counts"]["migrated"], done["counts"]["migrated"]) == (12, 12)
    assert (task_status(real, "migrate 0"), task_status(real, "migrate 1")) == ("changed", "ok")
    assert recap(real)["changed"] == 1, real
    assert rerun["counts"]["skipped"] == 12
    # -vvv printed the module's arguments and result, with the password masked.
    assert "login_password: VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in real
    assert done["msg"] in "\n".join(unfolded(real))
    assert PASSWORD not in plan + real


@pytest.mark.ansible
def test_ansiballz_ships_every_file_of_the_engine_package(tmp_path, redis_server):
    """The module imports the package; AnsiballZ must follow its relative imports to every
    file, or the module fails on the host with an ImportError."""
    proc = run_ansible(
        tmp_path,
        [
            ANSIBLE,
            "localhost",
            "-m",
            "redis_db_migrate",
            "-a",
            f"mode=preflight login_port={redis_server.port} source_db=1 target_db=0 patterns=x",
            "-vvvvv",
        ],
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    shipped = set(
        re.findall(
            r"Including module_utils file ansible/module_utils/(redis_db_migration/\S+)", output
        )
    )
    package = ROOT / "module_utils" / "redis_db_migration"
    files = {f"redis_db_migration/{path.name}" for path in package.glob("*.py")}
    assert len(files) > 10
    assert shipped == files


@pytest.mark.ansible
def test_missing_redis_library_fails_with_missing_required_lib(tmp_path, redis_server):
    python = bare_python(tmp_path)
    seed_sessions(redis_server.client(1), 3)

    rc, output, result = run_module(
        tmp_path, tcp_args(redis_server), python=python, ignore_errors=True
    )

    assert result is not None, output
    assert result["failed"] is True, result
    assert "Failed to import the required Python library (redis)" in result["msg"]
    assert str(python) in result["msg"]
    assert "Traceback" not in output
    assert redis_server.client(0).dbsize() == 0
