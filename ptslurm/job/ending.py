"""What a point's job does once the point ended (``job.run_point``): its TensorBoard HParams
summary (``hparams``), whatever keeps the sweep going from the jobs' side (a search's
promotions, the next wave when the wave job is gone), and ``sweep --notify``."""
import os
import sys
from pathlib import Path

from . import hparams
from .. import programs, schedulers
from ..records import Manifest
from .runtime import job_id


def after(manifest: Manifest, sweep_dir: Path, index: int) -> None:
    """A point ended: its TensorBoard HParams summary (``hparams``); on SLURM a search's
    promotions may be due (``ptslurm.submit.promote``) or a wave whose wave job is gone (``ptslurm.submit.waves``),
    run outside this job's SLURM settings. A failure is a warning: the point's end stands."""
    try:
        hparams.point_ended(sweep_dir, index)
    except Exception as exc:  # noqa: BLE001 - never the point's failure
        print(f"ptslurm: warning: the TensorBoard summary: {exc}", file=sys.stderr, flush=True)
    if not schedulers.of(manifest.executor).keeps_queue:
        return  # a local sweep is run and decided by the command that runs it
    wanted = [m for m, due in (("ptslurm.submit.promote", manifest.search or manifest.optuna),
                               ("ptslurm.submit.waves", manifest.waves)) if due]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SRUN_")) or k == "SLURM_CONF"}
    env["PTSLURM_DECIDER"] = job_id() or "?"
    for module in wanted:
        try:
            out = programs.python_module(module, [str(sweep_dir)], sweep_dir, 300, env)
            said = (out.stderr or "").strip().splitlines()
            if out.returncode != 0 or said:
                print(f"ptslurm: {module}: {said[-1] if said else out.returncode}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - never the point's failure
            print(f"ptslurm: warning: {module}: {exc}", file=sys.stderr, flush=True)


def notify(manifest: Manifest, sweep_dir: Path) -> None:
    """``sweep --notify``: this job may be the one that ended the sweep's last point."""
    if not manifest.notify:
        return
    try:
        from .housekeeping import notify_if_ended

        notify_if_ended(manifest, sweep_dir)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the point
        print(f"ptslurm: warning: --notify: {exc}", file=sys.stderr, flush=True)
