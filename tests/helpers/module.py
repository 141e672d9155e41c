"""The redis_db_migrate module run in-process, as community.general's unit tests run theirs:
set the arguments, call main(), read the JSON result it prints. Seconds, not a playbook each.

ansible.module_utils gets the repository's module_utils on its path, so the module imports the
engine package exactly as AnsiballZ ships it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json

import ansible.module_utils
import pytest
from ansible.module_utils import basic

from .engine import ROOT

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19 reads a plain JSON string

    @contextlib.contextmanager
    def patch_module_args(args):
        before = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = before


if str(ROOT / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(ROOT / "module_utils"))
_SPEC = importlib.util.spec_from_file_location(
    "redis_db_migrate", ROOT / "library" / "redis_db_migrate.py"
)
redis_db_migrate = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(redis_db_migrate)


def call_module(args, *, check=False, diff=False):
    """The module's result for ``args`` (with check mode and diff mode as asked), as the
    dict it prints; ``failed`` is True when it failed."""
    arguments = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    printed = io.StringIO()
    with (
        patch_module_args(arguments),
        contextlib.redirect_stdout(printed),
        pytest.raises(SystemExit),
    ):
        redis_db_migrate.main()
    return json.loads(printed.getvalue())
