"""The collection storyart.session_migration: built from this repository's tree, installed into
an operator's own repository, and run from there as the README's quick start says, against a
real Redis; its changelog and its Execution Environment's build context.

ansible-test sanity on the built collection runs in scripts/test.sh (scripts/sanity.sh)."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import tarfile

import pytest
import yaml
from helpers import (
    ANSIBLE_DOC,
    BIN,
    FQCN,
    ROOT,
    TARBALL,
    VERSION,
    OperatorRepo,
    assert_same_value_and_expiry,
    build_collection,
    run_checked,
    seed_sessions,
    zset,
)

pytestmark = pytest.mark.ansible

ROLE = f"{FQCN}.storyart_session_migration"
# The README's three-line playbook.
THREE_LINES = f"""- name: Move StoryArt sessions from Redis db 1 to db 0
  hosts: storyart
  roles: [{ROLE}]
"""


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return build_collection(tmp_path_factory.mktemp("dist"))


@pytest.fixture
def sessions(redis_server):
    """A server with 20 sessions and their index in db 1; db 0 empty."""
    names = seed_sessions(redis_server.client(1), 20)
    return redis_server, names


@pytest.fixture
def operator_repo(tmp_path, tarball, sessions):
    server, _ = sessions
    return OperatorRepo.create(
        tmp_path / "infra",
        tarball,
        {"app1": {"storyart_session_migration_login_port": server.port}},
    )


def assert_migrated(server, names):
    """db 0 holds every session of db 1 with the same value and absolute expiry, and the
    whole index."""
    source, target = server.client(1), server.client(0)
    assert sorted(target.keys("storyart:session:*")) == sorted(names)
    assert_same_value_and_expiry(source, target, names)
    assert zset(target) == zset(source)
    assert len(zset(target)) == len(names)


def test_the_build_is_named_after_the_galaxy_version_and_ships_every_part(tarball):
    assert tarball.name == TARBALL
    with tarfile.open(tarball) as archive:
        files = set(archive.getnames())
        manifest = json.load(archive.extractfile("MANIFEST.json"))
        module = archive.extractfile("plugins/modules/redis_db_migrate.py").read().decode()
    assert manifest["collection_info"]["version"] == VERSION
    assert manifest["collection_info"]["license"] == ["MIT"]
    engine_files = {path.name for path in (ROOT / "module_utils/redis_db_migration").glob("*.py")}
    assert {
        "LICENSE",
        "README.md",
        "CHANGELOG.rst",
        "changelogs/changelog.yaml",
        "meta/runtime.yml",
        "meta/execution-environment.yml",
        "requirements.txt",
        "bindep.txt",
        "plugins/modules/redis_db_migrate.py",
        "plugins/doc_fragments/redis_connection.py",
        "roles/storyart_session_migration/tasks/main.yml",
        "roles/storyart_session_migration/meta/argument_specs.yml",
        "playbooks/migrate_sessions.yml",
        "playbooks/cleanup_source.yml",
        "playbooks/stop_sessions.yml",
        "plugins/modules/redis_db_migrate_stop.py",
        *(f"plugins/module_utils/redis_db_migration/{name}" for name in engine_files),
        # The guides antsibull-docs renders with the module's and the role's pages.
        "docs/docsite/extra-docs.yml",
        "docs/docsite/links.yml",
        *(f"docs/docsite/rst/{path.name}" for path in (ROOT / "docs/docsite/rst").glob("*.rst")),
    } <= files
    # Nothing of the repository's own: tests, scripts, local caches.
    assert not [name for name in files if name.startswith(("tests/output", "scripts", ".venv"))]
    assert not [name for name in files if "__pycache__" in name]
    # The module finds its engine and its doc fragment inside the collection.
    assert "ansible.module_utils.redis_db_migration" not in module
    assert f"ansible_collections.{FQCN}.plugins.module_utils.redis_db_migration" in module
    assert f"  - {FQCN}.redis_connection\n" in module


def test_ansible_doc_renders_the_module_from_the_installed_collection(operator_repo):
    shown = run_checked(
        [ANSIBLE_DOC, f"{FQCN}.redis_db_migrate"], cwd=operator_repo.path, env=operator_repo.env()
    )
    # Options from the module and from its doc fragment.
    assert "max_keys_per_second" in shown
    assert "login_password" in shown


def test_ansible_doc_renders_the_role_from_the_installed_collection(operator_repo):
    """Its entry points and variables, from meta/argument_specs.yml: the role's reference."""
    shown = run_checked(
        [ANSIBLE_DOC, "-t", "role", ROLE], cwd=operator_repo.path, env=operator_repo.env()
    )
    for entry_point in ("main", "cleanup", "stop_running", "report_failure", "fail_failed_hosts"):
        # ansible-core 2.19 stars the name when it prints without colour.
        assert re.search(rf"^ENTRY POINT: \*?{entry_point}\*? - ", shown, re.M), entry_point
    assert "storyart_session_migration_cleanup_confirm" in shown


def test_an_operator_dry_runs_then_migrates_with_the_collections_playbook(operator_repo, sessions):
    server, names = sessions
    playbook = f"{FQCN}.migrate_sessions"

    writes = server.rdb_changes()
    dry = operator_repo.playbook(playbook, "--check")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert server.rdb_changes() == writes
    assert server.client(0).dbsize() == 0
    assert "StoryArt session migration: DRY RUN" in dry.stdout

    # Rate-limited, as a careful operator runs it on a busy server.
    rate = "storyart_session_migration_max_keys_per_second=400"
    real = operator_repo.playbook(playbook, "-e", rate)
    assert real.returncode == 0, real.stdout + real.stderr
    assert_migrated(server, names)
    # Announced first, then run in the background and polled: Ansible's own async.
    assert (
        "20 matching keys and 20 index entries to go through, twice with full_verify: under 1 s "
        "at max_keys_per_second 400"
    ) in real.stdout
    assert re.search(r"^ASYNC OK on app1: jid=", real.stdout, re.M), real.stdout

    # Reports under storyart-reports/ where the operator ran the playbook, named after the
    # inventory and the kind of run; the table printed is the summary written.
    dry_folder, real_folder = operator_repo.report_folders()
    assert re.fullmatch(r"staging-migrate-\d{8}T\d{6}Z-dry-run", dry_folder.name), dry_folder
    assert re.fullmatch(r"staging-migrate-\d{8}T\d{6}Z", real_folder.name), real_folder
    assert stat.S_IMODE(real_folder.stat().st_mode) == 0o700
    report = json.loads((real_folder / "report.json").read_text())["app1"]
    assert report["status"] == "ok"
    assert report["migrate"]["counts"]["migrated"] == len(names)
    summary = (real_folder / "summary.txt").read_text().splitlines()
    assert summary[0] == "StoryArt session migration: done"
    for line in summary:
        assert json.dumps(line) in real.stdout, line


def test_the_three_line_playbook_of_the_readme_migrates_with_the_role(operator_repo, sessions):
    server, names = sessions
    readme = (ROOT / "README.md").read_text()
    assert THREE_LINES in readme
    (operator_repo.path / "sessions.yml").write_text(THREE_LINES)

    run = operator_repo.playbook("sessions.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert_migrated(server, names)
    (folder,) = operator_repo.report_folders()
    assert json.loads((folder / "report.json").read_text())["app1"]["status"] == "ok"


@pytest.mark.dev_tools
def test_the_json_stdout_callback_gets_valid_json_and_the_reports_are_still_written(
    operator_repo, sessions
):
    server, names = sessions
    run = operator_repo.playbook(f"{FQCN}.migrate_sessions", ANSIBLE_STDOUT_CALLBACK="json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["stats"]["app1"]["failures"] == 0
    assert_migrated(server, names)
    (folder,) = operator_repo.report_folders()
    assert (folder / "summary.txt").read_text().startswith("StoryArt session migration: done")


def stage(tmp_path):
    """The collection's tree as the build lays it out, in tmp_path."""
    tree = tmp_path / "ansible_collections" / "storyart" / "session_migration"
    script = f'ROOT={ROOT}; source "$ROOT/scripts/collection_tree.sh"; stage_collection "$1"'
    run_checked(["bash", "-c", script, "stage", str(tree)])
    return tree


@pytest.mark.dev_tools
def test_the_changelog_is_released_for_the_galaxy_version_and_current(tmp_path):
    changelog = yaml.safe_load((ROOT / "collection/changelogs/changelog.yaml").read_text())
    assert VERSION in changelog["releases"]
    tree = stage(tmp_path)
    env = {"PATH": f"{BIN}:/usr/bin:/bin"}
    antsibull = str(BIN / "antsibull-changelog")
    run_checked([antsibull, "lint"], cwd=tree, env=env)
    # CHANGELOG.rst is what antsibull-changelog makes of changelog.yaml.
    committed = (tree / "CHANGELOG.rst").read_text()
    run_checked([antsibull, "generate"], cwd=tree, env=env)
    assert (tree / "CHANGELOG.rst").read_text() == committed
    assert f"v{VERSION}\n" in committed


@pytest.mark.dev_tools
def test_ansible_builder_makes_a_build_context_that_installs_the_collection(tmp_path, tarball):
    # The definition's tarball is the one the build script makes, at the galaxy version.
    definition = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert definition["additional_build_files"] == [
        {"src": f"dist/{TARBALL}", "dest": "collections"}
    ]
    shutil.copy(ROOT / "execution-environment.yml", tmp_path)
    (tmp_path / "dist").mkdir()
    shutil.copy(tarball, tmp_path / "dist")
    context = tmp_path / "context"
    run_checked(
        [str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml"]
        + ["-c", str(context), "--output-filename", "Containerfile"],
        cwd=tmp_path,
    )
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core>=2.16,<2.20 ansible-runner"' in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert (context / "_build/collections" / TARBALL).read_bytes() == tarball.read_bytes()

    # The image's galaxy stage, run here: from _build (the image's /build), install the
    # requirements, then introspect them as the builder stage does.
    collections = tmp_path / "collections"
    run_checked(
        [str(BIN / "ansible-galaxy"), "collection", "install", "-r", "requirements.yml"]
        + ["-p", str(collections)],
        cwd=context / "_build",
    )
    assert (collections / "ansible_collections/storyart/session_migration/MANIFEST.json").exists()
    introspected = subprocess.run(
        [str(BIN / "ansible-builder"), "introspect", str(collections)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    dependencies = yaml.safe_load(introspected.split("\n", 1)[1])
    for kind, listed in (("python", "requirements.txt"), ("system", "bindep.txt")):
        lines = (ROOT / "collection" / listed).read_text().splitlines()
        wanted = [line for line in lines if line and not line.startswith("#")]
        assert wanted, listed
        assert [line.split("  # from")[0] for line in dependencies[kind]] == wanted, kind
