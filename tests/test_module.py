"""The redis_db_migrate module driven through ansible-playbook against real redis-server processes.

Every test runs the module the way an operator does (a playbook, the repo's ansible.cfg, the
project's library/ and module_utils/) and then checks the state of the server itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from itertools import count
from pathlib import Path

import pytest
from conftest import INDEX, PATTERN, seed_sessions, snapshot, zset

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = str(BIN / "ansible-playbook")
ANSIBLE_DOC = str(BIN / "ansible-doc")
INDEX_NAME = INDEX.decode()
PASSWORD = "Sup3r-s3cret-xyz"  # noqa: S105 - a test server's password, meant to be spotted
WRONG_PASSWORD = "Wr0ng-s3cret-abc"  # noqa: S105

# Keys Ansible itself adds to a registered result; they are not part of the module's report.
ANSIBLE_ADDED_KEYS = {"invocation", "diff", "changed", "failed", "warnings", "deprecations"}
# The report. Counts are nested under "counts" and "index_counts": a truthy top-level
# "skipped" makes Ansible show the task as skipped, and "failed" is Ansible's failure flag.
REPORT_KEYS = {
    "counts",
    "index_counts",
    "verified",
    "samples",
    "strategy",
    "duration",
    "keys_per_second",
    "msg",
}
KEY_COUNTS = {"found", "migrated", "skipped", "expired", "failed"}
INDEX_COUNTS = {"found", "added", "present", "orphans", "failed"}

pytestmark = pytest.mark.ansible

_run_ids = count()


# Helpers -------------------------------------------------------------------------------------


def ansible_env(tmp_path):
    """The caller's environment minus any ANSIBLE_* setting, pointed at the repo's ansible.cfg."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local-tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote-tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    env.pop("ANSIBLE_FORCE_COLOR", None)
    return env


def run_ansible(tmp_path, command):
    """Run an Ansible command from the repo root, the way an operator does."""
    return subprocess.run(
        command,
        cwd=ROOT,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def run_tasks(
    tmp_path,
    calls,
    *,
    check=False,
    diff=False,
    verbose=False,
    ignore_errors=False,
    python=sys.executable,
):
    """Run one playbook with a redis_db_migrate task per dict of module args in ``calls``.

    Tasks are named "migrate 0", "migrate 1", ... Each registers its result, and an ``always``
    section writes every registered result to a JSON file (with check_mode off, so this also
    works under --check), so a failing task still hands back its full result while
    ansible-playbook keeps its own exit code. Returns (returncode, stdout + stderr, results),
    with None for a task that never ran.
    """
    work = tmp_path / f"play{next(_run_ids)}"
    work.mkdir()
    migrate_tasks, save_tasks, result_files = [], [], []
    for number, args in enumerate(calls):
        var = f"result{number}"
        dest = work / f"{var}.json"
        result_files.append(dest)
        task = {"name": f"migrate {number}", "redis_db_migrate": args, "register": var}
        if ignore_errors:
            task["ignore_errors"] = True
        migrate_tasks.append(task)
        save_tasks.append(
            {
                "name": f"save result {number}",
                "ansible.builtin.copy": {
                    "content": f"{{{{ {var} | to_nice_json }}}}",
                    "dest": str(dest),
                    "mode": "0600",
                },
                "when": f"{var} is defined",
                "check_mode": False,
                "changed_when": False,
                "diff": False,
            }
        )
    playbook = [
        {
            "name": "redis_db_migrate under test",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [{"block": migrate_tasks, "always": save_tasks}],
        }
    ]
    inventory = {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": str(python),
                }
            }
        }
    }
    # JSON is YAML: no quoting surprises for patterns such as "storyart:session:*".
    (work / "playbook.yml").write_text(json.dumps(playbook, indent=2))
    (work / "hosts.yml").write_text(json.dumps(inventory, indent=2))
    command = [ANSIBLE_PLAYBOOK, "-i", str(work / "hosts.yml"), str(work / "playbook.yml")]
    if check:
        command.append("--check")
    if diff:
        command.append("--diff")
    if verbose:
        command.append("-vvv")
    proc = run_ansible(tmp_path, command)
    results = [json.loads(path.read_text()) if path.exists() else None for path in result_files]
    return proc.returncode, proc.stdout + proc.stderr, results


def run_module(tmp_path, args, **kwargs):
    """One redis_db_migrate task: (returncode, stdout + stderr, result dict or None)."""
    rc, output, results = run_tasks(tmp_path, [args], **kwargs)
    return rc, output, results[0]


def tcp_args(server, **extra):
    """Module args for StoryArt's migration, db 1 -> db 0, over TCP to ``server``."""
    args = {
        "login_host": "127.0.0.1",
        "login_port": server.port,
        "source_db": 1,
        "target_db": 0,
        "patterns": [PATTERN],
        "indexes": [INDEX_NAME],
    }
    args.update(extra)
    return args


def recap(output, host="localhost"):
    """The PLAY RECAP counters of ``host`` as ints."""
    match = re.search(rf"^{host}\s*:\s*(.*)$", output.split("PLAY RECAP")[-1], re.MULTILINE)
    assert match, f"no PLAY RECAP line for {host}:\n{output}"
    return {name: int(value) for name, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


def task_status(output, name="migrate 0"):
    """How the callback reported task ``name``: ok, changed, skipping or fatal."""
    section = output.split(f"TASK [{name}]", 1)[1]
    section = re.split(r"^(?:TASK \[|PLAY RECAP)", section, maxsplit=1, flags=re.MULTILINE)[0]
    match = re.search(r"^(ok|changed|skipping|fatal|failed): \[localhost\]", section, re.MULTILINE)
    assert match, f"no status line for task {name!r}:\n{output}"
    return match.group(1)


def seed_with_overlap(server, total, already_there):
    """``total`` sessions in db 1; the first ``already_there`` also in db 0, newer, own scores.

    db 1 also holds a key no pattern matches, and db 0 an unrelated key: neither may move.
    Returns (session names, names already in db 0).
    """
    source, target = server.client(1), server.client(0)
    names = seed_sessions(source, total)
    source.set(b"storyart:config:theme", b"dark")
    present = names[:already_there]
    for n, name in enumerate(present):
        target.set(name, b'{"story":"edited in db 0"}', ex=3600)
        target.zadd(INDEX, {name: float(n + 1)})
    target.set(b"other:app:key", b"keep me", ex=7200)
    return names, present


# 1. Documentation ------------------------------------------------------------------------------


def test_ansible_doc_renders_options_and_attributes(tmp_path):
    proc = run_ansible(tmp_path, [ANSIBLE_DOC, "redis_db_migrate"])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # Found through ansible.cfg's library path, i.e. the project's own module.
    assert str(ROOT / "library" / "redis_db_migrate.py") in output
    for option in ("source_db", "target_db", "patterns", "indexes", "login_password", "strategy"):
        assert option in proc.stdout, option
    assert "dump-restore" in proc.stdout
    attributes = proc.stdout.split("ATTRIBUTES", 1)[1]
    assert re.search(r"check_mode:.*?support: full", attributes, re.DOTALL)
    assert re.search(r"diff_mode:.*?support: full", attributes, re.DOTALL)
    assert "ERROR" not in output
    assert "Traceback" not in output


# 2. Check mode -------------------------------------------------------------------------------


def test_check_mode_reports_the_plan_and_writes_nothing(tmp_path, redis_server):
    names, present = seed_with_overlap(redis_server, 20, 5)
    source, target = redis_server.client(1), redis_server.client(0)
    source_before, target_before = snapshot(source), snapshot(target)
    index_before = zset(target)
    writes_before = redis_server.rdb_changes()

    rc, output, result = run_module(tmp_path, tcp_args(redis_server), check=True)

    assert rc == 0, output
    assert result["changed"] is True
    assert result["dry_run"] is True
    assert result["counts"]["found"] == 20
    assert result["counts"]["migrated"] == 15
    assert result["counts"]["skipped"] == 5
    assert result["counts"]["failed"] == 0
    assert result["index_counts"]["found"] == 20
    assert result["index_counts"]["added"] == 15
    assert result["index_counts"]["present"] == 5
    assert result["verified"] is None
    assert set(result["samples"]["migrated"]) <= {n.decode() for n in names[5:]}
    assert "DRY RUN" in result["msg"]
    # The server saw no write at all, and both dbs are exactly as before.
    assert redis_server.rdb_changes() == writes_before
    assert snapshot(source) == source_before
    assert snapshot(target) == target_before
    assert zset(target) == index_before
    # Ansible must report the planned change as a change, not as a skipped task.
    assert task_status(output) == "changed", output
    assert recap(output)["changed"] == 1, output
    assert recap(output)["skipped"] == 0, output


# 3. Check mode with --diff -------------------------------------------------------------------


def test_check_diff_shows_added_keys_capped(tmp_path, redis_server):
    names = seed_sessions(redis_server.client(1), 30)
    writes_before = redis_server.rdb_changes()

    rc, output, result = run_module(tmp_path, tcp_args(redis_server), check=True, diff=True)

    assert rc == 0, output
    assert result["counts"]["migrated"] == 30
    assert f"redis://127.0.0.1:{redis_server.port}/0" in output
    shown = re.findall(r"^\+\+ (storyart:session:\d+)$", output, re.MULTILINE)
    assert len(shown) == 10, output
    assert set(shown) <= {n.decode() for n in names}
    assert re.search(r"^\+\+ \.\.\. and 20 more keys$", output, re.MULTILINE), output
    assert "(+30)" in output
    assert redis_server.rdb_changes() == writes_before
    assert redis_server.client(0).dbsize() == 0


# 4 and 5. Real run, then a no-op rerun -----------------------------------------------------------


def test_real_run_then_noop_rerun(tmp_path, redis_server):
    names, present = seed_with_overlap(redis_server, 20, 5)
    source, target = redis_server.client(1), redis_server.client(0)
    source_before, target_before = snapshot(source), snapshot(target)
    source_index = zset(source)
    target_index_before = zset(target)

    rc, output, result = run_module(tmp_path, tcp_args(redis_server))

    assert rc == 0, output
    assert result["changed"] is True
    assert result["dry_run"] is False
    assert result["counts"]["migrated"] == 15
    assert result["counts"]["skipped"] == 5
    assert result["counts"]["failed"] == 0
    assert result["verified"] is True
    assert result["index_counts"]["added"] == 15
    assert result["index_counts"]["present"] == 5
    target_after = snapshot(target)
    for name in names[5:]:
        # Same type, value (DUMP payload) and absolute expiry in ms as in the source.
        assert target_after[name] == source_before[name], name
    for name in present:
        assert target_after[name] == target_before[name], name  # never overwritten
    assert target_after[b"other:app:key"] == target_before[b"other:app:key"]
    assert set(target_after) == set(target_before) | set(names) | {INDEX}
    assert b"storyart:config:theme" not in target_after
    # Index merged with ZADD NX: members already in db 0 keep their db 0 score.
    assert zset(target) == {**source_index, **target_index_before}
    assert target_index_before != {k: source_index[k] for k in target_index_before}
    # The source db is byte-identical.
    assert snapshot(source) == source_before
    first_status, first_recap = task_status(output), recap(output)

    writes_before = redis_server.rdb_changes()
    rc, output, again = run_module(tmp_path, tcp_args(redis_server))

    assert rc == 0, output
    assert again["changed"] is False
    assert again["counts"]["migrated"] == 0
    assert again["counts"]["skipped"] == 20
    assert again["index_counts"]["added"] == 0
    assert again["index_counts"]["present"] == 20
    assert again["verified"] is True
    assert redis_server.rdb_changes() == writes_before
    assert snapshot(target) == target_after
    assert snapshot(source) == source_before
    assert recap(output)["changed"] == 0, output
    assert recap(output)["failed"] == 0, output
    # Ansible must show the real run as changed and the rerun as ok; neither was skipped.
    assert first_status == "changed", first_recap
    assert first_recap["changed"] == 1, first_recap
    assert first_recap["skipped"] == 0, first_recap
    assert task_status(output) == "ok", output
    assert recap(output)["skipped"] == 0, output


# 6. Same result keys whatever happened ---------------------------------------------------------


def test_result_keys_are_the_same_for_check_real_and_noop_runs(tmp_path, redis_server):
    names, _ = seed_with_overlap(redis_server, 8, 2)
    expected = {  # (changed, verified, migrated, skipped) per run
        "check": (True, None, 6, 2),
        "real": (True, True, 6, 2),
        "noop": (False, True, 0, 8),
    }

    key_sets = {}
    for label, check in (("check", True), ("real", False), ("noop", False)):
        rc, output, result = run_module(tmp_path, tcp_args(redis_server), check=check)
        assert rc == 0, output
        key_sets[label] = {
            key
            for key in result
            if key not in ANSIBLE_ADDED_KEYS and not key.startswith("_ansible")
        }
        assert key_sets[label] >= REPORT_KEYS, (label, REPORT_KEYS - key_sets[label])
        assert set(result["counts"]) == KEY_COUNTS, label
        assert set(result["index_counts"]) == INDEX_COUNTS, label
        assert set(result["samples"]) == {"migrated", "skipped", "expired"}, label
        # Ansible's own status keys must keep their meaning on a successful run.
        assert "skipped" not in result, label
        assert result.get("failed", False) is False, label
        assert result["strategy"] == "copy"
        assert isinstance(result["duration"], float)
        assert isinstance(result["keys_per_second"], int)
        assert isinstance(result["msg"], str)
        counts = result["counts"]
        got = (result["changed"], result["verified"], counts["migrated"], counts["skipped"])
        assert got == expected[label], label
        assert task_status(output) == ("changed" if result["changed"] else "ok"), output
    assert key_sets["check"] == key_sets["real"] == key_sets["noop"], key_sets
    assert redis_server.client(0).exists(*names) == 8


# 7. A failing run ------------------------------------------------------------------------------


def test_index_of_wrong_type_fails_the_play_and_writes_nothing(tmp_path, redis_server):
    seed_sessions(redis_server.client(1), 5)
    target = redis_server.client(0)
    target.set(INDEX, b"not a sorted set")
    source_before, target_before = snapshot(redis_server.client(1)), snapshot(target)
    writes_before = redis_server.rdb_changes()

    rc, output, result = run_module(tmp_path, tcp_args(redis_server))

    assert rc != 0, output
    assert result["failed"] is True
    assert INDEX_NAME in result["msg"]
    assert "not a sorted set" in result["msg"]
    assert "db 0" in result["msg"]
    assert recap(output)["failed"] == 1, output
    assert task_status(output) == "fatal", output
    assert "Traceback" not in output
    assert redis_server.rdb_changes() == writes_before
    assert snapshot(target) == target_before
    assert snapshot(redis_server.client(1)) == source_before


# 8. The password never leaks -------------------------------------------------------------------


def test_password_never_appears_in_any_output(tmp_path, redis_factory):
    server = redis_factory(f"requirepass {PASSWORD}", password=PASSWORD)
    names = seed_sessions(server.client(1), 12)
    source_before = snapshot(server.client(1))

    rc, output, result = run_module(
        tmp_path, tcp_args(server, login_password=PASSWORD), verbose=True, diff=True
    )

    assert rc == 0, output
    assert result["counts"]["migrated"] == 12
    assert result["verified"] is True
    assert PASSWORD not in output
    assert PASSWORD not in json.dumps(result)
    # -vvv really printed the module's arguments and result, with the password masked.
    assert re.search(r'"login_password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"', output), output
    assert result["msg"] in output
    target_after = snapshot(server.client(0))
    assert all(target_after[name] == source_before[name] for name in names)

    writes_before = server.rdb_changes()
    rc, output, result = run_module(
        tmp_path,
        tcp_args(server, login_password=WRONG_PASSWORD, target_db=2),
        verbose=True,
        diff=True,
        ignore_errors=True,
    )

    assert rc == 0, output  # the failure was ignored, so the play itself succeeds
    assert result["failed"] is True
    assert "authentication" in result["msg"].lower()
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in output
        assert secret not in json.dumps(result)
    assert "Traceback" not in output
    assert server.rdb_changes() == writes_before
    assert server.client(2).dbsize() == 0


# 9. Bad input ----------------------------------------------------------------------------------


def test_bad_input_is_rejected_with_clear_messages(tmp_path, redis_server):
    seed_sessions(redis_server.client(1), 3)
    writes_before = redis_server.rdb_changes()
    without_patterns = tcp_args(redis_server)
    del without_patterns["patterns"]
    calls = [
        tcp_args(redis_server, source_db="one"),
        tcp_args(redis_server, strategy="bogus"),
        without_patterns,
        tcp_args(redis_server, source_db=1, target_db=1),
    ]

    rc, output, results = run_tasks(tmp_path, calls, ignore_errors=True)

    assert rc == 0, output
    assert all(result is not None and result["failed"] is True for result in results), results
    wrong_type, bad_choice, missing, same_db = (result["msg"] for result in results)
    assert "source_db" in wrong_type
    assert "int" in wrong_type
    assert "strategy" in bad_choice
    assert "bogus" in bad_choice
    assert all(choice in bad_choice for choice in ("auto", "copy", "dump-restore"))
    assert "required" in missing
    assert "patterns" in missing
    assert "source_db and target_db are both 1" in same_db
    assert "Traceback" not in output
    assert all("Traceback" not in json.dumps(result) for result in results)
    assert recap(output)["ignored"] == 4, output
    assert redis_server.rdb_changes() == writes_before
    assert redis_server.client(0).dbsize() == 0


# 10. redis-py missing on the managed host ------------------------------------------------------


def test_missing_redis_library_fails_with_missing_required_lib(tmp_path, redis_server):
    venv = tmp_path / "no-redis-venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import redis"], capture_output=True, timeout=60, check=False
    )
    assert probe.returncode != 0, "the bare venv must not be able to import redis"
    seed_sessions(redis_server.client(1), 3)

    rc, output, result = run_module(
        tmp_path, tcp_args(redis_server), python=python, ignore_errors=True
    )

    assert result is not None, output
    assert result["failed"] is True, result
    assert "Failed to import the required Python library (redis)" in result["msg"]
    assert str(python) in result["msg"]
    assert "Traceback" not in output
    assert "Traceback" not in json.dumps(result)
    assert redis_server.client(0).dbsize() == 0


# 11. Unix socket -------------------------------------------------------------------------------


def test_unix_socket_connection_migrates(tmp_path, redis_server):
    names = seed_sessions(redis_server.client(1), 10)
    source_before = snapshot(redis_server.client(1))
    args = {
        "login_unix_socket": redis_server.unix_socket,
        "source_db": 1,
        "target_db": 0,
        "patterns": [PATTERN],
        "indexes": [INDEX_NAME],
    }

    rc, output, result = run_module(tmp_path, args)

    assert rc == 0, output
    assert result["endpoint"] == f"unix:{redis_server.unix_socket}"
    assert result["counts"]["migrated"] == 10
    assert result["verified"] is True
    target = redis_server.client(0)
    target_after = snapshot(target)
    assert all(target_after[name] == source_before[name] for name in names)
    assert zset(target) == zset(redis_server.client(1))
    assert snapshot(redis_server.client(1)) == source_before
