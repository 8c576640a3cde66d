"""Results of sweeps from the files alone (each storage dir's ``ptslurm_status.json`` and
``sacred/<n>/metrics.json``), with each point's state from ``state`` (one squeue and one
sacct call for a whole sweep that is still going). Metrics, best values, ranking, tables,
curves. No torch, no sacred.

Reading writes nothing, with one named exception: ``collect`` keeps a cache of the records
in the sweep dir (``collect_cache.json``, see ``read_records``), and reads sweeps of 2000 and
more points with a process pool (``workers``).
"""
import dataclasses
import json
import os
import re
import typing as tp
from pathlib import Path

from ..records import manifests, writes
from . import usage
from ..errors import UsageError
from ..records import (TERMINAL, Attempt, Intent, Manifest, PointEntry, PointStatus, State, read, read_intent,
                       read_json, read_status)
from ..records import COLLECT_CACHE, INTENT, MANIFEST, METRICS, SACRED, SEARCH, STATUS
from .state import point_state, sweep_states

# Which way a metric is better, by the words of its name (split at anything not a letter or
# digit, lower-cased): the first rule that matches decides. README: "Best means".
HIGHER_IS_BETTER = frozenset(
    "acc accuracy top1 top5 f1 f2 fscore precision recall sensitivity specificity score auc roc rocauc prauc "
    "ap map map50 ndcg mrr hit hits hitrate bleu rouge rouge1 rouge2 rougel meteor chrf bertscore r2 "
    "explained variance iou miou jaccard dice psnr ssim msssim sdr sisdr sisnr sdri sisdri snr snri pesq stoi "
    "estoi reward return kappa mcc likelihood elbo".split())
LOWER_IS_BETTER = frozenset(
    "loss error err errors wer cer ter per mse mae rmse mape msle nll perplexity ppl brier hinge logloss "
    "deviance distance fid kid eer regret cost".split())


def direction(metric: str) -> tp.Tuple[str, str, str]:
    """``(name, "min" | "max", why)`` for ``--best``/``--sort`` and each point's best value:
    ``name:min`` / ``name:max`` say it; else sklearn's negated scorers (a ``neg`` word, e.g.
    ``cv_neg_log_loss``) are maximised; else a word of LOWER_IS_BETTER minimises and one of
    HIGHER_IS_BETTER maximises; else it is unknown (``why`` is empty) and minimised. Raises
    UsageError for sacred's ``result`` without a direction (experiments return losses and
    accuracies alike)."""
    name, sep, said = metric.rpartition(":")
    if sep and said.lower() in ("min", "max"):
        return name, said.lower(), f"{said.lower()} as asked"
    name = metric
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    if name == "result":
        raise UsageError("the run's result can be a loss or an accuracy: say which is better with "
                         "result:min or result:max")
    if "neg" in words:
        return name, "max", "a negated score (sklearn's neg_*): higher is better"
    hit = next((w for w in words if w in LOWER_IS_BETTER), None)
    if hit:
        return name, "min", f"{hit!r}: lower is better"
    hit = next((w for w in words if w in HIGHER_IS_BETTER), None)
    if hit:
        return name, "max", f"{hit!r}: higher is better"
    return name, "min", ""


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


def attempt_metrics(storage_dir: tp.Union[str, Path], sacred_id: tp.Any,
                    broken: tp.Optional[tp.List[str]] = None) -> dict:
    """One attempt's sacred metrics ({name: {"steps", "values", "timestamps"}})."""
    return _metrics(f"{storage_dir}/{SACRED}/{sacred_id}/{METRICS}", broken)


def join_metrics(storage_dir: tp.Union[str, Path], attempts: tp.Sequence[Attempt],
                 broken: tp.Optional[tp.List[str]] = None) -> tp.Dict[str, tp.Dict[str, list]]:
    """The sacred metrics of all attempts, joined in order (``join_series``)."""
    return _joined([attempt_metrics(storage_dir, a.sacred_id, broken) for a in attempts if a.sacred_id])


def _joined(parts: tp.Sequence[dict]) -> tp.Dict[str, tp.Dict[str, list]]:
    parts = [p for p in parts if p]
    if len(parts) == 1:  # the common case: no joining, no copies
        return {k: v for k, v in parts[0].items() if v["steps"]}
    return join_series(parts)


def join_series(parts: tp.Sequence[dict]) -> tp.Dict[str, tp.Dict[str, list]]:
    """Attempts' metrics joined in order: an attempt that resumed from an earlier checkpoint
    replaces the steps it reports again."""
    joined: tp.Dict[str, tp.Dict[str, list]] = {}
    for part in parts:
        for name, series in part.items():
            steps, values = series["steps"], series["values"]
            if not steps:
                continue
            cur = joined.setdefault(name, {"steps": [], "values": []})
            keep = [i for i, step in enumerate(cur["steps"]) if step < steps[0]]
            cur["steps"] = [cur["steps"][i] for i in keep] + list(steps)
            cur["values"] = [cur["values"][i] for i in keep] + list(values)
    return joined


def rung_value(entry: PointEntry, status: PointStatus, metric: str) -> tp.Optional[float]:
    """The metric a completed point reached at the end of its latest attempt: a sacred
    metric's last value, or the run's result (``result:min``/``result:max``)."""
    name = direction(metric)[0]
    if name == "result":
        value = status.result()
    else:
        series = join_metrics(entry.path, status.attempts).get(name)
        value = series["values"][-1] if series and series.get("values") else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def best_of(name: str, values: tp.Sequence[float], way: tp.Optional[str] = None) -> tp.Optional[float]:
    """The best value in the metric's ``direction`` (``way``: "min"/"max" to override); NaN
    and non-numbers are ignored."""
    pick = max if (way or _way(name)) == "max" else min
    try:
        if values and sum(values) == sum(values):  # no NaN (NaN != NaN): the fast path
            return pick(values)
    except TypeError:
        pass
    finite = [v for v in values if isinstance(v, (int, float)) and v == v]
    return pick(finite) if finite else None


def _way(name: str) -> str:
    try:
        return direction(name)[1]
    except UsageError:
        return "min"


PARALLEL_FROM = 2000  # points; below this a process pool costs more than it saves
CACHE = COLLECT_CACHE


def _stamp(path: str) -> tp.Optional[tp.List[int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def point_record(manifest: Manifest, entry: PointEntry) -> dict:
    """One point's ``collect`` record, from its files (no cache)."""
    return _record(manifest, entry)[0]


def _record(manifest: Manifest, entry: PointEntry) -> tp.Tuple[dict, dict]:
    """The point's record and the stamps of the files it was read from."""
    base = entry.storage_dir
    stamps = {STATUS: _stamp(f"{base}/{STATUS}"),  # paths relative to the storage dir
              INTENT: _stamp(f"{base}/{INTENT}")}
    found = read(f"{base}/{STATUS}", PointStatus)
    status = found.record or PointStatus()
    intent = read_intent(base) if stamps[INTENT] else Intent()
    for a in status.attempts:
        if a.sacred_id:
            path = f"{SACRED}/{a.sacred_id}/{METRICS}"
            stamps[path] = _stamp(f"{base}/{path}")
    record: tp.Dict[str, tp.Any] = {"sweep": manifest.name, "index": entry.index}
    record.update(entry.varied_values(manifest.varied))
    record["state"] = point_state(manifest, entry, status, intent).value
    record["seed"] = entry.seed
    if manifest.code_versions:  # the points ran different code: say which
        record["code"] = manifest.code_of(entry.code_version).label
    record["result"] = status.result()
    if manifest.budget_key:  # trained longer (`extend`, successive halving): to what
        from .halving import budget_number

        record["budget"] = budget_number(entry.updates.get(manifest.budget_key))
    broken: tp.List[str] = []
    parts = [attempt_metrics(base, a.sacred_id, broken) if a.sacred_id else {} for a in status.attempts]
    for metric, series in sorted(_joined(parts).items()):
        values = series["values"]
        record[f"{metric}/final"] = values[-1] if values else None
        record[f"{metric}/best"] = best_of(metric, values)
    record.update(usage.columns(next((a.usage for a in reversed(status.attempts) if a.usage), None)))
    record.update(usage.time_columns(status.attempts, parts))
    record["storage_dir"] = base
    if found.damaged:
        broken.append(found.damaged)
        record["state"] = State.UNKNOWN.value  # never shown as a state the point is not in
    if broken:  # named in a warning by the caller
        record["_damaged"] = broken
    return record, stamps


def _records(args: tp.Tuple[Manifest, tp.Sequence[PointEntry]]) -> tp.List[tp.Tuple[dict, dict]]:
    manifest, entries = args
    return [_record(manifest, e) for e in entries]


def _fresh(cached: tp.Optional[dict]) -> bool:
    """A cached record is valid while none of its files changed (a new attempt changes the
    status file, a heartbeat the metrics file)."""
    if not cached:
        return False
    base = cached["record"]["storage_dir"]
    return all(_stamp(f"{base}/{path}") == stamp for path, stamp in cached["stamps"].items())


def _sweep_records(sweep_dir: Path, use_cache: bool,
                   workers: tp.Optional[int]) -> tp.Tuple[tp.List[dict], tp.Callable[[], None]]:
    manifest = manifests.read_manifest(sweep_dir)
    cache_path = Path(sweep_dir) / CACHE
    cache = read_json(cache_path) if use_cache else None
    if not isinstance(cache, dict) or cache.get("manifest") != _stamp(str(Path(sweep_dir) / MANIFEST)):
        cache = {}
    entries = cache.get("points", {}) if isinstance(cache.get("points"), dict) else {}
    todo = [e for e in manifest.points if not _fresh(entries.get(str(e.index)))]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if len(todo) >= PARALLEL_FROM else 1
    if workers < 2:
        fresh = _records((manifest, todo))
    else:
        import concurrent.futures
        import multiprocessing

        size = -(-len(todo) // workers)
        chunks = [(manifest, todo[i:i + size]) for i in range(0, len(todo), size)]
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            fresh = [pair for part in pool.map(_records, chunks) for pair in part]
    for entry, (record, stamps) in zip(todo, fresh):
        entries[str(entry.index)] = {"record": record, "stamps": stamps}
    records = [dict(entries[str(e.index)]["record"]) for e in manifest.points]  # the cache keeps the files' state
    if any(State.parse(r["state"]) not in TERMINAL for r in records):
        # something is still going: the scheduler has a say (the same rows as `status`)
        for record, row in zip(records, sweep_states(Path(sweep_dir), manifest)):
            record["state"] = row.state.value
    if manifest.optuna:  # the Optuna trial each point is (none before it was asked)
        log = read_json(Path(sweep_dir) / SEARCH)
        asked: tp.Dict[str, tp.Any] = {}
        if isinstance(log, dict) and isinstance(log.get("trials"), dict):
            asked = log["trials"]
        for record in records:
            record["trial"] = asked.get(str(record["index"]))
    if manifest.search:  # each point's rung and where successive halving left it
        from .halving import standing

        for record, (rung, said) in zip(records, standing(manifest.search, read_json(Path(sweep_dir) / SEARCH),
                                                          [(r["budget"], r["state"]) for r in records])):
            record["rung"], record["halving"] = rung, said

    def save() -> None:
        if todo and use_cache:
            try:  # a sweep of someone else's (read-only) is collected all the same
                writes.atomic_write_text(cache_path, json.dumps(
                    {"manifest": _stamp(str(Path(sweep_dir) / MANIFEST)), "points": entries}))
            except OSError:
                pass

    return records, save


def read_records(sweeps: tp.Sequence[tp.Union[str, Path]], root: tp.Optional[str] = None, use_cache: bool = True,
                 workers: tp.Optional[int] = None) -> tp.Tuple[tp.List[dict], tp.Callable[[], None]]:
    """``collect`` without its side effect: the records, and a function that updates the
    sweeps' collect caches (the CLI calls it once its output succeeded). ``workers``
    processes read the files (default: one per core, up to 8, from 2000 points on)."""
    records: tp.List[dict] = []
    saves: tp.List[tp.Callable[[], None]] = []
    for sweep in sweeps:
        part, save = _sweep_records(manifests.find_sweep(str(sweep), root), use_cache, workers)
        records += part
        saves.append(save)

    def save_all() -> None:
        for save in saves:
            save()

    return records, save_all


def collect(sweeps: tp.Sequence[tp.Union[str, Path]], root: tp.Optional[str] = None, use_cache: bool = True,
            workers: tp.Optional[int] = None) -> tp.List[dict]:
    """One record per point of every sweep (directories or names under ``root``): sweep,
    index, the varied config values, state, seed, result, ``<metric>/final`` and
    ``<metric>/best`` for each sacred metric (all attempts joined), storage dir.
    ``to_frame`` makes a pandas DataFrame of them.

    Writes one file: the records are cached in each sweep dir (``collect_cache.json``) and
    reused while none of the files they came from changed (``use_cache=False``: neither read
    nor written). Large sweeps are read by ``workers`` processes (see ``read_records``)."""
    records, save = read_records(sweeps, root, use_cache, workers)
    save()
    return records


def metric_names(records: tp.Iterable[dict]) -> tp.List[str]:
    names: tp.Dict[str, None] = {}
    for r in records:
        for k in r:
            if k.endswith("/final"):
                names[k[: -len("/final")]] = None
    return list(names)


@dataclasses.dataclass(frozen=True)
class Ranking:
    """Records best first by a metric, and how: ``key`` (the column compared), ``way``
    ("min"/"max"), ``why`` (empty when the name is not in the direction table), ``ties``
    (indices of the points that share the winning value, when more than one)."""

    records: tp.List[dict]
    key: str
    way: str
    why: str
    ties: tp.List[tp.Any]

    def note(self) -> str:
        order = "highest" if self.way == "max" else "lowest"
        text = f"ranked by {self.key}, {order} first ({self.why})" if self.why else (
            f"ranked by {self.key}, {order} first: its name says nothing of its direction; "
            f"say {self.key.split('/')[0]}:max if higher is better")
        if any(isinstance(r.get("rung"), int) for r in self.records):
            text = "successive halving: the highest rung reached first, then " + text
        if self.ties:
            text += f"; tie: points {', '.join(map(str, self.ties))} share the best value, the first is shown"
        return text


def is_number(value: tp.Any) -> bool:
    """A value that can rank: an int or float, not a bool, not NaN (NaN never wins, nor sorts
    between numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def rank(records: tp.List[dict], metric: str) -> Ranking:
    """Best first by ``metric`` (``name``, ``name:min``, ``name:max``; ``result:...`` sorts
    by the run's result): each point's best value of the metric in that direction."""
    name, way, why = direction(metric)
    columns = _columns(records)
    key = f"{name}/best" if f"{name}/best" in columns else name
    if key not in columns or key in ("sweep", "index", "state", "storage_dir"):
        names = metric_names(records)
        raise UsageError(f"unknown metric {name!r}; reported metrics: {', '.join(names) or 'none'} (or 'result')")

    values: tp.Dict[int, tp.Any] = {id(r): r.get(key) for r in records}
    if key.endswith("/best") and way != _way(name):  # the stored best went the other way
        values = {id(r): _series_best(r, name, way) for r in records}
    present = [r for r in records if is_number(values[id(r)])]
    missing = [r for r in records if not is_number(values[id(r)])]
    ordered = sorted(present, key=lambda r: values[id(r)], reverse=way == "max") + missing
    # successive halving: a point that reached a higher rung trained longer; it ranks first
    ordered.sort(key=lambda r: -r["rung"] if isinstance(r.get("rung"), int) else 1)
    ties = [r.get("index") for r in present if values[id(r)] == values[id(ordered[0])]
            and r.get("rung") == ordered[0].get("rung")] if present else []
    return Ranking(ordered, key, way, why, ties if len(ties) > 1 else [])


def sort_records(records: tp.List[dict], metric: str) -> tp.List[dict]:
    """Best first by ``metric`` (see ``rank``)."""
    return rank(records, metric).records


def _series_best(record: dict, metric: str, way: str) -> tp.Optional[float]:
    """A point's best value of ``metric`` in direction ``way``, from its files."""
    base = record.get("storage_dir")
    if not base:
        return None
    status = read(f"{base}/{STATUS}", PointStatus).record or PointStatus()
    series = join_metrics(base, status.attempts, []).get(metric)
    return best_of(metric, series["values"], way) if series else None


KEPT_COLUMNS = ("sweep", "index", "state", "storage_dir")


def select_columns(records: tp.List[dict], patterns: tp.Sequence[str]) -> tp.List[dict]:
    """The records with only the columns that match ``patterns`` (names or globs; a bare
    metric name takes its ``/final`` and ``/best``), plus sweep, index, state, storage dir.
    UsageError naming the columns when a pattern matches none."""
    import fnmatch

    columns = _columns(records)
    chosen: tp.List[str] = []
    for pattern in (p.strip() for p in patterns if p.strip()):
        hits = [c for c in columns if fnmatch.fnmatchcase(c, pattern) or c.startswith(pattern + "/")]
        if not hits:
            raise UsageError(f"--columns {pattern!r} matches no column; columns: {', '.join(columns)}")
        chosen += [h for h in hits if h not in chosen]
    keep = [c for c in columns if c in KEPT_COLUMNS or c in chosen]
    return [{k: r.get(k) for k in keep if k in r} for r in records]


def where(records: tp.List[dict], conditions: tp.Sequence[str]) -> tp.List[dict]:
    """The records whose column KEY equals VALUE for every ``KEY=VALUE`` condition: numbers
    compare as numbers (``lr=1e-3`` matches 0.001), anything else as the text ``collect``
    prints. UsageError naming the columns when a KEY is none."""
    columns = _columns(records)
    parsed = []
    for condition in conditions:
        key, sep, value = condition.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--where {condition!r}: expected KEY=VALUE, e.g. --where state=completed")
        if key not in columns:
            raise UsageError(f"--where {key!r} is no column; columns: {', '.join(columns)}")
        parsed.append((key, value.strip()))

    def equal(have: tp.Any, want: str) -> bool:
        if isinstance(have, (int, float)) and not isinstance(have, bool):
            try:
                return float(have) == float(want)
            except ValueError:
                return False
        text = json.dumps(have) if isinstance(have, (list, dict, bool)) or have is None else str(have)
        return text == want or str(have) == want

    return [r for r in records if all(equal(r.get(k), v) for k, v in parsed)]


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
        raise UsageError("pandas is not installed: pip install 'ptslurm[pandas]' (or use the plain records)") from None
    return pandas.DataFrame.from_records(records)


def sweeps_under(root: Path) -> tp.List[Path]:
    base = manifests.sweeps_dir(root)
    try:
        return sorted(p for p in base.iterdir() if (p / MANIFEST).is_file())
    except FileNotFoundError:
        return []

