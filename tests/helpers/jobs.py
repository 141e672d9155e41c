"""Background runs, for the tests that stop them or look at what they leave on disk: a playbook
started the way a terminal starts it, a Ctrl-C, and the job it leaves running, found by the run
file the module records (module_utils/redis_db_migration/running.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from .ansible import ansible_env, playbook_command
from .engine import ROOT
from .servers import wait_for

STOP = ROOT / "playbooks" / "stop_sessions.yml"


def start_play(tmp_path, inventory, playbook, *args, report_dir, env=None):
    """Start a project playbook as run_playbook() runs it, without waiting: in a process group of
    its own, as a terminal starts it, its output in tmp_path/<playbook>.out. Returns the Popen."""
    # The child keeps its own copy of the file: this one closes once it has started.
    with open(tmp_path / f"{Path(playbook).stem}.out", "w") as output:
        return subprocess.Popen(
            playbook_command(inventory, playbook, *args, report_dir=report_dir),
            cwd=ROOT,
            env={**ansible_env(tmp_path), **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def interrupt(playbook):
    """Ctrl-C: SIGINT to the playbook's whole process group, as the terminal sends it; returns
    once ansible-playbook has ended."""
    os.killpg(playbook.pid, signal.SIGINT)
    return playbook.wait(timeout=120)


def running_job(run_dir):
    """The run file of the one run recorded under ``run_dir`` (in its endpoint's folder),
    once the module has written it."""
    found = []

    def recorded():
        found[:] = sorted(Path(run_dir).glob("*/*.run.json"))
        return len(found) == 1

    wait_for(recorded, f"one run file under {run_dir}", timeout=120)
    return json.loads(found[0].read_text())


def alive(pid):
    """Whether process ``pid`` runs: it exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def kill_job(pid):
    """SIGKILL every process of the session ``pid`` runs in: an async job is a session of its
    own (async_wrapper's watcher, its child and the module), so nothing is left to clean up."""
    session = os.getsid(pid)
    assert session != os.getsid(0), "the job must not share the tests' session"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # gone meanwhile, or another user's: not the job's
    wait_for(lambda: not alive(pid), f"the killed job's module, pid {pid}, to end")
