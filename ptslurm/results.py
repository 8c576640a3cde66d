"""Status and results of a sweep from the files alone (each storage dir's
``ptslurm_status.json`` and ``sacred/<n>/metrics.json``), reconciled with one squeue and one
sacct call for the whole sweep when SLURM is reachable. Read-only; no torch, no sacred.
"""
import datetime
import json
import os
import re
import typing as tp
from pathlib import Path

from . import storage
from .errors import UsageError

# "unknown": a damaged file hides what the point did (named in a warning); waits end there
TERMINAL = ("completed", "failed", "cancelled", "timeout", "preempted", "interrupted", "lost", "unknown")
ORDER = ("waiting", "pending", "running", "requeued", "completed", "failed", "cancelled", "timeout", "preempted", "unknown",
         "interrupted", "lost")
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED")
MAXIMIZE = re.compile(r"acc|accuracy|f1|precision|recall|score|auc|bleu|reward", re.I)


try:  # parses sacred's metrics files about five times faster than the json module
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    _loads = json.loads


def read_json(path: tp.Union[str, Path]) -> tp.Any:
    """The parsed file, None when it is missing or unreadable. sacred writes NaN and
    Infinity (Python's json allows them, orjson does not): such a file is parsed again by
    the json module instead of being dropped."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    try:
        return _loads(data)
    except ValueError:  # orjson's JSONDecodeError is a ValueError too
        pass
    try:
        return json.loads(data)
    except ValueError:
        return None


def _mapping(data: tp.Any) -> dict:
    """A dict, or {} for anything else (a damaged or foreign file)."""
    return data if isinstance(data, dict) else {}


def damaged(path: tp.Union[str, Path], kind: type = dict) -> bool:
    """True when ``path`` exists but does not hold a ``kind`` (truncated, not JSON, a list
    where a mapping belongs): its reader names it in a warning instead of guessing."""
    try:
        if not os.path.getsize(path):
            return True
    except OSError:
        return False
    return not isinstance(read_json(path), kind)


def read_status(storage_dir: tp.Union[str, Path]) -> dict:
    data = read_json(os.path.join(str(storage_dir), storage.STATUS))
    return data if isinstance(data, dict) else {}


def point_state(manifest: dict, entry: dict, status: dict, intent: dict,
                queue: tp.Optional[tp.Dict[str, str]] = None,
                accounting: tp.Optional[tp.Dict[str, str]] = None) -> str:
    """The one state function: what ``status``, ``collect``, ``list`` and ``--wait`` show
    for a point, from its status file (the job's record), its intent file (the command
    line's), and, when given, the scheduler's queue (one squeue call made BEFORE reading the
    files) and accounting (one sacct call)."""
    attempts = status.get("attempts", []) if isinstance(status.get("attempts"), list) else []
    state = status.get("state", "pending") if attempts else "pending"
    submission = int(intent.get("submission", 0) or 0)
    latest = attempts[-1] if attempts else {}
    if attempts and int(latest.get("submission", 0) or 0) < submission and state in TERMINAL:
        state = "pending"  # resubmitted; the new attempt has not started yet
    if intent.get("cancelled") and state != "completed" and int(latest.get("submission", 0) or 0) <= submission:
        return "cancelled"  # the cancel applies to the submission it was made in
    if status.get("cancelled") and state != "completed":  # written by older versions
        state = "cancelled"
    job = entry.get("job_id")
    if (not job and not attempts and manifest.get("executor") == "slurm" and manifest.get("waves")
            and state == "pending"):
        return "waiting"  # over the cluster's submit limit: a later wave submits it
    if queue is not None and job and job != "local" and state not in TERMINAL:
        queued = queue.get(job)
        if queued is None:
            acct = (accounting or {}).get(job, "")
            state = ("cancelled" if acct.startswith("CANCELLED") else "timeout" if acct == "TIMEOUT"
                     else "failed" if acct in ("OUT_OF_MEMORY", "NODE_FAIL", "FAILED") else "lost")
        elif queued in QUEUED and state == "running":
            state = "requeued"
        elif queued == "RUNNING" and state in ("pending", "requeued"):
            state = "running"
    if manifest.get("executor") == "local" and state not in TERMINAL:
        if state == "running" and attempts and not _alive(latest):
            state = "lost"  # a local run killed without a word (kill -9, reboot)
        elif state == "pending" and not _alive(manifest.get("runner") or {}):
            state = "lost"  # its runner (`ptslurm sweep`, `resubmit`) is gone: it will never start
    return state


def point_states(manifest: dict, queue: tp.Optional[tp.Dict[str, str]] = None,
                 accounting: tp.Optional[tp.Dict[str, str]] = None) -> tp.List[dict]:
    """One record per point: index, state (``point_state``), attempts, job id, storage dir,
    error."""
    rows = []
    for entry in manifest["points"]:
        status = read_status(entry["storage_dir"])
        intent = read_json(os.path.join(str(entry["storage_dir"]), storage.INTENT))
        intent = intent if isinstance(intent, dict) else {}
        state = point_state(manifest, entry, status, intent, queue, accounting)
        broken = [p for p in (os.path.join(str(entry["storage_dir"]), storage.STATUS),) if not status and damaged(p)]
        if broken:
            state = "unknown"
        attempts = status.get("attempts", [])
        rows.append({"index": entry["index"], "state": state, "attempts": len(attempts), "job_id": entry.get("job_id"),
                     "storage_dir": entry["storage_dir"],
                     "error": attempts[-1].get("error") if attempts and state in ("failed", "timeout", "preempted")
                     else None,
                     "status": status, "damaged": broken})
    return rows


def _alive(attempt: dict) -> bool:
    """False only when the attempt ran on this host and its process is gone."""
    import socket

    pid = attempt.get("pid")
    if attempt.get("host") != socket.gethostname() or not pid:
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def counts(rows: tp.Iterable[dict]) -> tp.Dict[str, int]:
    out = {s: 0 for s in ORDER}
    for row in rows:
        out[row["state"]] = out.get(row["state"], 0) + 1
    return {k: v for k, v in out.items() if v}


def _time(text: tp.Optional[str]) -> tp.Optional[float]:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def status_rows(manifest: dict, rows: tp.List[dict], now: tp.Optional[float] = None) -> tp.List[dict]:
    """Add progress, last heartbeat and elapsed time to ``point_states`` rows."""
    import time

    now = now or time.time()
    out = []
    for entry, row in zip(manifest["points"], rows):
        status = row["status"]
        attempts = status.get("attempts", [])
        elapsed = 0.0
        ended = row["state"] in TERMINAL  # the scheduler may have ended it without a word
        for a in attempts:
            start, end = _time(a.get("started")), _time(a.get("ended"))
            if end is None and a.get("state") == "running":
                end = _time(a.get("heartbeat")) if ended else now
            if start is not None:
                elapsed += max(0.0, (end or start) - start)
        progress = status.get("progress") or {}
        heartbeat = None
        if attempts and attempts[-1].get("sacred_id"):
            run = read_json(Path(entry["storage_dir"]) / storage.SACRED / str(attempts[-1]["sacred_id"]) / "run.json")
            heartbeat = _mapping(run).get("heartbeat")
        out.append(dict(row, varied=varied_values(manifest, entry), iteration=progress.get("iteration"),
                        epoch=progress.get("epoch"), heartbeat=heartbeat or status.get("updated"),
                        ended=attempts[-1].get("ended") if attempts else None,
                        history=[{"attempt": a.get("attempt"), "state": a.get("state"), "cause": a.get("cause"),
                                  "job_id": a.get("job_id"), "sacred_id": a.get("sacred_id")}
                                 for a in attempts if isinstance(a, dict)],
                        elapsed_s=round(elapsed, 1), seed=entry.get("seed")))
    return out


def varied_values(manifest: dict, entry: dict) -> tp.Dict[str, tp.Any]:
    out = {}
    for key in manifest.get("varied", []):
        if key == "named_configs":
            out[key] = " ".join(entry.get("named_configs", []))
        elif key in entry["updates"]:
            out[key] = entry["updates"][key]
    return out


# ----------------------------------------------------------------------------- metrics


def _series_ok(series: tp.Any) -> bool:
    return isinstance(series, dict) and isinstance(series.get("steps"), list) and isinstance(series.get("values"), list)


def _metrics(path: str, broken: tp.Optional[tp.List[str]]) -> dict:
    """sacred's metrics.json as {name: {"steps", "values"}}; a damaged file (or series) is
    appended to ``broken`` and left out."""
    data = read_json(path)
    if not isinstance(data, dict):
        if broken is not None and os.path.exists(path):
            broken.append(path)
        return {}
    if not all(_series_ok(v) for v in data.values()):
        if broken is not None:
            broken.append(path)
        return {k: v for k, v in data.items() if _series_ok(v)}
    return data


def join_metrics(storage_dir: tp.Union[str, Path], attempts: tp.Sequence[dict],
                 broken: tp.Optional[tp.List[str]] = None) -> tp.Dict[str, tp.Dict[str, list]]:
    """The sacred metrics of all attempts, joined in order: an attempt that resumed from an
    earlier checkpoint replaces the steps it reports again."""
    ids = [a.get("sacred_id") for a in attempts if a.get("sacred_id")]
    base = f"{storage_dir}/{storage.SACRED}"
    if len(ids) == 1:  # the common case: no joining, no copies
        metrics = _metrics(f"{base}/{ids[0]}/metrics.json", broken)
        return {k: v for k, v in metrics.items() if v["steps"]}
    joined: tp.Dict[str, tp.Dict[str, list]] = {}
    for sid in ids:
        metrics = _metrics(f"{base}/{sid}/metrics.json", broken)
        for name, series in metrics.items():
            if not isinstance(series, dict):
                continue
            steps, values = series.get("steps", []), series.get("values", [])
            if not isinstance(steps, list) or not isinstance(values, list):
                continue
            if not steps:
                continue
            cur = joined.setdefault(name, {"steps": [], "values": []})
            first = steps[0]
            keep = [i for i, s in enumerate(cur["steps"]) if s < first]
            cur["steps"] = [cur["steps"][i] for i in keep] + list(steps)
            cur["values"] = [cur["values"][i] for i in keep] + list(values)
    return joined


def best_of(name: str, values: tp.Sequence[float]) -> tp.Optional[float]:
    """Lowest value, or highest for names like accuracy/score/f1; NaN and non-numbers are
    ignored."""
    pick = max if MAXIMIZE.search(name) else min
    try:
        if values and sum(values) == sum(values):  # no NaN (NaN != NaN): the fast path
            return pick(values)
    except TypeError:
        pass
    finite = [v for v in values if isinstance(v, (int, float)) and v == v]
    return pick(finite) if finite else None


PARALLEL_FROM = 2000  # points; below this a process pool costs more than it saves
CACHE = "collect_cache.json"  # in the sweep dir: records keyed by their files' (mtime, size)


def _stamp(path: str) -> tp.Optional[tp.List[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _record(name: str, varied: tp.Sequence[str], entry: dict, meta: dict) -> tp.Tuple[dict, dict]:
    """The point's record and the stamps of the files it was read from."""
    base = entry["storage_dir"]
    stamps = {storage.STATUS: _stamp(f"{base}/{storage.STATUS}"),  # paths relative to the storage dir
              storage.INTENT: _stamp(f"{base}/{storage.INTENT}")}
    status = read_json(f"{base}/{storage.STATUS}")
    status = status if isinstance(status, dict) else {}
    intent = read_json(f"{base}/{storage.INTENT}") if stamps[storage.INTENT] else None
    attempts = status.get("attempts", [])
    attempts = [a for a in attempts if isinstance(a, dict)] if isinstance(attempts, list) else []
    for a in attempts:
        if a.get("sacred_id"):
            path = f"{storage.SACRED}/{a['sacred_id']}/metrics.json"
            stamps[path] = _stamp(f"{base}/{path}")
    record = {"sweep": name, "index": entry["index"]}
    for key in varied:
        if key == "named_configs":
            record[key] = " ".join(entry.get("named_configs", []))
        elif key in entry["updates"]:
            record[key] = entry["updates"][key]
    record["state"] = point_state(meta, entry, status, intent if isinstance(intent, dict) else {})
    record["seed"] = entry.get("seed")
    record["result"] = next((a.get("result") for a in reversed(attempts) if "result" in a), None)
    broken_metrics: tp.List[str] = []
    for metric, series in sorted(join_metrics(entry["storage_dir"], attempts, broken_metrics).items()):
        values = series["values"]
        record[f"{metric}/final"] = values[-1] if values else None
        record[f"{metric}/best"] = best_of(metric, values)
    record["storage_dir"] = entry["storage_dir"]
    broken = broken_metrics + ([f"{base}/{storage.STATUS}"] if not status and stamps[storage.STATUS] else [])
    if broken:  # named in a warning by the caller; never shown as a state the point is not in
        record["_damaged"] = broken
        if not status:
            record["state"] = "unknown"
    return record, stamps


def _records(args) -> tp.List[tp.Tuple[dict, dict]]:
    name, varied, entries, meta = args
    return [_record(name, varied, e, meta) for e in entries]


def _fresh(cached: tp.Optional[dict]) -> bool:
    """A cached record is valid while none of its files changed (a new attempt changes the
    status file, a heartbeat the metrics file)."""
    if not cached:
        return False
    base = cached["record"]["storage_dir"]
    return all(_stamp(f"{base}/{path}") == stamp for path, stamp in cached["stamps"].items())


def _sweep_records(sweep_dir: Path, use_cache: bool) -> tp.List[dict]:
    manifest = storage.read_manifest(sweep_dir)
    name, varied, points = manifest["name"], manifest.get("varied", []), manifest["points"]
    meta = {"executor": manifest.get("executor"), "runner": manifest.get("runner"), "waves": manifest.get("waves")}
    cache_path = Path(sweep_dir) / CACHE
    cache = (read_json(cache_path) or {}) if use_cache else {}
    if cache.get("manifest") != _stamp(str(Path(sweep_dir) / storage.MANIFEST)):
        cache = {}
    entries = cache.get("points", {})
    todo = [e for e in points if not _fresh(entries.get(str(e["index"])))]
    workers = min(os.cpu_count() or 1, 8)
    if len(todo) < PARALLEL_FROM or workers < 2:
        fresh = _records((name, varied, todo, meta))
    else:
        import concurrent.futures
        import multiprocessing

        size = -(-len(todo) // workers)
        chunks = [(name, varied, todo[i:i + size], meta) for i in range(0, len(todo), size)]
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            fresh = [pair for part in pool.map(_records, chunks) for pair in part]
    for entry, (record, stamps) in zip(todo, fresh):
        entries[str(entry["index"])] = {"record": record, "stamps": stamps}
    records = [dict(entries[str(e["index"])]["record"]) for e in points]  # the cache keeps the files' state
    if any(r["state"] not in TERMINAL for r in records):
        # something is still going: the scheduler has a say (the same rows as `status`)
        from . import sweep as sweeps

        for record, row in zip(records, sweeps.sweep_states(Path(sweep_dir), manifest)):
            record["state"] = row["state"]

    def save() -> None:
        if todo and use_cache:
            try:  # a sweep of someone else's (read-only) is collected all the same
                storage.atomic_write_text(cache_path, json.dumps(
                    {"manifest": _stamp(str(Path(sweep_dir) / storage.MANIFEST)), "points": entries}))
            except OSError:
                pass

    return records, save


def read_records(sweeps: tp.Sequence[tp.Union[str, Path]], root: tp.Optional[str] = None,
                 use_cache: bool = True) -> tp.Tuple[tp.List[dict], tp.Callable[[], None]]:
    """``collect`` without its side effect: the records and a function that updates the
    sweeps' collect caches (the CLI calls it once its output succeeded)."""
    records, saves = [], []
    for sweep in sweeps:
        part, save = _sweep_records(storage.find_sweep(str(sweep), root), use_cache)
        records += part
        saves.append(save)
    def save_all() -> None:
        for save in saves:
            save()

    return records, save_all


def collect(sweeps: tp.Sequence[tp.Union[str, Path]], root: tp.Optional[str] = None,
            use_cache: bool = True) -> tp.List[dict]:
    """One record per point of every sweep (directories or names under ``root``): sweep,
    index, the varied config values, state, result, ``<metric>/final`` and ``<metric>/best``
    for each sacred metric (all attempts joined), storage dir. ``to_frame`` makes a
    pandas DataFrame of them.

    Large sweeps are read by one process per core. Records are cached in the sweep dir
    (``collect_cache.json``) and reused while none of the files they came from changed."""
    records, save = read_records(sweeps, root, use_cache)
    save()
    return records


def metric_names(records: tp.Iterable[dict]) -> tp.List[str]:
    names = {}
    for r in records:
        for k in r:
            if k.endswith("/final"):
                names[k[: -len("/final")]] = None
    return list(names)


def sort_records(records: tp.List[dict], metric: str) -> tp.List[dict]:
    """Best first by ``metric`` (its best value; ``result`` sorts by the run's result)."""
    columns = _columns(records)
    key = f"{metric}/best" if f"{metric}/best" in columns else metric
    if key not in columns or key in ("sweep", "index", "state", "storage_dir"):
        names = metric_names(records)
        raise UsageError(f"unknown metric {metric!r}; reported metrics: {', '.join(names) or 'none'} (or 'result')")
    reverse = bool(MAXIMIZE.search(metric))
    def number(value) -> bool:  # NaN never wins, nor sorts between numbers
        return isinstance(value, (int, float)) and value == value

    present = [r for r in records if number(r.get(key))]
    missing = [r for r in records if not number(r.get(key))]
    return sorted(present, key=lambda r: r[key], reverse=reverse) + missing


def _columns(records: tp.Iterable[dict]) -> tp.List[str]:
    cols: tp.Dict[str, None] = {}
    for r in records:
        cols.update(dict.fromkeys(r))
    return list(cols)


def to_frame(records: tp.List[dict]):
    """The records as a pandas DataFrame (pandas is optional)."""
    try:
        import pandas
    except ImportError:
        raise UsageError("pandas is not installed: pip install pandas (or use the plain records)") from None
    return pandas.DataFrame.from_records(records)


def curves(sweep_dir: Path, metric: str) -> tp.List[tp.Tuple[str, tp.List[float], tp.List[float]]]:
    """``(label, steps, values)`` of ``metric`` for every point that reported it."""
    manifest = storage.read_manifest(sweep_dir)
    out, seen = [], set()
    for entry in manifest["points"]:
        status = read_status(entry["storage_dir"])
        metrics = join_metrics(entry["storage_dir"], status.get("attempts", []))
        seen.update(metrics)
        if metric in metrics:
            label = " ".join(f"{k}={v}" for k, v in varied_values(manifest, entry).items()) or f"point {entry['index']}"
            out.append((label, metrics[metric]["steps"], metrics[metric]["values"]))
    if not out:
        raise UsageError(f"unknown metric {metric!r}; reported metrics: {', '.join(sorted(seen)) or 'none'}")
    return out


def plot(sweep_dir: Path, metric: str, output: tp.Optional[Path] = None):
    """Learning curves of all points in one figure; returns the matplotlib Figure."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plotting needs matplotlib: pip install 'ptslurm[plot]'") from None
    data = curves(sweep_dir, metric)
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, steps, values in data:
        ax.plot(steps, values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(f"{storage.read_manifest(sweep_dir)['name']}: {metric}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    if output is not None:
        fig.savefig(output, dpi=100)
    return fig


def sweeps_under(root: Path) -> tp.List[Path]:
    base = storage.sweeps_dir(root)
    try:
        return sorted(p for p in base.iterdir() if (p / storage.MANIFEST).is_file())
    except FileNotFoundError:
        return []

