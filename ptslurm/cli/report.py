"""``ptslurm report``: one self-contained HTML file of a sweep (opens offline: plotly's own
JavaScript, shipped in the ``plotly`` package, is inlined gzip-compressed and unpacked by the
browser; no request leaves the page). The figures are plotly figure dicts built here from
``reportdata.gather``; the page (``templates/report.html``) lays them out beside the points
table, the failures and the resources used. Imported only by the ``report`` verb (``readverbs``): the
``plotly`` extra is needed by it alone."""
import base64
import gzip
import html
import json
import time
import typing as tp
from pathlib import Path

from ..read import reportdata
from ..records import writes
from ..read.results import is_number
from ..errors import UsageError

WAITED, RAN = "#c8c8c8", {"completed": "#2ca02c", "failed": "#d62728", "running": "#1f77b4"}
STOPPED = "#ff7f0e"
WATCH_EVERY_S = 30.0


def plotly_js() -> bytes:
    """plotly's JavaScript as its Python package ships it."""
    try:
        from importlib import resources

        return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    except (ImportError, ModuleNotFoundError, FileNotFoundError):
        raise UsageError("the report needs plotly: pip install 'ptslurm[report]'") from None


def write(sweep_dir: Path, output: Path, metric: tp.Optional[str] = None) -> tp.Dict[str, tp.Any]:
    """The report of ``sweep_dir`` written (atomically) to ``output``; what it shows."""
    js = plotly_js()
    data = reportdata.gather(sweep_dir, metric)
    writes.atomic_write_text(output, render(data, js))
    return data


def watch(sweep_dir: Path, output: Path, metric: tp.Optional[str], every: float = WATCH_EVERY_S,
          say: tp.Callable[[str], None] = print) -> Path:
    """Rewrite the report every ``every`` seconds until no point is waiting or running."""
    while True:
        states = {r.get("state") for r in write(sweep_dir, output, metric)["records"]}
        if not states & {"waiting", "pending", "running", "requeued"}:
            say(f"the sweep has ended: {output} is final")
            return output
        say(f"{output} rewritten; next in {every:g} s (Ctrl-C stops)")
        time.sleep(every)


def render(data: tp.Dict[str, tp.Any], js: bytes) -> str:
    """The page: the template with the data, the figures and plotly's packed JavaScript."""
    from importlib import resources

    template = (resources.files("ptslurm.templates") / "report.html").read_text()
    figures = {"curves": curve_figures(data), "parallel": parallel_figure(data), "timeline": timeline_figure(data)}
    fill = {
        "TITLE": html.escape(f"{data['name']}: ptslurm report"),
        "DATA": _script_json({"sweep": {k: data[k] for k in ("name", "created", "made", "experiment", "varied",
                                                              "metrics", "rank", "best")},
                              "records": data["records"], "failures": data["failures"],
                              "attempts": {p["index"]: p["attempts"] for p in data["points"]}}),
        "FIGURES": _script_json(figures),
        "PLOTLY": base64.b64encode(gzip.compress(js, compresslevel=6, mtime=0)).decode(),
    }
    for key, value in fill.items():
        template = template.replace("{{%s}}" % key, value)
    return template


def _script_json(value: tp.Any) -> str:
    """Compact JSON that is safe inside a <script> element (NaN and infinities as null,
    which JSON.parse reads)."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str).decode().replace("</", "<\\/")


def _hover(point: dict, extra: str) -> str:
    return f"point {point['index']}<br>{html.escape(point['label'])}<br>{extra}<extra></extra>"


def curve_figures(data: tp.Dict[str, tp.Any]) -> tp.List[dict]:
    """One figure per metric: a line per point (the best one thick and on top), the steps
    where an attempt resumed marked."""
    figures = []
    best = data["best"]
    for metric in data["metrics"]:
        traces, marks = [], {"x": [], "y": [], "text": []}  # type: tp.List[dict], tp.Dict[str, list]
        for point in sorted(data["points"], key=lambda p: p["index"] == best):
            series = point["curves"].get(metric)
            if not series:
                continue
            top = point["index"] == best
            traces.append({"type": "scatter", "mode": "lines" if len(series["steps"]) > 1 else "markers",
                           "x": series["steps"], "y": series["values"], "name": f"{point['index']}: {point['label']}",
                           "line": {"width": 3 if top else 1.2}, "opacity": 1.0 if top else 0.6,
                           "meta": {"point": point["index"]},
                           "hovertemplate": _hover(point, f"step %{{x}}<br>{html.escape(metric)} %{{y}}")})
            at = dict(zip(series["steps"], series["values"]))
            for step in point["resumes"].get(metric, []):
                marks["x"].append(step)
                marks["y"].append(at.get(step))
                marks["text"].append(f"point {point['index']} resumed at step {step}")
        if marks["x"]:
            traces.append({"type": "scatter", "mode": "markers", "name": "resumed", "x": marks["x"], "y": marks["y"],
                           "text": marks["text"], "hoverinfo": "text", "meta": {"marks": "resumed"},
                           "marker": {"symbol": "triangle-up", "size": 10, "color": "black"}})
        figures.append({"metric": metric, "data": traces, "layout": {
            "title": {"text": metric + (" (best thick)" if best is not None else "")},
            "xaxis": {"title": {"text": "step"}}, "yaxis": {"title": {"text": metric}},
            "showlegend": len(traces) <= 20, "height": 420, "margin": {"t": 40}}})
    return figures


def parallel_figure(data: tp.Dict[str, tp.Any]) -> tp.Optional[dict]:
    """Varied keys against the ranking metric, one line per point that has a value,
    coloured by it (the colour scale reversed where lower is better)."""
    rank = data["rank"]
    if rank is None or not data["varied"]:
        return None
    rows = [r for r in data["records"] if is_number(r.get(rank["key"]))]
    if not rows:
        return None
    dimensions = [_dimension(key, [r.get(key) for r in rows]) for key in data["varied"]]
    dimensions.append({"label": rank["key"], "values": [r[rank["key"]] for r in rows]})
    return {"data": [{"type": "parcoords", "dimensions": dimensions,
                      "line": {"color": [r[rank["key"]] for r in rows], "colorscale": "Viridis",
                               "reversescale": rank["way"] == "min", "showscale": True}}],
            "layout": {"title": {"text": f"varied keys against {rank['key']} ({rank['way']} is best)"},
                       "height": 420, "margin": {"t": 80}}}


def _dimension(key: str, values: tp.List[tp.Any]) -> dict:
    """A parallel-coordinates axis: numbers as they are; anything else as categories."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"label": key, "values": values}
    names = sorted({json.dumps(v) for v in values})
    return {"label": key, "values": [names.index(json.dumps(v)) for v in values],
            "tickvals": list(range(len(names))), "ticktext": names}


def timeline_figure(data: tp.Dict[str, tp.Any]) -> tp.Optional[dict]:
    """Every point's attempts on one time axis: the wait before each (grey), each run
    coloured by how it ended, and a mark where the scheduler stopped it (time limit,
    preemption, requeue, node failure)."""
    bars: tp.Dict[str, tp.Dict[str, list]] = {}
    stops: tp.Dict[str, list] = {"x": [], "y": [], "text": []}
    for point in data["points"]:
        row = f"point {point['index']}"
        for a in point["attempts"]:
            trained = "" if a["trained"] is None else f", {a['trained']:.0%} trained"
            if a["start"] > a["waited_from"]:
                _bar(bars, "waiting", row, a["waited_from"], a["start"], f"{row}: waited")
            kind = "stopped" if a["stopped"] else ("running" if a["running"] else
                                                   "completed" if a["state"] == "completed" else "failed")
            _bar(bars, kind, row, a["start"], a["end"],
                 f"{row} attempt {a['attempt']} (job {a['job']}{', packed' if a['packed'] else ''}): "
                 f"{a['why']}{trained}")
            if a["stopped"]:
                stops["x"].append(_iso(a["end"]))
                stops["y"].append(row)
                stops["text"].append(f"{row} attempt {a['attempt']}: {a['why']}")
    if not bars:
        return None
    colours = dict(RAN, waiting=WAITED, stopped=STOPPED)
    traces = [{"type": "bar", "orientation": "h", "name": kind, "base": b["base"], "x": b["x"], "y": b["y"],
               "text": b["text"], "hoverinfo": "text", "textposition": "none", "marker": {"color": colours[kind]}}
              for kind, b in bars.items()]
    if stops["x"]:
        traces.append({"type": "scatter", "mode": "markers", "name": "stopped by the scheduler", "x": stops["x"],
                       "y": stops["y"], "text": stops["text"], "hoverinfo": "text", "meta": {"marks": "stopped"},
                       "marker": {"symbol": "x", "size": 11, "color": "black"}})
    return {"data": traces, "layout": {"barmode": "overlay", "title": {"text": "attempts as they ran"},
                                       "xaxis": {"type": "date"},
                                       "yaxis": {"autorange": "reversed", "type": "category"},
                                       "height": max(300, 22 * len(data["points"]) + 120), "margin": {"t": 40}}}


def _bar(bars: tp.Dict[str, tp.Dict[str, list]], kind: str, row: str, start: float, end: float, text: str) -> None:
    b = bars.setdefault(kind, {"base": [], "x": [], "y": [], "text": []})
    b["base"].append(_iso(start))
    b["x"].append(max(1.0, (end - start) * 1000.0))  # a date axis counts in milliseconds
    b["y"].append(row)
    b["text"].append(text)


def _iso(seconds: float) -> str:
    """A time as plotly's date axis reads it (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
