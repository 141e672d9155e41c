"""What a migration or a verification found and did, as the module returns it.

Counts are exact; samples and error lists are capped, so a result stays small at millions of
keys. Every run returns the same keys, changed or not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .in_flight import NOTHING_UNKNOWN
from .shown import shown
from .wording import mib

SAMPLE_SIZE = 10
ERROR_LIST_SIZE = 20
# Characters shown of the server's error text for one key: Lua's errors run to about 250.
ERROR_TEXT_CHARS = 500


def result_header(endpoint, source_db, target_db, server_version, **rest):
    """What every result of the module starts with: where the run went, on what server."""
    return dict(
        endpoint=endpoint,
        source_db=source_db,
        target_db=target_db,
        server_version=server_version,
        **rest,
    )


class Named:
    """A dataclass about one key, ``name``: as a dict, with the name shown as text."""

    def as_dict(self):
        return {**asdict(self), "name": shown(self.name)}


@dataclass
class IndexReport(Named):
    name: bytes
    found: int = 0
    added: int = 0
    present: int = 0
    orphans: int = 0
    failed: int = 0
    missing: int = 0


@dataclass
class Report:
    """What a run found and did. Counts are exact; samples and error lists are capped."""

    SAMPLE_KINDS = ()
    # The counts of the result's "counts", in order.
    COUNTS = ()

    endpoint: str
    source_db: int
    target_db: int
    dry_run: bool
    server_version: str = "unknown"
    found: int = 0
    expired: int = 0
    failed: int = 0
    samples: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    duration: float = 0.0
    aborted: str | None = None
    # The operator stopped the run between two calls (stopped_by_operator); aborted says when.
    stopped: bool = False
    # Checks this run could not make, each with why: e.g. MEMORY USAGE denied.
    checks_not_run: list = field(default_factory=list)
    # The primary watch (primary.PrimaryWatch.as_dict), and the writes of the call whose
    # replicas did not acknowledge them.
    replication: dict = field(default_factory=dict)
    unacknowledged: int = 0
    # What the last call may have written beyond the counts, when its reply was lost
    # (in_flight.InFlight.as_dict): keys, index_entries and call, its words.
    unknown: dict = field(default_factory=lambda: dict(NOTHING_UNKNOWN))
    # The keys and index entries the run went through, and how fast (pacing.Pacer.achieved).
    pace: dict = field(default_factory=dict)
    # Patterns that may take in other applications' keys (wording.unnarrowed_patterns).
    pattern_warnings: list = field(default_factory=list)

    def __post_init__(self):
        for kind in self.SAMPLE_KINDS:
            self.samples.setdefault(kind, [])

    @property
    def keys_per_second(self):
        return round(self.found / self.duration) if self.duration > 0 else 0

    def add_sample(self, kind, key):
        if len(self.samples[kind]) < SAMPLE_SIZE:
            self.samples[kind].append(shown(key))

    def add_error(self, key, error):
        if len(self.errors) < ERROR_LIST_SIZE:
            self.errors.append({"key": shown(key), "error": shown(error, ERROR_TEXT_CHARS)})

    def tally(self, keys, outcomes, kinds):
        """Count a batch's outcome codes into the fields ``kinds`` names, and sample their keys.

        Counted a code at a time, not a key at a time: this runs for every key of a million.
        Returns the (key, outcome) pairs of no known code: the errors.
        """
        tallied = 0
        for code, kind in kinds.items():
            hits = outcomes.count(code)
            tallied += hits
            setattr(self, kind, getattr(self, kind) + hits)
            room = SAMPLE_SIZE - len(self.samples.get(kind, ())) if kind in self.samples else 0
            if hits and room > 0:
                picked = [key for key, outcome in zip(keys, outcomes) if outcome == code]
                for key in picked[:room]:
                    self.add_sample(kind, key)
        if tallied == len(keys):
            return []
        return [(key, outcome) for key, outcome in zip(keys, outcomes) if outcome not in kinds]

    def _head(self, what):
        dry = "DRY RUN, nothing written: " if self.dry_run else ""
        return (
            f"{dry}{what} db {self.source_db} -> db {self.target_db} on {self.endpoint} "
            f"(Redis {self.server_version})"
        )

    def scope_warnings(self):
        """What the patterns and indexes took in that the operator should look at."""
        return list(self.pattern_warnings)

    def _tail(self, parts):
        parts.extend(f"WARNING: {text}" for text in self.scope_warnings())
        if self.unacknowledged:
            parts.append(
                f"NOT ACKNOWLEDGED by the replicas: {self.unacknowledged} writes of the last call"
            )
        if self.unknown["call"]:
            parts.append(
                f"NOT COUNTED: the reply of the last call was lost; it {self.unknown['call']}"
            )
        parts.extend(f"NOT CHECKED: {check}" for check in self.checks_not_run)
        parts.append(f"{self.duration:.2f}s, {self.keys_per_second} keys/s")
        if self.pace.get("max_keys_per_second"):
            parts.append(
                f"paced: {self.pace['keys_and_entries']} keys and index entries gone through "
                f"at {self.pace['per_second']}/s (max_keys_per_second "
                f"{self.pace['max_keys_per_second']})"
            )
        if self.stopped:
            parts.append(f"{self.aborted}; {self._consistent()}; a rerun completes the run")
        elif self.aborted:
            parts.append("STOPPED before the end")
        return "; ".join(parts)

    def stopped_by_operator(self, action):
        """The operator stopped the run between two calls, while ``action``: it ends with what
        it did so far, counted, and is never verified."""
        entries = sum(index.found for index in self.indexes)
        self.stopped = True
        self.aborted = (
            f"STOPPED by the operator while {action}, after {self.found} keys and {entries} "
            f"index entries"
        )

    def _consistent(self):
        """Why Redis is consistent after a stop: no call was cut off in the middle."""
        if self.dry_run:
            return "Redis is consistent: nothing was written"
        replicas = self.replication.get("min_replicas")
        acknowledged = f" and acknowledged by {replicas} replicas" if replicas else ""
        return (
            f"Redis is consistent: no call was cut off, and what was written was read "
            f"back{acknowledged}"
        )

    def _diff(self, db, before, after):
        """Ansible's --diff of db ``db``: the lines before and after."""
        header = f"redis://{self.endpoint}/{db}"
        return dict(
            before_header=header,
            after_header=header,
            before="\n".join(before) + "\n",
            after="\n".join(after) + "\n",
        )

    def _listed(self, kind, count, sign):
        """The sampled keys of ``kind`` as diff lines, then how many more the count holds."""
        lines = [f"{sign} {key}" for key in self.samples[kind]]
        hidden = count - len(self.samples[kind])
        if hidden > 0:
            lines.append(f"{sign} ... and {hidden} more keys")
        return lines

    def counts(self):
        """The result's "counts": the fields COUNTS names, by name."""
        return {name: getattr(self, name) for name in self.COUNTS}

    def _as_dict(self, samples, **specific):
        """The result returned on every run, changed or not, with the same keys.

        Counts are nested: Ansible reads top-level ``skipped`` and ``failed`` as task status.
        """
        return result_header(
            self.endpoint,
            self.source_db,
            self.target_db,
            self.server_version,
            dry_run=self.dry_run,
            counts=self.counts(),
            **specific,
            samples=samples,
            errors=self.errors,
            duration=round(self.duration, 3),
            keys_per_second=self.keys_per_second,
            pace=self.pace,
            aborted=self.aborted,
            stopped=self.stopped,
            checks_not_run=self.checks_not_run,
            scope_warnings=self.scope_warnings(),
            replication=self.replication,
            unacknowledged=self.unacknowledged,
            unknown=self.unknown,
            msg=self.summary(),
        )


@dataclass
class MigrationReport(Report):
    """A migration, or with ``verify_only`` an independent check that nothing is left to copy.

    A verification is the copy's plan: the keys it would copy (``migrated``) and the index
    entries it would add (``added``) are missing from the target; those it would skip
    (``skipped``) are present. Its result names them so (VERIFY_COUNTS).
    """

    SAMPLE_KINDS = ("migrated", "skipped", "expired")
    COUNTS = ("found", "migrated", "skipped", "expired", "failed")
    # A verification's counts, by name, and the field each is tallied in.
    VERIFY_COUNTS = {
        "found": "found",
        "missing": "migrated",
        "present": "skipped",
        "expired": "expired",
        "failed": "failed",
    }
    # The names a verification's counts had in 1.0.0, a migration's words for missing and
    # present: still in its counts, with the same values, until 2.0.0 removes them.
    DEPRECATED_VERIFY_COUNTS = ("migrated", "skipped")

    verify_only: bool = False
    strategy: str = "unknown"
    migrated: int = 0
    skipped: int = 0
    indexes: list = field(default_factory=list)
    expired_after_copy: int = 0
    missing: int = 0
    missing_sample: list = field(default_factory=list)
    memory: dict | None = None
    full_check: dict | None = None
    # MEMORY USAGE of the keys copied (in a dry run: that a real run would copy).
    copy_bytes: int = 0

    def index_total(self, name):
        return sum(getattr(index, name) for index in self.indexes)

    def counts(self):
        if not self.verify_only:
            return super().counts()
        fields = dict(self.VERIFY_COUNTS, **{name: name for name in self.DEPRECATED_VERIFY_COUNTS})
        return {name: getattr(self, field) for name, field in fields.items()}

    @property
    def changed(self):
        return not self.verify_only and (self.migrated > 0 or self.index_total("added") > 0)

    @property
    def verified(self):
        """True when everything is in the target; None when this run cannot tell."""
        if self.aborted:
            return None
        if self.verify_only:
            return self.migrated + self.index_total("added") + self.failed == 0
        if self.dry_run:
            return None
        return self.missing == 0 and (self.full_check is None or self.full_check["verified"])

    @property
    def ok(self):
        return (
            not self.aborted
            and self.failed == 0
            and self.index_total("failed") == 0
            and self.verified is not False
        )

    def _acknowledged(self):
        """What "verified" rests on beyond this node: the replicas that acknowledged every
        write, and the primary the Sentinels still name."""
        watch = self.replication
        if not watch.get("confirmed"):
            return ""
        replicas, service = watch["min_replicas"], watch["sentinel_service"]
        words = ""
        if replicas:
            words += f", every write acknowledged by {replicas} replica{'s' * (replicas != 1)}"
        if service:
            words += f", still the primary of Sentinel service '{service}'"
        return words

    def scope_warnings(self):
        """Besides the patterns' warnings: an index whose entries were merged (or checked)
        while the patterns matched no key, so they name keys the run did not copy."""
        if self.found:
            return super().scope_warnings()
        done = "would be merged" if self.dry_run else "were merged"
        done = "were checked" if self.verify_only else done
        return super().scope_warnings() + [
            f"the patterns matched no key in db {self.source_db}, yet the {index.found} entries "
            f"of index '{shown(index.name)}' {done} all the same ({index.orphans} name a key "
            f"in neither db): check that the patterns match the keys the index lists"
            for index in self.indexes
            if index.found
        ]

    def so_far(self):
        """What a run cut short has done, as far as its counts go."""
        return "The source db was not written, and what the counts say was copied was read back"

    def add_missing(self, what):
        self.missing += 1
        if len(self.missing_sample) < ERROR_LIST_SIZE:
            self.missing_sample.append(what)

    def summary(self):
        """One line an operator reads at a glance: the old script's "Migration Summary"."""
        return self._tail(self._verify_parts() if self.verify_only else self._migrate_parts())

    def _migrate_parts(self):
        would = "would be " if self.dry_run else ""
        target = self.target_db
        parts = [
            self._head("migrate") + f", strategy {self.strategy}",
            f"keys found {self.found}, {would}migrated {self.migrated} "
            f"({mib(self.copy_bytes)}), {would}skipped (already in db {target}) "
            f"{self.skipped}, expired {self.expired}, failed {self.failed}",
        ]
        parts.extend(f"WARNING: {text}" for text in (self.memory or {}).get("warnings", ()))
        parts.extend(
            f"index {shown(index.name)}: {index.found} entries, {would}added "
            f"{index.added}, already present {index.present}, without session key "
            f"{index.orphans}, failed {index.failed}"
            for index in self.indexes
        )
        if self.verified is None:
            parts.append("verification not run" + (" (dry run)" if self.dry_run else ""))
        elif self.verified:
            full = "; every session read again: all in db {target}" if self.full_check else ""
            parts.append("verified" + full.format(target=target) + self._acknowledged())
        elif self.missing:
            parts.append(f"VERIFICATION FAILED: {self.missing} missing in db {target}")
        else:
            check = self.full_check
            parts.append(
                f"VERIFICATION FAILED: read again, {check['missing']} keys and "
                f"{check['index_missing']} index entries of db {self.source_db} are not in db "
                f"{target}"
            )
        failures = self.failed + self.index_total("failed")
        if failures:
            parts.append(
                f"FAILED: {failures} keys or index entries could not be copied, see 'errors'; "
                f"fix the cause and rerun, done work is skipped"
            )
        return parts

    def _verify_parts(self):
        target = self.target_db
        parts = [
            self._head("verify"),
            f"keys found {self.found}, in db {target} {self.skipped}, MISSING from db "
            f"{target} {self.migrated}, expired {self.expired}, unreadable {self.failed}",
        ]
        parts.extend(
            f"index {shown(index.name)}: {index.found} entries, in db {target} "
            f"{index.present}, MISSING {index.added}"
            for index in self.indexes
        )
        if self.verified:
            parts.append(
                f"verified: everything in db {self.source_db} is in db {target}"
                + self._acknowledged()
            )
        elif self.verified is False:
            parts.append(
                f"NOT VERIFIED: {self.migrated} keys and {self.index_total('added')} index "
                f"entries are not in db {target} yet; run the migration"
            )
        return parts

    def as_dict(self):
        samples = self.samples
        if self.verify_only:
            # In a verification the outcomes mean "missing" and "present".
            samples = dict(
                missing=samples["migrated"], present=samples["skipped"], expired=samples["expired"]
            )
        return self._as_dict(
            samples,
            mode="verify" if self.verify_only else "migrate",
            strategy=self.strategy,
            index_counts={
                name: self.index_total(name)
                for name in ("found", "added", "present", "orphans", "failed")
            },
            indexes=[index.as_dict() for index in self.indexes],
            verified=self.verified,
            verification=dict(
                missing=self.missing,
                missing_sample=self.missing_sample,
                expired_after_copy=self.expired_after_copy,
            ),
            memory=dict(self.memory or {}, copy_bytes=self.copy_bytes),
            full_check=self.full_check,
        )

    def diff(self):
        """A before/after view of the target db for Ansible's --diff, with capped samples."""
        before, after = [], []
        for index in self.indexes:
            name = shown(index.name)
            before.append(f"index {name}: {index.present} of the source entries present")
            after.append(
                f"index {name}: {index.present + index.added} of the source entries present "
                f"(+{index.added})"
            )
        after += self._listed("migrated", self.migrated, "+")
        return self._diff(self.target_db, before, after)
