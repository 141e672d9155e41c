"""Every document holds to the code: the README, CONTRIBUTING.md, the collection's guides, the
role's, Molecule's and the collection's READMEs. Each command a document shows runs as written
(against the demo's Redis where it needs one) or is run by a test or a stage it names; each
test it names exists; each excerpt of output it shows is what the command prints; each message
the troubleshooting guide quotes is one the code prints."""

from __future__ import annotations

import ast
import functools
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import ansible
import pytest
import yaml
from helpers import ANSIBLE, ANSIBLE_PLAYBOOK, ROOT, ansible_env, run_ansible, unfolded

DOCS = [
    "README.md",
    "CONTRIBUTING.md",
    *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs/docsite/rst").glob("*.rst")),
    "roles/storyart_session_migration/README.md",
    "molecule/README.md",
    "collection/README.md",
]
GUIDES = ROOT / "docs" / "docsite" / "rst"
ROLE = ROOT / "roles" / "storyart_session_migration"


@dataclass(frozen=True)
class Block:
    """A code block of a document: its language, its text, and the command whose output it
    shows (a comment "output of: <command>" just before it), if any."""

    doc: str
    lang: str
    text: str
    output_of: str | None


# Markdown: ```lang ... ```, after an optional <!-- output of: ... -->.
MD_BLOCK = re.compile(r"^(?:<!-- output of: (.+?) -->\n)?```(\w*)\n(.*?)\n```$", re.M | re.S)
# reStructuredText: .. code-block:: lang, its text indented two spaces, after an optional
# comment ".. output of: ...".
RST_BLOCK = re.compile(
    r"^(?:\.\. output of: (.+)\n\n)?\.\. code-block:: (\w+)\n\n((?:(?:  .*)?\n)+)", re.M
)


def read(doc):
    return (ROOT / doc).read_text()


def blocks(doc):
    text = read(doc)
    if doc.endswith(".rst"):
        return [
            Block(doc, lang, re.sub(r"(?m)^  ", "", body).strip("\n"), output_of)
            for output_of, lang, body in RST_BLOCK.findall(text)
        ]
    return [
        Block(doc, lang, body, output_of or None)
        for output_of, lang, body in MD_BLOCK.findall(text)
    ]


def all_blocks():
    return [block for doc in DOCS for block in blocks(doc)]


def test_every_document_is_read_and_the_readme_stays_short():
    assert {"guide_runbook.rst", "guide_troubleshooting.rst", "performance.rst"} <= {
        Path(doc).name for doc in DOCS
    }
    for doc in DOCS:
        assert (ROOT / doc).exists(), doc
    assert len(read("README.md").splitlines()) <= 170
    # The two commands that work on a fresh machine come first, and CI runs the second.
    first = blocks("README.md")[0].text.splitlines()
    assert [line.split()[0] for line in first] == ["./scripts/demo.sh", "./scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci/run").read_text()
    assert "bash scripts/test_beside.sh" in (ROOT / TEST_SH).read_text()


# Tests named -------------------------------------------------------------------------------

# `tests/x.py::test_a`, then `::test_b` for the same file; a file alone, `tests/x.py`.
NAMED_TEST = re.compile(r"``?(tests/[\w/]+\.py)?::(test_\w+)``?")
NAMED_FILE = re.compile(r"``?(tests/[\w/]+\.py)``?(?!::)")
NAMED_SCENARIO = re.compile(r"Molecule ``?(\w+)``?")


def named_tests(text):
    """(file, test) for every reference, in the order they appear."""
    found, current = [], None
    for path, name in NAMED_TEST.findall(text):
        current = path or current
        found.append((current, name))
    return found


@functools.cache
def defined_tests(path):
    tree = ast.parse((ROOT / path).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_test_the_documents_name_exists():
    references = [(doc, *reference) for doc in DOCS for reference in named_tests(read(doc))]
    assert len(references) >= 60, references  # every table of promises is read
    for doc, path, name in references:
        assert path is not None, f"{doc}: ::{name} follows no file"
        assert name in defined_tests(path), f"{path}::{name} is named in {doc} but not defined"
    for doc in DOCS:
        for path in NAMED_FILE.findall(read(doc)):
            assert (ROOT / path).is_file(), f"{path} is named in {doc} but does not exist"
        for scenario in NAMED_SCENARIO.findall(read(doc)):
            assert (ROOT / "molecule" / scenario / "molecule.yml").is_file(), (doc, scenario)


# What a document names ---------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)#\s]*)(?:#([\w-]+))?\)")


def anchors(markdown):
    """GitHub's anchors of a Markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_relative_link_leads_to_a_file_and_its_heading():
    for doc in DOCS:
        if not doc.endswith(".md"):
            continue  # the guides link with :ref:, which the docsite's build checks
        for target, anchor in LINK.findall(read(doc)):
            if target.startswith(("http://", "https://")):
                continue
            path = (ROOT / doc).parent / target if target else ROOT / doc
            assert path.exists(), f"{doc} links to {target}, which does not exist"
            if anchor:
                assert path.suffix == ".md", (doc, target, anchor)
                assert anchor in anchors(path.read_text()), f"{doc}: no heading #{anchor} in {path}"


def test_every_role_variable_and_rollout_option_named_exists():
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    playbooks = "".join(path.read_text() for path in (ROOT / "playbooks").glob("*.yml"))
    for doc in DOCS:
        text = read(doc)
        for name in re.findall(r"(?<![\w])storyart_session_migration_\w+", text):
            assert name in defaults, f"{doc} names {name}, which the role does not have"
        for name in re.findall(r"(?<![\w])storyart_rollout_\w+", text):
            assert name in playbooks, f"{doc} names {name}, which no playbook reads"


def test_every_yaml_block_parses():
    for block in all_blocks():
        if block.lang == "yaml":
            assert yaml.safe_load(block.text) is not None, block


def acl_line(text):
    [line] = re.findall(r"^ *(ACL SETUSER storyart-migrator .*)$", text, flags=re.M)
    return line


def test_the_acl_line_is_the_same_in_the_readme_and_the_production_guide():
    """tests/test_production.py applies the README's line; the guide shows the same."""
    assert acl_line(read("README.md")) == acl_line((GUIDES / "guide_production.rst").read_text())


# Messages ----------------------------------------------------------------------------------


def code_strings():
    """Every string the code can print, whitespace collapsed: the Python's string literals
    (an f-string's fixed parts, a NUL for each value it fills in) and the role's and
    playbooks' YAML, with Jinja's ' ~ ' joins taken out; and ansible-core's own sources, for
    the messages Ansible itself prints."""
    strings = []
    for folder in ("library", "module_utils"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr):
                    strings.append(
                        "".join(
                            part.value if isinstance(part, ast.Constant) else "\0"
                            for part in node.values
                        )
                    )
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    strings.append(node.value)
    for path in [*ROLE.rglob("*.yml"), *(ROOT / "playbooks").glob("*.yml")]:
        strings.append(re.sub(r"""['"]\s*~\s*['"]""", "", path.read_text()))
    strings += [path.read_text() for path in Path(ansible.__file__).parent.rglob("*.py")]
    return [re.sub(r"\s+", " ", text) for text in strings]


def quoted_messages():
    """The messages the troubleshooting guide quotes: each term of its definition lists."""
    text = (GUIDES / "guide_troubleshooting.rst").read_text()
    return re.findall(r"^``(.+?)``.*\n  \S", text, re.M)


def test_each_message_the_troubleshooting_guide_quotes_is_one_the_code_prints():
    messages = quoted_messages()
    assert len(messages) >= 30, messages
    strings = code_strings()
    for message in messages:
        # What the message fills in (<...>) and what the guide leaves out (...) divide it.
        for part in re.split(r"<[^>]*>|\.\.\.", message):
            fragment = part.strip(" .,:;()'\"")
            if len(fragment.split()) < 3:
                continue
            assert any(fragment in text for text in strings), (
                f"The troubleshooting guide quotes {fragment!r}, which no code prints"
            )


# Commands ----------------------------------------------------------------------------------


def shown_commands():
    """(doc, command) for every command in a shell block, as written: continuation lines
    joined, comments left out, spaces collapsed."""
    found = []
    for block in all_blocks():
        if block.lang not in ("sh", "shell"):
            continue
        for line in block.text.replace("\\\n", " ").splitlines():
            command = " ".join(re.sub(r"(?:^|\s)#.*$", "", line).split())
            if command:
                found.append((block.doc, command))
    return found


# How each command is checked. RUN: run here, as written, against the demo's Redis (for
# staging and production on the local inventory, the vault left out). ELSEWHERE: what runs it,
# a test named as the documents name them or a stage of scripts/test.sh. CHECK: what is
# checked here of a command that cannot run in a test.
RUN = "run"
TEST_SH = "scripts/test.sh"
# The stages test.sh runs in the background, beside its pytest stages.
BESIDE = "scripts/test_beside.sh"
ELSEWHERE = {
    r"\./scripts/test\.sh": (".ci/run", "bash scripts/test.sh"),
    r"\./scripts/build_collection\.sh": "tests/test_collection.py::"
    "test_the_build_is_named_after_the_galaxy_version_and_ships_every_part",
    r"ansible-galaxy collection install \S+ -p \./collections": "tests/test_collection.py::"
    "test_an_operator_dry_runs_then_migrates_with_the_collections_playbook",
    r"ansible-playbook -i inventories/\w+ storyart\.session_migration\.migrate_sessions.*": (
        "tests/test_collection.py::"
        "test_an_operator_dry_runs_then_migrates_with_the_collections_playbook"
    ),
    r"ansible-playbook -i inventories/\w+ sessions\.yml.*": "tests/test_collection.py::"
    "test_the_three_line_playbook_of_the_readme_migrates_with_the_role",
    r"ansible-builder build .*|ansible-navigator run .*": "tests/test_collection.py::"
    "test_ansible_builder_makes_a_build_context_that_installs_the_collection",
    r"\./scripts/release_changelog\.sh": "tests/test_collection.py::"
    "test_the_changelog_is_released_for_the_galaxy_version_and_current",
    r"\./scripts/build_docsite\.sh": (BESIDE, "bash scripts/build_docsite.sh"),
    r"\./scripts/sanity\.sh.*": (BESIDE, "bash scripts/sanity.sh"),
    r"PATH=\S+ molecule test (?:--all|-s \w+)": (BESIDE, "molecule test --all"),
    r"\.venv/ansible-2\.16/bin/python -m pytest .*": (
        TEST_SH,
        '"$OLDEST_ANSIBLE_VENV/bin/python" -m pytest',
    ),
}
CHECK = {
    r"\./scripts/bench\.sh .*": "bench",
    r"ansible-vault (?:create|edit) \S+": "vault",
    r"(?:STORYART_REDIS_SERVER=\S+ )?\.venv/bin/pytest .*": "pytest",
    r"\./scripts/test\.sh .+": "pytest",
}
RUNS = [
    r"(?:REDIS_HOST=\S+ REDIS_PORT=\S+ )?ansible-playbook (?:-i inventories/\S+ )?playbooks/.*",
    r"ansible localhost -m redis_db_migrate .*",
    r"redis-cli .*",
    r"cat storyart-reports/.*",
    r"\./scripts/demo\.sh",
]


def how_checked(command):
    """(kind, what) for ``command``: RUN, "elsewhere" or "check"."""
    for pattern in RUNS:
        if re.fullmatch(pattern, command):
            return RUN, None
    for pattern, where in ELSEWHERE.items():
        if re.fullmatch(pattern, command):
            return "elsewhere", where
    for pattern, what in CHECK.items():
        if re.fullmatch(pattern, command):
            return "check", what
    return None, None


def test_every_command_shown_is_run_here_or_by_what_it_names(tmp_path):
    commands = shown_commands()
    assert len(commands) >= 30, commands
    for doc, command in commands:
        kind, what = how_checked(command)
        assert kind, f"{doc} shows {command!r}: add how it is checked to tests/test_readme.py"
        for inventory in re.findall(r"-i inventories/(\S+)", command):
            for name in ("staging", "production") if inventory == "<env>" else (inventory,):
                assert yaml.safe_load((ROOT / "inventories" / name / "hosts.yml").read_text())
        if kind == "elsewhere" and isinstance(what, tuple):
            path, text = what
            assert text in (ROOT / path).read_text(), (doc, command, path)
            for scenario in re.findall(r"molecule test -s (\w+)", command):
                assert (ROOT / "molecule" / scenario / "molecule.yml").is_file(), command
        elif kind == "elsewhere":
            path, name = what.split("::")
            assert name in defined_tests(path), what
        elif what == "bench":
            options = (ROOT / "scripts/bench.py").read_text()
            for option in re.findall(r"--[\w-]+", command):
                assert f'"{option}"' in options, f"{doc}: bench.py has no {option}"
        elif what == "vault":
            folder = (ROOT / command.split()[-1]).parent
            assert "vault_storyart_redis_password" in (folder / "vars.yml").read_text(), doc
        elif what == "pytest":
            collect_only(tmp_path, command)


def collect_only(tmp_path, command):
    """What pytest would run of ``command`` (a pytest command, or test.sh's arguments, which
    go to pytest): at least one test, and no error."""
    words = shlex.split(command)
    env = {}
    while "=" in words[0]:
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    # From the repo root, in the environment the other commands of the docs run in.
    proc = run_ansible(
        tmp_path,
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + words[1:],
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, f"{command}:\n{proc.stdout}{proc.stderr}"
    assert re.search(r"^\d+(?:/\d+)? tests? collected", proc.stdout, re.M), proc.stdout


# Output ------------------------------------------------------------------------------------

# Where the excerpts say the reports went: the demo, run from a checkout there.
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
    replaced: a document's excerpt and a run's output, compared line by line."""
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


def as_run_here(command, port, reports):
    """``command`` as it runs here: the local inventory for any other (the demo's Redis is
    REDIS_HOST:REDIS_PORT), no vault, the demo's Redis for any other, the reports in
    ``reports``."""
    for pattern, replacement in [
        (r"^REDIS_HOST=\S+ REDIS_PORT=\S+ ", ""),
        (r" -i inventories/\S+", ""),
        (r" --ask-vault-pass", ""),
        (r"login_host=\S+", "login_host=127.0.0.1"),
        (r"login_port=\S+", f"login_port={port}"),
        (r"redis-cli(?: -h \S+ -p \S+)?", f"redis-cli -p {port}"),
        (r"storyart-reports/(?:production|staging|<env>)-", f"{reports}/local-"),
    ]:
        command = re.sub(pattern, replacement, command)
    return command


@pytest.mark.ansible
def test_every_command_the_docs_show_runs_and_prints_what_they_show(tmp_path, redis_factory):
    """On the demo's server and data (scripts/demo.sh), from a fresh start: first the commands
    whose output the guides show, in their order, each excerpt found in what its command
    prints; then every other command shown, once."""
    server = redis_factory("maxmemory 256mb")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/seed_demo_sessions.py"), "--port", str(server.port)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    reports = tmp_path / "storyart-reports"
    excerpts = [block for block in all_blocks() if block.output_of]
    assert len(excerpts) >= 6, excerpts  # every step of the rollout, the clean-up's two
    others = [
        command
        for _, command in shown_commands()
        if how_checked(command)[0] == RUN and command != "./scripts/demo.sh"
    ]
    done = set()
    for block in [*excerpts, *others]:
        command = block.output_of if isinstance(block, Block) else block
        command = as_run_here(command, server.port, reports)
        if command in done:
            continue
        done.add(command)
        proc = run_here(tmp_path, command, server.port, reports)
        assert proc.returncode == 0, f"{command}:\n{proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stdout + proc.stderr, command
        if isinstance(block, Block):
            printed = comparable(proc.stdout, reports)
            shown = comparable(block.text, reports)
            assert find_excerpt(printed, shown), "\n".join(
                [command, f"{block.doc} shows:", *shown, "", "the run printed:", *printed]
            )
    assert len(done) >= 10, done


def run_here(tmp_path, command, port, reports):
    """Run ``command`` as an operator does, from the repository root: Ansible's commands with
    the reports in ``reports``, the others (redis-cli, cat, with their pipes) as a shell runs
    them."""
    words = shlex.split(command)
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port)}
    if words[0] == "ansible-playbook":
        report_dir = f"storyart_session_migration_report_dir={reports}"
        return run_ansible(tmp_path, [ANSIBLE_PLAYBOOK, *words[1:], "-e", report_dir], env=env)
    if words[0] == "ansible":
        return run_ansible(tmp_path, [ANSIBLE, *words[1:]], env=env)
    return run_ansible(tmp_path, ["bash", "-c", command], env=env)


@pytest.mark.ansible
def test_the_demo_runs_the_dry_run_the_migration_and_a_rerun_that_changes_nothing(tmp_path):
    """The README's first command, on a machine where test.sh has set up what it needs. It
    writes its reports under the repository's storyart-reports/, as for an operator: the
    folders it adds are removed."""
    reports = ROOT / "storyart-reports"
    before = set(reports.iterdir()) if reports.exists() else set()
    try:
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts/demo.sh")],
            cwd=tmp_path,
            env=ansible_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        for folder in set(reports.iterdir()) - before if reports.exists() else ():
            shutil.rmtree(folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recaps = re.findall(r"^localhost +: ok=\d+ +changed=(\d+)", proc.stdout, re.M)
    assert [int(changed) > 0 for changed in recaps] == [True, True, False], proc.stdout
