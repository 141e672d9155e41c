"""Each option is defined once, in the engine: its documentation, the module's argument spec,
and the role's variables that feed it must all agree with that definition."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from helpers import ANSIBLE_DOC, ROOT, call_module, run_ansible
from helpers.engine import engine
from helpers.module import redis_db_migrate

ROLE = ROOT / "roles" / "storyart_session_migration"
PREFIX = "storyart_session_migration_"
SPEC = redis_db_migrate.module_rules()["argument_spec"]


def role_yaml(path):
    return yaml.safe_load((ROLE / path).read_text())


@pytest.mark.ansible
def test_the_documented_options_are_the_argument_spec(tmp_path):
    proc = run_ansible(tmp_path, [ANSIBLE_DOC, "-j", "redis_db_migrate"])
    assert proc.returncode == 0, proc.stderr
    documented = json.loads(proc.stdout)["redis_db_migrate"]["doc"]["options"]

    assert set(documented) == set(SPEC)
    for name, spec in SPEC.items():
        doc = documented[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("required", False) == spec.get("required", False), name
        assert doc.get("choices") == spec.get("choices"), name
        assert doc.get("elements") == spec.get("elements"), name


def test_the_argument_spec_keeps_the_password_out_of_every_log():
    assert SPEC["login_password"]["no_log"] is True
    assert [name for name, spec in SPEC.items() if spec.get("no_log")] == [
        "login_password",
        "sentinel_password",
    ]


def test_every_module_option_is_a_role_variable_passed_to_the_module():
    defaults = role_yaml("defaults/main.yml")
    passed = role_yaml("tasks/call_module.yml")[0]["redis_db_migrate"]
    for option in set(SPEC) - {"mode"}:
        variable = PREFIX + option
        assert variable in defaults, variable
        # The variable itself, or its internal copy resolved for the host before the task
        # (login_host, whose default reads the host's ansible_host).
        assert re.search(rf"\b(?:__)?{variable}\b", str(passed[option])), option


@pytest.mark.ansible
def test_every_role_variable_has_one_default_and_a_description_ansible_doc_shows(tmp_path):
    """The argument specs (the cleanup entry point holds every option but the stop's own)
    agree with the defaults, and `ansible-doc -t role` shows every variable with its
    description: the role's reference, which its README points to instead of a table."""
    defaults = role_yaml("defaults/main.yml")
    specs = role_yaml("meta/argument_specs.yml")["argument_specs"]
    options = {
        **specs["cleanup"]["options"],
        **specs["stop_running"]["options"],
        **specs["report_failure"]["options"],
    }

    main = set(specs["main"]["options"])
    assert set(specs["cleanup"]["options"]) == main | {PREFIX + "cleanup_confirm"}
    assert set(specs["stop_running"]["options"]) - main == {PREFIX + "stop_timeout"}
    assert set(specs["report_failure"]["options"]) == {PREFIX + "failed_entry_point"}
    assert specs["fail_failed_hosts"]["options"] == {}
    assert set(options) == set(defaults)
    for variable, spec in options.items():
        if "default" in spec:  # login_host's default is a template, in defaults/ only
            assert spec["default"] == defaults[variable], variable

    proc = run_ansible(tmp_path, [ANSIBLE_DOC, "-t", "role", "-j", "storyart_session_migration"])
    assert proc.returncode == 0, proc.stderr
    entry_points = json.loads(proc.stdout)["storyart_session_migration"]["entry_points"]
    assert set(entry_points) == set(specs)
    shown = {}
    for entry_point in entry_points.values():
        shown.update(entry_point.get("options") or {})
    assert set(shown) == set(defaults)
    for variable, option in shown.items():
        description = (
            " ".join(option["description"])
            if isinstance(option["description"], list)
            else option["description"]
        )
        assert len(description.split()) >= 3, variable
        assert "type" in option, variable
    # The README no longer lists them: one place for each variable's meaning.
    readme = (ROLE / "README.md").read_text()
    assert not re.findall(r"^\| `storyart_session_migration_\w+` \|", readme, re.M)
    assert "ansible-doc -t role" in readme


def test_a_value_outside_its_range_is_refused_before_connecting():
    """Ranges the argument spec cannot say are checked by the engine's own options."""
    result = call_module(
        dict(login_port=0, source_db=1, target_db=0, patterns=["p:*"], batch_size=5)
    )

    assert result["failed"] is True
    assert result["msg"] == "login_port must be a TCP port from 1 to 65535, not 0."


def engine_refusal(name, value):
    """What the engine says of option ``name`` at ``value``, every other option at the
    module's default, or None when it takes the value."""
    params = {option: spec.get("default") for option, spec in SPEC.items()}
    params.update(source_db=1, target_db=2, patterns=["storyart:session:*"])
    params[name] = value
    try:
        engine.from_params(engine.ConnectionSettings, params).validate()
        engine.from_params(engine.MigrationOptions, params).validate()
    except engine.MigrationError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize(
    "name", sorted(role_yaml("vars/main.yml")["__storyart_session_migration_ranges"])
)
def test_the_role_checks_each_range_the_engine_checks(name):
    """The role refuses a number out of range before any host is touched, from its own table
    (vars/main.yml); the engine checks again, from its own code. Both take each bound, and
    both refuse one step beyond it."""
    low, high, _ = role_yaml("vars/main.yml")["__storyart_session_migration_ranges"][name]
    step = 1 if SPEC[name]["type"] == "int" else 0.001

    assert engine_refusal(name, low) is None
    assert engine_refusal(name, low - step).startswith(f"{name} must be ")
    if high is None:
        assert engine_refusal(name, 10**9) is None
    else:
        assert engine_refusal(name, high) is None
        assert engine_refusal(name, high + step).startswith(f"{name} must be ")


def test_every_number_the_module_takes_has_a_range_in_the_role():
    numbers = {name for name, spec in SPEC.items() if spec["type"] in ("int", "float")}
    assert numbers == set(role_yaml("vars/main.yml")["__storyart_session_migration_ranges"])
