"""Failure triage (issue 19) and big logs (issue 20): the user's traceback once, failures
grouped by error, logs streamed and tailed."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_cli

MACHINERY = ("ptslurm/job/point.py", "sacred/run.py", "runpy.py", "submitit")


@pytest.fixture
def failed_sweep(tmp_path, no_slurm):
    proc = run_cli("sweep", "--json", "--keep-duplicates", "--name", "tri", "--root", tmp_path, EXAMPLES / "tiny.py",
                   "with", "fail=[True,False,True]", "steps=5")
    assert proc.returncode == 1
    return tmp_path, json.loads(proc.stdout)


def test_logs_of_a_failure_show_the_users_traceback_once(failed_sweep):
    root, _summary = failed_sweep
    out = run_cli("logs", "tri", "0", "--root", root).stdout
    assert out.count("Traceback (most recent call last)") == 1, out
    assert out.count("RuntimeError: tiny: failing on purpose") >= 1 and "tiny.py\", line" in out
    assert not any(m in out for m in MACHINERY), out


def test_failures_groups_points_by_error(failed_sweep):
    root, _summary = failed_sweep
    out = run_cli("failures", "tri", "--root", root).stdout
    assert out.splitlines()[0] == "2 point(s) failed: RuntimeError: tiny: failing on purpose (fail=True)"
    assert "points 0, 2" in out and "tiny.py" in out and not any(m in out for m in MACHINERY)
    status = run_cli("status", "tri", "--root", root).stdout
    assert "why" in status and "RuntimeError" in status, "status has an error column"


def test_logs_of_a_huge_log_stream_its_tail(failed_sweep):
    root, summary = failed_sweep
    cout = Path(summary["points"][1]["storage_dir"]) / "sacred" / "1" / "cout.txt"
    with open(cout, "w") as fh:
        for i in range(1_500_000):  # ~35 MB
            fh.write(f"step {i} loss 0.123456789\n")
    def logs_of(point):
        # VmHWM, the peak RSS of this process image (ru_maxrss would carry the forking parent's over exec)
        code = ("import sys, runpy\n"
                f"sys.argv = ['ptslurm', 'logs', 'tri', '{point}', '--root', {str(root)!r}]\n"
                "try:\n    runpy.run_module('ptslurm', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                "peak = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]\n"
                "print(peak, file=sys.stderr)\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        return proc, int(proc.stderr.strip().splitlines()[-1])

    proc, big = logs_of(1)
    lines = proc.stdout.splitlines()
    assert lines[-1] == "step 1499999 loss 0.123456789" and len(lines) == 1000
    assert "showing its last 1000 lines (--tail 0 for all)" in proc.stderr
    _, small = logs_of(0)  # the same command on a small log: the baseline
    assert big - small < 20_000, f"kB: the 35 MB log was read whole ({big} vs {small})"
    everything = run_cli("logs", "tri", "1", "--root", root, "--tail", "0").stdout
    assert everything.count("\n") == 1_500_000
    assert run_cli("logs", "tri", "1", "--root", root, "--tail", "3").stdout.splitlines()[0] == \
        "step 1499997 loss 0.123456789"
