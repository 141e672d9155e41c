"""Writes a Sphinx inventory (objects.inv) of the few labels of Ansible's own documentation that
the pages antsibull-docs renders refer to, so that the docsite links to them without fetching
Ansible's inventory, which offline machines cannot:

    python scripts/docsite_inventory.py OUTPUT_FILE

A page that refers to another label of Ansible's documentation fails the docsite's build
("undefined label"): add the label here, with its page on docs.ansible.com.
"""

from __future__ import annotations

import sys
import zlib

# label -> (page, anchor, title), under https://docs.ansible.com/projects/ansible/devel/.
LABELS = {
    "ansible_configuration_settings": (
        "reference_appendices/config.html",
        "ansible-configuration-settings",
        "Ansible Configuration Settings",
    ),
    "common_return_values": (
        "reference_appendices/common_return_values.html",
        "common-return-values",
        "Return Values",
    ),
}


def inventory():
    header = (
        "# Sphinx inventory version 2\n"
        "# Project: Ansible\n"
        "# Version: devel\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = "".join(
        f"{label} std:label -1 {page}#{anchor} {title}\n"
        for label, (page, anchor, title) in sorted(LABELS.items())
    )
    return header.encode() + zlib.compress(lines.encode())


if __name__ == "__main__":
    with open(sys.argv[1], "wb") as out:
        out.write(inventory())
