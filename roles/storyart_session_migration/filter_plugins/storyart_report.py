"""Filters that turn the role's per-host results into report records and one summary table."""

from __future__ import annotations

STEPS = ("preflight", "migrate", "verify", "cleanup")
# What Ansible adds to a registered result, or what would only repeat the module arguments.
DROPPED = ("invocation", "diff")
COLUMNS = {
    "migrate": (
        ("found", "found"),
        ("migrated", "migrated"),
        ("skipped", "skipped"),
        ("expired", "expired"),
        ("failed", "failed"),
    ),
    "cleanup": (
        ("found", "found"),
        ("deleted", "deleted"),
        ("kept_different", "kept: differs"),
        ("kept_missing", "kept: no copy"),
        ("expired", "expired"),
        ("failed", "failed"),
    ),
}


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


def _verified(record, dry_run):
    if dry_run:
        return "plan"
    checked = record.get("verify") or record.get("migrate") or {}
    if checked.get("verified") is None:
        return "-"
    return "yes" if checked["verified"] else "NO"


def _index_cell(kind, step):
    if kind == "cleanup":
        indexes = step.get("indexes", [])
        return "deleted" if indexes and all(i.get("deleted") for i in indexes) else "kept"
    return str(step.get("index_counts", {}).get("added", "-"))


def report_table(hosts, hostvars, dry_run):
    """The run's summary as lines of text: one row a host, each endpoint counted once."""
    records = [hostvars[host].get("__storyart_session_migration_record") or {} for host in hosts]
    kind = "cleanup" if any("cleanup" in record for record in records) else "migrate"
    columns = COLUMNS[kind]
    last = ("index", "verified") if kind == "migrate" else ("index",)
    header = ["host", *(title for _, title in columns), *last]
    rows, totals, endpoints = [], dict.fromkeys((key for key, _ in columns), 0), set()
    for host, record in zip(hosts, records):
        step = record.get(kind) or {}
        counts = step.get("counts", {})
        if counts:
            row = [host, *(str(counts.get(key, "-")) for key, _ in columns)]
            row.append(_index_cell(kind, step))
            if kind == "migrate":
                row.append(_verified(record, dry_run))
        else:
            row = [host, *("-" for _ in columns), "-", *(["-"] if kind == "migrate" else [])]
        notes = []
        if record.get("handled_by") not in (None, host):
            notes.append(f"shares {record['handled_by']}'s endpoint")
        elif counts and record.get("endpoint") not in endpoints:
            endpoints.add(record.get("endpoint"))
            for key in totals:
                totals[key] += counts.get(key, 0)
        if not record:
            notes.append("no result: unreachable or stopped before this step")
        elif record.get("status") == "failed":
            notes.append(f"FAILED: {record.get('failure')}")
        rows.append(row + ["; ".join(notes)])
    total = [f"total ({len(endpoints)} endpoints)", *(str(v) for v in totals.values())]
    rows.append(total + [""] * (len(header) + 1 - len(total)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    title = {
        "migrate": "StoryArt session migration",
        "cleanup": "StoryArt source clean-up",
    }[kind]
    mode = "DRY RUN (check mode): the plan, nothing was written" if dry_run else "done"
    lines = [f"{title}: {mode}"]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(widths[i]) for i, cell in enumerate(row[1 : len(header)], 1)]
        lines.append(
            (
                "  ".join(cells) + "  " + (row[len(header)] if len(row) > len(header) else "")
            ).rstrip()
        )
    return lines


class FilterModule:
    def filters(self):
        return {
            "storyart_session_migration_record": report_record,
            "storyart_session_migration_table": report_table,
        }
