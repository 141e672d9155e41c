"""The copier: keys and index entries from the source db into the target db, each write read
back. With the verb 'plan' the same scripts classify and write nothing: the dry run and
verify."""

from __future__ import annotations

from functools import partial

from .in_flight import InFlight
from .keys import display, each_pattern
from .lua import COPIED, DONE, EVICTED, GONE, MEMORY, PRESENT
from .lua_copy import INDEX_START, CopyReply, IndexReply, copy_arguments, index_arguments
from .reports import IndexReport
from .session import each
from .shown import shown

# The report field each outcome of the copy script counts into.
KINDS = {COPIED: "migrated", PRESENT: "skipped", GONE: "expired"}


def copy_verb(session):
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

    def copy_and_merge(self, verb):
        session = self.session
        session.action = "copying keys"
        for pattern, matched_before in each_pattern(session.patterns):
            self.copy_keys(pattern, matched_before, verb)
        session.action = "merging indexes"
        for name in session.index_names:
            self.merge_index(name, verb)

    def copy_keys(self, pattern, matched_before, verb):
        """Every key of ``pattern``, a batch per script call, each call finding its own batch
        with SCAN on the server, as many keys as its kind of call takes now (sizing.py).
        ``matched_before(key)``: whether a pattern already gone through matches the key."""
        session, report, options = self.session, self.report, self.session.options
        size = session.call_size(("keys", verb))
        arguments = partial(
            copy_arguments,
            options.source_db,
            options.target_db,
            verb,
            session.guard.script_args,
            budget=session.budget("copy" if verb in ("plan", "copy") else "dump-restore"),
            sized=session.sized and not report.verify_only,
            pattern=pattern,
            index_names=session.index_names,
        )
        cursor, left = "0", []
        while cursor or left:
            session.hooks.before_batch(left)
            asked = size.keys
            in_flight = None
            if verb != "plan":
                what = f"may have copied up to {asked} more keys (its batch)"
                in_flight = InFlight(asked, 0, what)
            raw, stop = session.write(
                session.scripts.copy,
                args=arguments(batch_size=asked, cursor=cursor, left=left),
                in_flight=in_flight,
            )
            reply = CopyReply.from_reply(raw)
            # A call cut short (its byte budget, its time limit) took its time for fewer keys.
            measured = asked if reply.ended == DONE else len(reply.handled)
            size.took(measured, reply.took_us, full=len(reply.handled) == asked)
            cursor, left = reply.cursor, reply.left
            session.stop_on_node_errors(
                code for code in reply.outcomes if not isinstance(code, int)
            )
            handled, outcomes = self._not_counted_before(reply, matched_before, verb)
            report.found += len(handled)
            report.copy_bytes += reply.spent
            for key, error in report.tally(handled, outcomes, KINDS):
                report.failed += 1
                report.add_error(key, session.settings.scrub(display(error)))
            if verb != "plan":
                copied = [key for key, code in zip(handled, outcomes) if code == COPIED]
                session.watch.wrote(len(copied))
                self._read_back(copied)
                if stop:
                    raise stop
            session.hooks.after_batch(handled)
            if reply.ended in (MEMORY, EVICTED):
                raise session.guard.stop(
                    reply.ended,
                    reply.need,
                    reply.used_memory + reply.spent,
                    reply.ceiling,
                    reply.evicted_keys,
                )
            session.pace(len(handled))

    @staticmethod
    def _not_counted_before(reply, matched_before, verb):
        """The keys of a call and their outcomes, less those an earlier pattern has counted: a
        key it matches was handled then, unless this call has just copied it (it came after)."""
        kept = [
            (key, code)
            for key, code in zip(reply.handled, reply.outcomes)
            if (code == COPIED and verb != "plan") or not matched_before(key)
        ]
        return [pair[0] for pair in kept], [pair[1] for pair in kept]

    def _read_back(self, copied):
        """Read back the keys a call copied, in the next round trip (Session.defer_read)."""
        session = self.session
        session.hooks.before_read_back(copied)
        if copied:
            exists = [("EXISTS", *copied)]
            session.defer_read(session.options.target_db, exists, partial(self._read, copied))

    def _read(self, copied, replies):
        """What the read-back of ``copied`` found; a key gone from both dbs has expired since."""
        session = self.session
        if replies[0] == len(copied):
            return
        in_target = each(session.target, "exists", copied)
        missing = [key for key, found in zip(copied, in_target) if not found]
        in_source = each(session.source, "exists", missing)
        for key, still_there in zip(missing, in_source):
            if still_there:
                self.report.add_missing(f"key {shown(key)}")
            else:
                self.report.expired_after_copy += 1

    def merge_index(self, name, verb):
        """Merge (or plan) one index, a page per script call, each page as many entries as
        such a call takes now (sizing.py)."""
        session = self.session
        index = IndexReport(name=name)
        self.report.indexes.append(index)
        verb = "plan" if verb == "plan" else "merge"
        options = session.options
        size = session.page_size(name, verb)
        place = INDEX_START
        while True:
            session.hooks.before_index_page(name)
            count = size.keys
            in_flight = None
            if verb == "merge":
                in_flight = InFlight(
                    0,
                    count,
                    f"may have added up to {count} more entries to index '{shown(name)}' (a page)",
                )
            raw, stop = session.write(
                session.scripts.index,
                args=index_arguments(
                    options.source_db,
                    options.target_db,
                    verb,
                    session.guard.script_args,
                    place=place,
                    count=count,
                    index=name,
                ),
                in_flight=in_flight,
            )
            reply = IndexReply.from_reply(raw)
            # A page cut at its time limit took its time for fewer entries.
            merged = len(reply.members)
            size.took(max(merged, 1), reply.took_us, full=merged == count)
            if reply.ended != DONE:
                raise session.guard.stop(
                    reply.ended, reply.need, reply.used_memory, reply.ceiling, reply.evicted_keys
                )
            self._count_page(index, reply, verb)
            if stop:
                raise stop
            session.pace(len(reply.members))
            place = reply.place
            if reply.over:
                return

    def _count_page(self, index, reply, verb):
        """Count what a page of ``index`` merged (or would), and read back what it merged."""
        session, members = self.session, reply.members
        session.stop_on_node_errors([reply.error] if reply.error else [])
        index.found += len(members)
        if reply.error:
            index.failed += len(members)
            self.report.add_error(index.name, session.settings.scrub(display(reply.error)))
        else:
            index.added += reply.added
            index.present += reply.present
            index.orphans += reply.orphans
            if verb != "plan" and members:
                session.hooks.after_index_page(index.name, members)
                session.read_back_scores(index.name, members, partial(self._scores, index, members))
        session.watch.wrote(reply.added)

    def _scores(self, index, members, scores):
        """What the read-back of the members a page merged found in the target index."""
        for member, score in zip(members, scores):
            if score is None:
                index.missing += 1
                self.report.add_missing(f"index {shown(index.name)} member {shown(member)}")
