"""Every command in README.md runs: the quick start in a fresh virtualenv, the examples in a
copy of the repository, and the test command is exactly what .ci/run calls."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
BLOCK = re.compile(r"<!-- test:(\w+) -->\n```(?:bash|python)\n(.*?)```", re.S)


def blocks(kind):
    return [b for k, b in BLOCK.findall(README) if k == kind]


def repo_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def test_readme_has_its_commands():
    assert len(blocks("venv")) == 1 and len(blocks("ci")) == 1 and blocks("run")


def test_the_fast_tier_runs_in_seconds_without_slurm():
    """README's fast-tier command: the marked tests only, none skipped, SLURM not touched."""
    (command,) = blocks("fast")
    proc = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "skipped" not in summary and "failed" not in summary, summary
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                "-m", "fast"], cwd=REPO, capture_output=True, text=True, timeout=300).stdout
    counts = re.search(r"(\d+)/(\d+) tests collected", collected)
    assert counts and passed == int(counts.group(1)) < int(counts.group(2)), (summary, collected[-300:])


def test_the_test_command_is_what_ci_runs():
    (command,) = blocks("ci")
    ci = (REPO / ".ci" / "run").read_text()
    assert command.strip() in ci.splitlines()


@pytest.mark.parametrize("block", blocks("run"))
def test_readme_examples_run(block, tmp_path, no_slurm):
    work = repo_copy(tmp_path / "repo")
    env = dict(os.environ, STORAGE_ROOT=str(tmp_path / "runs"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    lines = block.strip().splitlines()
    # a dry run proves the configs build; the README's sweeps must also run to the end
    lines += [ln.replace(" --dry-run", "") for ln in lines if ln.startswith("ptslurm sweep --dry-run")]
    for line in lines:
        proc = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
        assert "error" not in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize("block", blocks("python"))
def test_readme_python_runs(block, tmp_path, no_slurm):
    work = repo_copy(tmp_path / "repo")
    (work / "readme_example.py").write_text(block)
    proc = subprocess.run([sys.executable, "readme_example.py"], cwd=work, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, STORAGE_ROOT=str(tmp_path / "runs")))
    assert proc.returncode == 0, proc.stderr
    assert "['completed', 'completed']" in proc.stdout and "0.1 completed" in proc.stdout, proc.stdout


def test_ci_proves_the_quick_start_outside_pytest():
    """The quick start installs software: CI's run of the test command runs it (tests/quickstart.sh,
    which reads the block from this README), never pytest."""
    run_sh = (REPO / "tests" / "run.sh").read_text()
    assert "bash tests/quickstart.sh" in run_sh and 'if [ -n "${CI:-}" ]' in run_sh
    assert "test:venv" in (REPO / "tests" / "quickstart.sh").read_text()
