"""Every committed study under results/ regenerates its tables byte for byte from its committed runs.

A study folder ``results/<study>/`` keeps its run folders in ``runs/`` and, in ``tables.sh``, the
``mtl-bench table ... --out FILE`` commands (run from the repository root) that wrote its tables.
This test runs each command again into a temporary file and compares: no training, only the
report layer reading the committed runs. In a checkout where a sweep is writing new run folders
next to the committed ones, the commands read a tree of links to the committed files instead, so
that the test checks what a clean clone holds.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from mtl_bench.cli import main

ROOT = Path(__file__).resolve().parents[1]


def table_commands() -> list[tuple[str, list[str]]]:
    """``(id, argv after 'mtl-bench')`` of every table command in results/*/tables.sh."""
    found = []
    for script in sorted((ROOT / "results").glob("*/tables.sh")):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            words = shlex.split(line, comments=True)
            if words[:2] == ["mtl-bench", "table"]:
                found.append((f"{script.parent.name}:{number}", words[1:]))
    return found


def expand(argv: list[str], root: Path) -> list[str]:
    """The shell's glob expansion, from ``root`` (sorted, as bash does)."""
    out = []
    for word in argv:
        matches = sorted(glob.glob(str(root / word))) if "*" in word else []
        out.extend(str(Path(m).relative_to(root)) for m in matches) if matches else out.append(word)
    return out


def _git(*args: str) -> list[str] | None:
    listed = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return listed.stdout.splitlines() if listed.returncode == 0 else None


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """Where the table commands read runs from: the repository root, or, when files that git does
    not hold sit in a study's runs/ (a sweep writing), a tree of links to the committed files."""
    untracked = _git("ls-files", "--others", "--exclude-standard", "results")
    if not untracked or not any(len(Path(f).parts) > 2 and Path(f).parts[2] == "runs" for f in untracked):
        return ROOT
    tree = tmp_path_factory.mktemp("committed")
    for name in _git("ls-files", "results"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(ROOT / name, tree / name)
    return tree


def committed_studies() -> set[str]:
    """Studies whose runs/ folder has files in git (a sweep still writing runs/ does not count)."""
    listed = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return {Path(line).parts[1] for line in listed.stdout.splitlines() if len(Path(line).parts) > 3
            and Path(line).parts[2] == "runs"}


def test_every_study_with_runs_has_a_tables_script():
    studies = committed_studies()
    scripts = {p.parent.name for p in (ROOT / "results").glob("*/tables.sh")}
    assert studies <= scripts, f"studies without results/<study>/tables.sh: {sorted(studies - scripts)}"


@pytest.mark.parametrize("argv", [argv for _, argv in table_commands()], ids=[i for i, _ in table_commands()])
def test_committed_table_regenerates_byte_for_byte(argv, tmp_path, monkeypatch, runs_root):
    assert "--out" in argv, "each table command writes its file with --out FILE"
    at = argv.index("--out")
    committed = ROOT / argv[at + 1]
    assert committed.exists(), f"{committed} is named in tables.sh but not committed"
    argv = expand(argv, runs_root)
    at = argv.index("--out")
    argv[at + 1] = str(tmp_path / committed.name)
    monkeypatch.chdir(runs_root)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(argv)
    assert (tmp_path / committed.name).read_bytes() == committed.read_bytes(), (
        f"{committed.relative_to(ROOT)} differs from what its command writes today: regenerate it with "
        f"`bash {committed.parent.relative_to(ROOT)}/tables.sh` and commit the result")
