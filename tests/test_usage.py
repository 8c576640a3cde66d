"""What each point used (issue 30), end to end: a point that holds a known amount of memory
shows it in `collect` and `status --json`, locally and on the test cluster, and `status`
hints at a smaller --mem when the point used a small share of what it asked for."""
import json

import pytest

from conftest import TEST_EXPERIMENTS, run_cli, wait_for

HOG = TEST_EXPERIMENTS / "hog.py"


def used_mb(sweep_dir):
    rows = json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)
    return [r.get("max_rss_mb") for r in rows]


def test_a_local_point_that_holds_300_mb_shows_its_peak_memory(tmp_path, no_slurm):
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", HOG, "with", "mb=[300,50]",
                   env={"PTSLURM_SAMPLE_S": "0.2"})
    assert proc.returncode == 0, proc.stderr
    sweep_dir = json.loads(proc.stdout)["sweep_dir"]
    big, small = used_mb(sweep_dir)
    assert 300 <= big <= 300 + 400 and 50 <= small <= 50 + 400 and big - small >= 240, (big, small)
    usage = json.loads(run_cli("status", sweep_dir, "--json").stdout)[0]["usage"]
    assert usage["samples"] >= 2 and "gpus" not in usage, usage


@pytest.mark.slurm
def test_a_slurm_point_that_used_little_of_its_memory_gets_a_hint_naming_mem(slurm_cluster, tmp_path):
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", "--mem", "8", HOG, "with", "mb=300",
                   env={"PTSLURM_SAMPLE_S": "0.2"})
    assert proc.returncode == 0, proc.stderr
    sweep_dir = json.loads(proc.stdout)["sweep_dir"]
    wait_for("the point to end", lambda: json.loads(run_cli("status", sweep_dir, "--json").stdout)[0]["state"]
             == "completed", timeout=120)
    (peak,) = used_mb(sweep_dir)
    assert 300 <= peak <= 300 + 400, peak
    table = run_cli("status", sweep_dir).stdout
    hint = [line for line in table.splitlines() if line.startswith("hint: point 0 used")]
    assert hint == [f"hint: point 0 used {peak / 1024:.1f} of the 8 GB of memory it asked for: --mem 1 would do"], table
