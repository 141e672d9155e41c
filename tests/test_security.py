"""Security properties of the package, each proved against real redis-server processes.

What the other test files already prove is not repeated here: the module's own output with
-vvv and --diff and a wrong password (test_module), the engine's messages for a wrong password
and the TLS errors (test_engine_errors), one real run's report files (test_playbooks).

1. The password appears nowhere after full runs of both playbooks (-vvv, --diff, check and
   real, a wrong password, a Redis that is down): not in stdout, stderr, Ansible's log, any
   report file or any file left in Ansible's temp dirs.
2. Error messages: the module's catch-all, ``ConnectionSettings.scrub`` and ``describe_error``
   on real redis-py exceptions, also when the password is the user name or in the host name.
3. Report folders are 0700 and every file in them 0600, whatever the umask.
4. TLS certificates and host names are checked unless validate_certs is turned off.
5. No shell command is built anywhere: no shell/raw/script task, no templated command line, no
   pipe lookup, no shell in the Python code.
6. Source and target naming the same db, whatever the spelling, are refused before any write.
"""

from __future__ import annotations

import ast
import json
import re
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
import yaml
from helpers import (
    ANSIBLE_CORE,
    ANSIBLE_DOC,
    CLEANUP,
    CONFIRM,
    INDEX,
    MIGRATE,
    PATTERN,
    ROOT,
    RedisServer,
    call_module,
    engine,
    free_port,
    not_an_int,
    recap,
    run_ansible,
    run_playbook,
    run_tasks,
    says,
    seed_sessions,
    snapshot,
    start_tls_server,
    tcp_args,
    write_inventory,
)

# Distinctive, and only letters, digits and dashes: a leak shows verbatim even inside JSON or a
# repr(), where quotes or backslashes in a password would be escaped and slip past a search.
SECRET = "Canary-Pw-7f3e91c2"  # noqa: S105 - a test server's password, meant to be spotted
WRONG_SECRET = "Canary-Wrong-4d2a8b6e"  # noqa: S105
OTHER_SECRET = "Other-user-Pw-58e0"  # noqa: S105
SECRETS = (SECRET, WRONG_SECRET)
# The masked argument as -vvv prints it: as YAML (the repository's ansible.cfg), or as JSON.
MASKED_ARG = re.compile(r'"?login_password"?: "?VALUE_SPECIFIED_IN_NO_LOG_PARAMETER\b')
INDEX_NAME = INDEX.decode()
ROLE = ROOT / "roles" / "storyart_session_migration"
SESSIONS = 6

ansible = pytest.mark.ansible


# Helpers -------------------------------------------------------------------------------------


def play(tmp_path, inventory, playbook, *args, report_dir=None):
    """Run a project playbook as an operator does, under umask 0, logging to tmp_path.

    With umask 0 every file and folder gets exactly the mode its creator asked for, so a mode
    checked afterwards is the code's doing, not the test machine's umask.
    """
    report_dir = report_dir or tmp_path / "reports"
    return run_playbook(
        tmp_path, inventory, playbook, *args, report_dir=report_dir, log=True, umask=0
    )


def leaks(output="", folders=(), secrets=SECRETS):
    """Where a secret shows: each line of ``output`` and each file under ``folders`` holding one.

    Only regular files are read (a redis unix socket is not); bytes, so any file can be searched.
    """
    found = [f"output: {line.strip()[:300]}" for line in output.splitlines() if has(line, secrets)]
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [f"{path}: holds {s}" for s in secrets if s.encode() in data]
    return found


def has(text, secrets=SECRETS):
    return any(secret in text for secret in secrets)


def assert_no_leak(output="", folders=()):
    found = leaks(output, folders)
    assert not found, "a password shows:\n" + "\n".join(found)


def module_args(port, **extra):
    return tcp_args(SimpleNamespace(port=port), login_password=SECRET, **extra)


def load_yaml(path):
    return yaml.load(path.read_text(), Loader=AnyTagLoader)  # noqa: S506 - a SafeLoader


class AnyTagLoader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's tags (!vault, !unsafe) as plain values."""


def _untagged(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


AnyTagLoader.add_multi_constructor("!", _untagged)


# 1. The password after full playbook runs ------------------------------------------------------

# Hosts of the leak fleet, all given a password: app1 the right one, app2 a wrong one (on the
# controller), app3 the right one for a Redis that is down (nothing listens on its port).
LEAK_RUNS = ("migrate-check", "migrate", "cleanup-check", "cleanup")
LEAK_HOSTS = ("app1", "app2", "app3")


@pytest.fixture(scope="module")
def leak_runs(tmp_path_factory):
    """Both playbooks, -vvv --diff, dry run then real, on the leak fleet; run once for the module.

    Each run writes into its own report dir under ``tmp/reports``; Ansible's temp dirs, home
    and log (ANSIBLE_LOCAL_TEMP, ANSIBLE_REMOTE_TEMP, ANSIBLE_HOME, ANSIBLE_LOG_PATH) are under
    ``tmp`` too, shared by the four runs.
    """
    tmp = tmp_path_factory.mktemp("leak")
    server = RedisServer(tmp / "redis", [f"requirepass {SECRET}"], SECRET).start()
    try:
        names = seed_sessions(server.client(1), SESSIONS)
        inventory = write_inventory(
            tmp,
            {
                "app1": {
                    "storyart_session_migration_login_port": server.port,
                    "storyart_session_migration_login_password": SECRET,
                },
                "app2": {
                    "storyart_session_migration_login_port": server.port,
                    "storyart_session_migration_login_password": WRONG_SECRET,
                    "storyart_session_migration_run_on": "controller",
                    "ansible_host": "127.0.0.1",
                    # The same Redis as app1's: named apart, so that it runs for itself.
                    "storyart_session_migration_endpoint": "app2 with a wrong password",
                },
                "app3": {
                    "storyart_session_migration_login_port": free_port(),
                    "storyart_session_migration_login_password": SECRET,
                },
            },
        )
        arguments = {
            "migrate-check": (MIGRATE, "--check", "--diff", "-vvv"),
            "migrate": (MIGRATE, "--diff", "-vvv"),
            "cleanup-check": (CLEANUP, "--check", "--diff", "-vvv"),
            "cleanup": (CLEANUP, "--diff", "-vvv", "-e", f"{CONFIRM}=delete-migrated-sessions"),
        }
        runs, db_sizes = {}, {}
        for label, (playbook, *args) in arguments.items():
            runs[label] = play(tmp, inventory, playbook, *args, report_dir=tmp / "reports" / label)
            db_sizes[label] = (server.client(0).dbsize(), server.client(1).dbsize())
        yield SimpleNamespace(tmp=tmp, runs=runs, db_sizes=db_sizes, names=names)
    finally:
        server.stop()


@ansible
def test_leak_runs_took_the_success_and_the_failure_paths(leak_runs):
    """The runs the leak tests search really authenticated, failed auth and failed to connect."""
    runs = leak_runs.runs
    # Sessions and index: 7 keys moved into db 0, then out of db 1 by the clean-up.
    assert leak_runs.db_sizes == {
        "migrate-check": (0, SESSIONS + 1),
        "migrate": (SESSIONS + 1, SESSIONS + 1),
        "cleanup-check": (SESSIONS + 1, SESSIONS + 1),
        "cleanup": (SESSIONS + 1, 0),
    }
    for label, run in runs.items():
        assert run.rc != 0, run.output  # app2 and app3 fail every run
        reports = run.reports()
        assert sorted(reports) == list(LEAK_HOSTS), label
        assert reports["app1"]["status"] == "ok", (label, reports["app1"]["failure"])
        assert "Authentication to Redis" in reports["app2"]["failure"], label
        assert "Cannot connect to Redis" in reports["app3"]["failure"], label
        for host in ("app2", "app3"):
            assert recap(run.output, host)["failed"] == 1, run.output
        # -vvv printed the module's arguments, password masked by its no_log.
        assert MASKED_ARG.search(run.stdout), label
    assert runs["migrate"].reports()["app1"]["migrate"]["counts"]["migrated"] == SESSIONS
    assert runs["cleanup"].reports()["app1"]["cleanup"]["counts"]["deleted"] == SESSIONS


@ansible
@pytest.mark.parametrize("label", LEAK_RUNS)
def test_password_appears_in_no_output_of_a_playbook_run(leak_runs, label):
    output = leak_runs.runs[label].output
    assert_no_leak(output)


@ansible
def test_password_appears_in_no_report_file(leak_runs):
    reports = leak_runs.tmp / "reports"
    files = [path for path in reports.rglob("*") if path.is_file()]
    # Per run: report.json and summary.txt.
    assert len(files) == len(LEAK_RUNS) * 2, files
    assert_no_leak(folders=[reports])


@ansible
def test_password_appears_in_no_ansible_log_or_temp_file(leak_runs):
    tmp = leak_runs.tmp
    log = tmp / "ansible.log"
    assert MASKED_ARG.search(log.read_text()), "the log must hold the -vvv output searched"
    assert_no_leak(log.read_text())
    for folder in ("ansible-local-tmp", "ansible-remote-tmp", "ansible-home"):
        assert (tmp / folder).is_dir(), f"{folder}: the env must have pointed Ansible there"
        assert_no_leak(folders=[tmp / folder])


# 3. Report files are private ----------------------------------------------------------------


@ansible
@pytest.mark.parametrize("label", LEAK_RUNS)
def test_report_folder_is_0700_and_its_files_0600_under_umask_0(leak_runs, label):
    run = leak_runs.runs[label]
    folder = run.folder
    assert folder is not None, run.output
    dry = label.endswith("-check")
    assert folder.name.endswith("-dry-run") is dry, folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    files = sorted(path.name for path in folder.iterdir())
    assert files == ["report.json", "summary.txt"], files
    assert sorted(run.reports()) == sorted(LEAK_HOSTS)
    for path in folder.iterdir():
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600, path
    # The report dir the run created above its folder is not open to others either.
    assert stat.S_IMODE(folder.parent.stat().st_mode) & 0o077 == 0, folder.parent


# 2. Error messages --------------------------------------------------------------------------


def test_scrub_masks_the_password_in_any_exception_text():
    settings = engine.ConnectionSettings(host="127.0.0.1", port=6379, password=SECRET)
    error = ValueError(f"token {SECRET!r} refused, and again {SECRET}")
    # The module's catch-all sentence, with an exception that quotes the password twice.
    message = (
        f"Unexpected {type(error).__name__} in mode migrate on {settings.endpoint}: {error}. "
        f"Rerunning is safe: every mode skips what is already done."
    )
    for text in (settings.scrub(error), settings.scrub(message)):
        assert SECRET not in text
        assert text.count("********") == 2, text
    assert settings.scrub(message).startswith("Unexpected ValueError in mode migrate on 127.0.0.1")
    # Matched literally: characters regexes or format strings treat specially change nothing.
    odd = "p.a*s+s?(w)[o]{r}d|^$\\%s"
    odd_settings = engine.ConnectionSettings(password=odd)
    assert odd not in odd_settings.scrub(f"x{odd}y{odd}"), odd_settings.scrub(f"x{odd}y{odd}")
    assert engine.ConnectionSettings().scrub(f"no password: {SECRET}").endswith(SECRET)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


# Where could the password get into an error message? Checked against the real servers:
# - The server's own error text: Redis does not echo AUTH's arguments (wrong password, unknown
#   user), so no redis-py exception carries the password by itself.
# - The user name equal to the password: an account named like its password, or login_user
#   and login_password filled from the same variable by mistake. Messages that name the user
#   would then show the password.
# - The password inside the host name: the app's REDIS_URL (redis://:password@host:6379)
#   pasted into login_host. Every message names the endpoint, made from login_host.
# - A host name that merely contains a short password by chance is not tested: the host name
#   is public, and masking it would only garble the message.
DESCRIBE_SCENARIOS = {
    # name: (what describe_error must say, what the engine's refusal must say, whether
    # redis-py's own text holds the password)
    "auth-failure-user-is-password": ("Authentication to Redis", "Authentication to Redis", False),
    "no-permission-user-is-password": (
        "lacks a permission",
        "may not run SCRIPT LOAD, EVALSHA",
        False,
    ),
    "connection-refused-user-is-password": (
        "Cannot connect to Redis",
        "Cannot connect to Redis",
        False,
    ),
    # The engine refuses a URL-like login_host before connecting, without echoing it.
    "password-in-login-host-url": ("Cannot connect to Redis", "looks like a URL", True),
    "tls-failure-user-is-password": ("TLS handshake", "TLS handshake", False),
}


def secured_tls_server(redis_factory, cert_and_key, ca):
    """A server on TLS only with a password and sessions in db 1."""
    server = start_tls_server(
        redis_factory, cert_and_key, ca, f"requirepass {SECRET}", password=SECRET
    )
    server.names = seed_sessions(server.client(1), SESSIONS)
    return server


def failing_connection(scenario, redis_factory, certificates):
    """Settings for the scenario and the real redis-py call that fails with them."""
    if scenario == "auth-failure-user-is-password":
        server = redis_factory(f"user migrator on >{OTHER_SECRET} ~* &* +@all")
        settings = server.settings(username=SECRET, password=SECRET)
        return settings, lambda: settings.client(0).ping()
    if scenario == "no-permission-user-is-password":
        server = redis_factory(f"user {SECRET} on >{SECRET} ~* &* +@all -@scripting")
        settings = server.settings(username=SECRET, password=SECRET)
        return settings, lambda: settings.client(0).eval("return 1", 0)
    if scenario == "connection-refused-user-is-password":
        settings = engine.ConnectionSettings(
            host="127.0.0.1", port=free_port(), username=SECRET, password=SECRET
        )
        return settings, lambda: settings.client(0).ping()
    if scenario == "password-in-login-host-url":
        settings = engine.ConnectionSettings(
            host=f"redis://:{SECRET}@127.0.0.1", port=free_port(), password=SECRET
        )
        return settings, lambda: settings.client(0).ping()
    server = secured_tls_server(redis_factory, certificates.server, certificates.ca)
    settings = engine.ConnectionSettings(
        host="127.0.0.1", port=server.tls_port, tls=True, username=SECRET, password=SECRET
    )
    return settings, lambda: settings.client(0).ping()


@pytest.mark.parametrize("scenario", list(DESCRIBE_SCENARIOS))
def test_describe_error_never_holds_the_password(scenario, redis_factory, certificates):
    expected, refused, raw_holds_secret = DESCRIBE_SCENARIOS[scenario]
    settings, call = failing_connection(scenario, redis_factory, certificates)
    with pytest.raises(redis.exceptions.RedisError) as caught:
        call()
    # Where redis-py's own text carries the password, only the scrubbing keeps it out.
    assert (SECRET in str(caught.value)) is raw_holds_secret, str(caught.value)

    message = engine.describe_error(caught.value, settings, "connecting")
    with pytest.raises(engine.MigrationError) as failed:
        engine.migrate(
            settings,
            engine.MigrationOptions(source_db=1, target_db=0, patterns=(PATTERN,)),
        )

    assert expected in message, message
    assert refused in str(failed.value), str(failed.value)
    shown = [text for text in (message, str(failed.value)) if SECRET in text]
    assert not shown, "the password shows in:\n" + "\n".join(shown)


@ansible
def test_module_odd_credentials_show_no_password(tmp_path, redis_factory):
    """Through ansible-playbook with -vvv: odd credentials get a clear refusal, no password.

    A client key without its certificate once made redis-py raise a TypeError that only the
    module's catch-all caught; the engine now refuses it by name before connecting.
    """
    server = redis_factory(f"requirepass {SECRET}", password=SECRET)
    seed_sessions(server.client(1), SESSIONS)
    key = tmp_path / "client.key"
    key.write_text("not used: redis-py fails before reading it\n")
    writes_before = server.rdb_changes()
    calls = [
        module_args(server.port, tls=True, client_key_file=str(key)),
        module_args(server.port, login_user=SECRET),
        module_args(server.port, login_host=f"redis://:{SECRET}@127.0.0.1"),
    ]

    rc, output, results = run_tasks(tmp_path, calls, verbose=True, diff=True, ignore_errors=True)

    assert rc == 0, output
    key_alone, user_is_password, url_host = (result["msg"] for result in results)
    # The argument spec's own rule, declared (required_by), before any code of the module runs.
    assert key_alone == "missing parameter(s) required by 'client_key_file': client_cert_file"
    assert "Authentication to Redis" in user_is_password, user_is_password
    assert url_host.startswith("login_host looks like a URL"), url_host
    assert all(result["failed"] is True for result in results), results
    assert "Traceback" not in output
    assert all("Traceback" not in json.dumps(result) for result in results)
    assert MASKED_ARG.search(output)
    assert_no_leak(output)
    assert [result for result in results if has(json.dumps(result))] == []
    assert server.rdb_changes() == writes_before
    assert server.client(0).dbsize() == 0


@ansible
def test_login_host_pasted_as_a_url_with_the_password_is_never_shown(tmp_path, redis_factory):
    """The role names each endpoint from login_host: the REDIS_URL mistake above, end to end.

    The role refuses it before naming the endpoint; what it prints and writes hides the password.
    """
    server = redis_factory(f"requirepass {SECRET}", password=SECRET)
    seed_sessions(server.client(1), SESSIONS)
    inventory = write_inventory(
        tmp_path,
        {
            "app1": {
                "storyart_session_migration_login_host": f"redis://:{SECRET}@127.0.0.1",
                "storyart_session_migration_login_port": server.port,
                "storyart_session_migration_login_password": SECRET,
            }
        },
    )
    writes_before = server.rdb_changes()

    run = play(tmp_path, inventory, MIGRATE, "--check", "-vvv")

    assert run.rc != 0, run.output
    assert "storyart_session_migration_login_host looks like a URL" in run.output, run.output
    assert server.rdb_changes() == writes_before
    assert_no_leak(run.output, [tmp_path / "reports"])


# 4. TLS certificate checks are on by default ----------------------------------------------------


@ansible
def test_validate_certs_defaults_to_true_in_the_module_and_the_role(tmp_path):
    proc = run_ansible(tmp_path, [ANSIBLE_DOC, "-j", "redis_db_migrate"])
    assert proc.returncode == 0, proc.stderr
    options = json.loads(proc.stdout)["redis_db_migrate"]["doc"]["options"]
    assert options["validate_certs"]["type"] == "bool"
    assert options["validate_certs"]["default"] is True
    assert options["tls"]["default"] is False

    defaults = load_yaml(ROLE / "defaults" / "main.yml")
    assert defaults["storyart_session_migration_validate_certs"] is True
    specs = load_yaml(ROLE / "meta" / "argument_specs.yml")["argument_specs"]
    # Every entry point that connects to Redis.
    for entry_point in ("main", "cleanup", "stop_running"):
        option = specs[entry_point]["options"]["storyart_session_migration_validate_certs"]
        assert (option["type"], option["default"]) == ("bool", True), entry_point
    # The role hands its variable to the module, never a value of its own.
    (task,) = [t for t in load_yaml(ROLE / "tasks" / "call_module.yml") if "redis_db_migrate" in t]
    module = task["redis_db_migrate"]
    assert module["validate_certs"] == "{{ storyart_session_migration_validate_certs }}"
    assert module["ca_certs"] == "{{ storyart_session_migration_ca_certs or omit }}"


@ansible
def test_tls_checks_the_certificate_and_its_name_unless_told_not_to(
    tmp_path, redis_factory, certificates
):
    """tls: true alone trusts only the system CAs and checks the name; the test CA is not one.

    Each refused connection aims at db 2, each accepted one migrates into db 0.
    """
    named = secured_tls_server(redis_factory, certificates.server, certificates.ca)
    elsewhere = secured_tls_server(redis_factory, certificates.elsewhere, certificates.ca)
    calls = [
        # The certificate is fine but signed by a CA the system does not know.
        module_args(named.tls_port, tls=True, target_db=2),
        module_args(named.tls_port, tls=True, ca_certs=certificates.ca),
        # The right CA, but the certificate names another host.
        module_args(elsewhere.tls_port, tls=True, ca_certs=certificates.ca, target_db=2),
        module_args(elsewhere.tls_port, tls=True, ca_certs=certificates.ca, validate_certs=False),
    ]

    rc, output, results = run_tasks(tmp_path, calls, ignore_errors=True)

    assert rc == 0, output
    unknown_ca, trusted, wrong_name, unchecked = results
    assert unknown_ca["failed"] is True, unknown_ca
    assert "TLS handshake" in unknown_ca["msg"], unknown_ca["msg"]
    assert "certificate verify failed" in unknown_ca["msg"], unknown_ca["msg"]
    assert wrong_name["failed"] is True, wrong_name
    assert "TLS handshake" in wrong_name["msg"], wrong_name["msg"]
    assert re.search(r"mismatch|doesn't match", wrong_name["msg"]), wrong_name["msg"]
    for result in (trusted, unchecked):
        assert result.get("failed") is not True, result
        assert result["counts"]["migrated"] == SESSIONS
        assert result["verified"] is True
    for server in (named, elsewhere):
        assert server.client(2).dbsize() == 0
        assert server.client(0).exists(*server.names) == SESSIONS
    assert_no_leak(output)


# 5. No shell command built from input -----------------------------------------------------------

SHELL_MODULES = {
    prefix + name
    for prefix in ("", "ansible.builtin.", "ansible.legacy.")
    for name in ("shell", "raw", "script")
}
COMMAND_MODULES = {prefix + "command" for prefix in ("", "ansible.builtin.", "ansible.legacy.")}
TEMPLATED = re.compile(r"{{|{%")
PIPE_LOOKUP = re.compile(
    r"""\b(?:lookup|query|q)\(\s*['"](?:ansible\.(?:builtin|legacy)\.)?pipe['"]|\bwith_pipe\b"""
)
# Calls that always go through /bin/sh.
SHELL_CALLS = {
    "os.system",
    "os.popen",
    "platform.popen",
    "subprocess.getoutput",
    "subprocess.getstatusoutput",
    "asyncio.create_subprocess_shell",
}
# Keywords that hand a command line to a shell (subprocess.*, AnsibleModule.run_command).
SHELL_KEYWORDS = {"shell", "use_unsafe_shell"}


def yaml_files():
    for top in ("roles", "playbooks", "molecule"):
        if (ROOT / top).is_dir():
            yield from sorted(
                path
                for path in (ROOT / top).rglob("*")
                if path.suffix in (".yml", ".yaml") and path.is_file()
            )


def template_files():
    for top in ("roles", "playbooks", "molecule"):
        if (ROOT / top).is_dir():
            yield from sorted((ROOT / top).rglob("*.j2"))


def list_items(node):
    """Every mapping that is an item of a list: plays, tasks, handlers, blocks' tasks."""
    if isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                yield item
            yield from list_items(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from list_items(value)


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)


def task_problems(task):
    """Why a task would run a shell, or build a command line from variables."""
    problems = []
    for key, value in task.items():
        module, args = key, value
        if key in ("action", "local_action"):
            if isinstance(value, dict):
                module, args = value.get("module", ""), value
            else:
                module, _, args = str(value).partition(" ")
        if module in SHELL_MODULES:
            problems.append(f"uses {module}")
        if module not in COMMAND_MODULES:
            continue
        extra = task.get("args") or {}
        if isinstance(args, dict) and "argv" in args:
            continue  # an argument vector: run without a shell, nothing to split or expand
        line = args.get("cmd") if isinstance(args, dict) else args
        line = line or extra.get("cmd")
        if "argv" in extra:
            continue
        if not isinstance(line, str) or TEMPLATED.search(line):
            problems.append(f"{module} with a command line built from variables: {line!r}")
    return problems


def test_no_task_runs_a_shell_or_builds_a_command_line():
    files = list(yaml_files())
    assert ROLE / "tasks" / "call_module.yml" in files
    problems, task_count, module_tasks = [], 0, 0
    for path in files:
        document = load_yaml(path)
        name = path.relative_to(ROOT)
        for text in strings(document):
            if PIPE_LOOKUP.search(text):
                problems.append(f"{name}: runs a shell through the pipe lookup: {text!r}")
        if not isinstance(document, list):
            continue  # vars, defaults, argument specs, molecule.yml: no tasks
        for task in list_items(document):
            task_count += 1
            module_tasks += "redis_db_migrate" in task
            problems += [f"{name}: task {task.get('name')!r} {p}" for p in task_problems(task)]
    # A pipe lookup in a template runs a shell as well.
    for path in template_files():
        problems += [
            f"{path.relative_to(ROOT)}: runs a shell through the pipe lookup: {line.strip()!r}"
            for line in path.read_text().splitlines()
            if PIPE_LOOKUP.search(line)
        ]
    # The walk really saw the role's tasks, the module's among them.
    assert task_count >= 30, task_count
    assert module_tasks >= 1
    assert problems == []


def python_files():
    folders = [ROOT / name for name in ("library", "module_utils", "doc_fragments", "scripts")]
    for folder in folders:
        yield from sorted(folder.rglob("*.py"))


def import_aliases(tree):
    """Local name -> the dotted name it was imported as."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def dotted_name(node, aliases):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def shell_uses(tree):
    """(line, what) for every reference to a shell call and every shell keyword."""
    aliases = import_aliases(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)):
            name = dotted_name(node, aliases)
            if name in SHELL_CALLS:
                found.append((node.lineno, name))
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                safe = isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                if keyword.arg in SHELL_KEYWORDS and not safe:
                    found.append((node.lineno, f"{keyword.arg}={ast.unparse(keyword.value)}"))
    return found


def test_no_python_code_runs_a_shell():
    files = list(python_files())
    assert ROOT / "library" / "redis_db_migrate.py" in files
    assert ROOT / "module_utils" / "redis_db_migration" / "session.py" in files
    problems = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        problems += [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in shell_uses(tree)]
    assert problems == []


def test_shell_finder_sees_every_spelling():
    """The static check above must not pass only because it is blind."""
    code = (
        "import os, subprocess as sp\n"
        "from os import popen as po\n"
        "os.system('x')\n"
        "po('x')\n"
        "sp.run('x', shell=True)\n"
        "sp.Popen(['x'], shell=flag)\n"
        "module.run_command('x', use_unsafe_shell=True)\n"
        "sp.run(['x'], shell=False)\n"
    )
    found = [what for _, what in shell_uses(ast.parse(code))]
    assert found.count("os.system") == 1, found
    assert "os.popen" in found, found
    assert "shell=True" in found, found
    assert "shell=flag" in found, found
    assert "use_unsafe_shell=True" in found, found
    assert "shell=False" not in found, found
    tasks = [
        {"name": "a", "ansible.builtin.shell": "echo hi"},
        {"name": "b", "raw": "echo hi"},
        {"name": "c", "ansible.builtin.command": "redis-cli -a {{ password }} ping"},
        {"name": "d", "command": {"cmd": "redis-cli {{ args }}"}},
        {"name": "e", "action": "shell echo hi"},
        {"name": "f", "ansible.builtin.command": {"argv": ["redis-cli", "{{ x }}"]}},
        {"name": "g", "ansible.builtin.command": "redis-cli ping"},
    ]
    flagged = [task["name"] for task in tasks if task_problems(task)]
    assert flagged == ["a", "b", "c", "d", "e"], flagged
    assert PIPE_LOOKUP.search("{{ lookup('ansible.builtin.pipe', 'date') }}")


# 6. The same db, whatever its spelling ---------------------------------------------------------

# (source_db, target_db, mode, the db both name). Ansible's int type goes through Decimal, so
# it takes leading zeros, signs, spaces, exponents, a float with no fraction, any Unicode
# digit, and a bool as it is (before 2.17: not a float, nor an exponent). The clean-up would
# be the worst: every key is identical to itself, so it would delete them all.
SAME_DB_SPELLINGS = [
    ("01", 1, "cleanup", 1),
    ("0", 0, "migrate", 0),
    (1.0, 1, "migrate", 1),
    ("1e0", "1", "verify", 1),
    (" +1 ", 1, "migrate", 1),
    ("-0", 0, "preflight", 0),
    ("\u0661", 1, "migrate", 1),  # ARABIC-INDIC DIGIT ONE: int() reads any Unicode digit
    (True, 1, "migrate", True),  # a bool is an int to Ansible's type check, and True == 1
]


@pytest.mark.parametrize("spelling", SAME_DB_SPELLINGS, ids=repr)
def test_module_refuses_the_same_db_under_any_spelling(redis_server, spelling):
    source, target, mode, shown = spelling
    seed_sessions(redis_server.client(1), SESSIONS)
    seed_sessions(redis_server.client(0), 3, start=1600000000000)
    before = {db: snapshot(redis_server.client(db)) for db in (0, 1)}
    writes_before = redis_server.rdb_changes()

    result = call_module(tcp_args(redis_server, mode=mode, source_db=source, target_db=target))

    assert result["failed"] is True, result
    if ANSIBLE_CORE < (2, 17) and (type(source) is float or source == "1e0"):
        assert says(result["msg"], not_an_int("source_db")), result["msg"]
    else:
        assert "cannot be migrated onto itself" in result["msg"], result["msg"]
        assert f"source_db and target_db are both {shown}:" in result["msg"]
    assert redis_server.rdb_changes() == writes_before
    assert {db: snapshot(redis_server.client(db)) for db in (0, 1)} == before


@ansible
def test_role_refuses_the_same_db_given_on_the_command_line(tmp_path, redis_server):
    """-e storyart_session_migration_source_db=0 against the default target 0, or its spellings.

    The migration and then the confirmed clean-up: every host fails with the reason, in its
    report too, and the server receives no write.
    """
    seed_sessions(redis_server.client(1), SESSIONS)
    seed_sessions(redis_server.client(0), 3, start=1600000000000)
    before = {db: snapshot(redis_server.client(db)) for db in (0, 1)}
    writes_before = redis_server.rdb_changes()
    port = {"storyart_session_migration_login_port": redis_server.port}
    inventory = write_inventory(
        tmp_path,
        {
            "app1": port,
            "app2": {**port, "storyart_session_migration_target_db": "00"},
            "app3": {**port, "storyart_session_migration_target_db": 0.0},
        },
    )
    same_db = ("-e", "storyart_session_migration_source_db=0")

    confirmed = ("-e", f"{CONFIRM}=delete-migrated-sessions")

    runs = {
        label: play(tmp_path, inventory, *args, report_dir=tmp_path / "reports" / label)
        for label, args in (
            ("migrate", (MIGRATE, *same_db)),
            ("cleanup", (CLEANUP, *same_db, *confirmed)),
        )
    }

    for label, run in runs.items():
        assert run.rc != 0, run.output
        reports = run.reports()
        assert sorted(reports) == ["app1", "app2", "app3"], label
        for host, report in reports.items():
            assert recap(run.output, host)["failed"] == 1, run.output
            assert report["status"] == "failed", (label, host)
            if ANSIBLE_CORE < (2, 17) and host == "app3":  # 0.0: no integer to ansible-core 2.16
                refusal = not_an_int("storyart_session_migration_target_db")
                assert says(report["failure"], refusal), report["failure"]
                continue
            assert "source_db and target_db are both 0:" in report["failure"], report["failure"]
            # Refused by the step's own checks, before it counted or wrote anything.
            step = report[label]
            assert step["failed"] is True, (label, host, step)
            assert "counts" not in step, (label, host, step)
    assert redis_server.rdb_changes() == writes_before
    assert {db: snapshot(redis_server.client(db)) for db in (0, 1)} == before
