"""The verifier: checks, writing nothing, that every matching source key and index entry is
in the target. The copier's verb 'plan' does the reading: what it would copy is missing."""

from __future__ import annotations

from .copier import Copier
from .reports import MigrationReport


def verify_session(session):
    """An independent check at any time: the report of mode verify."""
    report = session.new_report(MigrationReport, verify_only=True)
    return session.timed(report, lambda: Copier(session, report).copy_and_merge("plan"))


def full_check(session, migration):
    """After a copy, in the same session: read everything again into ``migration.full_check``.
    The copy's last read-back comes first, on its own: the check reads what the copy left."""
    session.settle(wait=False)
    session.hooks.before_full_check()
    check = session.new_report(MigrationReport, verify_only=True)
    Copier(session, check).copy_and_merge("plan")
    migration.full_check = dict(
        verified=check.verified,
        found=check.found,
        missing=check.counts()["missing"],
        index_missing=check.index_total("added"),
        expired=check.expired,
        missing_sample=check.samples["migrated"],
    )
