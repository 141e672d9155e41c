"""The engine's four operations, each one session against one endpoint. Whatever they raise is
a MigrationError without the password in it."""

from __future__ import annotations

from .cleaner import cleanup_session
from .copier import Copier, copy_mode
from .errors import MigrationError
from .reports import MigrationReport, result_header
from .session import Session
from .verifier import full_check, verify_session
from .wording import memory_line, not_checked, plan_line, replication_line

MODES = ("preflight", "migrate", "verify", "cleanup")


def migrate(settings, options, hooks=None):
    """Copy, merge and verify. Returns the report; raises MigrationError with a clear message."""
    return _run(settings, options, hooks, "migrate", _migrate_session)


def verify(settings, options, hooks=None):
    """Check that everything matching is in the target, writing nothing."""
    return _run(settings, options, hooks, "verify", verify_session)


def cleanup(settings, options, hooks=None):
    """Delete from the source only what the target holds a copy of the same content of."""
    return _run(settings, options, hooks, "cleanup", cleanup_session)


def preflight(settings, options):
    """Every check a migration makes before its first write, and the memory estimate."""
    return _run(settings, options, None, "preflight", _preflight_session)


def _run(settings, options, hooks, mode, operation):
    session = None
    try:
        session = Session(settings, options, hooks)
        return operation(session.connect(mode))
    except MigrationError as exc:
        if exc.report is not None and exc.report.aborted:
            exc.report.aborted = settings.scrub(exc.report.aborted)
        raise MigrationError(settings.scrub(exc), report=exc.report) from None
    finally:
        if session is not None:
            session.close()


def _migrate_session(session):
    memory = session.guard.check()
    report = session.new_report(MigrationReport, strategy=session.strategy, memory=memory)

    def work():
        Copier(session, report).copy_and_merge(copy_mode(session))
        if session.options.full_verify and not session.options.dry_run:
            full_check(session, report)

    return session.timed(report, work)


def _preflight_session(session):
    memory = session.guard.check(always_estimate=True)
    facts, settings, options = session.facts, session.settings, session.options
    return result_header(
        settings.endpoint,
        options.source_db,
        options.target_db,
        facts.version_text,
        role=facts.role,
        databases=facts.databases,
        strategy=session.strategy,
        memory=memory,
        checks_not_run=session.checks_not_run,
        replication=session.watch.as_dict(),
        msg=(
            f"Redis {facts.version_text} at {settings.endpoint} is ready: "
            f"{replication_line(session.watch)}, dbs "
            f"{options.source_db} and {options.target_db} exist, strategy {session.strategy}, "
            f"{memory_line(memory)}{plan_line(memory, options.max_keys_per_second)}"
            f"{not_checked(session.checks_not_run)}"
        ),
    )
