"""The README's promises name the tests that prove them: every name must be a test that
exists, so a renamed or deleted test cannot leave a promise without its proof."""

from __future__ import annotations

import ast
import re

from helpers import ROOT

README = (ROOT / "README.md").read_text()


def named_tests():
    """(file, test) for every reference: `tests/x.py::test_a` and the `::test_b` after it."""
    found = []
    for cell in re.findall(r"`tests/[^|]*", README):
        current = None
        for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", cell):
            current = path or current
            found.append((current, name))
    return found


def test_every_test_the_readme_names_exists():
    references = named_tests()
    assert len(references) >= 40, references  # the guarantee tables are all read
    defined = {}
    for path, name in references:
        if path not in defined:
            tree = ast.parse((ROOT / path).read_text())
            defined[path] = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in defined[path], f"{path}::{name} is named in README.md but not defined"
