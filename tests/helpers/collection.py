"""The collection storyart.session_migration the way an operator gets it: built by
scripts/build_collection.sh, installed by ansible-galaxy into a repository of their own, and
run from there with a minimal ansible.cfg that knows nothing of this repository."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from .ansible import ANSIBLE_PLAYBOOK, BIN, ansible_env, write_inventory
from .engine import ROOT

FQCN = "storyart.session_migration"
VERSION = yaml.safe_load((ROOT / "collection" / "galaxy.yml").read_text())["version"]
TARBALL = f"storyart-session_migration-{VERSION}.tar.gz"


def run_checked(command, **popen):
    """Run ``command``; its stdout, after asserting it succeeded."""
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, **popen
    )
    assert proc.returncode == 0, f"{command}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def build_collection(output: Path) -> Path:
    """Build the collection into ``output`` with the project's script; the tarball's path."""
    printed = run_checked(["bash", str(ROOT / "scripts" / "build_collection.sh"), str(output)])
    return Path(printed.strip().splitlines()[-1])


@dataclass
class OperatorRepo:
    """An operator's infrastructure repository: an ansible.cfg that says only where its
    collections are, the collection installed there, and a staging inventory."""

    path: Path

    @classmethod
    def create(cls, path: Path, tarball: Path, hosts):
        """Install ``tarball`` into path/collections and write the inventory of ``hosts``
        (name -> vars, see write_inventory) as path/staging/hosts.yml."""
        path.mkdir(parents=True)
        (path / "ansible.cfg").write_text("[defaults]\ncollections_path = collections\n")
        repo = cls(path)
        run_checked(
            [str(BIN / "ansible-galaxy"), "collection", "install", str(tarball)]
            + ["-p", str(path / "collections")],
            cwd=path,
            env=repo.env(),
        )
        write_inventory(path, hosts)
        return repo

    def env(self, **extra):
        """No ANSIBLE_* from the caller, and no ANSIBLE_CONFIG: Ansible reads ./ansible.cfg.
        PWD as the operator's shell sets it, in the repository."""
        home = self.path.parent / f"{self.path.name}-home"
        return {**ansible_env(home, config=None), "PWD": str(self.path), **extra}

    def playbook(self, playbook, *args, **env):
        """ansible-playbook ``playbook`` on the staging inventory, run from the repository."""
        return subprocess.run(
            [ANSIBLE_PLAYBOOK, "-i", "staging/hosts.yml", str(playbook), *args],
            cwd=self.path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def report_folders(self):
        """The report folders of the runs so far, oldest first: the default location,
        storyart-reports/ in the directory the playbook ran from."""
        return sorted((self.path / "storyart-reports").iterdir(), key=lambda p: p.stat().st_mtime)
