"""Research code as it is written, never having heard of ptslurm: it reads ``data/x.txt``
relative to its working directory and writes ``result.txt``, ``runs/`` and Lightning's
``lightning_logs/version_<n>/`` there, and a file beside itself through ``__file__``. Every
point must complete with outputs of its own, in its storage dir's ``work/``, and nothing may
land in the shared code snapshot (whose check would then fail every later point)."""
import json
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, run_cli, wait_for

ORDINARY = TEST_EXPERIMENTS / "ordinary" / "exp.py"
LRS = ["0.1", "0.2", "0.3", "0.5"]


def _sweep(root: Path, *options: str) -> dict:
    proc = run_cli("sweep", "--root", root, "--json", *options, ORDINARY, "with", f"lr=[{','.join(LRS)}]",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _points_own_their_outputs(summary: dict) -> None:
    sweep_dir = Path(summary["sweep_dir"])
    states = [p["state"] for p in summary["points"]]
    assert states == ["completed"] * len(LRS), states
    for point, lr in zip(summary["points"], LRS):
        work = Path(point["storage_dir"]) / "work"
        assert (work / "result.txt").read_text() == f"{lr} {float(lr) * 3}\n", "its own result, from data/x.txt"
        assert len(list((work / "runs" / "exp").iterdir())) == 1, "one events file: this point's"
        assert sorted(p.name for p in (work / "lightning_logs").iterdir()) == ["version_0"], \
            "Lightning's version count starts afresh in each point"
        assert (work / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()[1] == \
            f"{lr},{float(lr) * 3}"
        assert (work / "data" / "x.txt").is_symlink(), "the code's files are linked, not copied"
        assert (work / "next_to_me.txt").read_text() == f"{lr}\n", "written beside __file__: the point's own"
    written = {"result.txt", "runs", "lightning_logs", "next_to_me.txt"}
    for code in sweep_dir.glob("code*"):
        if code.is_dir():
            assert not written & {p.name for p in code.rglob("*")}, "nothing written into the snapshot"
    assert run_cli("status", sweep_dir).returncode == 0


@pytest.mark.parametrize("packed", [False, True], ids=["one per job", "two per job"])
def test_relative_outputs_are_each_points_own_locally(tmp_path, no_slurm, packed):
    options = ["-j", "2"] + (["--points-per-job", "2"] if packed else [])
    _points_own_their_outputs(_sweep(tmp_path / "root", *options))


@pytest.mark.slurm
@pytest.mark.parametrize("packed", [False, True], ids=["one per job", "two per job"])
def test_relative_outputs_are_each_points_own_on_slurm(slurm_cluster, tmp_path, packed):
    summary = _sweep(tmp_path / "root", "--wait", *(["--points-per-job", "2"] if packed else []))
    _points_own_their_outputs(summary)
