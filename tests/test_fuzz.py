"""Hostile input, generated (hypothesis): command lines and sweep files. Whatever they hold,
ptslurm answers with an exit code and at most a one-line error, never a traceback, never a
hang, and leaves nothing behind. In-process and without an experiment to load, so the
fast tier runs a few hundred cases in seconds."""
import contextlib
import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptslurm import cli

pytestmark = pytest.mark.fast

WORDS = st.sampled_from(["lr", "a.b", "x", "seed", "", "=", "[", "]", "[1,2]", "1,2", "{'a':1}", "None", "nan",
                         "1e400", "-5", "0-08:00", "abc", "\n", "é", "'q'", "(1,'iteration')", "[[64,64]]"])
VALUE = st.one_of(WORDS, st.text(max_size=12), st.integers(-10**6, 10**6).map(str))
OPTIONS = st.sampled_from(["--time", "--mem", "--cpus", "--gpus", "--nodes", "--tasks-per-node", "--partition",
                           "--sbatch", "--signal-delay", "--max-requeues", "--max-attempts", "-j", "--name",
                           "--max-points", "--max-snapshot-mb", "--executor", "--storage-key", "--account"])
UPDATE = st.builds(lambda k, v: f"{k}={v}", WORDS, VALUE) | WORDS
SWEEP_FILE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["fixed", "grid", "zip", "random", "subgrids", "type",
                                                             "options", "min", "max", "step", "num", "samples",
                                                             "seed", "lr", "named_configs", "zip_id"]),
                                            inner, max_size=4)),
    max_leaves=12)


def run(argv, cwd):
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code
    finally:
        os.chdir(old)
    return code, err.getvalue()


def check(code, err, root):
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2 and err.strip() and not err.startswith("usage:"):
        lines = [ln for ln in err.strip().splitlines() if ln.startswith("ptslurm") or "error" in ln]
        assert len(lines) == 1, err
    assert not root.exists() or not any(root.iterdir()), "something was left behind"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.lists(st.tuples(OPTIONS, VALUE), max_size=4), updates=st.lists(UPDATE, max_size=4))
def test_sweep_command_lines(tmp_path, monkeypatch, options, updates):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "none.conf"))
    root = tmp_path / "root"
    argv = ["sweep", "--dry-run", "--root", str(root)]
    for option, value in options:
        argv += [option, value]
    argv += [str(tmp_path / "missing_exp.py"), "with", *updates]
    code, err = run(argv, tmp_path)
    assert code != 0, "an experiment that does not exist is never accepted"
    check(code, err, root)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=SWEEP_FILE, updates=st.lists(UPDATE, max_size=2))
def test_sweep_files(tmp_path, monkeypatch, document, updates):
    import yaml

    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "none.conf"))
    root = tmp_path / "root"
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(document))
    code, err = run(["sweep", "--dry-run", "--root", str(root), "-f", str(sweep_file),
                     str(tmp_path / "missing_exp.py"), "with", *updates], tmp_path)
    assert code != 0
    check(code, err, root)
