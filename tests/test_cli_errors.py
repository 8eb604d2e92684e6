"""One error policy for every subcommand: a user error ends as one line on stderr,
``mtl-bench: error: ...``, naming what was wrong, with exit status 2 and no traceback."""
import pytest

BAD = {
    "table": (["table", "no_such_dir"], "no_such_dir"),
    "table option": (["table", "--select", "bogus", "."], "bogus"),
    "plot": (["plot", "no_such_dir", "--kind", "delta"], "no_such_dir"),
    "plot option": (["plot", ".", "--kind", "bogus"], "--kind"),
    "collect": (["collect", "no_such_dir"], "no_such_dir"),
    "status": (["status", "no_such_dir"], "no_such_dir"),
    "tune": (["tune", "--dir", "study", "--methods", "ew", "--trials", "0"], "--trials 0"),
    "tune option": (["tune", "--dir", "study", "--methods", "ew"], "--trials"),
    "reproduce": (["reproduce", "no_such_preset"], "no_such_preset"),
    "list": (["list", "no_such_group"], "no_such_group"),
    "run": (["run", "trainer.epochs=0"], "trainer.epochs"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_input_ends_as_one_line_and_exit_status_2(run_cli, tmp_path, case):
    args, named = BAD[case]
    proc = run_cli(*args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mtl-bench: error: ") and named in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
