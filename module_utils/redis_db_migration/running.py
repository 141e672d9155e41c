"""A run's record on the machine it runs on, and how the operator's stop reaches it.

While a migration or a clean-up runs, it keeps a run file in its run directory (0700): its
pid, when its process started (to tell it from a process that got the pid later), its mode
and endpoint; never a secret. A stop request is a stop file beside it, or SIGTERM to the pid;
the run reads either between two server calls, never in the middle of one. When it ends it
removes its files; a run asked to stop first writes its final result beside them, for the
stop to report. A background run outlives the ansible-playbook that started it: these files
are how another one finds it, stops it, and learns what it did.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import signal

RUN = ".run.json"
STOP = ".stop"
RESULT = ".result.json"


def process_start(pid):
    """When process ``pid`` started, in clock ticks since boot (Linux); None where /proc has
    no answer. Only a process that is the same one twice gives the same answer."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as stat:
            # The fields after the command name, which may itself hold spaces and ')'.
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # A zombie has ended: only its parent has not collected it yet.
    return None if fields[0] == "Z" else fields[19]


class RunRecord:
    """The record of the run in this process: start() writes its run file (in ``run_dir``;
    None: none) and turns SIGTERM into a stop request; end() undoes both."""

    def __init__(self, run_dir, **facts):
        self.run_dir = run_dir
        self.facts = facts
        self.id = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.path = os.path.join(run_dir, self.id) if run_dir else None
        self.signalled = False
        self._previous_handler = None
        self._handling = False

    def start(self):
        """Record the run. Returns why the run file cannot be written, or None: the run then
        goes on all the same, and SIGTERM still stops it."""
        try:
            self._previous_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
            self._handling = True
        except ValueError:
            pass  # not Python's main thread, as a caller embedding the module may run it
        if not self.path:
            return None
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = dict(
            self.facts,
            id=self.id,
            pid=os.getpid(),
            process_start=process_start(os.getpid()),
            started=started,
        )
        try:
            os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
            _write_json(self.path + RUN, record)
        except OSError as exc:
            self.path = None
            return f"{exc.strerror or exc} ({self.run_dir})"
        return None

    def _on_sigterm(self, _signum, _frame):
        # Only a flag: the run stops at its next check, between two calls.
        self.signalled = True

    def stop_requested(self):
        return self.signalled or bool(self.path and os.path.exists(self.path + STOP))

    def end(self, result):
        """Leave the final ``result`` (which must hold no secret) for the stop that asked for
        it, then remove the run file: a run nobody asked to stop leaves nothing."""
        if self.path:
            if self.stop_requested():
                # Unwritten, the stop says the run ended without a result.
                with contextlib.suppress(OSError):
                    _write_json(self.path + RESULT, result)
            for suffix in (RUN, STOP):
                remove(self.path + suffix)
        if self._handling:
            signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)


def _write_json(path, content):
    """``content`` as JSON in ``path`` (0600), whole or not at all: a reader never sees half."""
    partial = f"{path}.{os.getpid()}.partial"
    handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(content, out)
    os.replace(partial, path)


def remove(path):
    # Gone already, or not ours to remove: a later stop finds what is left and says so.
    with contextlib.suppress(OSError):
        os.remove(path)
