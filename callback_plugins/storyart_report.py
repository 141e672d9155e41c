"""Callback plugin: one table of every StoryArt host's result, printed at the end of the run."""

from __future__ import annotations

import json
import os
import tempfile

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: storyart_report
type: aggregate
short_description: Print one table of the StoryArt session migration at the end of the run
description:
  - The storyart_session_migration role hands each host's result to this plugin with
    set_stats. The plugin writes it at once as <report folder>/<host>.json (folder 0700, file
    0600), the way the tree callback keeps per-host results.
  - When the run ends, however it ends (a rollout stopped by max_fail_percentage included),
    it prints one row a host and a total that counts each Redis endpoint once, and writes the
    same table as summary.txt beside the host reports.
  - In check mode the table is the plan.
requirements:
  - enabled in callbacks_enabled (the project's ansible.cfg does it)
"""

STAT = "storyart_session_migration"
# Per kind of run: (title, [(column title, step, path into the step's result)], last column).
TABLES = {
    "migrate": (
        "StoryArt session migration",
        [
            ("found", "migrate", ("counts", "found")),
            ("migrated", "migrate", ("counts", "migrated")),
            ("skipped", "migrate", ("counts", "skipped")),
            ("expired", "migrate", ("counts", "expired")),
            ("failed", "migrate", ("counts", "failed")),
            ("index added", "migrate", ("index_counts", "added")),
        ],
    ),
    "verify": (
        "StoryArt session verification",
        [
            ("found", "verify", ("counts", "found")),
            ("in target", "verify", ("counts", "skipped")),
            ("missing", "verify", ("counts", "migrated")),
            ("expired", "verify", ("counts", "expired")),
            ("index missing", "verify", ("index_counts", "added")),
        ],
    ),
    "cleanup": (
        "StoryArt source clean-up",
        [
            ("found", "cleanup", ("counts", "found")),
            ("deleted", "cleanup", ("counts", "deleted")),
            ("kept: differs", "cleanup", ("counts", "kept_different")),
            ("kept: no copy", "cleanup", ("counts", "kept_missing")),
            ("expired", "cleanup", ("counts", "expired")),
            ("failed", "cleanup", ("counts", "failed")),
        ],
    ),
    "preflight": (
        "StoryArt preflight",
        [
            ("redis", "preflight", ("server_version",)),
            ("strategy", "preflight", ("strategy",)),
            ("copy needs bytes", "preflight", ("memory", "needed_bytes")),
            ("free bytes", "preflight", ("memory", "available_bytes")),
        ],
    ),
}


def write_private(folder, name, text):
    """Write ``folder/name`` readable by its owner only, whole or not at all; every folder
    created on the way is 0700 too, whatever the umask."""
    missing, path = [], os.path.abspath(folder)
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
    fd, scratch = tempfile.mkstemp(dir=folder, prefix=f".{name}.")  # created 0600
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(scratch, os.path.join(folder, name))


def _dig(value, path):
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _verified(record, dry_run):
    if dry_run:
        return "plan"
    verified = _dig(record, ("verify", "verified"))
    if verified is None:
        verified = _dig(record, ("migrate", "verified"))
    return "-" if verified is None else ("yes" if verified else "NO")


def _index_verdict(record, dry_run):
    indexes = _dig(record, ("cleanup", "indexes"))
    if not indexes:
        return "-"
    if all(index.get("deleted") for index in indexes):
        return "would delete" if dry_run else "deleted"
    return "kept"


# The column before the notes: whether the target holds everything, or for the clean-up what
# became of the source index.
VERDICTS = {
    "migrate": ("verified", _verified),
    "verify": ("verified", _verified),
    "cleanup": ("index", _index_verdict),
}


def summary_table(records, hosts, dry_run):
    """Lines of text: a header, one row a host, and a total over distinct endpoints."""
    kind = next(
        (k for k in ("cleanup", "migrate", "verify") if any(k in r for r in records.values())),
        "preflight",
    )
    title, columns = TABLES[kind]
    verdict = VERDICTS.get(kind)
    header = ["host", *(name for name, _, _ in columns), *([verdict[0]] if verdict else []), "note"]
    totals, endpoints, rows = [0] * len(columns), set(), []
    for host, state in hosts:
        record = records.get(host, {})
        cells = [_dig(record.get(step), path) for _, step, path in columns]
        notes = []
        if record.get("handled_by") not in (None, host):
            notes.append(f"shares {record['handled_by']}'s endpoint")
        elif any(cell is not None for cell in cells) and record["endpoint"] not in endpoints:
            endpoints.add(record["endpoint"])
            totals = [t + c if isinstance(c, int) else t for t, c in zip(totals, cells)]
        if record.get("failure"):
            notes.append(f"FAILED: {record['failure']}")
        elif not record:
            notes.append(state)
        values = ["-" if cell is None else str(cell) for cell in cells]
        if verdict:
            values.append(verdict[1](record, dry_run))
        rows.append([host, *values, "; ".join(notes)])
    if kind != "preflight":
        total = [f"total, {len(endpoints)} endpoints", *(str(t) for t in totals)]
        rows.append(total + [""] * (len(header) - len(total)))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    failed = sum(any(note.startswith("FAILED") for note in row[-1].split("; ")) for row in rows)
    if failed:
        mode = f"FAILED on {failed} of {len(hosts)} hosts, see the notes"
    else:
        mode = "DRY RUN (check mode): the plan, nothing was written" if dry_run else "done"
    lines = [f"{title}: {mode}"]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:-1], widths[1:])]
        lines.append(("  ".join(cells) + "  " + row[-1]).rstrip())
    return lines


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "storyart_report"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        data = (result._result.get("ansible_stats") or {}).get("data") or {}
        report = data.get(STAT)
        if not report or not report.get("folder"):
            return
        for host, record in (report.get("hosts") or {}).items():
            text = json.dumps(record, indent=4, sort_keys=True) + "\n"
            write_private(report["folder"], f"{host}.json", text)

    def v2_playbook_on_stats(self, stats):
        data = (stats.custom or {}).get("_run", {}).get(STAT)
        if not data:
            return
        records = data.get("hosts") or {}
        # Play order, once each (every host adds the list), then anyone else that ran.
        order = list(dict.fromkeys([*(data.get("play_hosts") or []), *stats.processed]))
        hosts = []
        for host in order:
            if host not in stats.processed:
                state = "not reached: the rollout stopped before it"
            elif stats.dark.get(host):
                state = "unreachable"
            elif stats.failures.get(host):
                state = "failed before its report"
            else:
                state = "no result: its steps were skipped"
            hosts.append((host, state))
        lines = summary_table(records, hosts, bool(context.CLIARGS.get("check")))
        self._display.banner("STORYART REPORT")
        for line in lines:
            self._display.display(line)
        folder = data.get("folder")
        if folder:
            write_private(folder, "summary.txt", "\n".join(lines) + "\n")
            self._display.display(f"Reports: {folder}")
