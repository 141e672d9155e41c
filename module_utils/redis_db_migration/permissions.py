"""What the user may run, settled before the run sends anything else: what each step of the
run needs, judged against what the probe found (probe.py); the copy strategy, picked from what
is there; and, when something is missing, one refusal that names all of it, with the one
ACL SETUSER line that grants what ACL can and the options that do without what it cannot."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import MigrationError
from .probe import command_names, probe

# The steps whose commands each mode checks. Preflight checks the migration it comes before,
# and refuses what that lacks, and the clean-up that follows, whose refusal it warns of: so a
# preflight without that warning says the clean-up may run too.
STEPS = {
    "preflight": ("migrate", "cleanup"),
    "migrate": ("migrate",),
    "verify": ("verify",),
    "cleanup": ("cleanup",),
}
# Every step connects to both dbs, loads and runs its scripts, and finds and reads the keys.
EVERY_STEP = {"PING", "SELECT", "SCRIPT LOAD", "EVALSHA", "SCAN", "EXISTS", "TYPE"}
# The clean-up reads both copies of a key to compare them, then deletes the source's.
CLEANUP_COMMANDS = {"GET", "LRANGE", "HGETALL", "SMEMBERS", "ZRANGE", "XRANGE", "DUMP", "UNLINK"}
STEP_NAMES = {"migrate": "the migration", "verify": "the verification", "cleanup": "the clean-up"}


@dataclass(frozen=True)
class Plan:
    """What decides the commands one step of a run sends."""

    step: str  # migrate, verify or cleanup
    version: tuple
    indexed: bool
    strategy: str  # copy or dump-restore: the migration's
    memory_check: bool
    wait: str | None  # WAIT or WAITAOF, when the step's writes wait for replicas


def acl_name(command):
    """How ACL SETUSER names a command: 'MEMORY USAGE' is 'memory|usage'."""
    return command.lower().replace(" ", "|")


def pick_strategy(session, unavailable):
    """COPY where the server has it and the user may run it (unless told otherwise), else
    DUMP + RESTORE. Asked for COPY, the run needs it: its refusal then names it."""
    requested = session.options.strategy
    has_copy = session.facts.version >= (6, 2)
    if requested == "copy" and not has_copy:
        raise MigrationError(
            f"strategy 'copy' needs the COPY command, which Redis {session.facts.version_text} "
            f"at {session.settings.endpoint} lacks (it came with Redis 6.2). Use strategy "
            f"'auto' or 'dump-restore'."
        )
    if requested == "copy" or (requested == "auto" and has_copy and "COPY" not in unavailable):
        return "copy"
    return "dump-restore"


def needed_commands(plan):
    """The commands a step sends: those it cannot do without, and those that only feed a
    check (the byte budget), which it goes without."""
    needed = set(EVERY_STEP)
    measured = {"MEMORY USAGE"}
    read_back = "ZMSCORE" if plan.version >= (6, 2) else "ZSCORE"
    if plan.indexed:
        needed |= {"ZRANGE", "ZRANK", "ZCOUNT", "ZSCORE"}
    if plan.wait:
        needed.add(plan.wait)
    if plan.step != "verify":
        # Each call that writes reads the server's clock, for its deadline (in_flight.py).
        needed.add("TIME")
    if plan.step == "migrate":
        if plan.strategy == "copy":
            needed.add("COPY")
        else:
            needed |= {"DUMP", "RESTORE"}
            needed |= {"PEXPIRETIME"} if plan.version >= (7, 0) else {"TIME", "PTTL"}
        if plan.indexed:
            needed |= {"ZADD", "ZCARD", read_back}
        measured |= {"INFO", "DBSIZE"}
        if plan.memory_check:
            needed |= measured
    elif plan.step == "cleanup":
        needed |= CLEANUP_COMMANDS
        if plan.indexed:
            needed |= {"ZCARD", "WATCH", "MULTI", "EXEC", "UNWATCH"}
    else:
        measured = set()
    return needed, measured - needed


def option_changes(plan, watch):
    """The options that change what ``plan`` sends: each as the operator sets it, the plan
    with it, and what the run then goes without."""
    yield (
        "memory_check: false",
        replace(plan, memory_check=False),
        "with no memory guard",
    )
    if plan.version >= (6, 2):
        yield "strategy: copy", replace(plan, strategy="copy"), None
    yield "strategy: dump-restore", replace(plan, strategy="dump-restore"), None
    lost = "and a failover could then lose what it reports as migrated"
    if plan.wait == "WAITAOF":
        to_replicas = "WAIT" if watch.min_replicas else None
        yield "wait_aof: false", replace(plan, wait=to_replicas), "and no write waits for an AOF"
    if plan.wait and watch.min_replicas:
        setting = "min_replicas: 0" + (" and wait_aof: false" if plan.wait == "WAITAOF" else "")
        yield setting, replace(plan, wait=None), lost


def ordered(commands):
    """``commands`` in the order the messages list them: connection, scripts, keys."""
    return [name for name in command_names() if name in commands]


def listed(commands):
    return ", ".join(commands)


def them(commands):
    return "it" if len(commands) == 1 else "them"


class Access:
    """What the user may run, for the steps mode ``mode`` checks: the probe's findings, what
    each step needs, and the verdict."""

    def __init__(self, session, mode):
        self.session = session
        self.user = session.settings.username or "default"
        self.steps = STEPS[mode]
        self.findings = probe(session)
        self.unavailable = self.findings.unavailable
        migrates = "migrate" in self.steps
        self.strategy = pick_strategy(session, self.unavailable) if migrates else "none"
        self.plans = {step: self._plan(step) for step in self.steps}
        self.missing = {
            step: ordered(needed_commands(plan)[0] & self.unavailable)
            for step, plan in self.plans.items()
        }

    def _plan(self, step):
        session = self.session
        watch = session.watch
        wait = None
        if step != "verify" and watch.waits:
            wait = "WAITAOF" if watch.wait_aof else "WAIT"
        return Plan(
            step=step,
            version=session.facts.version,
            indexed=bool(session.index_names),
            strategy=self.strategy,
            memory_check=session.options.memory_check,
            wait=wait,
        )

    def ready(self, step):
        return not self.missing[step] and not self.findings.keys

    def check(self):
        """Refuse a run whose first step the user cannot run, naming everything any checked
        step lacks. Returns the checks that cannot run for want of a command they alone
        need, each with why."""
        if not self.ready(self.steps[0]):
            raise MigrationError(self.refusal(self.steps), fields={"permissions": self.as_dict()})
        plan = self.plans[self.steps[0]]
        checks = []
        if plan.step == "migrate" and not plan.memory_check:
            checks.append("memory guard: memory_check is false")
        if "MEMORY USAGE" in needed_commands(plan)[1] & self.unavailable:
            checks.append(
                "byte budget: MEMORY USAGE is not available, so each server call is bounded by "
                "batch_size keys only"
            )
        return checks

    def summary(self):
        """Which checked steps the user may run, in a few words."""
        ready = [STEP_NAMES[step] for step in self.steps if self.ready(step)]
        return f"every command {' and '.join(ready)} send{'s' * (len(ready) == 1)} may run"

    def warnings(self):
        """What a later step the mode checked would be refused, and how to grant it; nothing
        when the first step is refused, whose message says it all."""
        later = [step for step in self.steps[1:] if not self.ready(step)]
        if not later or not self.ready(self.steps[0]):
            return []
        return [f"{STEP_NAMES[later[0]]} would be refused: {self.refusal(later, wrote=False)}"]

    def refusal(self, steps, wrote=True):
        """One message naming all that ``steps`` lack: the first step in full, each later one
        for what it adds; then the one ACL SETUSER line that grants what ACL can."""
        steps = [step for step in steps if not self.ready(step)]
        # The first step's sentence on the keys holds for every step.
        named = set(self.findings.key_denied)
        sentences = []
        for step in steps:
            missing = [name for name in self.missing[step] if name not in named]
            if step == steps[0]:
                sentences += self._in_full(step, missing)
            elif missing:
                sentences.append(
                    f"{STEP_NAMES[step].capitalize()} would be refused as well: it also needs "
                    f"{self._causes(missing)}."
                )
            named.update(missing)
        if wrote:
            sentences.append("Nothing was written.")
        line = self.acl_setuser(steps)
        if line:
            what = "what ACL can" if named & self.findings.unknown else "all of it"
            sentences.append(f"Grant {what} with one line: {line}")
        return " ".join(sentences)

    def _in_full(self, step, missing):
        """What ``step`` lacks, by cause, and the options that would do without it."""
        settings, found = self.session.settings, self.findings
        how = f" with strategy {self.strategy}" if step == "migrate" else ""
        needs = f"which mode {step}{how} needs"
        denied = [name for name in missing if name in found.denied]
        unknown = [name for name in missing if name in found.unknown]
        untried = [name for name in missing if name in found.untried]
        sentences = []
        if denied:
            sentences.append(
                f"User '{self.user}' on Redis at {settings.endpoint} may not run "
                f"{listed(denied)}, {needs}: ACL denies {them(denied)} (NOPERM)."
            )
        if found.keys:
            sentences.append(
                f"ACL keeps user '{self.user}' on Redis at {settings.endpoint} from the keys "
                f"{listed(pattern[1:] for pattern in found.keys)}, which mode {step} reads and "
                f"writes."
            )
        if unknown:
            sentences.append(
                f"Redis at {settings.endpoint} does not know {listed(unknown)}, {needs}: "
                f"renamed or disabled, as managed services do, and ACL cannot bring "
                f"{them(unknown)} back."
            )
        if untried:
            sentences.append(
                f"{listed(untried)} could not be tried, since without EXISTS or TYPE nothing "
                f"proves the probe key absent: the line below grants {them(untried)} too."
            )
        spared = set()
        for setting, cost, commands in self._alternatives(step, missing):
            spared.update(commands)
            sentences.append(
                f"With {setting} it runs without {listed(commands)}"
                + (f", {cost}." if cost else ".")
            )
        stuck = [name for name in unknown if name not in spared]
        if stuck:
            sentences.append(
                f"No option does without {listed(stuck)}: have the provider enable {them(stuck)}."
            )
        return sentences

    def _alternatives(self, step, missing):
        """(option, what the run then goes without, the missing commands it spares) for each
        option that spares some and needs nothing the user lacks instead."""
        plan = self.plans[step]
        needed = needed_commands(plan)[0]
        # Keys the user may not touch: no option spares those, only the ACL key patterns.
        missing = [name for name in missing if name not in self.findings.key_denied]
        found = []
        for setting, changed, cost in option_changes(plan, self.session.watch):
            now = needed_commands(changed)[0]
            spared = [name for name in missing if name not in now]
            if spared and not (now - needed) & self.unavailable:
                found.append((setting, cost, spared))
        return found

    def _causes(self, commands):
        """``commands``, each group with why it cannot run."""
        found = self.findings
        causes = []
        for names, cause in (
            (found.denied, "ACL denies"),
            (found.key_denied, "ACL refuses on these keys"),
            (found.unknown, "Redis does not know"),
            (found.untried, "could not be tried without EXISTS or TYPE"),
        ):
            hit = [name for name in commands if name in names]
            if hit:
                causes.append(f"{listed(hit)}, which {cause}")
        return "; and ".join(causes)

    def acl_setuser(self, steps):
        """The one ACL SETUSER line that grants every command ACL denies ``steps`` and every
        key they may not touch; None when ACL can grant nothing they lack."""
        granted = set().union(*(self.missing[step] for step in steps))
        granted &= self.findings.denied | self.findings.untried
        words = [f"+{acl_name(name)}" for name in ordered(granted)] + self.findings.keys
        return f"ACL SETUSER {self.user} {' '.join(words)}" if words else None

    def as_dict(self):
        """The findings as the result shows them; the password scrubbed from every word."""
        scrub = self.session.settings.scrub
        lacking = set().union(*self.missing.values())
        not_ready = [step for step in self.steps if not self.ready(step)]
        line = self.acl_setuser(not_ready)
        return dict(
            user=scrub(self.user),
            checked=list(self.steps),
            ready={step: self.ready(step) for step in self.steps},
            missing=self.missing,
            denied=ordered(lacking & self.findings.denied),
            renamed=ordered(lacking & self.findings.unknown),
            keys=list(self.findings.keys),
            acl_setuser=scrub(line) if line else None,
            options=[
                scrub(f"{setting} runs {step} without {listed(commands)}")
                for step in not_ready
                for setting, _cost, commands in self._alternatives(step, self.missing[step])
            ],
            warnings=[scrub(text) for text in self.warnings()],
        )
