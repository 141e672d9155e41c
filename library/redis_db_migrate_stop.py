#!/usr/bin/python
"""Ansible module: stop the redis_db_migrate runs recorded in a run directory."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_db_migrate_stop
short_description: Stop the redis_db_migrate migrations and clean-ups running on a machine
description:
  - Finds the runs of the C(redis_db_migrate) module recorded in O(run_dir) (the C(run_dir)
    the runs were given), asks each to stop, waits for each to end and returns the final
    result each left.
  - A run stops between two server calls, never in one. What its last call wrote is read
    back, and acknowledged by the replicas it waits for, as at the end of any run; its result
    has the counts so far, and a rerun completes the run.
  - A run whose process is gone (killed, or its machine restarted) is reported as no longer
    running and its run file removed.
options:
  run_dir:
    description:
      - The run directory of the runs to stop, on the machine the module runs on.
    type: path
    required: true
  timeout:
    description:
      - Seconds to wait, in all, for the runs to end once asked. A run ends after its
        current server call, which may take up to its C(socket_timeout), plus its
        C(replica_timeout) when it waits for replicas.
    type: int
    default: 120
attributes:
  check_mode:
    description: Lists the runs and what it would stop; asks none to stop.
    support: full
  diff_mode:
    description: Not supported.
    support: none
notes:
  - It finds each run by the run file the run keeps in O(run_dir) while it runs, and asks it to
    stop with a stop file beside it. A process that got a gone run's pid since is told apart
    by its start time, and left alone.
  - It never connects to Redis, and needs no Python library beyond Python's own.
  - Sending SIGTERM to a run's pid stops it the same way, between two server calls; its
    result then goes to its own task (or Ansible's async job file).
seealso:
  # The collection names the module by FQCN (scripts/collection_tree.sh).
  - module: redis_db_migrate
    description: Runs the migrations and clean-ups this module stops, given the same O(run_dir).
author:
  # No GitHub handle: the form Ansible's module checks accept for that.
  - StoryArt operations (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Stop the migration running for this host's Redis, and report what it did
  redis_db_migrate_stop:
    run_dir: ~/.ansible_async/storyart_session_migration/my-endpoint
  register: stopped

- name: List what is running, stopping nothing
  redis_db_migrate_stop:
    run_dir: ~/.ansible_async/storyart_session_migration/my-endpoint
  check_mode: true
"""

RETURN = r"""
outcome:
  description: V(ok), or V(failed) when a run was still running at the end of O(timeout).
  returned: always
  type: str
  sample: ok
msg:
  description: One line per run found, or that nothing was running.
  returned: always
  type: str
  sample: >-
    migrate of 127.0.0.1:6379 db 1 -> db 0 (pid 4242, since 2026-01-05T10:00:00Z): stopped
runs:
  description:
    - Each run found. V(pid), V(mode), V(endpoint), V(source_db), V(target_db), V(started)
      as its run file says them.
    - V(state), V(running) (check mode), V(stopped), V(ended) (on its own before the stop
      reached it), V(not running) (its process was gone) or V(still running).
    - V(result), the run's final result as C(redis_db_migrate) returns it, or null; V(note),
      a sentence on what became of it.
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.redis_db_migration.api import stop_runs


def summary(runs):
    """One line an operator reads at a glance: each run, and what became of it."""
    if not runs:
        return "nothing running"
    return " | ".join(
        f"{run.get('mode') or 'run'} of {run.get('endpoint') or 'unknown endpoint'}"
        f"{_dbs(run)} (pid {run.get('pid', 'unknown')}, since {run.get('started', 'unknown')}):"
        f" {run['state']}{'; ' if run['note'] else ''}{run['note']}"
        for run in runs
    )


def _dbs(run):
    if run.get("source_db") is None:
        return ""
    return f" db {run['source_db']} -> db {run['target_db']}"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            run_dir=dict(type="path", required=True),
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    if module.params["timeout"] < 0:
        module.fail_json(outcome="failed", runs=[], msg="timeout must be 0 or more seconds.")
    try:
        runs = stop_runs(module.params["run_dir"], module.params["timeout"], module.check_mode)
    except OSError as exc:
        module.fail_json(
            outcome="failed",
            runs=[],
            msg=f"Cannot stop the runs in {module.params['run_dir']}: {exc.strerror or exc} "
            f"({exc.filename or 'run_dir'}). Run the stop as the user the runs run as.",
        )
    changed = any(run["state"] != "not running" for run in runs)
    result = dict(changed=changed, runs=runs, msg=summary(runs))
    if any(run["state"] == "still running" for run in runs):
        module.fail_json(outcome="failed", **result)
    module.exit_json(outcome="ok", **result)


if __name__ == "__main__":
    main()
