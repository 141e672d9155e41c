"""pytest configuration of every Molecule scenario's testinfra tests.

Molecule runs pytest from the scenario directory with tests in <scenario>/tests/; this file,
above them all, makes the shared helpers (shared/storyart_testinfra.py) importable.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "shared"))


@pytest.fixture(scope="module")
def migration(host):
    """This host's Redis now (both dbs), next to prepare's "before" snapshot of it."""
    from storyart_testinfra import host_state  # noqa: PLC0415 - importable once sys.path is set

    return host_state(host)
