"""The copier: keys and index entries from the source db into the target db, each write read
back. In mode 'plan' the same scripts classify and write nothing: the dry run and verify."""

from __future__ import annotations

from .in_flight import InFlight
from .keys import display, glob_matcher, pages
from .lua import COPIED, DONE, EVICTED, GONE, MEMORY, PRESENT
from .reports import IndexReport
from .session import each
from .shown import shown

# The report field each outcome of the copy script counts into.
KINDS = {COPIED: "migrated", PRESENT: "skipped", GONE: "expired"}


def copy_mode(session):
    """What the copy script is asked to do: plan, copy, or restore at the absolute expiry read
    with PEXPIRETIME (Redis 7+) or with TIME and PTTL (before)."""
    if session.options.dry_run:
        return "plan"
    if session.strategy == "copy":
        return "copy"
    return "restore" if session.facts.version >= (7, 0) else "restore-time"


class Copier:
    """Copies (or plans) the keys and index entries of one session into ``report``."""

    def __init__(self, session, report):
        self.session = session
        self.report = report

    def copy_and_merge(self, mode):
        session = self.session
        session.action = "copying keys"
        for number, pattern in enumerate(session.patterns):
            self.copy_keys(pattern, [glob_matcher(p) for p in session.patterns[:number]], mode)
        session.action = "merging indexes"
        for name in session.index_names:
            self.merge_index(name, mode)

    def copy_keys(self, pattern, earlier, mode):
        """Every key of ``pattern``, a batch per script call, each call finding its own batch
        with SCAN on the server. ``earlier``: matchers of the patterns already gone through."""
        session, report, options = self.session, self.report, self.session.options
        sized = "1" if session.sized and not report.verify_only else "0"
        budget = session.budget("copy" if mode in ("plan", "copy") else "dump-restore")
        args = [options.source_db, options.target_db, mode, *session.guard.script_args]
        args += [budget, sized, session.call_size]
        skip = [len(session.index_names), *session.index_names]
        size = session.call_size
        in_flight = InFlight(size, 0, f"may have copied up to {size} more keys (its batch)")
        cursor, rest = "0", []
        while cursor or rest:
            session.hooks.before_batch(rest)
            reply, stop = session.write(
                session.scripts.copy,
                args=[*args, cursor, pattern, *skip, *rest],
                in_flight=in_flight if mode != "plan" else None,
            )
            ended, spent, handled, outcomes, used, ceiling, evicted, need, cursor, rest = reply
            session.stop_on_node_errors(code for code in outcomes if not isinstance(code, int))
            handled, outcomes = self._not_counted_before(handled, outcomes, earlier, mode)
            report.found += len(handled)
            report.copy_bytes += spent
            for key, error in report.tally(handled, outcomes, KINDS):
                report.failed += 1
                report.add_error(key, session.settings.scrub(display(error)))
            if mode != "plan":
                copied = [key for key, code in zip(handled, outcomes) if code == COPIED]
                session.watch.wrote(len(copied))
                self._read_back(copied)
                if stop:
                    raise stop
            session.hooks.after_batch(handled)
            if ended in (MEMORY, EVICTED):
                raise session.guard.stop(ended, need, used + spent, ceiling, evicted)
            session.pace(len(handled))

    @staticmethod
    def _not_counted_before(handled, outcomes, earlier, mode):
        """The keys of a call and their outcomes, less those an earlier pattern has counted: a
        key it matches was handled then, unless this call has just copied it (it came after)."""
        if not earlier:
            return handled, outcomes
        kept = [
            (key, code)
            for key, code in zip(handled, outcomes)
            if (code == COPIED and mode != "plan") or not any(match(key) for match in earlier)
        ]
        return [pair[0] for pair in kept], [pair[1] for pair in kept]

    def _read_back(self, copied):
        """Read back the keys a call copied; a key gone from both dbs has expired since."""
        session = self.session
        session.hooks.before_read_back(copied)
        if not copied or session.target.exists(*copied) == len(copied):
            return
        in_target = each(session.target, "exists", copied)
        missing = [key for key, found in zip(copied, in_target) if not found]
        in_source = each(session.source, "exists", missing)
        for key, still_there in zip(missing, in_source):
            if still_there:
                self.report.add_missing(f"key {shown(key)}")
            else:
                self.report.expired_after_copy += 1

    def merge_index(self, name, mode):
        """Merge (or plan) one index, a page per script call."""
        session = self.session
        index = IndexReport(name=name)
        self.report.indexes.append(index)
        mode = "plan" if mode == "plan" else "merge"
        options = session.options
        args = [options.source_db, options.target_db, mode, *session.guard.script_args]
        count = session.page_size(name)
        in_flight = InFlight(
            0,
            count,
            f"may have added up to about {count} more entries to index '{shown(name)}' (a ZSCAN "
            f"page, which may run a little over its COUNT)",
        )

        def page(cursor):
            session.hooks.before_index_page(name)
            reply, stop = session.write(
                session.scripts.index,
                keys=[name],
                args=[*args, cursor, count],
                in_flight=in_flight if mode == "merge" else None,
            )
            return reply[1], (stop, *reply)

        for stop, ended, _cursor, added, present, orphans, members, error, *memory in pages(page):
            if ended != DONE:
                raise session.guard.stop(ended, *memory)
            session.stop_on_node_errors([error] if error else [])
            index.found += len(members)
            if error:
                index.failed += len(members)
                self.report.add_error(name, session.settings.scrub(display(error)))
            else:
                index.added += added
                index.present += present
                index.orphans += orphans
                if mode != "plan" and members:
                    session.hooks.after_index_page(name, members)
                    self._read_back_members(index, members)
            session.watch.wrote(added)
            if stop:
                raise stop
            session.pace(len(members))

    def _read_back_members(self, index, members):
        """Read back the members a page merged from the target index."""
        for member, score in zip(members, self.session.scores(index.name, members)):
            if score is None:
                index.missing += 1
                self.report.add_missing(f"index {shown(index.name)} member {shown(member)}")
