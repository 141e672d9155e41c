"""The engine's four operations, each one session against one endpoint. Whatever they raise is
a MigrationError without the password in it."""

from __future__ import annotations

from .cleaner import cleanup_session
from .copier import Copier, copy_verb
from .errors import MigrationError
from .pacing import paced_seconds
from .reports import MigrationReport, result_header
from .session import Session
from .verifier import full_check, verify_session
from .wording import memory_line, not_checked, plan_line, replication_line

MODES = ("preflight", "migrate", "verify", "cleanup")


def migrate(settings, options, hooks=None, stop_requested=None):
    """Copy, merge and verify. Returns the report; raises MigrationError with a clear message.
    ``stop_requested()``, read between two calls, says the operator asks the run to stop: the
    report then has ``stopped``."""
    return _run(
        settings, options, hooks, "migrate", _migrate_session, stop_requested=stop_requested
    )


def verify(settings, options, hooks=None, stop_requested=None):
    """Check that everything matching is in the target, writing nothing."""
    return _run(settings, options, hooks, "verify", verify_session, stop_requested=stop_requested)


def cleanup(settings, options, hooks=None, stop_requested=None):
    """Delete from the source only what the target holds a copy of the same content of."""
    return _run(settings, options, hooks, "cleanup", cleanup_session, stop_requested=stop_requested)


def preflight(settings, options):
    """Every check a migration makes before its first write, and the memory estimate."""
    return _run(settings, options, None, "preflight", _preflight_session)


def _run(settings, options, hooks, mode, operation, *, stop_requested=None):
    session = None
    try:
        session = Session(settings, options, hooks, stop_requested)
        return operation(session.connect(mode))
    except MigrationError as exc:
        if exc.report is not None and exc.report.aborted:
            exc.report.aborted = settings.scrub(exc.report.aborted)
        raise MigrationError(settings.scrub(exc), report=exc.report, fields=exc.fields) from None
    finally:
        if session is not None:
            session.close()


def _migrate_session(session):
    memory = session.guard.check()
    report = session.new_report(MigrationReport, strategy=session.strategy, memory=memory)

    def work():
        Copier(session, report).copy_and_merge(copy_verb(session))
        if reads_again(session.options):
            full_check(session, report)

    return session.timed(report, work)


def reads_again(options):
    """Whether a migration reads everything again after the copy (full_verify)."""
    return options.full_verify and not options.dry_run


def pace_plan(session, memory):
    """What a migration will go through, each key and index entry once, twice with
    full_verify, and the seconds that takes at max_keys_per_second (None: not known)."""
    options, source = session.options, session.source
    keys = memory.get("matching_keys")
    entries = session.call(
        lambda: sum(source.zcard(name) for name in session.index_names),
        "counting the index entries (ZCARD)",
    )
    passes = 2 if reads_again(options) else 1
    rate = options.max_keys_per_second
    known = keys is not None and rate
    return dict(
        max_keys_per_second=rate,
        matching_keys=keys,
        index_entries=entries,
        passes=passes,
        seconds=round(paced_seconds(passes * (keys + entries), rate), 1) if known else None,
    )


def _preflight_session(session):
    memory = session.guard.check(always_estimate=True)
    facts, settings, options = session.facts, session.settings, session.options
    plan = pace_plan(session, memory)
    access = session.access.as_dict()
    return result_header(
        settings.endpoint,
        options.source_db,
        options.target_db,
        facts.version_text,
        role=facts.role,
        databases=facts.databases,
        strategy=session.strategy,
        memory=memory,
        pace=plan,
        checks_not_run=session.checks_not_run,
        scope_warnings=session.pattern_warnings,
        permissions=access,
        replication=session.watch.as_dict(),
        msg=(
            f"Redis {facts.version_text} at {settings.endpoint} is ready: "
            f"{replication_line(session.watch)}, dbs "
            f"{options.source_db} and {options.target_db} exist, strategy {session.strategy}, "
            f"{session.access.summary()}, "
            f"{memory_line(memory)}{plan_line(plan)}"
            f"{not_checked(session.checks_not_run)}"
            + "".join(
                f"; WARNING: {text}" for text in [*session.pattern_warnings, *access["warnings"]]
            )
        ),
    )
