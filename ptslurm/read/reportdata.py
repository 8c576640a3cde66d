"""What ``ptslurm report`` shows, gathered from a sweep's files alone (no scheduler, no
plotting library): the points table (``collect``'s records), every metric's curve per point
with the steps where an attempt resumed, each point's attempts as a timeline (waiting,
running, how each ended, the share of it that trained), the failures grouped by error, and
the resources each point used. A plain dict of lists, so that the page is built without
looking at a file again."""
import typing as tp
from pathlib import Path

from . import results, usage
from ..records import manifests
from .logs import user_traceback
from ..records import STOPS, Attempt, Manifest, PointEntry, State
from ..records.recordkit import now
from .state import failure_groups, point_states, timestamp

CURVE_POINTS = 200  # the most steps of one curve kept (evenly thinned, the last one always)
CURVE_BUDGET = 80_000  # the most steps of all curves together (a thousand points' page stays small)
CAUSE_WORDS = {"timeout": "time limit", "preempted": "preempted", "requeued": "requeued",
               "terminated": "stopped (SIGTERM)", "lost": "killed / node failure", "node_fail": "node failure",
               "failed": "failed", "cancelled": "cancelled", "interrupted": "interrupted",
               "no_space": "disk full"}
#: attempts that the scheduler ended (or `scontrol requeue`): a stop mark on the timeline
STOP_MARKS = frozenset(STOPS | {"requeued", "node_fail"})


def gather(sweep_dir: Path, metric: tp.Optional[str] = None) -> tp.Dict[str, tp.Any]:
    """Everything the report of ``sweep_dir`` shows. ``metric`` picks the one that ranks
    the points (as ``collect --best`` takes it); default: the first with a known direction."""
    manifest = manifests.read_manifest(sweep_dir)
    records, _ = results.read_records([sweep_dir])  # the collect cache where fresh; never saved
    names = results.metric_names(records)
    ranking = _ranking(records, names, metric)
    by_index = {r["index"]: r for r in records}
    rows = point_states(manifest)  # from the files alone, as the records' states
    created = timestamp(manifest.created)
    most = max(20, min(CURVE_POINTS, CURVE_BUDGET // max(1, len(manifest.points) * max(1, len(names)))))
    points = []
    for entry, row in zip(manifest.points, rows):
        attempts = row.status.attempts
        parts = [results.attempt_metrics(entry.storage_dir, a.sacred_id) if a.sacred_id else {} for a in attempts]
        points.append(_point(manifest, entry, attempts, parts, created, most))
    top = ranking.records[0] if ranking is not None else {}
    best = top["index"] if ranking is not None and results.is_number(top.get(ranking.key)) else None
    return {
        "name": manifest.name,
        "created": manifest.created,
        "made": now(),
        "experiment": manifest.experiment.name,
        "varied": list(manifest.varied),
        "metrics": names,
        "rank": None if ranking is None else {"key": ranking.key, "way": ranking.way, "note": ranking.note()},
        "best": best,
        "records": [_plain(by_index.get(p["index"], {})) for p in points],
        "points": points,
        # as `ptslurm failures` groups them, with the user's part of the first one's traceback
        "failures": [{"error": why, "points": [r.index for r in group],
                      "traceback": user_traceback(group[0].latest.traceback) if group[0].latest is not None
                      and group[0].latest.traceback else ""} for why, group in failure_groups(rows)],
    }


def _ranking(records: tp.List[dict], names: tp.List[str], metric: tp.Optional[str]) -> tp.Optional[results.Ranking]:
    if metric is not None:
        return results.rank(records, metric)  # an unknown one: UsageError naming the known ones
    known = [n for n in names if results.direction(n)[2]] + names
    return results.rank(records, known[0]) if known else None


def _plain(record: dict) -> dict:
    """A record as the table shows it (no private keys)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def _point(manifest: Manifest, entry: PointEntry, attempts: tp.Sequence[Attempt], parts: tp.List[dict],
           created: tp.Optional[float], most: int = CURVE_POINTS) -> dict:
    """One point's curves, resume steps and timeline."""
    joined = results.join_series([p for p in parts if p])
    resumes: tp.Dict[str, tp.List[tp.Any]] = {}
    seen: tp.Set[str] = set()
    for part in parts:
        for name, series in part.items():
            if series["steps"] and name in seen:  # a later attempt's first step: a resume
                resumes.setdefault(name, []).append(series["steps"][0])
            if series["steps"]:
                seen.add(name)
    return {
        "index": entry.index,
        "label": entry.label(manifest.varied),
        "curves": {name: thin(series["steps"], series["values"], most) for name, series in joined.items()},
        "resumes": resumes,
        "attempts": timeline(attempts, parts, created),
    }


def thin(steps: tp.Sequence[tp.Any], values: tp.Sequence[tp.Any], most: int = CURVE_POINTS) -> tp.Dict[str, list]:
    """At most ``most`` evenly spread (step, value) pairs of a curve, its last one kept."""
    n = len(steps)
    if n <= most:
        return {"steps": list(steps), "values": [_number(v) for v in values]}
    keep = sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})
    return {"steps": [steps[i] for i in keep], "values": [_number(values[i]) for i in keep]}


def _number(value: tp.Any) -> tp.Any:
    """A value as the curve draws it: six significant digits; NaN and infinities as None
    (JSON has neither)."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return float(f"{value:.6g}")
    return value


def timeline(attempts: tp.Sequence[Attempt], parts: tp.Sequence[dict], created: tp.Optional[float]) -> tp.List[dict]:
    """Each attempt as the timeline draws it: waited (from the submission, or from the end
    of the attempt before), ran (start to end, or to its last heartbeat while it runs), how
    it ended, whether the scheduler stopped it, and the share of its time that trained:
    from its first to its last logged step, plus one step's time for the first (None where
    it logged no step)."""
    out = []
    before = created
    for attempt, part in zip(attempts, parts):
        got = usage.span(attempt)
        if got is None:
            continue
        start, end = got
        cause = attempt.cause or (attempt.state.value if attempt.state != State.RUNNING else None)
        out.append({
            "attempt": attempt.attempt,
            "job": attempt.job_id,
            "waited_from": before if before is not None and before <= start else start,
            "start": start,
            "end": end,
            "state": attempt.state.value,
            "running": attempt.ended is None and attempt.state == State.RUNNING,
            "why": CAUSE_WORDS.get(cause or "", cause or ("running" if attempt.ended is None else "completed")),
            "stopped": cause in STOP_MARKS,
            "packed": attempt.packed,
            "trained": usage.trained_share(part, start, end),
        })
        before = end
    return out
