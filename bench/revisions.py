"""Another git revision of this repository checked out beside the working tree, so that a bench
measures it in the same run, under the same load, as the working tree (`--base REV`)."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """A temporary worktree of `revision`, removed afterwards."""
    tree = Path(tempfile.mkdtemp(prefix="crud-bench-base-"))
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", "-q", str(tree), revision], check=True)
    try:
        yield tree
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tree, ignore_errors=True)


def python_path(tree: Path) -> str:
    """A PYTHONPATH under which the services and crud_common are imported from `tree`: it comes
    before the editable installs of the working tree (.pth files in .venv)."""
    sources = sorted(tree.glob("services/*/src")) + sorted(tree.glob("libs/*/src"))
    return os.pathsep.join(str(path) for path in sources)
