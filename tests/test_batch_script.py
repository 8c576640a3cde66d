"""The generated sbatch script, against a golden file. To regenerate after an intended
change: PTSLURM_REGEN_GOLDEN=1 python -m pytest tests/test_batch_script.py"""
import os
import sys
from pathlib import Path

import pytest

from ptslurm.executor import SlurmBackend, chunks
from ptslurm.spec import Resources

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
