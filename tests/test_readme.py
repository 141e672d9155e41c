"""The README's promises name the tests that prove them: every name must be a test that
exists, so a renamed or deleted test cannot leave a promise without its proof. And what the
README shows a run print is what the run prints."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys

import pytest
import yaml
from helpers import ANSIBLE_PLAYBOOK, ROOT, run_ansible, unfolded
from helpers.module import redis_db_migrate

README = (ROOT / "README.md").read_text()


def named_tests():
    """(file, test) for every reference: `tests/x.py::test_a` and the `::test_b` after it."""
    found = []
    for cell in re.findall(r"`tests/[^|]*", README):
        current = None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", cell):
            current = path or current
            found.append((current, name))
    return found


def test_every_test_the_readme_names_exists():
    references = named_tests()
    assert len(references) >= 40, references  # the guarantee tables are all read
    defined = {}
    for path, name in references:
        if path not in defined:
            tree = ast.parse((ROOT / path).read_text())
            defined[path] = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in defined[path], f"{path}::{name} is named in README.md but not defined"


def module_options_table():
    """The rows of the README's table of the module's options: option -> (default, meaning).
    A row may name several options, which then share its default."""
    section = README.split("## The `redis_db_migrate` module", 1)[1]
    table = section.split("| option | default | meaning |\n|---|---|---|\n", 1)[1]
    rows = {}
    for line in table.split("\n\n", 1)[0].splitlines():
        names, default, meaning = (cell.strip() for cell in line.strip().strip("|").split("|"))
        for name in re.findall(r"`(\w+)`", names):
            assert name not in rows, f"{name} has two rows"
            rows[name] = (default, meaning)
    return rows


def test_the_module_table_lists_every_option_with_its_default():
    """Operators read the options in the README's table: it must keep up with the argument
    spec, every option in it, each default and choice as the module has it."""
    spec = redis_db_migrate.module_rules()["argument_spec"]
    rows = module_options_table()

    assert set(rows) == set(spec)
    for name, (default, meaning) in rows.items():
        option = spec[name]
        if option.get("required"):
            assert default == "required", name
        elif "default" in option:
            shown = re.fullmatch(r"`([^`]*)`", default)
            assert shown, f"{name}: its default {option['default']!r} is shown as {default!r}"
            value = yaml.safe_load(shown.group(1))
            assert value == option["default"], name
            assert isinstance(value, bool) == isinstance(option["default"], bool), name
        else:
            # No default: the cell says in words what an unset option does, or nothing.
            assert "`" not in default, name
        for choice in option.get("choices", ()):
            assert f"`{choice}`" in meaning, f"{name}: choice {choice} is not named"
        if option.get("no_log"):
            assert "`no_log`" in meaning, f"{name}: the table does not say it is never shown"


# An excerpt of output: the command after "output of:" in a comment, then a text block.
OUTPUT = re.compile(r"^<!-- output of: (.+?) -->\n```text\n(.*?)\n```$", re.M | re.S)
# Where the README's excerpts say the reports went: the demo, run from a checkout there.
README_REPORTS = "/home/ops/storyart-session-migration/storyart-reports"
# What differs from run to run: a free port, the time, sizes, which keys a diff samples.
VARYING = [
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\d{8}T\d{6}Z"), "<time>"),
    (re.compile(r" *\b\d+(?:\.\d+)? (?:B|KiB|MiB|GiB|TiB)\b"), " <size>"),
    (re.compile(r"\d+\.\d+s, \d+ keys/s"), "<seconds>s, <rate> keys/s"),
    (re.compile(r"storyart:session:\d+"), "storyart:session:<stamp>"),
]


def comparable(text, reports):
    """``text``'s lines with each YAML result on one line and what varies from run to run
    replaced: the README's excerpt and a run's output, compared line by line."""
    lines = unfolded(text.replace(str(reports), README_REPORTS))
    for pattern, replacement in VARYING:
        lines = [pattern.sub(replacement, line) for line in lines]
    return lines


def find_excerpt(printed, excerpt):
    """Whether ``excerpt``'s lines are in ``printed``, in order and each run of them
    together; a line "..." in the excerpt stands for lines left out."""
    start = 0
    for part in "\n".join(excerpt).split("\n...\n"):
        lines = part.split("\n")
        found = [
            at
            for at in range(start, len(printed) - len(lines) + 1)
            if printed[at : at + len(lines)] == lines
        ]
        if not found:
            return False
        start = found[0] + len(lines)
    return True


@pytest.mark.ansible
def test_every_output_the_readme_shows_is_what_the_run_prints(tmp_path, redis_factory):
    excerpts = OUTPUT.findall(README)
    commands = [shlex.split(command) for command, _ in excerpts]
    assert len(excerpts) >= 6, commands  # every step of the rollout, the clean-up's two
    # The demo's server and data (scripts/demo.sh), on this repository's local inventory.
    server = redis_factory("maxmemory 256mb")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "seed_demo_sessions.py"),
            "--port",
            str(server.port),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    reports = tmp_path / "storyart-reports"

    for command, (_, excerpt) in zip(commands, excerpts):
        assert command[:2] == ["ansible-playbook", command[1]], command
        proc = run_ansible(
            tmp_path,
            [
                ANSIBLE_PLAYBOOK,
                *command[1:],
                "-e",
                f"storyart_session_migration_report_dir={reports}",
            ],
            env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(server.port)},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        printed = comparable(proc.stdout, reports)
        shown = comparable(excerpt, reports)
        assert find_excerpt(printed, shown), "\n".join(
            [" ".join(command), "README shows:", *shown, "", "the run printed:", *printed]
        )
