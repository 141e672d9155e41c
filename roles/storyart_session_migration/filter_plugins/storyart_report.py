"""Filter that turns the role's per-host results into the host's report record."""

from __future__ import annotations

# What Ansible adds to a registered result, or what would only repeat the module arguments.
DROPPED = ("invocation", "diff")


def _clean(result):
    return {
        key: value
        for key, value in result.items()
        if key not in DROPPED and not key.startswith("_ansible")
    }


def report_record(results, *, last_result, host, endpoint, handled_by, dry_run):
    """One host's report: the result of each step that ran, and its failure if any."""
    steps = {
        step: _clean(result)
        for step, result in (results or {}).items()
        if isinstance(result, dict) and not result.get("skipped")
    }
    failure = next((r.get("msg") for r in steps.values() if r.get("failed")), None)
    if failure is None and isinstance(last_result, dict) and last_result.get("failed"):
        failure = last_result.get("msg")
    return dict(
        host=host,
        endpoint=endpoint,
        handled_by=handled_by,
        dry_run=bool(dry_run),
        status="failed" if failure else "ok",
        failure=failure,
        **steps,
    )


class FilterModule:
    def filters(self):
        return {
            "storyart_session_migration_record": report_record,
        }
