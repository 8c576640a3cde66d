"""Every output format of the command line, as text: tables, the status view, progress lines,
collect's table/csv/md/json, the dry run, the sweep summary. Pure functions of records and
rows; the CLI decides where the text goes.
"""
import csv
import io
import json
import shlex
import time
import typing as tp

from .records import TERMINAL, Manifest, State

if tp.TYPE_CHECKING:  # pragma: no cover
    from .results import PointRow
    from .sweep import Outcome, Plan


def cell(value: tp.Any, key: str = "") -> str:
    """A config value in a table: strings quoted (as on the command line), a named-config
    axis as its names."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    if key == "named_configs":
        return str(value)
    return repr(value) if isinstance(value, str) else str(value)


def number(value: tp.Any) -> str:
    """A result in a table: 6 significant digits, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def table(header: tp.Sequence[str], rows: tp.Sequence[tp.Sequence[str]], max_width: int = 40,
          total_width: int = 100) -> str:
    """Aligned columns, cells cut at ``max_width``; a table wider than ``total_width`` is
    printed in blocks of columns, each repeating the first column (as pandas does)."""
    def cut(s: str) -> str:
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    rows_ = [[cut(str(c)) for c in header]] + [[cut(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows_) for i in range(len(header))]
    blocks, current, used = [], [0], widths[0]
    for i in range(1, len(header)):
        if used + 2 + widths[i] > total_width and len(current) > 1:
            blocks.append(current)
            current, used = [0], widths[0]
        current.append(i)
        used += 2 + widths[i]
    blocks.append(current)
    out = []
    for cols in blocks:
        lines = ["  ".join(r[i].ljust(widths[i]) for i in cols).rstrip() for r in rows_]
        lines.insert(1, "  ".join("-" * widths[i] for i in cols))
        out.append("\n".join(lines))
    return "\n\n".join(out)


def age(text: tp.Optional[str], now: tp.Optional[float] = None) -> str:
    """``42s ago``, ``5m ago``, ``3h ago`` for a recorded time; '-' for none."""
    from .results import timestamp

    then = timestamp(text)
    if then is None:
        return "-"
    secs = max(0, int((now or time.time()) - then))
    return f"{secs}s ago" if secs < 120 else f"{secs // 60}m ago" if secs < 7200 else f"{secs // 3600}h ago"


def duration(secs: float) -> str:
    secs = int(secs)
    return f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def counts_line(rows: tp.Sequence["PointRow"], total: int, width: int, what: str = "") -> str:
    """``[#####     ] 3/10 ended  completed 3  running 7``."""
    from .results import counts

    c = counts(rows)
    done = sum(v for k, v in c.items() if k in TERMINAL)
    bar = "#" * (width * done // max(total, 1))
    return f"[{bar:<{width}}] {done}/{total}{what}  " + "  ".join(f"{k} {v}" for k, v in c.items())


def status(manifest: Manifest, rows: tp.Sequence["PointRow"], now: tp.Optional[float] = None) -> str:
    """``ptslurm status``: one row per point and a summary line."""
    varied = list(manifest.varied)
    spread = manifest.resources.world_size > 1  # distributed points: show ranks and nodes
    header = ["#"] + varied + ["state", "att", "progress", "heartbeat", "elapsed", "job"] + (["ranks"] if spread else [])
    lines = []
    for r in rows:
        progress = "-" if r.iteration is None else f"it {r.iteration}" + (
            f" ep {r.epoch}" if r.epoch is not None else "")
        # an ended point has no heartbeat to watch: show when it ended
        if r.state in TERMINAL:
            beat = f"ended {age(r.ended, now)}" if r.ended else "-"
        else:
            beat = age(r.heartbeat, now)
        lines.append([str(r.index)] + [cell(r.varied.get(k, ""), k) for k in varied] +
                     [str(r.state), str(r.attempts), progress, beat, duration(r.elapsed_s), r.job_id or "-"] +
                     ([ranks(manifest, r)] if spread else []))
    width = max(12, 60 // max(len(varied), 1))
    return (f"sweep {manifest.name} ({manifest.executor})\n" + table(header, lines, max_width=width) + "\n"
            + counts_line(rows, len(rows), 30, " ended"))


def ranks(manifest: Manifest, row: "PointRow") -> str:
    """``4 on 2 nodes``: the ranks of a distributed point (its latest attempt's, else asked)."""
    latest = row.latest
    n = (latest.ranks if latest is not None and latest.ranks else None) or manifest.resources.world_size
    nodes = (latest.nodes if latest is not None and latest.nodes else None) or manifest.resources.nodes
    return f"{n} on {nodes} node{'s' if nodes != 1 else ''}"


def damaged(index: int, path: str) -> str:
    """The warning for a damaged file: which file, and what the command did about it."""
    return (f"{path} is damaged (truncated, or not what ptslurm or sacred wrote); "
            f"point {index} is shown without what it held")


def records(records: tp.Sequence[tp.Mapping[str, tp.Any]], fmt: str, one_sweep: bool) -> str:
    """``ptslurm collect``'s output: ``table`` (storage dirs left out), ``csv``, ``md``
    or ``json``; the ``sweep`` column only for several sweeps."""
    columns: tp.List[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    if one_sweep and "sweep" in columns:
        columns.remove("sweep")
    out = io.StringIO()
    if fmt == "json":
        json.dump([{k: r.get(k) for k in columns} for r in records], out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        writer.writerows([r.get(k) for k in columns] for r in records)
    else:
        cells = [[number(r.get(k)) for k in columns] for r in records]
        if fmt == "md":
            out.write("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n")
            out.writelines("| " + " | ".join(c) + " |\n" for c in cells)
        else:
            shown = [c for c in columns if c != "storage_dir"]
            idx = [columns.index(c) for c in shown]
            out.write(table(shown, [[row[i] for i in idx] for row in cells], max_width=30) + "\n")
    return out.getvalue()


def sweeps(rows: tp.Sequence[tp.Sequence[str]]) -> str:
    """``ptslurm list``."""
    return table(["sweep", "experiment", "executor", "created", "points"], rows, max_width=40)


def sweep_row(manifest: Manifest, rows: tp.Sequence["PointRow"]) -> tp.List[str]:
    from .results import counts

    return [manifest.name, manifest.experiment.name, manifest.executor, manifest.created[:16],
            "  ".join(f"{k} {v}" for k, v in counts(rows).items())]


def dry_run(p: "Plan", batch_script: tp.Optional[str], local_command: tp.Optional[tp.Sequence[str]]) -> str:
    """What ``--dry-run`` shows: points, storage dirs, and the batch script (or the local
    command) each point would run with."""
    varied = list(p.points[0].varied) if p.points else []
    header = ["#"] + varied + ["storage dir (would be)"]
    rows = [[str(pt.index)] + [cell(pt.varied_values().get(k, ""), k) for k in varied] + [str(d)]
            for pt, d in zip(p.points, p.predicted_dirs)]
    out = [f"sweep {p.name!r}: {len(p.points)} points of experiment {p.experiment_name!r} "
           f"({p.executor}); sweep dir would be {p.sweep_dir}", table(header, rows, max_width=200)]
    if p.storage_key:
        out.append(f"each point's storage dir is injected as {p.storage_key}")
    if batch_script is not None:
        out += ["\nbatch script (one per job array):\n", batch_script]
    if local_command is not None:
        out += ["\nlocal command per point:\n", " ".join(shlex.quote(c) for c in local_command),
                f"(in {p.workdir})"]
    out.append("dry run: nothing was created or submitted")
    return "\n".join(out)


def dry_run_json(p: "Plan") -> tp.Dict[str, tp.Any]:
    return {"name": p.name, "sweep_dir": str(p.sweep_dir), "executor": p.executor,
            "points": [{"index": pt.index, "updates": pt.updates, "named_configs": list(pt.named_configs),
                        "storage_dir": str(d)} for pt, d in zip(p.points, p.predicted_dirs)]}


def summary_json(outcome: "Outcome") -> tp.Dict[str, tp.Any]:
    """``ptslurm sweep --json``: the sweep, how it ended (with --wait or a local run) and
    its points."""
    manifest = outcome.manifest
    assert manifest is not None
    rows = outcome.rows
    state = manifest.state
    if rows is not None:
        done = all(r.state in TERMINAL for r in rows)
        ok = all(r.state == State.COMPLETED for r in rows)
        state = ("completed" if ok else "ended") if done else "running"
    states = {r.index: r.state.value for r in rows} if rows is not None else {}
    points = []
    for e in manifest.points:
        point = {"index": e.index, "storage_dir": e.storage_dir, "job_id": e.job_id, "updates": e.updates,
                 "named_configs": list(e.named_configs), "seed": e.seed}
        if rows is not None:
            point["state"] = states.get(e.index)
        points.append(point)
    return {"sweep_dir": str(outcome.sweep_dir), "name": manifest.name, "executor": manifest.executor,
            "state": state, "already_submitted": outcome.already, "sbatch_calls": outcome.sbatch_calls,
            "timing_s": {k: round(v, 3) for k, v in outcome.timing.items()}, "points": points}


def point_header(index: int, manifest: Manifest, source: str) -> str:
    return f"# point {index} of {manifest.name}: {source}"
