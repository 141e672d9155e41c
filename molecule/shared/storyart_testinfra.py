"""Helpers shared by the scenarios' testinfra tests.

Redis is read in the containers with redis-cli (both images have it; python3-redis is only in
the Redis 7 image) through the same read-only Lua script prepare used for its "before"
snapshots (files/snapshot.lua), so "before" and "after" are comparable field by field.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

SHARED = Path(__file__).resolve().parent
PROJECT = SHARED.parent.parent
SNAPSHOT_SCRIPT = (SHARED / "files" / "snapshot.lua").read_text()
SESSION_PREFIX = "storyart:session:"
INDEX = "storyart:sessions:index"
SOURCE_DB, TARGET_DB = 1, 0


def ephemeral_dir() -> Path:
    """The scenario's ephemeral directory (Molecule exports it to the verifier)."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def inventory_dir() -> Path:
    """The inventory Molecule wrote for this scenario, as ansible-playbook takes it."""
    return Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent


def report_dir() -> Path:
    return ephemeral_dir() / "reports"


# Redis, through redis-cli in the container --------------------------------------------------


def redis_cli(host, *args: str) -> str:
    """Run redis-cli in the container as the inventory says (TLS, ACL user) and return stdout.

    redis-cli exits 0 even when the server refuses a command, so the reply is checked too.
    """
    variables = host.ansible.get_variables()
    argv = [*variables.get("storyart_molecule_redis_cli", ["redis-cli"]), *args]
    env = variables.get("storyart_molecule_redis_env", {})
    command = " ".join(
        [*(f"{name}={shlex.quote(value)}" for name, value in env.items()), shlex.join(argv)]
    )
    result = host.run(command)
    reply = result.stdout.strip()
    assert result.rc == 0, f"redis-cli {args[:3]} failed: {result.stderr}"
    assert not reply.startswith(("ERR", "NOPERM", "NOAUTH", "WRONGPASS")), reply
    return reply


def snapshot(host, db: int) -> dict:
    """{"entries": {key: {type, value, dump_sha1, persistent, pexpiretime}}, "pttl": {...}}"""
    return json.loads(redis_cli(host, "-n", str(db), "EVAL", SNAPSHOT_SCRIPT, "0"))


def rdb_changes(host) -> int:
    info = redis_cli(host, "INFO", "persistence")
    line = next(line for line in info.splitlines() if line.startswith("rdb_changes_since"))
    return int(line.split(":", 1)[1])


def recorded(host_name: str, label: str = "before") -> dict:
    """A snapshot the scenario's playbooks recorded (snapshots/<host>/<label>.json)."""
    path = ephemeral_dir() / "snapshots" / host_name / f"{label}.json"
    return json.loads(path.read_text())


def host_name(host) -> str:
    return host.ansible.get_variables()["inventory_hostname"]


def sessions(entries: dict) -> dict:
    """The entries that are StoryArt sessions (what the pattern storyart:session:* matches)."""
    return {key: entry for key, entry in entries.items() if key.startswith(SESSION_PREFIX)}


def index_scores(entries: dict) -> dict:
    """The index sorted set as {member: score}; empty when the index does not exist."""
    entry = entries.get(INDEX)
    if entry is None:
        return {}
    assert entry["type"] == "zset"
    flat = entry["value"]
    return {member: float(score) for member, score in zip(flat[::2], flat[1::2])}


@dataclass
class Expectation:
    """What the migration of one host must produce, from prepare's "before" snapshot."""

    before_db0: dict
    before_db1: dict

    @property
    def source_sessions(self) -> dict:
        return sessions(self.before_db1["entries"])

    @property
    def preexisting(self) -> dict:
        """Sessions db 0 already had (newer than their db 1 copies, or only in db 0)."""
        return sessions(self.before_db0["entries"])

    @property
    def migrated(self) -> dict:
        """Source sessions the migration copies: those db 0 did not have."""
        return {k: v for k, v in self.source_sessions.items() if k not in self.preexisting}

    @property
    def skipped(self) -> set:
        return set(self.source_sessions) & set(self.preexisting)

    @property
    def merged_index(self) -> dict:
        """The union of both indexes; a member db 0 already had keeps db 0's score."""
        return {
            **index_scores(self.before_db1["entries"]),
            **index_scores(self.before_db0["entries"]),
        }

    @property
    def index_added(self) -> int:
        return len(
            set(index_scores(self.before_db1["entries"]))
            - set(index_scores(self.before_db0["entries"]))
        )


def expectation(host_name: str) -> Expectation:
    before = recorded(host_name)
    return Expectation(before_db0=before["db0"], before_db1=before["db1"])


@dataclass
class HostState:
    """One host now, next to what prepare recorded before the migration."""

    host: object
    expected: Expectation
    db0: dict
    db1: dict


def host_state(host) -> HostState:
    return HostState(
        host=host,
        expected=expectation(host_name(host)),
        db0=snapshot(host, TARGET_DB)["entries"],
        db1=snapshot(host, SOURCE_DB)["entries"],
    )


def pttl_pairs(host, keys) -> dict:
    """{key: [PTTL in db 1, PTTL in db 0]}, both read in one script run, at the same moment."""
    script = (
        "local out = {} "
        "for _, key in ipairs(KEYS) do "
        f"redis.call('SELECT', {SOURCE_DB}) local source = redis.call('PTTL', key) "
        f"redis.call('SELECT', {TARGET_DB}) local target = redis.call('PTTL', key) "
        "out[key] = {source, target} end "
        "return cjson.encode(out)"
    )
    keys = sorted(keys)
    return json.loads(redis_cli(host, "EVAL", script, str(len(keys)), *keys))


class MigratedDataChecks:
    """Tests of one host's data after the migration, for a scenario's Test* class to inherit.

    Needs the ``migration`` fixture (conftest.py): a HostState taken once per host.
    ``check_expiry`` compares expiries; scenarios on Redis before 7.0 override it.
    """

    def check_expiry(self, state: HostState) -> None:
        for key, source in state.expected.migrated.items():
            # PEXPIRETIME is the absolute expiry in ms (Redis 7): equal means the same instant.
            assert state.db0[key]["pexpiretime"] == source["pexpiretime"], key
            assert state.db0[key]["persistent"] == source["persistent"], key

    def test_sessions_are_in_db0_with_their_values(self, migration):
        assert migration.expected.migrated, "the dataset has sessions to migrate"
        for key, source in migration.expected.migrated.items():
            assert key in migration.db0, f"{key} was not copied to db {TARGET_DB}"
            copy = migration.db0[key]
            assert copy["type"] == source["type"], key
            assert copy["value"] == source["value"], key
            # Same DUMP payload: same type, encoding and value, byte for byte. Not for sets:
            # Redis 6 and 7.0 keep a set of strings in a hash table and dump it in bucket
            # order, which a copy need not share (the snapshot has their sorted members).
            if source["type"] != "set":
                assert copy["dump_sha1"] == source["dump_sha1"], key

    def test_ttls_are_preserved(self, migration):
        kinds = {entry["persistent"] for entry in migration.expected.migrated.values()}
        assert kinds == {True, False}, "the dataset has sessions with and without TTL"
        self.check_expiry(migration)

    def test_db1_is_unchanged(self, migration):
        assert migration.db1 == migration.expected.before_db1["entries"]

    def test_preexisting_db0_sessions_and_scores_are_untouched(self, migration):
        expected = migration.expected
        assert expected.skipped, "the dataset has sessions db 0 already holds"
        for key, before in expected.preexisting.items():
            assert migration.db0[key] == before, f"{key}, already in db {TARGET_DB}, changed"
        target_before = index_scores(expected.before_db0["entries"])
        now = index_scores(migration.db0)
        assert {member: now[member] for member in target_before} == target_before

    def test_index_is_the_union_and_target_scores_win(self, migration):
        expected = migration.expected
        source = index_scores(expected.before_db1["entries"])
        orphans = [member for member in source if member not in expected.source_sessions]
        assert orphans, "the source index has an entry whose session exists nowhere"
        assert index_scores(migration.db0) == expected.merged_index
        assert migration.db0[INDEX]["persistent"]

    def test_only_sessions_and_the_index_reached_db0(self, migration):
        expected = migration.expected
        assert set(migration.db0) == (
            set(expected.before_db0["entries"]) | set(expected.migrated) | {INDEX}
        )
        outside = set(expected.before_db1["entries"]) - set(expected.source_sessions) - {INDEX}
        assert outside, "the dataset has keys outside the session pattern"
        assert not outside & set(migration.db0)


# Reports, on the controller ------------------------------------------------------------------


@dataclass
class ReportRun:
    """One run's report folder: <report_dir>/<environment>-<kind>-<UTC stamp>[-dry-run]/."""

    folder: Path

    @property
    def dry_run(self) -> bool:
        return self.folder.name.endswith("-dry-run")

    @property
    def records(self) -> dict:
        """Every host's record of the run, by host."""
        return json.loads((self.folder / "report.json").read_text())

    @property
    def summary(self) -> str:
        return (self.folder / "summary.txt").read_text()

    def total(self, step: str, count: str) -> int:
        return sum(record[step]["counts"][count] for record in self.records.values())


def check_migrated_and_verified(migrate: dict, expected: Expectation) -> None:
    """A host's migration result: every count as the host's dataset expects, verified, and
    the full check after the copy verified too."""
    assert migrate["counts"] == {
        "found": len(expected.source_sessions),
        "migrated": len(expected.migrated),
        "skipped": len(expected.skipped),
        "expired": 0,
        "failed": 0,
    }
    assert migrate["index_counts"]["added"] == expected.index_added
    assert migrate["verified"] is True
    assert migrate["full_check"]["verified"] is True


def report_runs() -> list[ReportRun]:
    """Every run's report folder, oldest first, by the UTC stamp in the folder's name (the kind
    of run comes before it)."""
    folders = [path for path in report_dir().iterdir() if path.is_dir()]
    return [ReportRun(path) for path in sorted(folders, key=lambda path: stamp_of(path.name))]


def stamp_of(name: str) -> str:
    return re.search(r"\d{8}T\d{6}Z", name).group()


def check_report_files(run: ReportRun, hosts) -> None:
    """report.json (a record a host) and summary.txt, in a folder only the owner may enter,
    files 0600."""
    assert mode_of(run.folder) == 0o700, run.folder
    names = sorted(path.name for path in run.folder.iterdir())
    assert names == ["report.json", "summary.txt"], run.folder
    for path in run.folder.iterdir():
        assert mode_of(path) == 0o600, path
    assert sorted(run.records) == sorted(hosts), run.folder
    for name in hosts:
        assert name in run.summary, f"{name} missing from {run.folder}/summary.txt"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# The playbooks, run again from a test ---------------------------------------------------------


@dataclass
class PlaybookRun:
    returncode: int
    output: str


def run_playbook(playbook: str, *args: str) -> PlaybookRun:
    """Run one of the project's playbooks against this scenario's inventory, as operators do.

    The verifier's environment is Molecule's: ANSIBLE_CONFIG, ANSIBLE_LIBRARY,
    ANSIBLE_MODULE_UTILS and ANSIBLE_ROLES_PATH point at the project and the scenario.
    """
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory_dir()),
            str(PROJECT / "playbooks" / playbook),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )
    return PlaybookRun(result.returncode, result.stdout + result.stderr)
