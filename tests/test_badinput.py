"""Bad input found by an SRE's fuzzing (issue 20): one line, exit 2, nothing created, never a
traceback or a hang."""
import json
import os
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_cli, tree


def one_line(proc, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.fixture
def done(tmp_path, no_slurm):
    proc = run_cli("sweep", "--json", "--name", "d", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with",
                   "lr=[0.05,0.1]", "steps=5")
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "runs", json.loads(proc.stdout)


@pytest.mark.parametrize("which", ["metrics", "status"])
def test_a_deeply_nested_json_file_is_damage_not_a_crash(done, which):
    root, summary = done
    storage_dir = Path(summary["points"][0]["storage_dir"])
    target = storage_dir / ("sacred/1/metrics.json" if which == "metrics" else "ptslurm_status.json")
    target.write_text("[" * 100_000 + "]" * 100_000)
    said = {}
    for args in (["status", "d", "--root", root], ["collect", "d", "--root", root], ["list", root]):
        proc = run_cli(*args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        said[args[0]] = proc.stderr
    assert str(target) in said["collect" if which == "metrics" else "status"], "the damaged file is named"


def test_huge_names_and_unwritable_outputs(done, tmp_path):
    root, _ = done
    assert "no sweep" in one_line(run_cli("status", "x" * 5000, "--root", root))
    assert "no usable path" in one_line(run_cli("sweep", "--root", "/tmp/" + "y" * 5000, EXAMPLES / "tiny.py"))
    assert "cannot write -o" in one_line(run_cli("collect", "d", "--root", root, "-o", "/proc/x"))


@pytest.mark.parametrize("profile, key", [("jobs: x", "jobs"), ("resources:\n  signal_delay_s: abc", "signal_delay_s"),
                                          ("resources:\n  mem_gb: abc", "mem_gb"), ("resources:\n  cpus: [1]", "cpus")])
def test_profile_values_of_the_wrong_type(tmp_path, no_slurm, profile, key):
    (tmp_path / "ptslurm.yaml").write_text(profile + "\n")
    line = one_line(run_cli("sweep", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", cwd=tmp_path))
    assert f"{key} must be" in line and "ptslurm.yaml" in line
    assert tree(tmp_path / "runs") == set()


def test_an_experiment_that_loops_at_import_is_stopped(tmp_path, no_slurm):
    exp = tmp_path / "exp.py"
    exp.write_text("from sacred import Experiment\nex = Experiment('loops')\nwhile True:\n    pass\n")
    proc = run_cli("sweep", "--root", tmp_path / "runs", exp, env={"PTSLURM_IMPORT_TIMEOUT_S": "2"}, timeout=30)
    assert "took over 2 s" in one_line(proc)
    assert tree(tmp_path / "runs") == set()


def test_a_value_with_a_newline_stays_on_one_line(tmp_path, no_slurm):
    proc = run_cli("sweep", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with", "nope\nkey=1")
    assert "\\n" in one_line(proc)


@pytest.mark.parametrize("given", [["with", "storage_dir=/tmp/elsewhere"], ["with", "storage_dir=['/a','/b']"],
                                   ["--storage-key", "out_dir", "with", "out_dir=/x"]])
def test_a_point_that_sets_the_storage_key_is_refused_not_overwritten(tmp_path, no_slurm, given):
    """ptslurm fills the storage key with each point's own dir: a value the user gave for it
    would be replaced without a word."""
    exp = tmp_path / "proj" / "exp.py"
    exp.parent.mkdir()
    exp.write_text("from sacred import Experiment\nex = Experiment('keys')\n\n@ex.config\ndef config():\n"
                   "    storage_dir = None\n    out_dir = None\n    trainer = {'lr': 0.1}\n\n"
                   "@ex.automain\ndef main():\n    return 1\n")
    head, tail = given[:given.index("with")], given[given.index("with"):]
    line = one_line(run_cli("sweep", "--root", tmp_path / "runs", *head, exp, *tail))
    key = tail[1].split("=")[0]
    assert f"sets {key}=" in line and "each point's own storage dir" in line and "--root" in line, line
    assert tree(tmp_path / "runs") == set()
    # every other key is the user's to set: only the storage key is ptslurm's
    assert run_cli("sweep", "--root", tmp_path / "runs", *head, exp, "with", "trainer.lr=0.2").returncode == 0
