"""The Python API, for a notebook, a search driver or a test: a ``Client`` holds where sweeps
live and which scheduler runs them, chosen once (as httpx's ``Client(transport=...)`` or
submitit's ``Executor``); ``Client.sweep`` plans and submits a sweep and returns a ``Sweep``
whose points can be read, waited for, cancelled, resubmitted and collected. The command
line's verbs do the same work through the same functions.

    client = ptslurm.Client(root="runs")        # SLURM when a controller answers, else here
    sweep = client.sweep("exp.py", "lr=[1e-3,1e-4]", "batch_size=[16,32]", resources={"gpus": 1})
    sweep.wait()
    rows = sweep.collect()

Errors are ``ptslurm.PtslurmError`` with the message the command line prints.
"""
import dataclasses
import typing as tp
from pathlib import Path

from .errors import UsageError

if tp.TYPE_CHECKING:
    from .schedulers.backends import BackendFactory
    from .plan.make import Plan
    from .records import Manifest


class Client:
    """Where sweeps live (``root``: else ``$STORAGE_ROOT``, else ``~/ptslurm-runs``) and who
    runs them: ``executor`` ``"slurm"``, ``"local"`` or ``"auto"`` (SLURM when a controller
    answers); ``scheduler``, a backend factory that replaces SLURM's commands (the tests
    hand in ``backends.FakeCluster().backend``)."""

    def __init__(self, root: tp.Optional[tp.Union[str, Path]] = None, executor: str = "auto",
                 scheduler: tp.Optional["BackendFactory"] = None):
        if executor not in ("auto", "slurm", "local"):
            raise UsageError(f"unknown executor {executor!r}; use slurm, local or auto")
        self.root = None if root is None else str(root)
        self.executor = executor
        self.scheduler = scheduler

    def _request(self, experiment: tp.Union[str, Path], updates: tp.Sequence[str], sweep_file: tp.Optional[str],
                 name: tp.Optional[str], resources: tp.Optional[tp.Mapping[str, tp.Any]], jobs: int,
                 dry_run: bool) -> tp.Any:
        from .plan.make import SweepRequest
        from .records.spec import Resources

        fields = {f.name for f in dataclasses.fields(Resources)}
        unknown = sorted(set(resources or {}) - fields)
        if unknown:
            raise UsageError(f"unknown resource(s) {', '.join(unknown)}; use fields of ptslurm's Resources: "
                             f"{', '.join(sorted(fields - {'origins'}))}")
        return SweepRequest(experiment=str(experiment), with_tokens=tuple(updates), sweep_file=sweep_file, name=name,
                            root=self.root, executor=self.executor, jobs=jobs,
                            resources=Resources(**dict(resources or {})), dry_run=dry_run)

    def plan(self, experiment: tp.Union[str, Path], *updates: str, sweep_file: tp.Optional[str] = None,
             name: tp.Optional[str] = None, resources: tp.Optional[tp.Mapping[str, tp.Any]] = None) -> "Plan":
        """Every check of ``ptslurm sweep --dry-run`` (the pre-flight included); nothing is
        created. ``updates``: the words after ``with``, in sacred's syntax."""
        from .submit.sweep import run

        return run(self._request(experiment, updates, sweep_file, name, resources, 1, True),
                   make=self.scheduler).plan

    def sweep(self, experiment: tp.Union[str, Path], *updates: str, sweep_file: tp.Optional[str] = None,
              name: tp.Optional[str] = None, resources: tp.Optional[tp.Mapping[str, tp.Any]] = None,
              jobs: int = 1) -> "Sweep":
        """``ptslurm sweep``: queue every point (or run them here, ``jobs`` at a time, when the
        executor is local); the same call again finishes or reuses the same sweep."""
        from .submit.sweep import run

        outcome = run(self._request(experiment, updates, sweep_file, name, resources, jobs, False),
                      make=self.scheduler)
        assert outcome.sweep_dir is not None
        return Sweep(outcome.sweep_dir, self)

    def open(self, sweep: tp.Union[str, Path]) -> "Sweep":
        """An existing sweep, by name (under ``root``) or directory."""
        from .records.manifests import find_sweep

        return Sweep(find_sweep(str(sweep), self.root), self)


class Sweep:
    """A handle on one sweep; every call reads its files (and asks its scheduler) afresh."""

    def __init__(self, directory: tp.Union[str, Path], client: Client):
        self.dir = Path(directory)
        self.client = client

    def __repr__(self) -> str:
        return f"Sweep({str(self.dir)!r})"

    @property
    def manifest(self) -> "Manifest":
        from .records.manifests import read_manifest

        return read_manifest(self.dir)

    def status(self) -> tp.List[tp.Dict[str, tp.Any]]:
        """``ptslurm status --json``: one dict per point (index, state, job, storage dir,
        attempts, progress...)."""
        from .read.state import status_rows

        manifest = self.manifest
        return [r.to_json() for r in status_rows(manifest, self._rows(manifest))]

    def states(self) -> tp.List[str]:
        """Each point's state (``"pending"``, ``"running"``, ``"completed"``, ...)."""
        return [r.state.value for r in self._rows(self.manifest)]

    def storage_dir(self, index: int) -> Path:
        return Path(self.manifest.points[index].storage_dir)

    def wait(self) -> tp.List[str]:
        """Until every point has ended (``$PTSLURM_POLL_S`` seconds apart); their states."""
        from .submit.sweep import wait_for

        return [r.state.value for r in wait_for(self.dir, make=self.client.scheduler)]

    def cancel(self, points: tp.Optional[tp.Sequence[int]] = None) -> tp.List[int]:
        """``ptslurm cancel``: the points (default: all) that were still going."""
        from .submit.lifecycle import cancel

        return cancel(self.dir, self._indices(points), make=self.client.scheduler)

    def resubmit(self, points: tp.Sequence[int], refresh_code: bool = False,
                 keep_code: bool = False) -> tp.Dict[int, str]:
        """``ptslurm resubmit``: each point again, in its own storage dir (resuming from its
        checkpoints); point -> job id (``"local"`` for points run here)."""
        from .submit.lifecycle import resubmit

        return resubmit(self.dir, self._indices(points), refresh_code, keep_code, make=self.client.scheduler)

    def collect(self) -> tp.List[tp.Dict[str, tp.Any]]:
        """``ptslurm collect``: one record per point (varied values, state, result, each
        metric's final and best value, storage dir)."""
        from .read.results import collect

        return collect([self.dir])

    def _rows(self, manifest: "Manifest") -> tp.Any:
        from .read.state import sweep_states
        from .submit.submission import scheduler_of

        return sweep_states(self.dir, manifest, scheduler_of(self.dir, manifest, self.client.scheduler))

    def _indices(self, points: tp.Optional[tp.Sequence[int]]) -> tp.List[int]:
        count = len(self.manifest.points)
        chosen = list(range(count)) if points is None else [int(i) for i in points]
        bad = [i for i in chosen if not 0 <= i < count]
        if bad:
            raise UsageError(f"no point {bad[0]} in this sweep (it has points 0-{count - 1})")
        return chosen
