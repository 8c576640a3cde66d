"""What SLURM's commands print, parsed: pure functions over text (squeue, sacct, scontrol,
job-id and range notation, the marker comment of a sweep's jobs). ``commands`` runs the
programs; nothing here does."""
import typing as tp


def first_error_line(text: str) -> str:
    """The scheduler's own complaint: the last line mentioning 'error', else the last line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["(no output)"])[-1]


def parse_scontrol(text: str) -> tp.Dict[str, str]:
    """The first record of ``scontrol show ... -o`` output (``Key=Value`` pairs) as a dict."""
    fields: tp.Dict[str, str] = {}
    first = text.strip().splitlines()[0] if text.strip() else ""
    for item in first.split():
        key, sep, value = item.partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def slurm_minutes(text: tp.Optional[str]) -> tp.Optional[float]:
    """Minutes from SLURM's time format (``UNLIMITED``/``NONE``/``INFINITE`` -> None):
    ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``."""
    if not text or text.upper() in ("UNLIMITED", "NONE", "INFINITE", "N/A"):
        return None
    days, sep, rest = text.partition("-")
    if not sep:
        days, rest = "0", text
    try:
        parts = [int(p) for p in rest.split(":")]
    except ValueError:
        raise ValueError(f"not a SLURM time: {text!r}") from None
    if not days.isdigit() or any(p < 0 for p in parts) or len(parts) > 3 or (sep and not rest):
        raise ValueError(f"not a SLURM time: {text!r}")
    if sep:  # D-HH[:MM[:SS]]
        parts += [0] * (3 - len(parts))
        h, m, sec = parts
    elif len(parts) == 1:
        h, m, sec = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, sec = 0, parts[0], parts[1]
    else:
        h, m, sec = parts
    return int(days) * 1440 + h * 60 + m + sec / 60


def ranges(indices: tp.Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``0-2,5,7-8`` (in order; the inverse of ``parse_ranges``)."""
    out: tp.List[str] = []
    start: tp.Optional[int] = None
    prev = -2
    for i in indices:
        if start is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            out.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(out)


def parse_ranges(text: str) -> tp.List[int]:
    out: tp.List[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def parse_marked(text: str, marker: str) -> tp.Dict[int, str]:
    """From ``squeue -h -r -o '%i|%k'``: point index -> ``A_t`` for the array tasks whose
    comment is ``<marker>:<ranges>`` (task t holds the t-th index of the ranges) or, for
    packed points, ``<marker>:<ranges>/<n>`` (task t holds indices t*n to t*n+n-1 of them)."""
    found: tp.Dict[int, str] = {}
    for line in text.splitlines():
        job, _, comment = line.strip().partition("|")
        if not comment.startswith(marker + ":") or "_" not in job:
            continue
        spans, _, per = comment[len(marker) + 1:].partition("/")
        indices = parse_ranges(spans)
        n = int(per) if per.isdigit() and int(per) > 0 else 1
        array, _, task = job.partition("_")
        if task.isdigit():
            for index in indices[int(task) * n:(int(task) + 1) * n]:
                found[index] = job
    return found


def marker_comment(marker: str, units: tp.Sequence[tp.Sequence[int]]) -> str:
    """The comment of an array whose task t runs ``units[t]`` (every unit but the last of
    the same size): what ``parse_marked`` reads back."""
    flat = [i for unit in units for i in unit]
    size = len(units[0]) if units else 1
    return f"{marker}:{ranges(flat)}" + (f"/{size}" if size > 1 else "")


def expand_ids(job_id: str) -> tp.List[str]:
    """``123_[0-2,5%4]`` -> 123_0, 123_1, 123_2, 123_5 (sacct/squeue show pending arrays so)."""
    main, sep, rest = job_id.partition("_[")
    if not sep:
        return [job_id]
    out = []
    for part in rest.rstrip("]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            out += [f"{main}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def parse_pipe_table(text: str, fields: tp.Sequence[str]) -> tp.List[tp.Dict[str, str]]:
    """``sacctmgr -n -P ... format=A,B,C`` -> one dict per line."""
    rows = []
    for line in text.splitlines():
        if line.strip():
            values = line.rstrip("\n").split("|")
            rows.append(dict(zip(fields, values + [""] * (len(fields) - len(values)))))
    return rows


def _int(text: str) -> tp.Optional[int]:
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def parse_history(text: str) -> tp.Dict[str, tp.List[tp.Tuple[str, str]]]:
    """``sacct -n -D -X -P -o JobID,State,Start`` -> job id -> [(start, STATE), ...], one
    entry per run of the job (``-D`` keeps the runs a requeue replaced)."""
    out: tp.Dict[str, tp.List[tp.Tuple[str, str]]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        state = parts[1].split()[0] if parts[1] else ""
        for one in expand_ids(parts[0]):
            out.setdefault(one, []).append((parts[2], state))
    return out


class Queued(str):
    """A job's state as squeue gives it (compares as the state), with squeue's ``reason`` a
    job waits for (``Priority``, ``Resources``, ``JobHeldUser``, ``QOSMaxJobsPerUser``...)."""

    reason = ""


def parse_queue(text: str) -> tp.Dict[str, str]:
    """``squeue -h -r -o '%i %T %r'`` -> job id (``A_i`` for array tasks; a pending array's
    ``A_[0-3]`` expanded) -> state (a ``Queued`` with the reason of a waiting job)."""
    states: tp.Dict[str, str] = {}
    seen: tp.Dict[tp.Tuple[str, str], Queued] = {}  # one object per state and reason (10,000 pending tasks share one)
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0][:1].isdigit() and parts[1].replace("_", "").isalpha() and parts[1].isupper():
            reason = parts[2].strip() if len(parts) == 3 else ""
            state = seen.get((parts[1], reason))
            if state is None:
                state = seen[parts[1], reason] = Queued(parts[1])
                state.reason = "" if reason in ("None", "(null)") else reason
            if "[" in parts[0]:
                for one in expand_ids(parts[0]):
                    states[one] = state
            else:
                states[parts[0]] = state
    return states
