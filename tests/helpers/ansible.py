"""Ansible run the way an operator runs it, for the tests: ansible-playbook and ansible-doc from
the repository root with its ansible.cfg, and what they print and write read back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import yaml
from ansible.release import __version__ as _ansible_core

from .data import INDEX, PATTERN
from .engine import ROOT

# The ansible-core running the tests, (major, minor): where its own behaviour differs between
# the releases the package declares, a test says what each does.
ANSIBLE_CORE = tuple(int(part) for part in _ansible_core.split(".")[:2])

BIN = Path(sys.executable).parent
ANSIBLE = str(BIN / "ansible")
ANSIBLE_PLAYBOOK = str(BIN / "ansible-playbook")
ANSIBLE_DOC = str(BIN / "ansible-doc")
MIGRATE = ROOT / "playbooks" / "migrate_sessions.yml"
CLEANUP = ROOT / "playbooks" / "cleanup_source.yml"
CONFIRM = "storyart_session_migration_cleanup_confirm"

_run_ids = count()


def ansible_env(tmp_path, config=ROOT / "ansible.cfg"):
    """The caller's environment minus any ANSIBLE_* setting, pointed at ``config`` (the repo's
    ansible.cfg; None: the one Ansible finds itself, e.g. in the working directory), with
    this virtualenv's Ansible first on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    if config is not None:
        env["ANSIBLE_CONFIG"] = str(config)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local-tmp"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote-tmp"),
        ANSIBLE_NOCOLOR="1",
    )
    env.pop("ANSIBLE_FORCE_COLOR", None)
    return env


def run_ansible(tmp_path, command, *, log=False, env=None, timeout=300, **popen):
    """Run an Ansible command from the repo root, the way an operator does; with ``log``,
    Ansible logs to tmp_path/ansible.log too; ``env`` adds environment variables. ``popen``
    goes to subprocess.run (e.g. umask)."""
    env = {**ansible_env(tmp_path), **(env or {})}
    if log:
        env["ANSIBLE_LOG_PATH"] = str(tmp_path / "ansible.log")
    return subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **popen,
    )


def playbook_command(inventory, playbook, *args, report_dir):
    """The ansible-playbook command line of a project playbook on ``inventory``, its reports
    in ``report_dir``."""
    return [
        ANSIBLE_PLAYBOOK,
        "-i",
        str(inventory),
        str(playbook),
        "-e",
        f"storyart_session_migration_report_dir={report_dir}",
        *args,
    ]


def run_playbook(tmp_path, inventory, playbook, *args, report_dir, **options):
    """Run a project playbook on ``inventory`` with its reports in ``report_dir``, as an
    operator does (``options`` as for run_ansible); the Run, with the report folder it made."""
    before = set(report_dir.iterdir()) if report_dir.exists() else set()
    proc = run_ansible(
        tmp_path, playbook_command(inventory, playbook, *args, report_dir=report_dir), **options
    )
    after = set(report_dir.iterdir()) if report_dir.exists() else set()
    new = sorted(after - before)
    assert len(new) <= 1, new
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    return Run(proc.returncode, proc.stdout, output, new[0] if new else None)


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
        "indexes": [INDEX.decode()],
    }
    args.update(extra)
    return args


def not_an_int(name):
    """How ansible-core refuses a value of option ``name`` that is no integer: 2.19 says
    "is of type str", 2.16 "is of type <class 'ansible.utils.unsafe_proxy.AnsibleUnsafeText'>"."""
    return re.compile(
        rf"argument '{re.escape(name)}' is of type (?:<class '[\w.]+'>|\w+) "
        r"and we were unable to convert to int"
    )


def says(text, expected):
    """Whether ``text`` holds ``expected``: a string, or a pattern such as not_an_int's."""
    return bool(expected.search(text)) if isinstance(expected, re.Pattern) else expected in text


# A task's status line after which Ansible prints its result, here as YAML: the repository's
# ansible.cfg sets callback_result_format = yaml.
RESULT_LINE = re.compile(r"^(?:ok|changed|fatal|failed|skipping): \[[^\]]+\].*=>$")


def unfolded(output):
    """``output``'s lines, with each result Ansible printed as YAML (indented, quoted, folded
    at 80 columns, as ansible-core 2.16 prints its failure messages too) printed again as
    ``    key: value``, a string as it is and the rest as JSON: a message reads whole, on its
    own lines."""
    lines = [line.rstrip() for line in output.splitlines()]
    out = []
    while lines:
        out.append(lines.pop(0))
        if RESULT_LINE.match(out[-1]):
            block = []
            while lines and lines[0].startswith("    "):
                block.append(lines.pop(0))
            for key, value in yaml.safe_load(textwrap.dedent("\n".join(block))).items():
                shown = value if isinstance(value, str) else json.dumps(value)
                out.extend(f"    {key}: {shown}".splitlines())
    return out


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


@dataclass
class Run:
    rc: int
    stdout: str
    output: str  # stdout + stderr
    folder: Path | None  # the report folder this run created

    def reports(self):
        """The records of this run's report, by host."""
        assert self.folder is not None, self.output
        return json.loads((self.folder / "report.json").read_text())


def bare_python(tmp_path):
    """A Python without redis-py, like an app host before python3-redis is installed."""
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
    return python


def write_inventory(tmp_path, hosts):
    """A YAML inventory of ``hosts`` (name -> vars) in the storyart group, run locally.

    It lives in a folder named "staging", which names the report folders.
    """
    folder = tmp_path / "staging"
    folder.mkdir(exist_ok=True)
    group = {}
    for name, host_vars in hosts.items():
        group[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            **host_vars,
        }
    path = folder / "hosts.yml"
    path.write_text(yaml.safe_dump({"storyart": {"hosts": group}}, sort_keys=False))
    return path
