"""What happens to a sweep as a whole once its points have ended: the one notification
(``sweep --notify``), sent by the job that ends last, and ``ptslurm delete``."""
import os
import shutil
import stat
import sys
import typing as tp
from pathlib import Path

from .. import programs
from ..records import locks, manifests
from ..read.state import sweep_states
from ..errors import UsageError
from ..records import TERMINAL, Manifest, State, read_intent, read_status

NOTIFIED = ".ptslurm-notified"  # in the sweep dir: <NOTIFIED>-s<submission> once the command ran


def notify_if_ended(manifest: Manifest, sweep_dir: Path) -> bool:
    """Run the sweep's ``--notify`` command when every point has ended, from the status files
    alone (no daemon, no scheduler call): the job that records the last end sends it, and an
    O_EXCL marker per submission makes it one notification even when two points end at once
    (a resubmission notifies again when its points have ended). True when it ran."""
    if not manifest.notify:
        return False
    states = []
    submission = 0
    for entry in manifest.points:  # stops at the first point still going: most ends read a few files
        status, asked = read_status(entry.path), read_intent(entry.path).submission
        # an end recorded before the point was resubmitted is not its end: its new job is to come
        if status.state not in TERMINAL or status.submission < asked:
            return False
        states.append(status.state)
        submission = max(submission, asked)
    marker = Path(sweep_dir) / f"{NOTIFIED}-s{submission}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    counts = {s.value: states.count(s) for s in State if states.count(s)}
    env = dict(os.environ, PTSLURM_SWEEP=str(sweep_dir), PTSLURM_SWEEP_NAME=manifest.name,
               PTSLURM_COUNTS=" ".join(f"{k} {v}" for k, v in counts.items()))
    try:
        done = programs.run_notify(manifest.notify, env)
        outcome = f"exit status {done.returncode}" + (f": {done.stderr.strip()[-300:]}" if done.returncode else "")
    except Exception as exc:  # noqa: BLE001 - a notification never fails the point
        outcome = f"it could not run: {exc}"
    print(f"ptslurm: every point of sweep {manifest.name} has ended ({env['PTSLURM_COUNTS']}); ran --notify "
          f"({outcome})", file=sys.stderr, flush=True)
    return True


def delete(sweep_dir: Path, yes: bool) -> tp.List[Path]:
    """Remove a sweep's storage dirs and then its folder (``yes``), or only say which
    (``yes`` False). Refused for another user's sweep and while any point is queued,
    running or waiting. A delete killed half-way is finished by running it again."""
    manifests.require_own(sweep_dir, "deletes")
    with locks.manifest_lock(sweep_dir):
        manifest = manifests.read_manifest(sweep_dir)
        busy = [r.index for r in sweep_states(sweep_dir, manifest) if r.state not in TERMINAL]
        if busy:
            shown = ", ".join(map(str, busy[:10])) + (", ..." if len(busy) > 10 else "")
            raise UsageError(f"sweep {manifest.name!r} has {len(busy)} point(s) queued, running or waiting "
                             f"({shown}); nothing was deleted: `ptslurm cancel {sweep_dir}` first")
        dirs = [Path(e.storage_dir) for e in manifest.points]
        for index, d in enumerate(dirs):
            try:
                st = os.lstat(d)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                raise UsageError(f"storage dir {str(d)!r} of point {index} is not a folder of yours (a symlink, "
                                 f"or another user's): nothing was deleted; look at it and remove it yourself")
        paths = [d for d in dirs if os.path.lexists(d)] + [Path(sweep_dir)]
        if not yes:
            return paths
        for d in paths[:-1]:
            shutil.rmtree(d)
    # the sweep dir last (its lock file too): a delete killed before this is run again
    shutil.rmtree(sweep_dir)
    return paths
