"""The engine's options, each defined once: its name, type and default here serve the engine
(dataclass fields), and the Ansible module, which builds its argument spec from them."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from .errors import MigrationError

STRATEGIES = ("auto", "copy", "dump-restore")
MAX_BATCH_SIZE = 10000


def option(kind, default=MISSING, *, name=None, shown=True, **spec):
    """A dataclass field that is also a module option: its Ansible ``kind``, its option
    ``name`` where that differs from the field's, and the rest of its argument spec. A field
    not ``shown`` is left out of repr() (the password)."""
    metadata = dict(spec, type=kind, option=name)
    # Called in the dataclass bodies below, which pylint does not see from here.
    if default is not MISSING and isinstance(default, (list, tuple)):
        return field(  # pylint: disable=invalid-field-call
            default_factory=lambda: tuple(default), repr=shown, metadata=metadata
        )
    return field(default=default, repr=shown, metadata=metadata)  # pylint: disable=invalid-field-call


def option_fields(cls):
    """(option name, field) for each field of ``cls`` that is a module option."""
    return [(item.metadata["option"] or item.name, item) for item in fields(cls) if item.metadata]


def argument_spec(*classes):
    """The Ansible argument spec of the options of ``classes``."""
    spec = {}
    for cls in classes:
        for name, item in option_fields(cls):
            entry = {key: value for key, value in item.metadata.items() if key != "option"}
            if item.default_factory is not MISSING:
                entry["default"] = list(item.default_factory())
            elif item.default is MISSING:
                entry["required"] = True
            elif item.default is not None:
                entry["default"] = item.default
            spec[name] = entry
    return spec


def from_params(cls, params, **extra):
    """An instance of ``cls`` from the module's parameters; lists become tuples."""
    values = {}
    for name, item in option_fields(cls):
        value = params[name]
        values[item.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **extra)


@dataclass(frozen=True)
class MigrationOptions:
    """What to move where and how. ``dry_run`` is Ansible's check mode, not an option."""

    source_db: int = option("int")
    target_db: int = option("int")
    patterns: tuple = option("list", elements="str")
    indexes: tuple = option("list", (), elements="str")
    # The most keys one call takes; below it each call is sized by its server time (sizing.py).
    batch_size: int = option("int", MAX_BATCH_SIZE)
    strategy: str = option("str", "auto", choices=list(STRATEGIES))
    dry_run: bool = False
    memory_check: bool = option("bool", True)
    # Not a secret, though its name says "key": Ansible would otherwise warn it might be one.
    max_keys_per_second: int = option("int", 0, no_log=False)
    full_verify: bool = option("bool", False)
    max_batch_bytes: int = option("int", 0)
    memory_headroom: int = option("int", 10)
    # Replicas that must acknowledge the run's writes; None: every replica connected at the
    # start (none on a standalone server).
    min_replicas: int | None = option("int", None)
    replica_timeout: float = option("float", 10.0)
    wait_aof: bool = option("bool", False)

    def validate(self):
        for name in ("source_db", "target_db"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise MigrationError(
                    f"{name} must be a database number of 0 or more, not {value!r}."
                )
        if self.source_db == self.target_db:
            raise MigrationError(
                f"source_db and target_db are both {self.source_db}: a db cannot be migrated "
                f"onto itself. Set source_db to the db the keys are in and target_db to the one "
                f"they move to."
            )
        if not self.patterns or not all(self.patterns):
            raise MigrationError(
                "patterns must list at least one non-empty glob pattern, e.g. 'app:session:*'."
            )
        if not all(self.indexes):
            raise MigrationError("indexes must not contain an empty key name.")
        self._check_range("batch_size", 1, MAX_BATCH_SIZE)
        if self.strategy not in STRATEGIES:
            raise MigrationError(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}."
            )
        self._check_range("max_batch_bytes", 0, None, "0 (sized for each kind of call) or more")
        self._check_range("memory_headroom", 0, 90, "a percentage from 0 to 90")
        self._check_range("max_keys_per_second", 0, None, "0 (no limit) or more")
        if self.min_replicas is not None:
            self._check_range("min_replicas", 0, None, "0 (wait for no replica) or more")
        if not self.replica_timeout > 0:
            raise MigrationError(
                f"replica_timeout must be a positive number of seconds, not {self.replica_timeout}."
            )

    def _check_range(self, name, low, high, what=None):
        value = getattr(self, name)
        if value < low or (high is not None and value > high):
            what = what or f"between {low} and {high}"
            raise MigrationError(f"{name} must be {what}, not {value}.")
