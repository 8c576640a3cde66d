"""Every output format of the command line, as text: tables, the status view, progress lines,
collect's table/csv/md/json, the dry run, the sweep summary. Pure functions of records and
rows; the CLI decides where the text goes.
"""
import csv
import io
import json
import os
import shlex
import time
import typing as tp

from ..records import TERMINAL, Manifest, State
from ..read.state import counts, timestamp, why

if tp.TYPE_CHECKING:  # pragma: no cover
    from ..read.state import PointRow
    from ..plan.make import Plan
    from ..submit.sweep import Outcome


def cell(value: tp.Any, key: str = "") -> str:
    """A config value in a table: strings quoted (as on the command line), a named-config
    axis as its names."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    if key == "named_configs":
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"  # rounded to significant digits, never cut
    return repr(value) if isinstance(value, str) else str(value)


def number(value: tp.Any) -> str:
    """A result in a table: 6 significant digits, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def terminal_width(default: tp.Optional[int] = None) -> tp.Optional[int]:
    """The terminal's width (``$COLUMNS`` first, as ``shutil.get_terminal_size`` reads it);
    ``default`` (no limit: None) when the output goes to a file or a pipe, as ``ls`` does."""
    import shutil
    import sys

    if not os.environ.get("COLUMNS") and not sys.stdout.isatty():
        return default
    return max(20, shutil.get_terminal_size((default or 100, 24)).columns)


def _fit(text: str, width: int) -> str:
    """``text`` in ``width`` characters: a float rounded to fewer significant digits (never
    cut), anything else cut with an ellipsis."""
    if len(text) <= width:
        return text
    if any(c in text for c in ".eE") and text.lstrip("-")[:1].isdigit():
        try:
            value = float(text)
        except ValueError:
            pass
        else:
            for digits in range(6, 0, -1):
                rounded = f"{value:.{digits}g}"
                if len(rounded) <= width:
                    return rounded
    return text[: max(width - 1, 0)] + "…"


def table(header: tp.Sequence[str], rows: tp.Sequence[tp.Sequence[str]], max_width: int = 40,
          total_width: tp.Optional[int] = None, keep: tp.Collection[str] = ()) -> str:
    """Aligned columns fitted to ``total_width`` (default: the terminal's): the widest
    columns give up width first, down to their header's width (24 at most), those named in
    ``keep`` only when no other can; a table that still does not fit is printed in blocks of
    columns, each repeating the first column (as pandas does). No line is wider than
    ``total_width``; floats are rounded, not cut."""
    total = total_width or terminal_width() or 10**6
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    n = len(header)
    natural = [max(map(len, column)) for column in zip(*cells)]
    widths = [min(w, max(max_width, len(header[i]))) for i, w in enumerate(natural)]

    def used(ws: tp.Sequence[int]) -> int:
        return sum(ws) + 2 * (len(ws) - 1)

    floor = [min(natural[i], max(6, min(len(h), 24))) for i, h in enumerate(header)]  # headers stay readable
    while used(widths) > total:
        candidates = [i for i in range(n) if widths[i] > floor[i]]
        candidates = [i for i in candidates if header[i] not in keep] or candidates
        if not candidates:
            break  # still too wide: blocks of columns
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    blocks, current, width_now = [], [0], widths[0]
    for i in range(1, n):
        if width_now + 2 + widths[i] > total and len(current) > 1:
            blocks.append(current)
            current, width_now = [0], widths[0]
        current.append(i)
        width_now += 2 + widths[i]
    blocks.append(current)
    out = []
    for cols in blocks:
        if all(natural[i] <= widths[i] for i in cols):  # nothing to fit: one format for every line
            layout = "  ".join(f"{{{i}:<{widths[i]}}}" for i in cols)
            lines = [layout.format(*r).rstrip() for r in cells]
        else:
            lines = ["  ".join(_fit(r[i], widths[i]).ljust(widths[i]) for i in cols).rstrip() for r in cells]
        lines.insert(1, "  ".join("-" * widths[i] for i in cols))
        out.append("\n".join(line[:total] for line in lines))
    return "\n\n".join(out)


def age(text: tp.Optional[str], now: tp.Optional[float] = None) -> str:
    """``42s ago``, ``5m ago``, ``3h ago`` for a recorded time; '-' for none."""
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
    c = counts(rows)
    done = sum(v for k, v in c.items() if k in TERMINAL)
    bar = "#" * (width * done // max(total, 1))
    return f"[{bar:<{width}}] {done}/{total}{what}  " + "  ".join(f"{k} {v}" for k, v in c.items())


def status(manifest: Manifest, rows: tp.Sequence["PointRow"], now: tp.Optional[float] = None,
           rungs: tp.Optional[tp.Mapping[int, str]] = None) -> str:
    """``ptslurm status``: one row per point and a summary line. ``rungs``: successive
    halving's cell per point index (``2 final``, ``0 stopped``)."""
    varied = list(manifest.varied)
    spread = any(r.world_size > 1 for r in (manifest.groups or (manifest.resources,)))  # distributed points
    header = ["#"] + varied + ["state", "att", "progress", "heartbeat", "elapsed", "job"] + (["ranks"] if spread else [])
    versions = bool(manifest.code_versions)  # several code snapshots: which one each point ran
    if versions:
        header.insert(header.index("state"), "code")
    if rungs is not None:
        header.insert(header.index("state"), "rung")
    notes = [why(r) for r in rows]
    noted = any(notes)
    if noted:  # why a point failed, or why it is not requeued any more
        header.append("why")
    sharing: tp.Dict[str, int] = {}  # a job shared by packed points: how many
    for e in manifest.points:
        if e.job_id and e.job_id != "local":
            sharing[e.job_id] = sharing.get(e.job_id, 0) + 1
    lines: tp.List[tp.List[str]] = []
    for r, note in zip(rows, notes):
        job = r.job_id or "-"
        if sharing.get(job, 0) > 1:
            job = f"{job} ({sharing[job]} points)"
        # an ended point has no heartbeat to watch: show when it ended
        if r.state in TERMINAL:
            beat = f"ended {age(r.ended, now)}" if r.ended else "-"
        else:
            beat = age(r.heartbeat, now)
        line = [str(r.index)]
        line += [cell(r.varied.get(k, ""), k) for k in varied]
        if versions:
            line.append(f"v{manifest.point(r.index).code_version}")
        if rungs is not None:
            line.append(rungs.get(r.index, "-"))
        line += [f"{r.state} ({waits_for(r.reason)})" if r.reason else str(r.state), str(r.attempts),
                 progress_cell(r, now), beat,
                 duration(r.elapsed_s), job]
        if spread:
            line.append(ranks(manifest, r))
        if noted:
            line.append(note or "")
        lines.append(line)
    width = 60  # the table fits itself to the terminal
    total = terminal_width() or 10**6

    whole = [max(map(len, column)) for column in zip(header, *lines)]  # each column's width, every cell whole

    def natural() -> int:  # the table's width with every cell whole
        return sum(whole) + 2 * (len(whole) - 1)

    reasons = ""
    if noted and natural() > total:
        # the reasons do not fit beside the table: under it, whole, one line per reason
        header, lines, whole = header[:-1], [line[:-1] for line in lines], whole[:-1]
        reasons = reasons_below(rows, notes, total)
    for name in ("elapsed", "heartbeat", "att"):  # what matters least gives way first (status --json has it)
        if natural() <= total:
            break
        at = header.index(name)
        header, lines = header[:at] + header[at + 1:], [line[:at] + line[at + 1:] for line in lines]
        whole = whole[:at] + whole[at + 1:]
    shown = table(header, lines, max_width=width, keep=("state", "progress", "job"))
    if colour():
        shown = paint_column(shown, "state")
    return (f"sweep {manifest.name} ({manifest.executor})\n" + shown + "\n" + reasons
            + counts_line(rows, len(rows), 30, " ended") + usage_hints(manifest, rows))


def usage_hints(manifest: Manifest, rows: tp.Sequence["PointRow"]) -> str:
    """Under the table: a line for each ended point that wasted what it asked for (an idle
    GPU, most of its memory), naming the option to change (``usage.hints``)."""
    from ..read.usage import hints

    def of(row: "PointRow") -> tp.List[str]:  # packed points share their job's memory
        asked = manifest.resources_of(row.index)
        share = asked.mem_gb / max(1, asked.points_per_job) if asked.mem_gb else None
        return hints(row.index, row.latest.usage if row.latest is not None else None, share, asked.gpus)

    found = [line for r in rows if r.state in TERMINAL for line in of(r)]
    return "".join(f"\nhint: {line}" for line in found[:5]) + (f"\nhint: and {len(found) - 5} more (status --json "
                                                             f"has each point's usage)" if len(found) > 5 else "")


def waits_for(reason: str) -> str:
    """squeue's reason a job waits, in the words of ``status``: ``held`` for a hold."""
    return "held" if reason.startswith("JobHeld") else reason


def reasons_below(rows: tp.Sequence["PointRow"], notes: tp.Sequence[str], total: int) -> str:
    """``why`` under the table: points of the same reason together, the reason whole (wrapped
    at ``total``, never cut)."""
    import textwrap

    grouped: tp.Dict[str, tp.List[int]] = {}
    for r, note in zip(rows, notes):
        if note:
            grouped.setdefault(f"{r.state}: {note}", []).append(r.index)
    out = []
    for text, indices in grouped.items():
        head = f"why, point{'s' if len(indices) > 1 else ''} {', '.join(map(str, indices))} "
        out += textwrap.wrap(head + text, width=max(total, 40), subsequent_indent="    ", break_long_words=False,
                             break_on_hyphens=False)
    return "\n".join(out) + "\n"


# ANSI colours of the states: red for what needs a look, green done, yellow under way
COLOURS = {"failed": "31", "timeout": "31", "lost": "31", "unknown": "31", "preempted": "33", "cancelled": "35",
           "completed": "32", "running": "33", "requeued": "33", "pending": "36", "waiting": "36"}


def colour(stream: tp.Any = None) -> bool:
    """Colour only on a terminal, never with ``NO_COLOR`` set (no-color.org) or TERM=dumb."""
    import sys

    stream = stream or sys.stdout
    return bool(stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb")


def paint_column(text: str, name: str) -> str:
    """``text`` (a ``table``) with the states in column ``name`` coloured; alignment kept
    (the codes go around the word, after padding)."""
    import re

    out, start = [], None
    for line in text.split("\n"):
        if line.startswith("#"):  # a header line (each block of columns repeats it)
            found = re.search(rf"(?:^|  ){re.escape(name)}(?:  |$)", line)
            start = (found.start() + (2 if found.group().startswith("  ") else 0)) if found else None
        elif start is not None and not line.startswith("-"):
            word = re.match(r"[a-z_]+", line[start:])
            if word and word.group() in COLOURS:
                end = start + word.end()
                line = f"{line[:start]}\033[{COLOURS[word.group()]}m{line[start:end]}\033[0m{line[end:]}"
        out.append(line)
    return "\n".join(out)


def progress_cell(row: "PointRow", now: tp.Optional[float] = None) -> str:
    """``150/1000 ep 2 12.5/s ETA 1:08:00`` (``it 150 ep 2`` without a total): where the
    training is, of how much (when the code reports a total), how fast this attempt goes
    (iterations a second) and when it ends at that rate."""
    if row.iteration is None:
        return "-"
    progress = row.status.progress or {}
    given = progress.get("total")
    total: tp.Dict[str, tp.Any] = given if isinstance(given, dict) else {}
    text = f"{row.iteration}/{total['iteration']}" if total.get("iteration") else f"it {row.iteration}"
    if row.epoch is not None:
        text += f" ep {row.epoch}" + (f"/{total['epoch']}" if total.get("epoch") else "")
    latest = row.latest
    if latest is None or row.state not in (State.RUNNING,):
        return text
    start: tp.Dict[str, tp.Any] = dict(latest.resumed_from or latest.progress_at_start
                                      or {"iteration": 0, "time": latest.started})
    t0, t1 = timestamp(start.get("time") or latest.started), timestamp(progress.get("time"))
    done = row.iteration - int(start.get("iteration") or 0)
    if t0 is None or t1 is None or t1 <= t0 or done <= 0:
        return text
    rate = done / (t1 - t0)
    text += f" {rate:.3g}/s"
    if total.get("iteration"):
        left = (total["iteration"] - row.iteration) / rate - max(0.0, (now or time.time()) - t1)
        text += f" ETA {duration(max(left, 0))}"
    elif total.get("epoch") and row.epoch is not None and row.epoch > int(start.get("epoch") or 0):
        per_epoch = (t1 - t0) / (row.epoch - int(start.get("epoch") or 0))
        text += f" ETA {duration(max((total['epoch'] - row.epoch) * per_epoch, 0))}"
    return text


def ranks(manifest: Manifest, row: "PointRow") -> str:
    """``4 on 2 nodes``: the ranks of a distributed point (its latest attempt's, else asked)."""
    latest = row.latest
    asked = manifest.resources_of(row.index)
    n = (latest.ranks if latest is not None and latest.ranks else None) or asked.world_size
    nodes = (latest.nodes if latest is not None and latest.nodes else None) or asked.nodes
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
    """``ptslurm list``; a note column when a sweep has a note."""
    header = ["sweep", "experiment", "executor", "created", "points", "note"]
    if not any(len(r) > 5 and r[5] for r in rows):
        header, rows = header[:5], [r[:5] for r in rows]
    return table(header, rows, max_width=40, keep=("created", "points"))


def sweep_row(manifest: Manifest, rows: tp.Sequence["PointRow"]) -> tp.List[str]:
    return [manifest.name, manifest.experiment.name, manifest.executor, manifest.created[:16],
            "  ".join(f"{k} {v}" for k, v in counts(rows).items()), manifest.note or ""]


def dry_run(p: "Plan", batch_scripts: tp.Optional[tp.Sequence[tp.Tuple[str, str]]],
            local_command: tp.Optional[tp.Sequence[str]]) -> str:
    """What ``--dry-run`` shows: points, storage dirs, and the batch script of each resource
    group (``(label, script)``; or the local command) the points would run with."""
    varied = list(p.points[0].varied) if p.points else []
    header = ["#"] + varied + ["storage dir (would be)"]
    rows = [[str(pt.index)] + [cell(pt.varied_values().get(k, ""), k) for k in varied] + [str(d)]
            for pt, d in zip(p.points, p.predicted_dirs)]
    out = [f"sweep {p.name!r}: {len(p.points)} points of experiment {p.experiment_name!r} "
           f"({p.executor}); sweep dir would be {p.sweep_dir}", table(header, rows, max_width=200)]
    if p.storage_key:
        out.append(f"each point's storage dir is injected as {p.storage_key}")
    if batch_scripts is not None and len(batch_scripts) == 1:
        label, script = batch_scripts[0]
        out += [f"\nbatch script (one per job array; {label}):\n", script]
    elif batch_scripts is not None:
        out.append(f"\n{len(batch_scripts)} resource groups (a sweep file's resources), one job array each:")
        for k, (label, script) in enumerate(batch_scripts, 1):
            out += [f"\ngroup {k}, {label}; batch script:\n", script]
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
    entry = manifest.point(index)
    code = manifest.code_of(entry.code_version)
    history = " -> ".join(f"{b.get('value')!r} ({b.get('by')})" for b in entry.budgets)
    return (f"# point {index} of {manifest.name}: {source}\n"
            f"# code: snapshot {code.label} in {code.dir}/, taken {code.taken or '?'}"
            + (f"\n# budget {entry.budgets[0].get('key')}: {history}" if entry.budgets else ""))
