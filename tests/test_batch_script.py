"""The generated sbatch script, against a golden file. To regenerate after an intended
change: PTSLURM_REGEN_GOLDEN=1 python -m pytest tests/test_batch_script.py"""
import os
import sys
from pathlib import Path

import pytest

from ptslurm.schedulers.backends import SlurmBackend, chunks
from ptslurm.records.spec import Resources

pytestmark = pytest.mark.fast

GOLDEN = Path(__file__).parent / "golden" / "batch_script.sh"


def render() -> str:
    res = Resources(partition="gpu", gpus=2, cpus=8, mem_gb=32, timeout_min=90, account="lab", qos="normal",
                    constraint="a100", array_parallelism=4, signal_delay_s=120,
                    sbatch_args={"mail-type": "END"})
    script = SlurmBackend(Path("/SWEEP DIR"), res, job_name="exp-1234",
                          workdir=Path("/SWEEP DIR/code/exps")).batch_script(25)
    return script.replace(sys.executable, "PYTHON")


def test_batch_script_matches_golden_file():
    text = render()
    if os.environ.get("PTSLURM_REGEN_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), (
        "the batch script changed; if intended, regenerate with "
        "PTSLURM_REGEN_GOLDEN=1 python -m pytest tests/test_batch_script.py")


def test_the_script_runs_python_under_srun_appends_logs_and_asks_for_a_signal():
    text = render()
    assert "\nsrun --unbuffered" in text
    assert "#SBATCH --open-mode=append" in text
    assert "#SBATCH --signal=USR2@120" in text
    assert "#SBATCH --array=0-24%4" in text
    assert "#SBATCH --gres=gpu:2" in text and "#SBATCH --time=90" in text
    assert "#SBATCH --mem=32G\n" in text, "memory is in GB, not sbatch's default MB"


def test_chunks_respect_max_array_size():
    assert chunks(list(range(25)), 10) == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


# --sbatch can never silently change what ptslurm relies on (issue 16)
OWNED = {"signal": "--signal-delay", "array": "--array-parallelism", "time": "--time", "output": "ptslurm logs",
         "error": "ptslurm logs", "open-mode": "appended", "requeue": "--max-requeues", "chdir": "snapshot",
         "comment": "marks its jobs", "job-name": "--name", "partition": "--partition", "mem": "--mem",
         "cpus-per-task": "--cpus", "ntasks-per-node": "--tasks-per-node", "nodes": "--nodes", "qos": "--qos",
         "account": "--account", "constraint": "--constraint", "export": "environment", "wrap": "batch script"}


@pytest.mark.parametrize("key", sorted(OWNED) + ["-t", "J", "--signal", "open_mode", "-a", "c"])
def test_an_sbatch_option_ptslurm_sets_is_refused_naming_what_to_use(key):
    from ptslurm.errors import UsageError
    from ptslurm.records.spec import check_sbatch_args, sbatch_key

    with pytest.raises(UsageError, match=f"ptslurm sets --{sbatch_key(key)} itself") as err:
        check_sbatch_args(Resources(sbatch_args={key: "x"}))
    assert OWNED[sbatch_key(key)] in str(err.value)


def script_of(res: Resources) -> str:
    from ptslurm.records.spec import check_sbatch_args

    checked, _notes = check_sbatch_args(res)
    return SlurmBackend(Path("/S"), checked, job_name="j").batch_script(2)


@pytest.mark.parametrize("given,replaced", [("mem-per-cpu", "mem_gb"), ("mem-per-gpu", "mem_gb"),
                                            ("mem_per_cpu", "mem_gb"), ("cpus-per-gpu", "cpus")])
def test_an_exclusive_option_the_user_gave_replaces_ptslurms_with_a_note(given, replaced):
    from ptslurm.errors import UsageError
    from ptslurm.records.spec import check_sbatch_args

    res = Resources(cpus=4, mem_gb=16, sbatch_args={given: "2G"}, origins={"mem_gb": "profile p.yaml",
                                                                            "cpus": "profile p.yaml"})
    checked, notes = check_sbatch_args(res)
    assert getattr(checked, replaced) is None and len(notes) == 1 and "p.yaml" in notes[0], notes
    text = script_of(res)
    assert f"#SBATCH --{given.replace('_', '-')}=2G" in text
    assert ("#SBATCH --mem=" not in text) if replaced == "mem_gb" else ("--cpus-per-task" not in text)
    both = Resources(cpus=4, mem_gb=16, sbatch_args={given: "2G"},
                     origins={replaced: "command line", given: "command line"})
    with pytest.raises(UsageError, match="only one of them"):
        check_sbatch_args(both)


def test_flags_without_value_and_empty_values():
    from ptslurm.errors import UsageError
    from ptslurm.records.spec import check_sbatch_args

    assert "#SBATCH --exclusive\n" in script_of(Resources(sbatch_args={"exclusive": True}))
    for empty in ("", None):
        with pytest.raises(UsageError, match="give --sbatch exclusive for a flag"):
            check_sbatch_args(Resources(sbatch_args={"exclusive": empty}))
    text = script_of(Resources(mem_gb=16, sbatch_args={"mail-type": "END"}))
    assert "#SBATCH --mail-type=END" in text and "#SBATCH --mem=16G" in text, "other options pass through"


@pytest.mark.parametrize("what", ["waves", "promote"])
def test_the_wave_and_decision_jobs_run_a_module_that_exists(what, tmp_path, monkeypatch):
    """The small job that submits the next wave (or decides promotions) runs `python -m
    MODULE SWEEP_DIR`: the module must be importable by that name (a move of the module left
    every wave job failing at once, and only the SLURM tier noticed)."""
    import importlib.util

    from ptslurm.schedulers import commands

    asked = []
    monkeypatch.setattr(commands, "sbatch_wrap", lambda options, command: asked.append((options, command)) or "7")
    backend = SlurmBackend(tmp_path / "sweep", Resources(partition="debug"), job_name="exp-1")
    assert backend.submit_wave_job(["5", "6"], "ptslurm:abc", what) == "7"
    (options, command), = asked
    module = command[command.index("-m") + 1]
    assert importlib.util.find_spec(module) is not None, module
    assert module.endswith("." + what) and command[-1] == str(tmp_path / "sweep")
    assert "--dependency=afterany:5:6" in options and f"--comment=ptslurm:abc:{what}" in options


def test_a_controller_at_its_job_count_limit_is_named_not_the_resources(tmp_path, monkeypatch):
    """sbatch's answer when the controller holds MaxJobCount jobs (captured from the test
    cluster with MaxJobCount=30 and 20 jobs queued; slurmctld logged "job_allocate:
    MaxJobCount limit from slurm.conf reached (30)"): the error says so, where it used to
    tell the user to fix resource options that were fine."""
    import subprocess

    from ptslurm.errors import SubmissionRejected
    from ptslurm.schedulers import commands

    answer = subprocess.CompletedProcess(["sbatch"], 1, "", "allocation failure: Resource temporarily unavailable\n")
    monkeypatch.setattr(commands, "sbatch_test_only", lambda script: answer)
    monkeypatch.setattr(commands, "max_array_size", lambda: 1001)
    monkeypatch.setattr(commands, "node_limits", lambda partition: None)
    with pytest.raises(SubmissionRejected) as err:
        SlurmBackend(tmp_path / "sweep", Resources(), job_name="exp-1").validate(20)
    assert "takes no more jobs now" in str(err.value) and "MaxJobCount" in str(err.value)
    assert "fix the resource options" not in str(err.value)
