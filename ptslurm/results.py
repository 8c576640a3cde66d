"""Point states from the files alone (each storage dir's ptslurm_status.json), reconciled
with one squeue call for the whole sweep when SLURM is reachable. Read-only."""
import typing as tp
from pathlib import Path

from . import storage

TERMINAL = ("completed", "failed", "cancelled", "timeout", "preempted", "interrupted", "lost")
ORDER = ("pending", "running", "requeued", "completed", "failed", "cancelled", "timeout", "preempted",
         "interrupted", "lost")


def read_status(storage_dir: tp.Union[str, Path]) -> dict:
    try:
        return storage.read_json(Path(storage_dir) / storage.STATUS)
    except (OSError, ValueError):
        return {}


def point_states(manifest: dict, queue: tp.Optional[tp.Dict[str, str]] = None) -> tp.List[dict]:
    """One record per point: index, state, attempts, job id, storage dir. ``queue`` (job id
    -> SLURM state, from one squeue call made BEFORE reading the files) turns a point that
    is neither in the queue nor finished on disk into ``lost``."""
    rows = []
    for entry in manifest["points"]:
        status = read_status(entry["storage_dir"])
        state = status.get("state", "pending")
        job = entry.get("job_id")
        if queue is not None and job and state not in TERMINAL:
            queued = queue.get(job)
            if queued is None:
                state = "lost"
            elif queued in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED") and state == "running":
                state = "requeued"
        rows.append({"index": entry["index"], "state": state, "attempts": len(status.get("attempts", [])),
                     "job_id": job, "storage_dir": entry["storage_dir"], "error": status.get("attempts", [{}])[-1].get("error") if status.get("attempts") else None})
    return rows


def counts(rows: tp.Iterable[dict]) -> tp.Dict[str, int]:
    out = {s: 0 for s in ORDER}
    for row in rows:
        out[row["state"]] = out.get(row["state"], 0) + 1
    return {k: v for k, v in out.items() if v}
