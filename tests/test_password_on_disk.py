"""The Redis password on disk during a background run, and after it is killed.

Ansible writes a module's arguments in clear into the AnsiballZ file it starts the module
from, and removes that file only when the run ends: a background run outlives a Ctrl-C of
ansible-playbook, and a killed one never ends. The module removes the file as soon as it has
read its arguments. Here every file under Ansible's temporary and async directories, the
system temp directory the run uses, and the run directory is searched for the password,
again and again while a real ansible-playbook migrates, then after the job and the playbook
are killed with SIGKILL.
"""

from __future__ import annotations

import os
import secrets
import signal
import tempfile
import zipfile
from pathlib import Path

import pytest
from helpers import (
    MIGRATE,
    ansible_env,
    kill_job,
    running_job,
    seed_sessions,
    start_play,
    wait_for,
    write_inventory,
)

pytestmark = pytest.mark.ansible

# Searches once the module has written its first keys, for it had read its arguments by
# then, each after the job has written more.
SEARCHES = 20


def holding(password, folders, system_temp, before):
    """Every file under ``folders``, and under the entries of ``system_temp`` not in
    ``before``, that holds ``password``: in its bytes, or in a member of a zip file (the
    AnsiballZ payload is one)."""
    secret = password.encode()
    found = []
    roots = [*folders, *(path for path in Path(system_temp).iterdir() if path.name not in before)]
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            try:
                data = path.read_bytes() if path.is_file() else b""
                if secret in data or (path.suffix == ".zip" and _zipped(path, secret)):
                    found.append(path)
            except (FileNotFoundError, NotADirectoryError, PermissionError, zipfile.BadZipFile):
                continue  # gone or changing meanwhile: the next search reads it
    return found


def _zipped(path, secret):
    with zipfile.ZipFile(path) as archive:
        return any(secret in archive.read(name) for name in archive.namelist())


def test_the_password_is_on_disk_only_until_the_module_reads_it_even_if_killed(
    tmp_path, redis_factory
):
    password = f"pw{secrets.token_hex(16)}"
    server = redis_factory(f"requirepass {password}", password=password)
    seed_sessions(server.client(1), 3000)
    inventory = write_inventory(
        tmp_path,
        {
            "app1": {
                "storyart_session_migration_login_port": server.port,
                "storyart_session_migration_login_password": password,
                # Rate-limited: the run goes in the background (async), for a minute.
                "storyart_session_migration_max_keys_per_second": 100,
                "storyart_session_migration_run_dir": str(tmp_path / "runs"),
            }
        },
    )
    # Every directory a run writes to is this test's own.
    env = ansible_env(tmp_path)
    system_temp = tmp_path / "system-tmp"
    async_dir = tmp_path / "ansible-async"
    for folder in (system_temp, async_dir):
        folder.mkdir()
    folders = [
        Path(env[name]) for name in ("ANSIBLE_HOME", "ANSIBLE_LOCAL_TEMP", "ANSIBLE_REMOTE_TEMP")
    ] + [async_dir, system_temp, tmp_path / "runs", tmp_path / "reports"]
    # And what ansible-playbook printed.
    folders.append(tmp_path / "migrate_sessions.out")
    shared_temp = tempfile.gettempdir()
    before = {path.name for path in Path(shared_temp).iterdir()}
    target = server.client(0)

    playbook = start_play(
        tmp_path,
        inventory,
        MIGRATE,
        report_dir=tmp_path / "reports",
        env={"ANSIBLE_ASYNC_DIR": str(async_dir), "TMPDIR": str(system_temp)},
    )
    job = None
    try:
        job = running_job(tmp_path / "runs")
        wait_for(lambda: target.dbsize() > 0, "the job's first keys", timeout=120)
        during = []
        for _ in range(SEARCHES):
            during.append(holding(password, folders, shared_temp, before))
            written = target.dbsize()
            wait_for(lambda seen=written: target.dbsize() > seen, "the job to write on")
        # The places searched are the run's: its job file, its wrapper's folder, its payload.
        assert list(async_dir.iterdir()), "no async job file where the search looks"
        assert list(Path(env["ANSIBLE_REMOTE_TEMP"]).glob("ansible-tmp-*/*async_wrapper.py"))
        assert list(system_temp.glob("ansible_redis_db_migrate_payload_*/*.zip"))
    finally:
        # kill -9, the job first: nothing is left to clean up after it.
        if job is not None:
            kill_job(job["pid"])
        os.killpg(playbook.pid, signal.SIGKILL)
        playbook.wait()

    after = holding(password, folders, shared_temp, before)

    assert during == [[]] * SEARCHES, during
    assert after == [], after
    assert "Traceback" not in folders[-1].read_text()
