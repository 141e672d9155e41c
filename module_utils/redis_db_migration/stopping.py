"""The operator's stop: find the runs recorded in a run directory (running.RunRecord), ask each
to stop, wait for them to end, and collect the final result each left.

A stop request is a file, never a signal: it cannot reach a process that merely got a dead
run's pid, and it works for any user who may write the run directory. The run reads it between
two server calls, so what a run says it did is what Redis holds.
"""

from __future__ import annotations

import json
import os
import time

from .running import RESULT, RUN, STOP, process_start, remove


def stop_runs(run_dir, timeout, check_mode=False):
    """Stop every run recorded in ``run_dir`` (in check mode, only list them), waiting up to
    ``timeout`` seconds in all for them to end. One dict a run: what its run file says, its
    ``state`` (running, stopped, ended, not running, still running), ``result`` (the final
    result it left, or None) and ``note``, a sentence for the operator."""
    runs = recorded_runs(run_dir)
    live = [run for run in runs if is_running(run)]
    if not check_mode:
        for run in live:
            request_stop(run)
        deadline = time.monotonic() + timeout
        for run in live:
            wait_for_end(run, deadline - time.monotonic())
    return [_outcome(run, run in live, check_mode, timeout) for run in runs]


def recorded_runs(run_dir):
    """Every run recorded in ``run_dir``: its run file's content, with ``path`` (less the
    suffix); and the results of stopped runs whose run file is gone, with ``ended``."""
    try:
        names = sorted(os.listdir(run_dir))
    except FileNotFoundError:
        return []
    runs = []
    for name in names:
        suffix = next((end for end in (RUN, RESULT) if name.endswith(end)), None)
        if suffix is None:
            continue
        path = os.path.join(run_dir, name[: -len(suffix)])
        if suffix == RESULT:
            if not os.path.exists(path + RUN):
                runs.append(dict(path=path, ended=True))
            continue
        try:
            with open(path + RUN, encoding="utf-8") as handle:
                runs.append(dict(json.load(handle), path=path))
        except (OSError, ValueError):
            continue  # ended meanwhile, or unreadable: not a run to stop
    return runs


def is_running(run):
    """Whether the process of ``run`` still runs: its run file is there, its pid answers
    and, where /proc tells, it started when the run file says (a reused pid did not)."""
    if run.get("ended") or not os.path.exists(run["path"] + RUN):
        return False
    try:
        os.kill(run["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    recorded = run.get("process_start")
    return recorded is None or recorded == process_start(run["pid"])


def request_stop(run):
    """A stop file beside the run file of ``run``, which the run reads between two calls."""
    with open(run["path"] + STOP, "w", encoding="utf-8") as handle:
        handle.write("stop\n")


def wait_for_end(run, timeout, interval=0.2):
    """Wait up to ``timeout`` seconds for ``run`` to end; whether it did."""
    deadline = time.monotonic() + timeout
    while is_running(run):
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def take_result(run):
    """The final result ``run`` left, or None; what is left of the run is removed."""
    try:
        with open(run["path"] + RESULT, encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        result = None
    for suffix in (RESULT, RUN, STOP):
        remove(run["path"] + suffix)
    return result


def _outcome(run, was_running, check_mode, timeout):
    """What became of ``run``, as stop_runs() returns it."""
    found = {key: value for key, value in run.items() if key not in ("path", "ended")}
    if check_mode:
        state = "running" if was_running else "stopped" if run.get("ended") else "not running"
        return dict(found, state=state, result=None, note=CHECK_NOTES[state])
    if was_running and is_running(run):
        note = (
            f"{timeout:g} s after the stop request, its current server call has not returned "
            f"(a call may take socket_timeout, a wait for the replicas replica_timeout); run "
            f"the stop again to wait longer"
        )
        return dict(found, state="still running", result=None, note=note)
    result = take_result(run)
    if result is not None:
        state = "stopped" if result.get("outcome") == "stopped" else "ended"
        found.setdefault("mode", result.get("mode"))
        found.setdefault("endpoint", result.get("endpoint"))
        return dict(found, state=state, result=result, note=result.get("msg", ""))
    if was_running:
        note = "on its own, before it read the stop request; its own report has its result"
        return dict(found, state="ended", result=None, note=note)
    note = (
        "it ended, or was killed, without removing its run file (removed now); Redis is "
        "consistent, each server call being atomic; a rerun completes the run"
    )
    return dict(found, state="not running", result=None, note=note)


# What a dry run of the stop says of each run it finds.
CHECK_NOTES = {
    "running": "the stop without --check stops it between two server calls",
    "stopped": "earlier; the stop without --check reports its final result",
    "not running": (
        "it ended, or was killed, without removing its run file; the stop without --check "
        "removes it"
    ),
}
