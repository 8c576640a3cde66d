"""Everything ptslurm uses of submitit, in one place.

ptslurm relies on (checked by ``check()``, which the test suite runs against the installed
submitit; ``setup.cfg`` pins the range it was tested with):

- ``SlurmExecutor(folder, max_num_timeout)``, ``update_parameters``, ``batch()``, ``submit``:
  one ``sbatch`` per job array;
- ``submitit.slurm.slurm._make_sbatch_string`` (private): the batch script of an array, shown
  by ``--dry-run`` and checked with ``sbatch --test-only`` before anything is created;
- ``JobPaths(folder, job_id, task_id)``: where submitit puts a task's pickle and log;
- ``DelayedSubmission(...).dump(path)``: the pickle a queued task loads (written again for
  tasks a killed submission queued but never finished).

One requeue protocol: submitit installs its own signal handler, which checkpoints and
requeues a job up to ``max_num_timeout`` times. ptslurm replaces that handler at the start
of every attempt (``interrupt.install``) and decides requeues itself, within the sweep's
``--max-requeues``. submitit's counter is therefore set to 0: if a stop signal arrived in
the instant before ptslurm's handler is in place, submitit would not requeue the job on its
own count.
"""
import inspect
import shlex
import sys
import typing as tp
from pathlib import Path

from ..errors import AdapterError

TESTED = "submitit>=1.5.4,<1.6"  # the range the suite ran against (setup.cfg pins the same)
SUBMITIT_REQUEUES = 0  # see the module docstring: ptslurm's handler owns requeues


def check() -> str:
    """Raise AdapterError naming every part of the installed submitit that changed; return
    its version."""
    import submitit
    from submitit.core import utils
    from submitit.slurm import slurm

    problems = []
    make = getattr(slurm, "_make_sbatch_string", None)
    if make is None:
        problems.append("submitit.slurm.slurm._make_sbatch_string is gone")
    else:
        params = inspect.signature(make).parameters
        for name in ("command", "folder", "map_count", "job_name", "signal_delay_s", "stderr_to_stdout", "time",
                     "additional_parameters", "gres", "array_parallelism", "setup", "srun_args"):
            if name not in params:
                problems.append(f"_make_sbatch_string no longer takes {name}")
    for name in ("max_num_timeout", "python"):
        if name not in inspect.signature(submitit.SlurmExecutor).parameters:
            problems.append(f"SlurmExecutor no longer takes {name}")
    command = getattr(submitit.SlurmExecutor, "_submitit_command_str", None)
    if command is None or "submitit.core._submit" not in inspect.getsource(command.fget):
        problems.append("SlurmExecutor's runner command is no longer PYTHON -u -m submitit.core._submit FOLDER")
    for name in ("submitted_pickle", "stdout"):
        if not hasattr(utils.JobPaths, name):
            problems.append(f"JobPaths.{name} is gone")
    if "task_id" not in inspect.signature(utils.JobPaths).parameters:
        problems.append("JobPaths no longer takes task_id")
    if not hasattr(utils.DelayedSubmission, "dump"):
        problems.append("DelayedSubmission.dump is gone")
    if problems:
        raise AdapterError(f"submitit {submitit.__version__} changed what ptslurm relies on "
                           f"({'; '.join(problems)}); install {TESTED} or update ptslurm/schedulers/submitit_adapter.py")
    return str(submitit.__version__)


# submitit's runner command is ``PYTHON -u -m submitit.core._submit FOLDER`` with PYTHON its
# ``python`` parameter: ptslurm puts its own first module before it (ptslurm/job/start.py)
PYTHON = f"{shlex.quote(sys.executable)} -u -m ptslurm.job.start"


def run_submitted(argv: tp.Sequence[str]) -> None:
    """Run submitit's job runner for ``argv`` (``-u -m submitit.core._submit FOLDER``)."""
    import runpy

    args = list(argv)
    at = args.index("-m") + 1 if "-m" in args[:-1] else None
    module = args[at] if at is not None else "submitit.core._submit"
    sys.argv = [module, *(args[at + 1:] if at is not None else args[-1:])]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def batch_script(folder: Path, count: int, parameters: tp.Mapping[str, tp.Any]) -> str:
    """The sbatch script submitit writes for an array of ``count`` tasks."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([PYTHON, "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return str(_make_sbatch_string(command=command, folder=folder, map_count=count, **parameters))


class ArraySubmitter:
    """Submits job arrays of ``call(*args)`` with fixed parameters; one sbatch per array."""

    def __init__(self, folder: Path, parameters: tp.Mapping[str, tp.Any]):
        import submitit

        self.parameters = dict(parameters)
        self.executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=SUBMITIT_REQUEUES, python=PYTHON)
        self.executor.update_parameters(**self.parameters)

    def submit(self, call: tp.Callable[..., tp.Any], args: tp.Sequence[tp.Tuple[tp.Any, ...]],
               comment: tp.Optional[str] = None) -> tp.List[str]:
        """One array, one task per ``args`` entry; its job ids (``A_t``) in order. Raises
        what submitit raises when sbatch refuses."""
        if comment is not None:
            extra = dict(self.parameters.get("additional_parameters") or {}, comment=comment)
            self.executor.update_parameters(additional_parameters=extra)
        with self.executor.batch():
            jobs = [self.executor.submit(call, *a) for a in args]
        return [str(job.job_id) for job in jobs]


def log_path(folder: Path, job_id: str, task: int = 0) -> Path:
    """Where submitit's batch script sends the output of job (or array task) ``job_id``;
    ``task``: the srun task (the rank of a distributed point)."""
    from submitit.core.utils import JobPaths

    return Path(JobPaths(folder, job_id=job_id, task_id=task).stdout)


def write_pickle(folder: Path, job_id: str, call: tp.Callable[..., tp.Any], args: tp.Tuple[tp.Any, ...]) -> bool:
    """Write the pickle task ``job_id`` loads, unless it is there; True when written."""
    from submitit.core.utils import DelayedSubmission, JobPaths

    path = Path(JobPaths(folder, job_id=job_id).submitted_pickle)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    DelayedSubmission(call, *args).dump(path)
    return True
