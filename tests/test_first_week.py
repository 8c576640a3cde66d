"""What a newcomer meets in the first week (issue 19): which executor `auto` picks, the
profile that applies, and what an sbatch rejection says."""
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_cli, tree


@pytest.fixture
def controller_down(tmp_path, monkeypatch):
    """A slurm.conf whose controller nobody runs (SLURM's commands are installed here)."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        pytest.skip("SLURM's client commands are not installed")
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=down\nSlurmctldHost=gone-ctld(127.0.0.1)\nSlurmctldPort=6999\n"
                    "AuthType=auth/none\nCredType=cred/none\nNodeName=n1 CPUs=1 State=UNKNOWN\n"
                    "PartitionName=p Nodes=n1 Default=YES\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    return conf


def test_auto_with_the_controller_down_refuses_instead_of_running_on_the_login_node(tmp_path, controller_down):
    root = tmp_path / "runs"
    proc = run_cli("sweep", "--root", root, EXAMPLES / "tiny.py", "with", "lr=[0.05,0.1]", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "gone-ctld" in lines[0] and "--executor local" in lines[0]
    assert tree(root) == set(), "nothing was created"


def test_auto_with_the_controller_down_runs_locally_only_when_asked(tmp_path, controller_down):
    proc = run_cli("sweep", "--executor", "local", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py",
                   "with", "steps=5", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [p["state"] for p in json.loads(proc.stdout)["points"]] == ["completed"]


def test_no_slurm_commands_means_local(tmp_path, no_slurm):
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with", "steps=5")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["executor"] == "local"
    assert "no SLURM here" in proc.stderr


def test_the_first_line_names_the_profile_and_what_it_set(tmp_path, no_slurm):
    (tmp_path / "ptslurm.yaml").write_text("jobs: 2\nresources:\n  cpus: 3\n  time: '0-08:00'\n")
    proc = run_cli("sweep", "--dry-run", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert "ptslurm.yaml" in first and "cpus=3" in first and "jobs=2" in first and "time=0-08:00" in first
    proc = run_cli("sweep", "--dry-run", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", cwd=tmp_path / "..")
    assert proc.returncode == 0 and "profile" not in proc.stderr, "no profile here: nothing to name"


@pytest.mark.slurm
def test_an_sbatch_rejection_names_the_request_its_origin_and_the_nodes_limits(slurm_cluster, tmp_path):
    (tmp_path / "ptslurm.yaml").write_text("resources:\n  mem_gb: 1\n")
    root = tmp_path / "runs"
    proc = run_cli("sweep", "--root", root, "--cpus", "999", EXAMPLES / "tiny.py", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "cpus 999 (command line)" in line, line
    assert f"mem_gb 1 GB (profile {os.path.join('ptslurm.yaml')})" in line, line
    assert "the largest node of partition 'debug' has" in line and "CPUs" in line, line
    assert tree(root) == set()


@pytest.mark.slurm
def test_init_writes_a_profile_that_fits_the_clusters_nodes(slurm_cluster, tmp_path):
    assert run_cli("init", ".", cwd=tmp_path).returncode == 0
    import yaml

    res = yaml.safe_load((tmp_path / "ptslurm.yaml").read_text())["resources"]
    out = __import__("subprocess").run(["sinfo", "-h", "-N", "-p", "debug", "-o", "%c %m"], capture_output=True,
                                       text=True).stdout.split()
    cpus, mem_mb = int(out[0]), int(out[1])
    assert res["cpus"] <= cpus and res["mem_gb"] * 1024 <= mem_mb


def test_status_during_an_outage_says_the_scheduler_did_not_answer(tmp_path, no_slurm, monkeypatch):
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with", "steps=5")
    sweep_dir = json.loads(proc.stdout)["sweep_dir"]
    manifest = json.loads((Path(sweep_dir) / "manifest.json").read_text())
    manifest["executor"] = "slurm"  # a SLURM sweep, read while the controller is down
    (Path(sweep_dir) / "manifest.json").write_text(json.dumps(manifest))
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=down\nSlurmctldHost=gone-ctld(127.0.0.1)\nSlurmctldPort=6999\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    proc = run_cli("status", sweep_dir)
    assert proc.returncode == 0 and "controller did not answer" in proc.stderr, proc.stderr


@pytest.fixture
def not_configured(monkeypatch):
    """SLURM's client commands installed, and no configuration at all: no $SLURM_CONF, no
    slurm.conf (a fresh machine after `apt install slurm-client`)."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        pytest.skip("SLURM's client commands are not installed")
    if any(Path(p).exists() for p in ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf")):
        pytest.skip("this machine has a slurm.conf")
    monkeypatch.delenv("SLURM_CONF", raising=False)


def test_slurm_installed_but_not_configured_is_no_slurm_here(tmp_path, not_configured):
    from ptslurm.schedulers import commands

    assert commands.slurm_here() == ("none", "")
    dry = run_cli("sweep", "--dry-run", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with", "lr=[0.05,0.1]")
    assert dry.returncode == 0 and "does not answer" not in dry.stderr, dry.stderr
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with", "steps=5")
    assert proc.returncode == 0, proc.stderr
    assert "no SLURM here" in proc.stderr
    assert [p["state"] for p in json.loads(proc.stdout)["points"]] == ["completed"]


@pytest.mark.parametrize("said, here", [
    ("scontrol: error: fetch_config: DNS SRV lookup failed\nscontrol: fatal: Could not establish a configuration "
     "source\n", "none"),
    ("scontrol: fatal: Unable to process configuration file\n", "none"),
    ("Slurmctld(primary) at ctld is DOWN\n", "down"),
])
def test_what_the_controller_check_makes_of_scontrols_words(tmp_path, monkeypatch, said, here):
    """Not configured is "no SLURM here"; a configured controller that does not answer is down."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "scontrol"):
        (bin_dir / name).write_text(f"#!/bin/sh\nprintf '%s' {said!r} >&2\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_CONF", raising=False)
    from ptslurm.schedulers import commands

    assert commands.slurm_here()[0] == here
