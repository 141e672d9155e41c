"""What a clean-up found and deleted, as the module returns it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .reports import Named, Report
from .shown import shown


@dataclass
class IndexCleanup(Named):
    name: bytes
    found: int = 0
    missing: int = 0
    deleted: bool = False
    failed: bool = False
    kept_because: str | None = None


@dataclass
class CleanupReport(Report):
    """Source keys deleted because the target holds an identical copy, and what was kept."""

    SAMPLE_KINDS = ("deleted", "kept_different", "kept_missing")
    COUNTS = ("found", "deleted", "kept_different", "kept_missing", "expired", "failed")

    deleted: int = 0
    kept_different: int = 0
    kept_missing: int = 0
    indexes: list = field(default_factory=list)

    @property
    def changed(self):
        return self.deleted > 0 or any(index.deleted for index in self.indexes)

    @property
    def ok(self):
        return (
            not self.aborted
            and self.failed == 0
            and not any(index.failed for index in self.indexes)
        )

    def so_far(self):
        """What a clean-up cut short has done, as far as its counts go."""
        return (
            f"What the counts say was deleted from db {self.source_db} had an identical copy "
            f"in db {self.target_db}"
        )

    def summary(self):
        would = "would be " if self.dry_run else ""
        source = self.source_db
        parts = [
            self._head("clean up"),
            f"keys found in db {source} {self.found}, {would}deleted {self.deleted} (identical "
            f"copy in db {self.target_db}), kept {self.kept_different} (db {self.target_db} "
            f"copy differs), kept {self.kept_missing} (no copy in db {self.target_db}), "
            f"expired {self.expired}, failed {self.failed}",
        ]
        for index in self.indexes:
            verdict = f"{would}deleted" if index.deleted else f"kept ({index.kept_because})"
            parts.append(
                f"index {shown(index.name)}: {index.found} entries, {index.missing} missing "
                f"from db {self.target_db}, {verdict}"
            )
        if self.failed:
            parts.append(
                f"FAILED: {self.failed} keys could not be checked or deleted, see 'errors'"
            )
        return self._tail(parts)

    def as_dict(self):
        return self._as_dict(
            self.samples,
            mode="cleanup",
            indexes=[index.as_dict() for index in self.indexes],
        )

    def diff(self):
        """A before/after view of the source db for Ansible's --diff, with capped samples."""
        before = [f"{self.deleted} keys with an identical copy in db {self.target_db}"]
        before += self._listed("deleted", self.deleted, "-")
        before += [f"- index {shown(index.name)}" for index in self.indexes if index.deleted]
        after = [f"0 keys with an identical copy in db {self.target_db}"]
        return self._diff(self.source_db, before, after)
