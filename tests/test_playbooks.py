"""The playbooks and the storyart_session_migration role, run by ansible-playbook on a fleet.

Each test writes an inventory of StoryArt hosts (all ``ansible_connection: local``), each
pointed at a real redis-server started by the conftest fixtures, runs the playbook the way an
operator does (from the repository root, with its ansible.cfg) and then checks the servers
themselves, the printed summary table and the per-host JSON reports.

The standard fleet, in play order:

- ``app1``: server A, protected by a password, the module runs on the host;
- ``app2`` and ``app3``: both use server B with the module on the controller, so they name
  the same endpoint and only ``app2`` (first in play order) handles it;
- ``app4``: server C, whose db 0 already holds 3 of its sessions (newer values, own scores)
  and keys of other apps.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import (
    ANSIBLE_CORE,
    CLEANUP,
    CONFIRM,
    INDEX,
    MIGRATE,
    ROOT,
    Run,
    bare_python,
    free_port,
    migrate_with_engine,
    not_an_int,
    recap,
    run_playbook,
    says,
    seed_sessions,
    seed_with_overlap,
    snapshot,
    unfolded,
    write_inventory,
    zset,
)

PASSWORD = "Sup3r-s3cret-xyz"  # noqa: S105 - a test server's password, meant to be spotted

pytestmark = pytest.mark.ansible

HOSTS = ("app1", "app2", "app3", "app4")
SERVER_OF = {"app1": "A", "app2": "B", "app3": "B", "app4": "C"}
TABLE_TITLE = re.compile(r"^StoryArt [\w -]+: (?:done|DRY RUN|FAILED)")
MIGRATE_HEADER = re.compile(r"^host\s+found\s+migrated\s+skipped\s+expired\s+failed\b", re.M)
CLEANUP_HEADER = re.compile(
    r"^host\s+found\s+deleted\s+kept: differs\s+kept: no copy\s+expired\s+failed\b", re.M
)
RESTART_HANDLER = "RUNNING HANDLER [storyart_session_migration : Restart StoryArt]"
# Per host of the standard fleet: (found, migrated, skipped) and index entries added.
PLAN = {
    "app1": ((6, 6, 0), 6),
    "app2": ((6, 6, 0), 6),
    "app3": ((6, 6, 0), 6),
    "app4": ((10, 7, 3), 7),
}


# Helpers -------------------------------------------------------------------------------------


@dataclass
class Fleet:
    tmp_path: Path
    inventory: Path
    servers: dict  # server letter -> RedisServer
    sessions: dict = field(default_factory=dict)  # server letter -> session names in db 1
    present: list = field(default_factory=list)  # C's sessions already in db 0 before the run

    @property
    def report_dir(self):
        return self.tmp_path / "reports"

    def play(self, playbook, *args):
        """Run ``playbook`` on this fleet's inventory; reports always go under tmp_path."""
        return run_playbook(
            self.tmp_path, self.inventory, playbook, *args, report_dir=self.report_dir
        )

    def dbs(self):
        """Every key (type, DUMP, absolute expiry) of db 0 and db 1 of every server."""
        return {
            name: (snapshot(server.client(0)), snapshot(server.client(1)))
            for name, server in self.servers.items()
        }

    def writes(self):
        return {name: server.rdb_changes() for name, server in self.servers.items()}

    def endpoint(self, host):
        """Every host of the test fleet runs with a local connection, so its loopback Redis
        is the controller's."""
        port = self.servers[SERVER_OF[host]].port
        return f"controller 127.0.0.1:{port} db 1 -> db 0"


def standard_fleet(redis_factory, tmp_path):
    """Servers A (password), B (shared by app2 and app3, run on the controller) and C."""
    servers = {
        "A": redis_factory(f"requirepass {PASSWORD}", password=PASSWORD),
        "B": redis_factory(),
        "C": redis_factory(),
    }
    sessions = {
        "A": seed_sessions(servers["A"].client(1), 6, start=1704067200000),
        "B": seed_sessions(servers["B"].client(1), 6, start=1705067200000),
    }
    sessions["C"], present = seed_with_overlap(servers["C"], 10, 3)
    on_controller = {"storyart_session_migration_run_on": "controller", "ansible_host": "127.0.0.1"}
    inventory = write_inventory(
        tmp_path,
        {
            "app1": {
                "storyart_session_migration_login_port": servers["A"].port,
                "storyart_session_migration_login_password": PASSWORD,
            },
            "app2": {"storyart_session_migration_login_port": servers["B"].port, **on_controller},
            "app3": {"storyart_session_migration_login_port": servers["B"].port, **on_controller},
            "app4": {"storyart_session_migration_login_port": servers["C"].port},
        },
    )
    return Fleet(tmp_path, inventory, servers, sessions, present)


def migrate_all(fleet):
    """Migrate every server directly with the engine, to set up a migrated fleet quickly."""
    for server in fleet.servers.values():
        assert migrate_with_engine(server).verified is True


SUMMARY_TASK = "TASK [storyart_session_migration : Show the summary of the run so far]"
STOP_TASK = "TASK [storyart_session_migration : Stop this host when a step failed]"
MODULE_TASK = "TASK [storyart_session_migration : Run redis_db_migrate in mode {mode}]"
RESULT_TASK = "TASK [storyart_session_migration : Keep this endpoint's result of mode {mode}]"
INSTALL_TASK = (
    "TASK [storyart_session_migration : Install redis-py where asked, and announce a rate-limited "
    "migration]"
)


def printed_tables(stdout):
    """Every summary table the run printed (one a batch), as lists of lines: title, header,
    rows. The role prints it with a debug task; the repository's ansible.cfg prints results
    as YAML, where the table is one block of lines."""
    tables = []
    for section in "\n".join(unfolded(stdout)).split(SUMMARY_TASK)[1:]:
        shown = re.search(r"^ok: \[\w+\] =>\n    msg: (.*?)\n\n", section, re.M | re.S)
        assert shown, section
        lines = shown.group(1).splitlines()
        assert lines[-1].startswith("Reports: "), lines
        assert TABLE_TITLE.match(lines[0]), lines
        tables.append(lines[:-1])
    return tables


def table_rows(lines):
    """Table lines as {host: {column title: cell, "note": ...}}; the total row as "total"."""
    header = re.split(r"\s{2,}", lines[1].strip())
    columns = [title for title in header if title != "note"]
    rows = {}
    for line in lines[2:]:
        cells = re.split(r"\s{2,}", line.strip())
        row = dict(zip(columns, cells))
        row["note"] = "  ".join(cells[len(columns) :])
        row["host"] = cells[0]
        rows["total" if cells[0].startswith("total") else cells[0]] = row
    return rows


def the_table(run):
    """The one table the run printed, checked against the summary.txt beside the reports."""
    tables = printed_tables(run.stdout)
    assert len(tables) == 1, run.output
    summary = run.folder / "summary.txt"
    assert summary.read_text().splitlines() == tables[0]
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600
    return tables[0]


def assert_report_files(run, hosts):
    """The report, a record a host, and the summary, mode 0600, in a folder only the
    controller's user can read."""
    assert run.folder is not None, run.output
    assert stat.S_IMODE(run.folder.stat().st_mode) == 0o700
    files = sorted(path.name for path in run.folder.iterdir())
    assert files == ["report.json", "summary.txt"], files
    for name in files:
        assert stat.S_IMODE((run.folder / name).stat().st_mode) == 0o600, name
    assert sorted(run.reports()) == sorted(hosts)


def section(stdout, title):
    """The lines printed under the last ``title`` (a TASK or RUNNING HANDLER header), each
    result on its status line, whole."""
    if title not in stdout:
        return ""
    text = "\n".join(unfolded(stdout)).rsplit(title, 1)[1]
    return re.split(
        r"^(?:TASK \[|RUNNING HANDLER \[|PLAY \[|PLAY RECAP)", text, maxsplit=1, flags=re.M
    )[0]


def statuses(text):
    """{host: status} of the status lines in a task section (ok, changed, fatal, skipping)."""
    found = re.findall(r"^(ok|changed|fatal|skipping): \[(\w+)[\]\s]", text, re.M)
    return {host: status for status, host in found}


def commandstats(server):
    """Calls per command the server has run: what a run really sent it."""
    stats = server.client().info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


# 1. Dry run ----------------------------------------------------------------------------------


def test_check_mode_shows_the_plan_and_writes_nothing(tmp_path, redis_factory):
    fleet = standard_fleet(redis_factory, tmp_path)
    dbs_before, writes_before = fleet.dbs(), fleet.writes()

    run = fleet.play(MIGRATE, "--check", "--diff")

    # Not one write reached any server, and both dbs of every server are as before.
    assert fleet.writes() == writes_before
    assert fleet.dbs() == dbs_before
    assert run.rc == 0, run.output
    # The plan: one table, in dry-run wording, with what each host would migrate.
    table = the_table(run)
    assert table[0] == (
        "StoryArt session migration: DRY RUN (check mode): the plan, nothing was written"
    )
    assert MIGRATE_HEADER.match(table[1]), table
    rows = table_rows(table)
    for host, ((found, migrated, skipped), added) in PLAN.items():
        row = rows[host]
        assert (row["found"], row["migrated"], row["skipped"]) == (
            str(found),
            str(migrated),
            str(skipped),
        ), row
        assert (row["failed"], row["index added"], row["verified"]) == ("0", str(added), "plan"), (
            row
        )
    assert rows["app3"]["note"] == "shares app2's endpoint"
    assert "3 endpoints" in rows["total"]["host"], rows["total"]
    assert (rows["total"]["found"], rows["total"]["migrated"]) == ("22", "19")
    # --diff shows the keys each endpoint would gain, once per endpoint.
    for letter, server in fleet.servers.items():
        header = f"+++ after: redis://127.0.0.1:{server.port}/0"
        assert run.stdout.count(header) == 1, (letter, run.stdout)
    planned = set(re.findall(r"^\+\+ (storyart:session:\d+)$", run.stdout, re.M))
    expected = {n.decode() for letter in "AB" for n in fleet.sessions[letter]}
    expected |= {n.decode() for n in fleet.sessions["C"][3:]}
    assert planned == expected
    # Reports of the dry run, in their own folder.
    assert re.fullmatch(r"staging-migrate-\d{8}T\d{6}Z-dry-run", run.folder.name), run.folder
    assert_report_files(run, HOSTS)
    for host, report in run.reports().items():
        assert report["dry_run"] is True, host
        assert report["status"] == "ok", host
        assert report["migrate"]["counts"]["migrated"] == PLAN[host][0][1], host
        assert "verify" not in report, host  # a dry run has nothing to verify


# 2 and 3. Real run, endpoint dedupe, idempotent rerun ----------------------------------------


@dataclass
class Migration:
    """The standard fleet after one real run of the migration playbook: the run, and what the
    servers held and had been sent before and after it, each by server letter."""

    fleet: Fleet
    run: Run
    dbs_before: dict  # (db 0, db 1) snapshots, as Fleet.dbs()
    dbs_after: dict
    index_before: dict  # db 0's index
    index_after: dict
    source_index: dict  # db 1's index
    commands_before: dict  # calls per command, as commandstats()
    commands_after: dict


@pytest.fixture(scope="module")
def migration(module_redis_factory, tmp_path_factory):
    """The standard fleet migrated once, for the tests of a real run: what they check is
    read from the servers right after the run."""
    fleet = standard_fleet(module_redis_factory, tmp_path_factory.mktemp("migration"))
    servers = fleet.servers.items()
    dbs_before = fleet.dbs()
    index_before = {letter: zset(server.client(0)) for letter, server in servers}
    source_index = {letter: zset(server.client(1)) for letter, server in servers}
    commands_before = {letter: commandstats(server) for letter, server in servers}

    run = fleet.play(MIGRATE)

    commands_after = {letter: commandstats(server) for letter, server in servers}
    return Migration(
        fleet=fleet,
        run=run,
        dbs_before=dbs_before,
        dbs_after=fleet.dbs(),
        index_before=index_before,
        index_after={letter: zset(server.client(0)) for letter, server in servers},
        source_index=source_index,
        commands_before=commands_before,
        commands_after=commands_after,
    )


def test_migration_moves_every_session_and_merges_every_index(migration):
    fleet, run = migration.fleet, migration.run
    assert run.rc == 0, run.output
    for letter in fleet.servers:
        target_before, source_before = migration.dbs_before[letter]
        target_after, source_after = migration.dbs_after[letter]
        # db 1 is byte-identical.
        assert source_after == source_before, letter
        # Every session is in db 0 with its value and exact expiry; pre-existing keys untouched.
        for name in fleet.sessions[letter]:
            expected = target_before.get(name, source_before[name])
            assert target_after[name] == expected, (letter, name)
        assert set(target_after) == set(target_before) | set(fleet.sessions[letter]) | {INDEX}
        # The index is merged: the members db 0 already had keep their scores.
        merged = {**migration.source_index[letter], **migration.index_before[letter]}
        assert migration.index_after[letter] == merged


def test_migration_keeps_what_db_0_already_held(migration):
    """C's db 0 held 3 of its sessions, newer, with scores of their own, and another app's
    key; its db 1 holds a key no pattern matches."""
    target_c_before, target_c_after = migration.dbs_before["C"][0], migration.dbs_after["C"][0]
    for name in migration.fleet.present:
        assert target_c_after[name] == target_c_before[name]
        assert migration.index_after["C"][name] == migration.index_before["C"][name]
    assert target_c_after[b"other:app:key"] == target_c_before[b"other:app:key"]
    assert b"storyart:config:theme" not in target_c_after


def test_migration_runs_once_per_endpoint(migration):
    """B, shared by app2 and app3, received exactly the commands of A, which has the same
    number of sessions and one host: its migration ran once, not twice."""
    before, after = migration.commands_before, migration.commands_after
    delta = {
        letter: {
            command: after[letter].get(command, 0) - before[letter].get(command, 0)
            # Not SCAN nor EXISTS: rehashing and the random sample of the memory estimate vary.
            for command in ("zrange", "evalsha", "copy", "zadd")
        }
        for letter in "AB"
    }
    assert delta["A"]["zrange"] > 0, delta
    assert delta["A"]["copy"] >= 6, delta  # one COPY a session, plus the preflight probes
    assert delta["B"] == delta["A"], delta
    migrate_task = section(
        migration.run.stdout,
        "TASK [storyart_session_migration : Run redis_db_migrate in mode migrate]",
    )
    assert statuses(migrate_task) == {
        "app1": "changed",
        "app2": "changed",
        "app3": "skipping",
        "app4": "changed",
    }, migrate_task


def test_migration_prints_one_table_whose_counts_match_the_servers(migration):
    run = migration.run
    table = the_table(run)
    assert table[0] == "StoryArt session migration: done"
    assert MIGRATE_HEADER.match(table[1]), table
    assert run.stdout.count("StoryArt session migration: done") == 1
    rows = table_rows(table)
    for host, ((found, migrated, skipped), added) in PLAN.items():
        row = rows[host]
        got = (row["found"], row["migrated"], row["skipped"], row["index added"], row["verified"])
        assert got == (str(found), str(migrated), str(skipped), str(added), "yes"), row
    assert rows["app3"]["note"] == "shares app2's endpoint"
    assert all(rows[host]["note"] == "" for host in ("app1", "app2", "app4")), rows
    # The totals count B once: 6 + 6 + 10 found, 6 + 6 + 7 migrated, 3 skipped.
    total = rows["total"]
    assert "3 endpoints" in total["host"], total
    assert (total["found"], total["migrated"], total["skipped"]) == ("22", "19", "3"), total


def test_migration_reports_what_really_moved_for_each_host(migration):
    """A report per host, 0600, whose counts are what really moved."""
    fleet, run = migration.fleet, migration.run
    assert re.fullmatch(r"staging-migrate-\d{8}T\d{6}Z", run.folder.name), run.folder
    assert_report_files(run, HOSTS)
    reports = run.reports()
    for host, report in reports.items():
        letter = SERVER_OF[host]
        moved = set(migration.dbs_after[letter][0]) - set(migration.dbs_before[letter][0]) - {INDEX}
        assert report["host"] == host
        assert report["endpoint"] == fleet.endpoint(host)
        assert report["handled_by"] == ("app2" if host == "app3" else host)
        assert report["dry_run"] is False
        assert report["status"] == "ok", report["failure"]
        assert report["failure"] is None
        counts = report["migrate"]["counts"]
        assert counts["migrated"] == len(moved), host
        assert counts["found"] == len(fleet.sessions[letter]), host
        assert counts["skipped"] == len(fleet.sessions[letter]) - len(moved), host
        assert counts["failed"] == counts["expired"] == 0, host
        assert report["migrate"]["index_counts"]["added"] == PLAN[host][1], host
        assert report["migrate"]["verified"] is True, host
        # The independent check of everything, in the same module run (full_verify).
        assert report["migrate"]["full_check"]["verified"] is True, host
        assert report["migrate"]["full_check"]["missing"] == 0, host
        assert report["migrate"]["full_check"]["index_missing"] == 0, host
        assert "invocation" not in report["migrate"]
    # app3 did not run the module: its record is app2's result, from app2's run.
    assert reports["app3"]["migrate"] == reports["app2"]["migrate"]
    assert reports["app3"]["endpoint"] == reports["app2"]["endpoint"]
    assert reports["app1"]["endpoint"] != reports["app4"]["endpoint"]


def test_migration_shows_no_password_in_its_output_or_reports(migration):
    run = migration.run
    for path in run.folder.iterdir():
        assert PASSWORD not in path.read_text(), path
    assert PASSWORD not in run.output


def test_a_rerun_after_the_migration_is_a_noop(migration):
    """A second run finds everything done: nothing changed, not one write."""
    fleet = migration.fleet
    writes_before = fleet.writes()

    again = fleet.play(MIGRATE)

    assert again.rc == 0, again.output
    assert fleet.writes() == writes_before
    assert fleet.dbs() == migration.dbs_after
    for host in HOSTS:
        assert recap(again.output, host)["changed"] == 0, again.output
        assert recap(again.output, host)["failed"] == 0, again.output
    rows = table_rows(the_table(again))
    for host, ((found, _, _), _) in PLAN.items():
        row = rows[host]
        got = (row["found"], row["migrated"], row["skipped"], row["index added"], row["verified"])
        assert got == (str(found), "0", str(found), "0", "yes"), row
    assert (rows["total"]["migrated"], rows["total"]["skipped"]) == ("0", "22")
    assert again.folder != migration.run.folder


# 4. max_fail_percentage stops the rolling migration --------------------------------------------


def test_failed_host_stops_the_rollout(tmp_path, redis_factory):
    servers = {letter: redis_factory() for letter in "ABC"}
    sessions = {
        letter: seed_sessions(server.client(1), 5, start=1704067200000 + n * 10**9)
        for n, (letter, server) in enumerate(servers.items())
    }
    dead_port = free_port()  # nothing listens there
    inventory = write_inventory(
        tmp_path,
        {
            "app1": {"storyart_session_migration_login_port": servers["A"].port},
            "app2": {"storyart_session_migration_login_port": dead_port},
            "app3": {"storyart_session_migration_login_port": servers["B"].port},
            "app4": {"storyart_session_migration_login_port": servers["C"].port},
        },
    )
    fleet = Fleet(tmp_path, inventory, servers)
    dbs_before, writes_before = fleet.dbs(), fleet.writes()

    run = fleet.play(
        MIGRATE,
        "-e",
        "storyart_rollout_serial=1",
        "-e",
        "storyart_rollout_max_fail_percentage=0",
    )

    assert run.rc != 0, run.output
    # The first batch migrated app1's Redis.
    source_a = dbs_before["A"][1]
    target_a = snapshot(servers["A"].client(0))
    assert all(target_a[name] == source_a[name] for name in sessions["A"])
    assert zset(servers["A"].client(0)) == zset(servers["A"].client(1))
    # app2 failed, naming the endpoint it could not reach, and the rollout stopped there:
    # the hosts after it were never touched.
    assert f"127.0.0.1:{dead_port}" in run.output
    assert recap(run.output, "app1")["failed"] == 0, run.output
    assert recap(run.output, "app2")["failed"] == 1, run.output
    for letter, host in (("B", "app3"), ("C", "app4")):
        assert servers[letter].client(0).dbsize() == 0, host
        assert fleet.dbs()[letter] == dbs_before[letter], host
        assert servers[letter].rdb_changes() == writes_before[letter], host
        assert not re.search(rf"^{host}\s+: ok=", run.output, re.M), run.output  # not in RECAP
    assert run.folder is not None, run.output
    reports = run.reports()
    assert sorted(reports) == ["app1", "app2"], sorted(reports)
    assert reports["app1"]["status"] == "ok"
    assert reports["app1"]["migrate"]["counts"]["migrated"] == 5
    assert reports["app2"]["status"] == "failed"
    assert f"127.0.0.1:{dead_port}" in reports["app2"]["failure"]
    assert "Cannot connect" in reports["app2"]["failure"]
    # A table after each batch; the last, so the operator sees where the rollout stopped:
    # app1 done, app2 failed with its reason, app3 and app4 never ran.
    tables = printed_tables(run.stdout)
    assert len(tables) == 2, f"no summary table after the stopped rollout:\n{run.output}"
    assert tables[0][0] == "StoryArt session migration: done"
    assert tables[1][0] == "StoryArt session migration: FAILED on 1 of 4 hosts, see the notes"
    assert (run.folder / "summary.txt").read_text().splitlines() == tables[1]
    # The failure is printed once, by the host's stop, with its reason.
    assert len(re.findall(r"^fatal: \[app2\]", run.stdout, re.M)) == 1, run.output
    assert f"127.0.0.1:{dead_port}" in section(run.stdout, STOP_TASK), run.output
    rows = table_rows(tables[1])
    assert rows["app1"]["migrated"] == "5"
    assert "FAILED" in rows["app2"]["note"], rows["app2"]
    assert f"127.0.0.1:{dead_port}" in rows["app2"]["note"], rows["app2"]
    for host in ("app3", "app4"):
        assert host in rows, "\n".join(tables[0])
        assert rows[host]["migrated"] == "-", rows[host]
        assert "not reached" in rows[host]["note"], rows[host]
    assert (run.folder / "summary.txt").exists()


# 5. Cleanup of the source db -------------------------------------------------------------------


def test_cleanup_refuses_without_confirmation_and_dry_run_lists_deletions(tmp_path, redis_factory):
    fleet = standard_fleet(redis_factory, tmp_path)
    migrate_all(fleet)
    dbs_before, writes_before = fleet.dbs(), fleet.writes()

    refused = fleet.play(CLEANUP)

    assert refused.rc != 0, refused.output
    assert f"-e {CONFIRM}=delete-migrated-sessions" in refused.output
    for host in HOSTS:
        assert recap(refused.output, host)["failed"] == 1, refused.output
    # The refusal is a failure like any other: reported, and in the table.
    assert (
        the_table(refused)[0] == "StoryArt source clean-up: FAILED on 4 of 4 hosts, see the notes"
    )
    assert {report["status"] for report in refused.reports().values()} == {"failed"}
    assert fleet.writes() == writes_before
    assert fleet.dbs() == dbs_before

    dry = fleet.play(CLEANUP, "--check", "--diff")

    assert fleet.writes() == writes_before
    assert fleet.dbs() == dbs_before
    assert dry.rc == 0, dry.output
    table = the_table(dry)
    assert (
        table[0] == "StoryArt source clean-up: DRY RUN (check mode): the plan, nothing was written"
    )
    assert CLEANUP_HEADER.match(table[1]), table
    rows = table_rows(table)
    # Every migrated session has an identical copy, except C's 3 sessions db 0 had already.
    expected = {"app1": ("6", "0"), "app2": ("6", "0"), "app3": ("6", "0"), "app4": ("7", "3")}
    for host, (deleted, differs) in expected.items():
        row = rows[host]
        assert (row["deleted"], row["kept: differs"], row["kept: no copy"]) == (
            deleted,
            differs,
            "0",
        ), row
    assert rows["app3"]["note"] == "shares app2's endpoint"
    assert "3 endpoints" in rows["total"]["host"], rows["total"]
    assert rows["total"]["deleted"] == "19", rows["total"]
    # --diff lists the keys that would go, per endpoint, and the index.
    listed = set(re.findall(r"^-- (storyart:session:\d+)$", dry.stdout, re.M))
    would_go = {n.decode() for letter in "AB" for n in fleet.sessions[letter]}
    would_go |= {n.decode() for n in fleet.sessions["C"][3:]}
    assert listed == would_go
    for server in fleet.servers.values():
        assert dry.stdout.count(f"--- before: redis://127.0.0.1:{server.port}/1") == 1
    assert re.fullmatch(r"staging-cleanup-\d{8}T\d{6}Z-dry-run", dry.folder.name), dry.folder
    assert_report_files(dry, HOSTS)
    for host, report in dry.reports().items():
        assert report["dry_run"] is True
        assert report["cleanup"]["counts"]["deleted"] == int(expected[host][0])


def test_cleanup_deletes_only_identical_copies_and_fully_merged_indexes(tmp_path, redis_factory):
    fleet = standard_fleet(redis_factory, tmp_path)
    migrate_all(fleet)
    a_source, a_target = fleet.servers["A"].client(1), fleet.servers["A"].client(0)
    altered, removed = fleet.sessions["A"][0], fleet.sessions["A"][1]
    # On A, the app changed one session in db 0 and dropped another, with its index entry.
    a_target.set(altered, b'{"story":"changed in db 0"}', keepttl=True)
    a_target.delete(removed)
    a_target.zrem(INDEX, removed)
    dbs_before, writes_before = fleet.dbs(), fleet.writes()

    run = fleet.play(CLEANUP, "-e", f"{CONFIRM}=delete-migrated-sessions")

    dbs_after = fleet.dbs()
    for letter in fleet.servers:
        assert dbs_after[letter][0] == dbs_before[letter][0], letter  # db 0 untouched
    # A: only the 4 identical sessions went; the altered and the missing one stay with their
    # index, which still has an entry db 0's index lacks.
    source_before = dbs_before["A"][1]
    assert set(dbs_after["A"][1]) == {altered, removed, INDEX}
    for name in (altered, removed, INDEX):
        assert dbs_after["A"][1][name] == source_before[name]
    assert a_source.exists(*fleet.sessions["A"][2:]) == 0
    # B: every session had an identical copy; the index is fully in db 0, so it went too.
    assert fleet.servers["B"].client(1).dbsize() == 0
    # C: the 3 sessions db 0 already held differ there, so they stay; the index is merged
    # (db 0 has every member, with its own scores for those 3), so it went; other keys stay.
    source_c = dbs_before["C"][1]
    assert set(dbs_after["C"][1]) == {*fleet.present, b"storyart:config:theme"}
    for name in dbs_after["C"][1]:
        assert dbs_after["C"][1][name] == source_c[name]
    assert run.rc == 0, run.output
    # Unpaced, as a migration: one foreground module call an endpoint, no job to wait a poll
    # for. The playbook's stop task prints once, and the report folder says what ran.
    assert "ASYNC" not in run.stdout, run.output
    assert run.stdout.count(STOP_TASK) == 1, run.output
    assert re.fullmatch(r"staging-cleanup-\d{8}T\d{6}Z", run.folder.name), run.folder
    # Reports and table say the same.
    assert_report_files(run, HOSTS)
    reports = run.reports()
    expected = {  # deleted, kept_different, kept_missing, index deleted
        "app1": (4, 1, 1, False),
        "app2": (6, 0, 0, True),
        "app3": (6, 0, 0, True),
        "app4": (7, 3, 0, True),
    }
    for host, (deleted, different, missing, index_deleted) in expected.items():
        cleanup = reports[host]["cleanup"]
        counts = cleanup["counts"]
        assert (counts["deleted"], counts["kept_different"], counts["kept_missing"]) == (
            deleted,
            different,
            missing,
        ), (host, counts)
        assert counts["failed"] == 0
        assert cleanup["indexes"][0]["deleted"] is index_deleted, (host, cleanup["indexes"])
        assert reports[host]["handled_by"] == ("app2" if host == "app3" else host)
        assert reports[host]["status"] == "ok"
    assert reports["app1"]["cleanup"]["samples"]["kept_different"] == [altered.decode()]
    assert reports["app1"]["cleanup"]["samples"]["kept_missing"] == [removed.decode()]
    assert reports["app1"]["cleanup"]["indexes"][0]["missing"] == 1
    assert (
        "1 of its entries are not in db 0"
        in reports["app1"]["cleanup"]["indexes"][0]["kept_because"]
    )
    rows = table_rows(the_table(run))
    assert (rows["app1"]["deleted"], rows["app1"]["kept: differs"]) == ("4", "1")
    assert rows["app1"]["kept: no copy"] == "1"
    assert (rows["total"]["deleted"], rows["total"]["kept: differs"]) == ("17", "4")
    writes_after = fleet.writes()
    assert writes_after["C"] > writes_before["C"]
    for path in run.folder.iterdir():
        assert PASSWORD not in path.read_text(), path


def test_cleanup_fails_the_host_whose_redis_is_down(tmp_path, redis_factory):
    server = redis_factory()
    names = seed_sessions(server.client(1), 4)
    assert migrate_with_engine(server).verified is True
    dead_port = free_port()  # nothing listens there
    inventory = write_inventory(
        tmp_path,
        {
            "app1": {"storyart_session_migration_login_port": server.port},
            "app2": {"storyart_session_migration_login_port": dead_port},
        },
    )
    fleet = Fleet(tmp_path, inventory, {"A": server})
    target_before = snapshot(server.client(0))

    run = fleet.play(CLEANUP, "-e", f"{CONFIRM}=delete-migrated-sessions")

    # app1's clean-up ran: its identical copies are gone from db 1, db 0 is untouched.
    assert server.client(1).exists(*names, INDEX) == 0
    assert snapshot(server.client(0)) == target_before
    reports = run.reports()
    assert reports["app1"]["cleanup"]["counts"]["deleted"] == 4
    assert reports["app2"]["status"] == "failed"
    assert f"127.0.0.1:{dead_port}" in reports["app2"]["failure"]
    # A clean-up that could not run must fail its host and the run, as the migration does.
    assert recap(run.output, "app2")["failed"] == 1, run.output
    assert run.rc != 0, run.output


# 6. Role argument validation, and input checked at the edge ------------------------------------


def refused_before_anything_ran(fleet, playbook, *args, failure):
    """Run ``playbook`` on the standard fleet and check it was refused before any module call:
    no write, every host reported failed with ``failure`` and the table saying so."""
    dbs_before, writes_before = fleet.dbs(), fleet.writes()

    run = fleet.play(playbook, *args)

    assert run.rc != 0, run.output
    assert "redis_db_migrate in mode" not in run.stdout
    assert fleet.writes() == writes_before
    assert fleet.dbs() == dbs_before
    reports = run.reports()
    assert sorted(reports) == sorted(HOSTS)
    for host, report in reports.items():
        assert report["status"] == "failed", host
        assert says(report["failure"], failure), report["failure"]
    assert "FAILED on 4 of 4 hosts" in the_table(run)[0]
    return run


@pytest.mark.parametrize(
    "playbook",
    # The cleanup entry point takes the main one's options through a YAML anchor: its
    # validation must hold all the same.
    [MIGRATE, CLEANUP],
    ids=["main", "cleanup"],
)
def test_argument_spec_rejects_a_wrong_type_before_anything_runs(tmp_path, redis_factory, playbook):
    run = refused_before_anything_ran(
        standard_fleet(redis_factory, tmp_path),
        playbook,
        "-e",
        "storyart_session_migration_source_db=one",
        "-e",
        f"{CONFIRM}=delete-migrated-sessions",
        failure=not_an_int("storyart_session_migration_source_db"),
    )

    entry_point = "main" if playbook == MIGRATE else "cleanup"
    validation = section(
        run.stdout,
        f"TASK [storyart_session_migration : Validating arguments against arg spec '{entry_point}'",
    )
    assert statuses(validation) == dict.fromkeys(HOSTS, "fatal"), run.output
    assert "Validation of arguments failed" in run.stdout
    assert not_an_int("storyart_session_migration_source_db").search(run.stdout), run.stdout
    assert PASSWORD not in run.output


def test_unreachable_hosts_and_an_undefined_vault_variable_are_reported_in_the_table(
    tmp_path, redis_server
):
    seed_sessions(redis_server.client(1), 3)
    writes = redis_server.rdb_changes()
    port = {"storyart_session_migration_login_port": redis_server.port}
    inventory = write_inventory(
        tmp_path,
        {
            # Nothing listens on these SSH ports: both hosts are unreachable.
            **{
                host: {
                    **port,
                    "ansible_connection": "ssh",
                    "ansible_host": "127.0.0.1",
                    "ansible_port": free_port(),
                }
                for host in ("app1", "app2")
            },
            # A vault file that was never created.
            "app3": {
                **port,
                "storyart_session_migration_login_password": "{{ vault_storyart_redis_password }}",
            },
        },
    )

    run = run_playbook(tmp_path, inventory, MIGRATE, report_dir=tmp_path / "reports")

    assert run.rc != 0, run.output
    reports = run.reports()
    assert sorted(reports) == ["app1", "app2", "app3"]
    for host in ("app1", "app2"):
        assert reports[host]["status"] == "failed"
        assert "Failed to connect to the host via ssh" in reports[host]["failure"], host
    assert reports["app3"]["status"] == "failed"
    assert "'vault_storyart_redis_password' is undefined" in reports["app3"]["failure"]
    table = printed_tables(run.stdout)[-1]
    assert table[0] == "StoryArt session migration: FAILED on 3 of 3 hosts, see the notes"
    rows = table_rows(table)
    assert all("FAILED" in rows[host]["note"] for host in ("app1", "app2", "app3")), rows
    for host in ("app1", "app2", "app3"):
        assert recap(run.output, host)["failed"] == 1, run.output
    assert redis_server.rdb_changes() == writes


def test_numbers_out_of_range_are_refused_naming_each_variable(tmp_path, redis_factory):
    refused_before_anything_ran(
        standard_fleet(redis_factory, tmp_path),
        MIGRATE,
        "-e",
        "storyart_session_migration_login_port=70000",
        "-e",
        "storyart_session_migration_batch_size=0",
        failure=(
            "storyart_session_migration_login_port is 70000, it must be a TCP port from 1 to "
            "65535; storyart_session_migration_batch_size is 0, it must be from 1 to 10000. "
            "Fix it in the inventory or on the command line (-e)."
        ),
    )


def test_a_redis_port_from_the_environment_that_is_no_number_is_an_error(tmp_path, redis_server):
    seed_sessions(redis_server.client(1), 3)
    writes = redis_server.rdb_changes()

    run = run_playbook(
        tmp_path,
        ROOT / "inventories" / "local",
        MIGRATE,
        report_dir=tmp_path / "reports",
        env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "abc"},
    )

    assert run.rc != 0, run.output
    (report,) = run.reports().values()
    assert not_an_int("storyart_session_migration_login_port").search(report["failure"])
    if ANSIBLE_CORE >= (2, 19):  # 2.16 does not quote the value
        assert "'abc'" in report["failure"]
    assert redis_server.rdb_changes() == writes
    assert redis_server.client(0).dbsize() == 0


# 7. Once per endpoint, and where the module runs ----------------------------------------------


def test_two_hosts_with_a_local_connection_to_one_redis_migrate_it_once(tmp_path, redis_factory):
    server = redis_factory()
    sessions = seed_sessions(server.client(1), 6)
    port = {"storyart_session_migration_login_port": server.port}
    inventory = write_inventory(tmp_path, {"app1": port, "app2": port})

    run = Fleet(tmp_path, inventory, {"A": server}).play(MIGRATE)

    assert run.rc == 0, run.output
    # Both reach 127.0.0.1 on the controller: one endpoint, handled by app1 alone.
    module = section(run.stdout, MODULE_TASK.format(mode="migrate"))
    assert statuses(module) == {"app1": "changed", "app2": "skipping"}, run.output
    # No rate limit: one foreground module call, neither announced nor polled in the background.
    assert MODULE_TASK.format(mode="preflight") not in run.stdout, run.output
    assert "ASYNC" not in run.stdout, run.output
    reports = run.reports()
    for host in ("app1", "app2"):
        assert reports[host]["endpoint"] == f"controller 127.0.0.1:{server.port} db 1 -> db 0"
        assert reports[host]["handled_by"] == "app1"
        assert reports[host]["migrate"]["counts"]["migrated"] == len(sessions)
    assert sorted(server.client(0).keys("storyart:session:*")) == sorted(sessions)


def test_controller_mode_reaches_the_hosts_address_and_polls_in_the_playbooks_python(
    tmp_path, redis_factory
):
    # The app host's Redis listens on its address only, here 127.0.0.2, which is also its
    # inventory name: the delegated run must connect there, not to the controller's localhost.
    server = redis_factory("bind 127.0.0.2")
    sessions = seed_sessions(server.client(1), 5)
    inventory = write_inventory(
        tmp_path,
        {
            "127.0.0.2": {
                "storyart_session_migration_login_port": server.port,
                "storyart_session_migration_run_on": "controller",
                # The app host's Python, which the controller does not have: Ansible would
                # poll the delegated run with it, and never see it finish.
                "ansible_python_interpreter": "/nonexistent/bin/python3",
                "storyart_session_migration_timeout": 30,
                # Rate-limited: announced, then run in the background and polled.
                "storyart_session_migration_max_keys_per_second": 1000,
            }
        },
    )

    run = run_playbook(tmp_path, inventory, MIGRATE, report_dir=tmp_path / "reports")

    assert run.rc == 0, run.output
    assert f" at 127.0.0.2:{server.port} is ready" in run.stdout
    assert re.search(r"^ASYNC OK on 127\.0\.0\.2: jid=", run.stdout, re.M), run.output
    assert sorted(server.client(0).keys("storyart:session:*")) == sorted(sessions)


def test_a_dry_run_installs_nothing_and_names_the_host_without_redis_py(tmp_path, redis_server):
    seed_sessions(redis_server.client(1), 3)
    writes = redis_server.rdb_changes()
    inventory = write_inventory(
        tmp_path,
        {
            "app1": {
                "storyart_session_migration_login_port": redis_server.port,
                "storyart_session_migration_install_python_redis": True,
                "ansible_python_interpreter": str(bare_python(tmp_path)),
            }
        },
    )

    run = run_playbook(tmp_path, inventory, MIGRATE, "--check", report_dir=tmp_path / "reports")

    assert run.rc != 0, run.output
    install = section(run.stdout, INSTALL_TASK)
    assert statuses(install) == {"app1": "skipping"}, run.output
    failure = run.reports()["app1"]["failure"]
    assert "Failed to import the required Python library (redis)" in failure
    # The module's own message names the fix; the report names the host.
    assert (
        "Install python3-redis on this host with a real run of the same playbook with --tags "
        "python_redis -e storyart_session_migration_install_python_redis=true"
    ) in failure
    assert failure in section(run.stdout, STOP_TASK)
    assert redis_server.rdb_changes() == writes


# 8. Verification -------------------------------------------------------------------------------


def test_verify_tag_passes_on_migrated_fleet_and_fails_on_missing_session(tmp_path, redis_factory):
    fleet = standard_fleet(redis_factory, tmp_path)
    migrate_all(fleet)
    dbs_before, writes_before = fleet.dbs(), fleet.writes()

    run = fleet.play(MIGRATE, "--tags", "verify")

    assert fleet.writes() == writes_before  # verification only reads
    assert fleet.dbs() == dbs_before
    assert run.rc == 0, run.output
    for task in ("preflight", "migrate"):
        assert f"redis_db_migrate in mode {task}" not in run.stdout
    verify_task = section(
        run.stdout, "TASK [storyart_session_migration : Run redis_db_migrate in mode verify]"
    )
    assert statuses(verify_task) == {
        "app1": "ok",
        "app2": "ok",
        "app3": "skipping",
        "app4": "ok",
    }, verify_task
    for host, report in run.reports().items():
        assert report["status"] == "ok", host
        assert report["verify"]["verified"] is True, host
        assert report["verify"]["counts"]["missing"] == 0, host
        assert "migrate" not in report
    rows = table_rows(the_table(run))
    assert (rows["app4"]["found"], rows["app4"]["in target"], rows["app4"]["missing"]) == (
        "10",
        "10",
        "0",
    )
    assert (rows["total"]["in target"], rows["total"]["missing"]) == ("22", "0")

    lost = fleet.sessions["C"][5]
    fleet.servers["C"].client(0).delete(lost)
    dbs_before, writes_before = fleet.dbs(), fleet.writes()

    run = fleet.play(MIGRATE, "--tags", "verify")

    assert run.rc != 0, run.output
    assert fleet.writes() == writes_before
    assert fleet.dbs() == dbs_before
    assert recap(run.output, "app4")["failed"] == 1, run.output
    # The failure prints once, with its reason, where the host stops.
    verify_task = section(
        run.stdout, "TASK [storyart_session_migration : Run redis_db_migrate in mode verify]"
    )
    assert "fatal" not in verify_task, verify_task
    stop = section(
        run.stdout, "TASK [storyart_session_migration : Stop this host when a step failed]"
    )
    assert statuses(stop) == {**dict.fromkeys(HOSTS, "skipping"), "app4": "fatal"}, stop
    assert "MISSING from db 0 1" in stop
    assert "NOT VERIFIED: 1 keys" in stop
    assert run.stdout.count("fatal: [") == 1, run.stdout
    report = run.reports()["app4"]
    assert report["status"] == "failed"
    assert "NOT VERIFIED: 1 keys" in report["failure"]
    # The report keeps the result of every step that ran, the failed one included: its
    # counts and the names of the missing keys are what the operator needs.
    assert "verify" in report, f"the failed verify is missing from the report: {report}"
    assert report["verify"]["verified"] is False
    # Its own counts, and until 2.0.0 the deprecated ones with the same numbers.
    counts = report["verify"]["counts"]
    assert (counts["found"], counts["missing"], counts["present"]) == (10, 1, 9)
    assert (counts["migrated"], counts["skipped"]) == (1, 9)
    assert report["verify"]["samples"]["missing"] == [lost.decode()]
    row = table_rows(the_table(run))["app4"]
    assert (row["found"], row["in target"], row["missing"], row["verified"]) == (
        "10",
        "9",
        "1",
        "NO",
    )


# 9. The restart handler, in check mode -----------------------------------------------------------


def test_restart_handler_is_notified_only_where_sessions_move(tmp_path, redis_factory):
    fleet = standard_fleet(redis_factory, tmp_path)
    migrate_with_engine(fleet.servers["C"])  # app4's endpoint has nothing left to move
    dbs_before, writes_before = fleet.dbs(), fleet.writes()
    service = "storyart-test-no-such-service"

    run = fleet.play(
        MIGRATE,
        "--check",
        "-e",
        "storyart_session_migration_restart_service=true",
        "-e",
        f"storyart_session_migration_service_name={service}",
    )

    assert fleet.writes() == writes_before
    assert fleet.dbs() == dbs_before
    schedule = section(run.stdout, RESULT_TASK.format(mode="migrate"))
    # app3 runs no module but restarts too: its endpoint, handled by app2, changes.
    assert statuses(schedule) == {
        "app1": "changed",
        "app2": "changed",
        "app3": "changed",
        "app4": "ok",
    }, schedule
    assert run.stdout.count(RESTART_HANDLER) == 1, run.stdout
    handler = section(run.stdout, RESTART_HANDLER)
    # What happens: in check mode the service module still looks the service up, and on a
    # machine without it the handler fails each notified host, so the dry run exits non-zero.
    # app4, whose endpoint had nothing to move, was not notified.
    assert statuses(handler) == dict.fromkeys(("app1", "app2", "app3"), "fatal"), handler
    assert f"Could not find the requested service {service}" in handler
    assert run.rc != 0, run.output
    for host in ("app1", "app2", "app3"):
        assert recap(run.output, host)["failed"] == 1, run.output
    assert recap(run.output, "app4")["failed"] == 0, run.output
    assert_report_files(run, HOSTS)  # written before the handlers ran
