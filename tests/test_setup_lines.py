"""submitit's `slurm_setup` and `srun_args`, the habit of sites that need `module load ...`
inside the job: setup lines and extra srun arguments from the profile, the sweep file (top and
sub-grid) and the command line, joined in that order, shown by the dry run and run by the job."""
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES, TEST_EXPERIMENTS, run_cli, wait_for, read_status

TINY = EXAMPLES / "tiny.py"


def test_setup_lines_join_in_order_and_show_in_the_dry_run(tmp_path, no_slurm):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"resources": {"setup": ["module load cuda/12"],
                                                                   "srun_args": ["--cpu-bind=none"]}}))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "grid": {"lr": [0.1]}, "resources": {"setup": "source env.sh"},
        "subgrids": {"big": {"grid": {"lr": [0.2]}, "resources": {"setup": ["export BIG=1"], "gpus": 1}}}}))
    proc = run_cli("sweep", "--dry-run", "--executor", "slurm", "--root", tmp_path / "runs", "--profile",
                   tmp_path / "p.yaml", "-f", tmp_path / "sweep.yaml", "--setup", "echo from the command line",
                   "--srun-arg=--label", TINY)
    assert proc.returncode == 0, proc.stderr
    scripts = proc.stdout.split("#!/bin/bash")[1:]
    assert len(scripts) == 1, proc.stdout  # the sub-grid's point (a sweep file's top grid is its base)
    big = scripts[0].split("# setup\n")[1].split("\n\n")[0].splitlines()
    assert big == ["module load cuda/12", "source env.sh", "export BIG=1", "echo from the command line"], scripts[1]
    srun = next(line for line in scripts[0].splitlines() if line.startswith("srun "))
    plain = run_cli("sweep", "--dry-run", "--executor", "slurm", "--root", tmp_path / "runs", "--profile",
                    tmp_path / "p.yaml", "--setup", "echo from the command line", TINY).stdout
    assert plain.split("# setup\n")[1].split("\n\n")[0].splitlines() == ["module load cuda/12",
                                                                         "echo from the command line"], plain
    assert "--cpu-bind=none --label" in srun, srun


@pytest.mark.slurm
def test_the_job_runs_its_setup_lines_and_srun_arguments(slurm_cluster, tmp_path):
    seen = tmp_path / "setup-ran"
    proc = run_cli("sweep", "--json", "--wait", "--root", tmp_path / "runs", "--setup", f"echo setup-$SLURM_JOB_ID >> {seen}",
                   "--setup", "export SETUP_SAYS=hello", "--srun-arg=--label", TEST_EXPERIMENTS / "probe.py", "with",
                   "x=[1,2]", env={"PTSLURM_POLL_S": "0.5"})
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert len(seen.read_text().splitlines()) == 2, "each job ran the setup lines once"
    log = next((Path(summary["sweep_dir"]) / "slurm").glob(f"{summary['points'][0]['job_id']}_0_log.out")).read_text()
    assert "0: " in log and "Result: 1" in log, log[-800:]  # srun --label prefixes each line with its task
    manifest = json.loads((Path(summary["sweep_dir"]) / "manifest.json").read_text())
    assert manifest["resources"]["setup"][1] == "export SETUP_SAYS=hello"
