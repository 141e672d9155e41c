"""Copy keys from one Redis logical database to another, safely and fast.

The engine's public names, and its map. (The package's ``__init__.py`` stays empty, as
ansible-test asks of module_utils on ansible-core 2.16.)

The migration engine behind the ``redis_db_migrate`` Ansible module: plain Python over
redis-py with no Ansible import, so the module, the tests and the benchmark all call it. It
speaks only of Redis; what the keys are for is the module's and the role's business.

How a run goes (``runs``), one ``Session`` against one endpoint:

* Preflight (``session``, ``server``, ``probe``, ``permissions``, ``memory``): reach and
  authenticate, read the server's facts; refuse a cluster and a replica; try every command
  the run will send, in one pass that writes nothing, and name all that are missing at once;
  refuse a database number the server does not have and an index key that is not a sorted
  set; load the Lua scripts; pick the copy strategy (COPY where the server has it and the user
  may run it, else DUMP + RESTORE); estimate what the copy adds to memory from the keys that
  will be copied, and refuse what would not fit.
* Copy (``copier``, ``lua_copy``): script calls that each SCAN a page of the source db, one
  pattern at a time, copy its keys without REPLACE and tell, atomically, whether each was
  copied, was already in the target, or has gone from the source. A call
  stops at a byte budget, and before any write the memory guard would refuse. Each index is
  merged a page per call, in score order, with ZADD NX. What a call wrote is read back in the round
  trip of the next call (``deferred``); each call takes as many keys as fill about 20 ms of
  the server's time (``sizing``).
* Verify (``verifier``): the copier's verb 'plan', writing nothing: what it would copy is
  missing. ``full_verify`` runs it right after a copy.
* Clean up (``cleaner``, ``lua_cleanup``): delete from the source only keys whose copy has the
  same type and content, compared and deleted in one atomic call, and a source index only when
  every entry is in the target and, WATCHed, nothing changed it meanwhile.
* Every call that writes carries a deadline on the server's clock (``in_flight``): one held in
  a stalled network until the run has given up on it does nothing when it arrives.

A migration never writes to or deletes from the source db; the dry run runs the same scripts
with the writes left out. ``Hooks`` lets a caller act at fixed points of a run.

A running migration or clean-up keeps a run file on its machine (``running``), which the
operator's stop finds (``stopping``): the run then stops between two calls, counted.
"""

from __future__ import annotations

from .cleanup_report import CleanupReport
from .connection import ConnectionSettings
from .errors import MigrationError, describe_error
from .hooks import Hooks
from .keys import display, glob_matcher
from .lua import KEY_OVERHEAD
from .options import STRATEGIES, MigrationOptions, argument_spec, from_params
from .pacing import Pacer
from .redis_py import HAS_REDIS, MIN_REDIS_PY, redis_py_problem
from .reports import ERROR_LIST_SIZE, SAMPLE_SIZE, MigrationReport
from .running import RunRecord
from .runs import MODES, cleanup, migrate, preflight, verify
from .shown import shown
from .sizing import CallSize
from .stopping import stop_runs
from .wording import mib

__all__ = [
    "ERROR_LIST_SIZE",
    "HAS_REDIS",
    "KEY_OVERHEAD",
    "MIN_REDIS_PY",
    "MODES",
    "SAMPLE_SIZE",
    "STRATEGIES",
    "CallSize",
    "CleanupReport",
    "ConnectionSettings",
    "Hooks",
    "MigrationError",
    "MigrationOptions",
    "MigrationReport",
    "Pacer",
    "RunRecord",
    "argument_spec",
    "cleanup",
    "describe_error",
    "display",
    "from_params",
    "glob_matcher",
    "mib",
    "migrate",
    "preflight",
    "redis_py_problem",
    "shown",
    "stop_runs",
    "verify",
]
