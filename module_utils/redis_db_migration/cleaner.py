"""The cleaner: deletes from the source only the keys whose copy in the target has the same
type and content, and a source index only when every one of its entries is in the target."""

from __future__ import annotations

from .cleanup_report import CleanupReport, IndexCleanup
from .keys import pages
from .lua import CLEAN_GONE, DIFFERENT, IDENTICAL, NO_COPY
from .redis_py import redis_errors

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
        mode = "plan" if session.options.dry_run else "delete"
        session.action = "cleaning up keys"
        for keys in session.batches():
            self.clean_keys(keys, mode)
        session.action = "cleaning up indexes"
        for name in session.index_names:
            self.clean_index(name)

    def clean_keys(self, keys, mode):
        """One batch, in as many script calls as its byte budget needs."""
        session, report = self.session, self.report
        report.found += len(keys)
        options = session.options
        args = [options.source_db, options.target_db, mode, session.budget("cleanup")]
        args.append("1" if session.sized else "0")

        def handle(handled, reply):
            # The script has no per-key errors: its reads and UNLINK fail whole calls only.
            report.tally(handled, reply[2], KINDS)
            session.watch.wrote(reply[2].count(IDENTICAL))

        session.in_calls(
            report,
            keys,
            lambda pending: session.write(session.scripts.cleanup, keys=pending, args=args),
            handle,
        )

    def clean_index(self, name):
        """Delete the source index when the target holds every entry of it and, WATCHed from
        before the check, nothing changed it meanwhile."""
        session = self.session
        index = IndexCleanup(name=name)
        self.report.indexes.append(index)
        count = session.page_size(name)
        with session.source.pipeline() as watched:
            # WATCH before the check: any change to the source index from here on, even one
            # that keeps its size, makes the EXEC of its deletion fail and the index is kept.
            watched.watch(name)
            size = watched.zcard(name)
            for page in pages(
                lambda cursor: watched.zscan(name, cursor, count=count, score_cast_func=bytes)
            ):
                members = [member for member, _score in page]
                index.found += len(members)
                index.missing += sum(score is None for score in session.scores(name, members))
                session.pace(len(members), watched)
            if size == 0:
                index.kept_because = f"it does not exist in db {session.options.source_db}"
            elif index.missing:
                index.kept_because = (
                    f"{index.missing} of its entries are not in db {session.options.target_db}"
                )
            elif session.options.dry_run:
                index.deleted = True
            else:
                self._delete_index(index, watched)

    def _delete_index(self, index, watched):
        self.session.hooks.before_index_delete(index.name)
        try:
            watched.multi()
            watched.unlink(index.name)
            watched.execute()
            index.deleted = True
        except redis_errors.WatchError:
            index.kept_because = "it changed during the cleanup; run the cleanup again"
        except redis_errors.ResponseError as exc:
            error = self.session.settings.scrub(exc)
            index.failed = True
            index.kept_because = f"deleting it failed: {error}"
            self.report.add_error(index.name, error)
