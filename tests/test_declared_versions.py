"""What the package declares about ansible-core is what the suite tests: one range, said the
same way in every file that states it, whose two ends scripts/test.sh runs the tests on."""

from __future__ import annotations

import re

import yaml
from ansible.release import __version__ as ansible_core
from helpers import ROOT
from packaging.specifiers import SpecifierSet
from packaging.version import Version


def _spec(path, package="ansible-core"):
    for line in (ROOT / path).read_text().splitlines():
        if line.startswith(package):
            return SpecifierSet(line[len(package) :].split("#")[0].strip())
    raise AssertionError(f"{path} does not name {package}")


DECLARED = _spec("requirements.txt")
OLDEST = _spec("requirements-ansible-oldest.txt")


def _minor(spec, operator):
    (bound,) = [Version(s.version) for s in spec if s.operator == operator]
    return bound.release[:2]


def test_every_file_declares_the_same_range():
    runtime = yaml.safe_load((ROOT / "collection/meta/runtime.yml").read_text())
    assert SpecifierSet(runtime["requires_ansible"]) == SpecifierSet(">=2.16.0,<2.20")
    assert SpecifierSet(">=2.16,<2.20") == DECLARED
    meta = yaml.safe_load((ROOT / "roles/storyart_session_migration/meta/main.yml").read_text())
    assert meta["galaxy_info"]["min_ansible_version"] == "2.16"
    assert "**ansible-core 2.16 to 2.19**" in (ROOT / "README.md").read_text()


def test_the_suite_tests_the_oldest_release_declared():
    assert _minor(OLDEST, ">=") == _minor(DECLARED, ">=")
    assert _minor(OLDEST, "<") == (2, 17)  # one minor release: the oldest, nothing newer
    test_sh = (ROOT / "scripts/test.sh").read_text()
    assert re.search(r'run_pytest "\$OLDEST_ANSIBLE_VENV/bin/python"', test_sh)
    beside = (ROOT / "scripts/test_beside.sh").read_text()
    assert "SANITY_VENV=$OLDEST_ANSIBLE_VENV bash scripts/sanity.sh" in beside


def test_this_run_uses_an_ansible_core_the_package_declares():
    assert Version(ansible_core) in DECLARED, ansible_core
    # Each sanity run needs its version's ignore file.
    minor = ".".join(ansible_core.split(".")[:2])
    assert (ROOT / f"collection/tests/sanity/ignore-{minor}.txt").is_file()
