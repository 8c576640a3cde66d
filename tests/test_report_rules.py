"""The report's rules without a browser (issue 30): its figures are valid plotly figures (by
plotly's own schema), a point's attempts become resume marks, timeline bars and stop marks
as the files say, the trained share is what the metric timestamps say, long curves are
thinned with their last step kept, and bad input (no plotly, an unknown metric) is one line
and no file. The page in a real browser: tests/test_report.py."""
import json
import sys
from pathlib import Path

import pytest

from conftest import TEST_EXPERIMENTS, run_cli
from ptslurm.cli import report
from ptslurm.read import reportdata, usage
from ptslurm.records import Attempt, State

pytestmark = pytest.mark.fast

REPORTED = TEST_EXPERIMENTS / "reported.py"


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A local sweep of three points: two that trained, one that diverged."""
    root = tmp_path_factory.mktemp("report") / "root"
    proc = run_cli("sweep", "--root", root, "--name", "loc", "--json", "--executor", "local", REPORTED, "with",
                   "lr=[0.1,0.3,0.9]", "steps=6", "delay_s=0")
    assert proc.returncode in (0, 1), proc.stderr
    return root / "sweeps" / "loc"


def test_a_local_sweeps_report_holds_its_rows_curves_failure_and_valid_figures(local_sweep):
    import plotly.graph_objects as go

    data = reportdata.gather(local_sweep)
    assert [r["state"] for r in data["records"]] == ["completed", "completed", "failed"]
    assert data["rank"]["key"] == "accuracy/best" and data["rank"]["way"] == "max" and data["best"] == 1
    assert reportdata.gather(local_sweep, "loss")["rank"]["way"] == "min"
    assert [p["curves"]["loss"]["steps"] for p in data["points"][:2]] == [[1, 2, 3, 4, 5, 6]] * 2
    assert data["points"][2]["curves"] == {}
    assert len(data["failures"]) == 1 and data["failures"][0]["points"] == [2]
    assert "FloatingPointError" in data["failures"][0]["traceback"]
    figures = report.curve_figures(data) + [report.parallel_figure(data), report.timeline_figure(data)]
    for figure in figures:  # plotly's validators refuse an unknown property or a bad value
        go.Figure({"data": figure["data"], "layout": figure["layout"]})
    loss = next(f for f in figures if f.get("metric") == "loss")
    assert [t["line"]["width"] for t in loss["data"]] == [1.2, 3], "the best point drawn last and thick"


def test_the_page_is_one_file_with_its_data_and_plotlys_own_code_packed_inside(local_sweep, tmp_path):
    import base64
    import gzip
    import re

    out = tmp_path / "r.html"
    proc = run_cli("report", local_sweep, "-o", out)
    assert proc.returncode == 0 and f"wrote {out}" in proc.stdout, proc.stderr
    page = out.read_text()
    packed = re.search(r'id="plotly-packed">([^<]*)<', page).group(1)
    assert gzip.decompress(base64.b64decode(packed)) == report.plotly_js()
    data = json.loads(re.search(r'id="report-data">([^<]*)<', page).group(1))
    assert [r["index"] for r in data["records"]] == [0, 1, 2]
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page), "nothing is loaded from elsewhere"


def _attempt(n, started, ended, cause=None, state=State.REQUEUED, sid=None):
    return Attempt(attempt=n, state=state, job_id="7_0", started=started, ended=ended, cause=cause, sacred_id=sid)


def test_attempts_become_waits_runs_stop_marks_and_resume_marks():
    t = "2026-12-07T10:00:{:02d}+00:00"
    attempts = [_attempt(1, t.format(10), t.format(20), "requeued", sid="1"),
                _attempt(2, t.format(30), t.format(40), "timeout", sid="2"),
                _attempt(3, t.format(45), t.format(55), None, State.COMPLETED, sid="3")]
    parts = [{"loss": {"steps": [1, 2, 3, 4], "values": [4, 3, 2, 1]}},
             {"loss": {"steps": [3, 4, 5], "values": [2, 1, 0.5]}},
             {"loss": {"steps": [5, 6], "values": [0.5, 0.25]}}]
    created = reportdata.timestamp(t.format(0))
    rows = reportdata.timeline(attempts, parts, created)
    assert [(r["waited_from"] - created, r["start"] - created, r["end"] - created) for r in rows] == \
        [(0, 10, 20), (20, 30, 40), (40, 45, 55)]
    assert [(r["stopped"], r["why"]) for r in rows] == [(True, "requeued"), (True, "time limit"), (False, "completed")]


def test_resumes_are_the_first_step_of_each_later_attempt_and_the_curve_is_joined():
    from ptslurm.records import Manifest, PointEntry

    parts = [{"loss": {"steps": [1, 2, 3, 4], "values": [4, 3, 2, 1]}},
             {"loss": {"steps": [3, 4, 5], "values": [2, 1, 0.5]}}, {}]
    point = reportdata._point(Manifest(varied=("lr",)), PointEntry(index=4, updates={"lr": 0.1}, varied=("lr",)),
                              [], parts, None)
    assert point["label"] == "lr=0.1" and point["resumes"] == {"loss": [3]}
    assert point["curves"]["loss"] == {"steps": [1, 2, 3, 4, 5], "values": [4, 3, 2, 1, 0.5]}


def test_the_trained_share_is_the_span_of_logged_steps_plus_one_step():
    stamps = [f"2026-12-07T10:00:{s:02d}.000000" for s in (10, 12, 14, 16)]  # 4 steps, 2 s each
    part = {"loss": {"steps": [1, 2, 3, 4], "values": [1] * 4, "timestamps": stamps}}
    start = reportdata.timestamp("2026-12-07T10:00:00")
    assert usage.trained_share(part, start, start + 20) == 0.4  # (6 s + 2 s) of 20 s
    assert usage.trained_share({}, start, start + 20) is None


def test_a_long_curve_is_thinned_evenly_and_keeps_its_last_step():
    got = reportdata.thin(list(range(1000)), [float(i) for i in range(1000)], most=50)
    assert len(got["steps"]) == 50 and got["steps"][0] == 0 and got["steps"][-1] == 999
    gaps = {b - a for a, b in zip(got["steps"], got["steps"][1:])}
    assert gaps <= {20, 21}, gaps
    assert reportdata.thin([1, 2], [float("nan"), 1 / 3])["values"] == [None, 0.333333]


def test_without_plotly_or_with_an_unknown_metric_report_says_so_and_writes_nothing(local_sweep, tmp_path):
    out = tmp_path / "r.html"
    code = ("import sys; sys.modules['plotly'] = None; from ptslurm.cli import main; "
            f"sys.exit(main(['report', {str(local_sweep)!r}, '-o', {str(out)!r}]))")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == \
        "ptslurm: error: the report needs plotly: pip install 'ptslurm[report]'", proc.stderr
    proc = run_cli("report", local_sweep, "-o", out, "--metric", "los")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "unknown metric 'los'" in proc.stderr and "loss" in proc.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_watch_on_an_ended_sweep_writes_once_and_says_it_is_final(local_sweep, tmp_path):
    out = tmp_path / "w.html"
    proc = run_cli("report", local_sweep, "-o", out, "--watch", "--every", "0.1", timeout=60)
    assert proc.returncode == 0 and "is final" in proc.stdout and out.exists(), proc.stderr


def test_collect_counts_a_points_time_and_the_share_of_it_that_trained():
    t = "2026-12-07T10:00:{:02d}+00:00"
    attempts = [Attempt(started=t.format(0), ended=t.format(20)), Attempt(started=t.format(30), ended=t.format(40))]
    stamps = [f"2026-12-07T10:00:{s:02d}.000000" for s in (10, 12, 14, 16)]
    parts = [{"loss": {"steps": [1, 2, 3, 4], "values": [0] * 4, "timestamps": stamps}}, {}]
    # 30 s ran in all; the second attempt logged nothing, so the share is the first's: 8 of 20 s
    assert usage.time_columns(attempts, parts) == {"time_s": 30, "trained": 0.4}
    assert usage.time_columns([Attempt()], [{}]) == {}
