"""The cleaner: deletes from the source only the keys whose copy in the target has the same
type and content, and a source index only when every one of its entries is in the target."""

from __future__ import annotations

from .cleanup_report import CleanupReport, IndexCleanup
from .errors import unwrapped
from .in_flight import InFlight
from .key_walk import KeyWalk
from .lua import BUDGET, CLEAN_GONE, DIFFERENT, DONE, IDENTICAL, NO_COPY
from .lua_cleanup import CleanupReply, cleanup_arguments
from .lua_copy import INDEX_START, IndexReply, index_arguments
from .primary import is_node_error
from .redis_py import redis_errors
from .shown import shown

# The report field each outcome of the clean-up script counts into.
KINDS = {
    IDENTICAL: "deleted",
    DIFFERENT: "kept_different",
    NO_COPY: "kept_missing",
    CLEAN_GONE: "expired",
}


def cleanup_session(session):
    report = session.new_report(CleanupReport)
    return session.timed(report, Cleaner(session, report).clean)


class Cleaner:
    """Cleans up the source db of one session into ``report``; a dry run deletes nothing."""

    def __init__(self, session, report):
        self.session = session
        self.report = report

    def clean(self):
        session = self.session
        verb = "plan" if session.options.dry_run else "delete"
        session.action = "cleaning up keys"
        walk, size = KeyWalk(session), session.call_size("cleanup")
        while True:
            keys = walk.batch(size.keys)
            if not keys:
                break
            session.hooks.before_batch(keys)
            self.clean_keys(keys, verb, size)
            session.hooks.after_batch(keys)
            session.pace(len(keys))
        session.action = "cleaning up indexes"
        for name in session.index_names:
            self.clean_index(name)

    def clean_keys(self, keys, verb, size):
        """One batch, in as many script calls as its byte budget needs: a call stops at its
        byte budget and the next takes the rest. A call the server refuses as a whole fails its
        keys in the report. Each call's own time sizes the next batch (``size``)."""
        session, report, options = self.session, self.report, self.session.options
        report.found += len(keys)
        args = cleanup_arguments(
            options.source_db,
            options.target_db,
            verb,
            budget=session.budget("cleanup"),
            sized=session.sized,
        )
        in_flight = None
        if verb == "delete":
            in_flight = InFlight(
                len(keys),
                0,
                f"may have deleted up to {len(keys)} more keys from db {options.source_db}, each "
                f"only with an identical copy in db {options.target_db}",
            )
        pending = keys
        while pending:
            try:
                reply, stop = self._call(pending, args, in_flight)
            except redis_errors.ResponseError as exc:
                if is_node_error(exc):
                    raise
                error = session.settings.scrub(exc)
                report.failed += len(pending)
                for key in pending:
                    report.add_error(key, error)
                return
            size.took(len(pending), reply.took_us, full=reply.ended == DONE)
            # The script has no per-key errors: its reads and UNLINK fail whole calls only.
            report.tally(pending[: len(reply.outcomes)], reply.outcomes, KINDS)
            session.watch.wrote(reply.outcomes.count(IDENTICAL))
            if stop:
                raise stop
            if reply.ended != BUDGET:
                return
            pending = pending[len(reply.outcomes) :]

    def _call(self, pending, args, in_flight):
        """One call of the clean-up script on ``pending``: its CleanupReply, and what
        Session.write() gives to raise once the reply is counted."""
        session = self.session
        raw, stop = session.write(
            session.scripts.cleanup, keys=pending, args=args, in_flight=in_flight
        )
        reply = CleanupReply.from_reply(raw)
        if reply.ended == DONE and len(reply.outcomes) != len(pending):
            raise redis_errors.ResponseError(
                f"a script returned {len(reply.outcomes)} outcomes for {len(pending)} keys"
            )
        return reply, stop

    def clean_index(self, name):
        """Delete the source index when the target holds every entry of it and, WATCHed from
        before the check, nothing changed it meanwhile. The index script, writing nothing,
        reads a page of it a call, and counts the entries the target lacks."""
        session, options = self.session, self.session.options
        index = IndexCleanup(name=name)
        self.report.indexes.append(index)
        size = session.page_size(name, "plan")
        with session.source.pipeline() as watched:
            # WATCH before the check: any change to the source index from here on, even one
            # that keeps its size, makes the EXEC of its deletion fail and the index is kept.
            watched.watch(name)
            place = INDEX_START
            while True:
                count = size.keys
                raw, stop = session.write(
                    session.scripts.index,
                    args=index_arguments(
                        options.source_db,
                        options.target_db,
                        "plan",
                        session.guard.script_args,
                        place=place,
                        count=count,
                        index=name,
                    ),
                )
                if stop:
                    raise stop
                reply = IndexReply.from_reply(raw)
                size.took(count, reply.took_us)
                index.found += len(reply.members)
                index.missing += reply.added
                session.pace(len(reply.members), watched)
                place = reply.place
                if reply.over:
                    break
            if index.found == 0:
                index.kept_because = f"it does not exist in db {options.source_db}"
            elif index.missing:
                index.kept_because = (
                    f"{index.missing} of its entries are not in db {options.target_db}"
                )
            elif options.dry_run:
                index.deleted = True
            else:
                self._delete_index(index, watched)

    def _delete_index(self, index, watched):
        """Delete the index in the MULTI of ``watched``, with a script, so that its deadline
        covers the deletion too."""
        session = self.session
        session.hooks.before_index_delete(index.name)
        in_flight = InFlight(
            0,
            index.found,
            f"may have deleted index '{shown(index.name)}' ({index.found} entries, each in db "
            f"{session.options.target_db}), as it does only if nothing changed the index since "
            f"it was checked",
        )
        not_after = session.not_after()
        # Until its reply is read: what stays said if the connection is lost meanwhile.
        index.kept_because = "the reply to its deletion was lost (NOT COUNTED)"
        try:
            watched.multi()
            watched.evalsha(session.scripts.drop_index.sha, 1, index.name, not_after)
            [reply] = session.sending(watched.execute, in_flight)
            index.kept_because = "its deletion reached Redis after its deadline and did not run"
            session.check_deadline(reply, not_after)
            index.kept_because, index.deleted = None, True
        except redis_errors.WatchError as exc:
            if unwrapped(exc) is not exc:
                raise  # the connection was lost, not the index changed: the run stops
            index.kept_because = "it changed during the cleanup; run the cleanup again"
        except redis_errors.ResponseError as exc:
            error = self.session.settings.scrub(exc)
            index.failed = True
            index.kept_because = f"deleting it failed: {error}"
            self.report.add_error(index.name, error)
