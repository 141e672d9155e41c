"""Stopping a run. A rate-limited migration or clean-up runs in the background, and a Ctrl-C
ends only ansible-playbook: the job goes on writing. playbooks/stop_sessions.yml finds it by
its run file, stops it between two Redis calls, and reports what it did; Redis is then
consistent and a rerun completes the run. Real ansible-playbook runs on real Redis, and the
engine's and the module's side of the same stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers import (
    CLEANUP,
    CONFIRM,
    INDEX,
    MIGRATE,
    STOP,
    alive,
    call_module,
    engine,
    interrupt,
    migrate_with_engine,
    options,
    run_playbook,
    running_job,
    seed_sessions,
    snapshot,
    start_play,
    tcp_args,
    wait_for,
    write_inventory,
    zset,
)

pytestmark = pytest.mark.ansible

SESSIONS = 3000
# Slow enough that the copy is still going when the stop comes, on a busy machine too: two
# ansible-playbook runs (the listing and the stop) come between. 3000 keys take a minute.
RATE = 50
UNPACED = "storyart_session_migration_max_keys_per_second=0"


def paced_fleet(tmp_path, server, **extra):
    """One StoryArt host on ``server``, rate-limited, its runs recorded in tmp_path/runs."""
    return write_inventory(
        tmp_path,
        {
            "app1": {
                "storyart_session_migration_login_port": server.port,
                "storyart_session_migration_max_keys_per_second": RATE,
                "storyart_session_migration_run_dir": str(tmp_path / "runs"),
                **extra,
            }
        },
    )


def settled(server):
    """What a run still writing would change: db sizes and the server's count of writes."""
    return server.client(0).dbsize(), server.client(1).dbsize(), server.rdb_changes()


def assert_stopped_for_good(server, job):
    """The job's process is gone and Redis no longer changes."""
    assert not alive(job["pid"])
    before = settled(server)
    time.sleep(1.5)
    assert settled(server) == before


def assert_reported_stopped(stop, step):
    """The stop's report: the host's record says stopped by the operator, with the stopped
    run's counts, and its table says so."""
    record = stop.reports()["app1"]
    assert (record["status"], record["stopped"], record["failure"]) == ("stopped", True, None)
    result = record[step]
    assert result["outcome"] == "stopped"
    assert result["stopped"] is True
    assert "STOPPED by the operator while " in result["msg"], result["msg"]
    assert "Redis is consistent" in result["msg"]
    assert "a rerun completes the run" in result["msg"]
    summary = (stop.folder / "summary.txt").read_text()
    assert ": STOPPED by the operator on 1 of 1 hosts" in summary, summary
    assert "stopped by the operator" in summary.splitlines()[2]
    return result


def test_ctrl_c_leaves_a_migration_writing_and_the_stop_ends_it_consistent(tmp_path, redis_factory):
    server = redis_factory()
    source, target = server.client(1), server.client(0)
    seed_sessions(source, SESSIONS)
    inventory = paced_fleet(tmp_path, server)
    reports = tmp_path / "reports"

    playbook = start_play(tmp_path, inventory, MIGRATE, report_dir=reports)
    wait_for(lambda: target.dbsize() > 0, "the migration's first keys", timeout=120)
    job = running_job(tmp_path / "runs")
    interrupt(playbook)
    # Ctrl-C ended ansible-playbook, not the job: db 0 keeps growing.
    written = target.dbsize()
    wait_for(lambda: target.dbsize() > written, "the job to write after the Ctrl-C")

    listed = run_playbook(tmp_path, inventory, STOP, "--check", report_dir=reports)
    assert listed.rc == 0, listed.output
    runs = listed.reports()["app1"]["stop"]["runs"]
    assert [(run["pid"], run["state"]) for run in runs] == [(job["pid"], "running")]
    assert alive(job["pid"])

    stop = run_playbook(tmp_path, inventory, STOP, report_dir=reports)

    assert stop.rc == 0, stop.output
    assert_stopped_for_good(server, job)
    # Every key in db 0 is its source's exact copy (value and absolute expiry), and each
    # index entry there is the source's, with its score.
    copied, originals = snapshot(target), snapshot(source)
    sessions = [key for key in copied if key != INDEX]
    assert 0 < len(sessions) < SESSIONS
    assert {key: copied[key] for key in sessions} == {key: originals[key] for key in sessions}
    merged = zset(target)
    assert merged.items() <= zset(source).items()
    result = assert_reported_stopped(stop, "migrate")
    assert result["counts"]["migrated"] == len(sessions)
    assert result["index_counts"]["added"] == len(merged)
    assert result["verified"] is None
    assert not list((tmp_path / "runs").glob("*/*"))

    rerun = run_playbook(tmp_path, inventory, MIGRATE, "-e", UNPACED, report_dir=reports)

    assert rerun.rc == 0, rerun.output
    record = rerun.reports()["app1"]
    assert record["status"] == "ok"
    assert record["migrate"]["verified"] is True
    assert record["migrate"]["counts"]["skipped"] == len(sessions)
    assert snapshot(target) == snapshot(source)


def test_ctrl_c_leaves_a_cleanup_deleting_and_the_stop_ends_it_consistent(tmp_path, redis_factory):
    server = redis_factory()
    source, target = server.client(1), server.client(0)
    seed_sessions(source, SESSIONS)
    migrate_with_engine(server)
    copies, originals = snapshot(target), snapshot(source)
    inventory = paced_fleet(tmp_path, server)
    reports = tmp_path / "reports"
    confirm = f"{CONFIRM}=delete-migrated-sessions"

    playbook = start_play(tmp_path, inventory, CLEANUP, "-e", confirm, report_dir=reports)
    wait_for(lambda: source.dbsize() < len(originals), "the clean-up's first deletions", 120)
    job = running_job(tmp_path / "runs")
    interrupt(playbook)
    left = source.dbsize()
    wait_for(lambda: source.dbsize() < left, "the job to delete after the Ctrl-C")

    stop = run_playbook(tmp_path, inventory, STOP, report_dir=reports)

    assert stop.rc == 0, stop.output
    assert_stopped_for_good(server, job)
    # db 0 untouched; db 1 lost only sessions db 0 holds, and what it kept is as it was.
    assert snapshot(target) == copies
    kept = snapshot(source)
    deleted = set(originals) - set(kept)
    assert INDEX in kept
    assert 0 < len(deleted) < SESSIONS
    assert kept == {key: originals[key] for key in kept}
    result = assert_reported_stopped(stop, "cleanup")
    assert result["counts"]["deleted"] == len(deleted)

    rerun = run_playbook(
        tmp_path, inventory, CLEANUP, "-e", confirm, "-e", UNPACED, report_dir=reports
    )

    assert rerun.rc == 0, rerun.output
    assert rerun.reports()["app1"]["status"] == "ok"
    assert source.dbsize() == 0
    assert snapshot(target) == copies


def test_a_stop_from_another_terminal_ends_the_polling_playbook_with_its_run_stopped(
    tmp_path, redis_factory
):
    server = redis_factory()
    seed_sessions(server.client(1), SESSIONS)
    inventory = paced_fleet(tmp_path, server)
    reports = tmp_path / "reports"
    playbook = start_play(tmp_path, inventory, MIGRATE, report_dir=reports)
    wait_for(lambda: server.client(0).dbsize() > 0, "the migration's first keys", timeout=120)
    job = running_job(tmp_path / "runs")

    # A folder of its own: the migration's playbook may write its report while this runs.
    stop = run_playbook(tmp_path, inventory, STOP, report_dir=tmp_path / "stop-reports")

    assert stop.rc == 0, stop.output
    assert_stopped_for_good(server, job)
    assert_reported_stopped(stop, "migrate")
    # The migration's own playbook, still polling, gets the stopped result: its host is
    # stopped, as a failed one is, and its report says why.
    assert playbook.wait(timeout=120) != 0
    (folder,) = reports.iterdir()
    record = json.loads((folder / "report.json").read_text())["app1"]
    assert (record["status"], record["stopped"]) == ("stopped", True)
    assert record["failure"].startswith("migrate stopped on "), record["failure"]
    assert "STOPPED by the operator" in (folder / "summary.txt").read_text()


def test_sigterm_stops_the_module_between_two_calls_and_leaves_its_result(tmp_path, redis_server):
    source, target = redis_server.client(1), redis_server.client(0)
    seed_sessions(source, 1000)
    run_dir = tmp_path / "runs"

    def terminate_once_it_writes():
        wait_for(lambda: target.dbsize() > 0, "the module's first keys")
        os.kill(os.getpid(), signal.SIGTERM)

    handler = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=terminate_once_it_writes)
    killer.start()
    result = call_module(tcp_args(redis_server, max_keys_per_second=RATE, run_dir=str(run_dir)))
    killer.join()

    assert result["outcome"] == "stopped", result["msg"]
    assert result["failed"] is True
    assert result["stopped"] is True
    assert result["counts"]["migrated"] == target.dbsize() > 0
    assert "STOPPED by the operator while copying keys" in result["msg"]
    # SIGTERM is handled as before, and only the final result is left, for a stop to report.
    assert signal.getsignal(signal.SIGTERM) == handler
    (left,) = run_dir.iterdir()
    assert left.name.endswith(".result.json")
    (found,) = engine.stop_runs(str(run_dir), 10)
    assert found["state"] == "stopped"
    assert found["result"]["counts"] == result["counts"]
    assert list(run_dir.iterdir()) == []


def test_the_engine_stops_between_calls_with_what_it_wrote_read_back(redis_server):
    source, target = redis_server.client(1), redis_server.client(0)
    seed_sessions(source, 500)
    asked = []

    def stop_requested():
        asked.append(target.dbsize())
        return len(asked) > 2

    report = engine.migrate(
        redis_server.settings(), options(batch_size=100), stop_requested=stop_requested
    )

    assert report.stopped
    assert not report.ok
    assert report.verified is None
    assert report.as_dict()["stopped"] is True
    # Asked after each call, once its writes were read back: nothing was written after the
    # third answer, the stop.
    assert len(asked) == 3
    assert 0 < report.migrated == target.dbsize() == asked[-1] < 500
    copied = snapshot(target)
    assert copied == {key: snapshot(source)[key] for key in copied}


def test_a_dead_or_reused_pid_is_no_running_run(tmp_path):
    """A run file left by a killed run, and one whose pid another process got since (it
    started at another time), are reported as not running and removed; nothing is signalled."""
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    for name, pid, started in (("dead", ended.pid, None), ("reused", os.getpid(), "1")):
        record = dict(pid=pid, process_start=started, mode="migrate", endpoint="127.0.0.1:6379")
        (run_dir / f"{name}.run.json").write_text(json.dumps(record))

    listed = engine.stop_runs(str(run_dir), 10, check_mode=True)
    assert [run["state"] for run in listed] == ["not running", "not running"]
    assert len(list(run_dir.iterdir())) == 2
    stopped = engine.stop_runs(str(run_dir), 10)

    assert [run["state"] for run in stopped] == ["not running", "not running"]
    assert list(run_dir.iterdir()) == []
