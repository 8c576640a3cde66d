"""``ptslurm report`` (issue 30): the page of a real sweep on the test cluster (two points
packed in one job that `scontrol requeue` and then a preemption stop mid-training, and a point
that fails) opened
in headless Chromium: what a user sees there (a row per point, a curve per point that logged,
the resumes and the timeline's stop marks, the failure with its trace), no console error and
no network request, and a screenshot (the README's picture comes from the same script). The
figures are checked against plotly's own schema, without a browser, in the fast tier."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import browser
from conftest import TEST_EXPERIMENTS, read_status, run_cli, wait_for

REPORTED = TEST_EXPERIMENTS / "reported.py"
FAST = {"PTSLURM_POLL_S": "0.5"}

# what the page shows, read from the DOM after its scripts ran
SEEN = """(() => {
  const rows = Array.from(document.querySelectorAll('#points tbody tr'));
  const curve = m => document.querySelector('.curve[data-metric="' + m + '"]');
  const traces = div => Array.from(div.querySelectorAll('g.trace.scatter'));
  const timeline = document.getElementById('timeline');
  const marks = (div, kind) => {  // the marks drawn, and what hovering each says
    const i = div.data.findIndex(t => t.meta && t.meta.marks === kind);
    const k = div.data.slice(0, i).filter(t => t.type === 'scatter').length;  // its place among the lines
    return i < 0 ? [0, []] : [traces(div)[k].querySelectorAll('path.point').length, div.data[i].text];
  };
  return {
    rows: rows.map(r => [Number(r.dataset.index), r.querySelector('[class*=state-]').textContent]),
    best: Array.from(document.querySelectorAll('#points tr.best')).map(r => Number(r.dataset.index)),
    curves: Object.fromEntries(['loss', 'accuracy'].map(m => [m, traces(curve(m)).filter(
      t => (t.querySelector('path.js-line') || {getAttribute: () => ''}).getAttribute('d')).length])),
    resumes: marks(curve('loss'), 'resumed'),
    stops: marks(timeline, 'stopped'),
    bars: timeline.querySelectorAll('g.trace.bars path').length,
    parallel: document.querySelectorAll('#parallel .parcoords').length,
    failures: Array.from(document.querySelectorAll('#failures details summary')).map(s => s.textContent),
    trace: (document.querySelector('#failures pre') || {}).textContent || '',
  };
})()"""
# what a user does with the table: sort by a column (twice: the other way), filter by words
USE = """(() => {
  const rows = () => Array.from(document.querySelectorAll('#points tbody tr'));
  const visible = () => rows().filter(r => r.style.display !== 'none').map(r => Number(r.dataset.index));
  const th = Array.from(document.querySelectorAll('#points th')).find(h => h.dataset.column === 'loss/best');
  th.click();
  const up = rows().map(r => Number(r.dataset.index));
  th.click();
  const down = rows().map(r => Number(r.dataset.index));
  const filter = words => {
    const box = document.getElementById('filter');
    box.value = words;
    box.dispatchEvent(new Event('input'));
    return visible();
  };
  return {up, down, failed: filter('failed'), lr: filter('lr=0.1'), none: filter('lr=0.1 failed'), all: filter('')};
})()"""


@pytest.mark.slurm
def test_the_report_of_a_requeued_preempted_packed_and_failed_sweep_shows_it_all_in_a_browser(slurm_cluster, tmp_path):
    assert browser.available(), "chromium-headless-shell is missing: the test command installs it"
    root = tmp_path / "root"
    proc = run_cli("sweep", "--root", root, "--name", "rep", "--json", "--points-per-job", "2", REPORTED, "with",
                   "lr=[0.05,0.1,0.2,0.9]", "steps=48", "delay_s=0.25", env=FAST)
    assert proc.returncode == 0, proc.stderr
    points = json.loads(proc.stdout)["points"]
    first = Path(points[0]["storage_dir"])
    wait_for("training to get going", lambda: _saved_step(first) >= 8, timeout=180)
    subprocess.run(["scontrol", "requeue", points[0]["job_id"]], check=True)
    wait_for("the second attempt to go on", lambda: _attempts(first) == 2 and _saved_step(first) >= 20, timeout=180)
    # preemption by a job that needs the whole node in the high-priority partition
    subprocess.run(["sbatch", "-p", "high", "-c", "8", "-o", "/dev/null", "--wrap", "sleep 1"], check=True,
                   capture_output=True)
    sweep_dir = root / "sweeps" / "rep"
    wait_for("the sweep to end", lambda: _ended(sweep_dir), timeout=300)
    out = tmp_path / "rep.html"
    made = run_cli("report", sweep_dir, "-o", out)
    assert made.returncode == 0, made.stderr
    page = browser.open_page(out, tmp_path / "profile")
    try:
        seen = page.evaluate(SEEN)
        used = page.evaluate(USE)
        problems, requests = page.problems(), page.requests()
    finally:
        page.close()
    shot = subprocess.run([sys.executable, str(Path(browser.__file__)), "screenshot", str(out),
                           str(tmp_path / "report.png")], capture_output=True, text=True, timeout=120)  # README's
    assert shot.returncode == 0, shot.stderr
    assert seen["rows"] == [[0, "completed"], [1, "completed"], [2, "completed"], [3, "failed"]], seen
    assert seen["best"] == [2], "the fastest learner's row is marked best (loss is minimised)"
    assert seen["curves"] == {"loss": 3, "accuracy": 3}, "a drawn line per point that logged"
    stops, says = seen["stops"]
    for index in (0, 1):  # packed in one job: both stopped twice, each stop a mark on the point's row
        assert [s.split(": ")[1] for s in says if s.startswith(f"point {index} ")] == ["requeued", "preempted"], says
    assert stops == len(says) >= 4
    resumes, says = seen["resumes"]
    assert resumes == len(says) >= 4 and all("resumed at step" in s for s in says), "two resumes of each curve"
    assert seen["bars"] >= 6, "a bar per attempt (and the waits)"
    assert seen["parallel"] == 1
    assert len(seen["failures"]) == 1 and "point(s) (3)" in seen["failures"][0], seen["failures"]
    assert "FloatingPointError" in seen["trace"] and "diverged" in seen["trace"]
    # missing values last either way (the failed point has no loss)
    assert used == {"up": [2, 1, 0, 3], "down": [0, 1, 2, 3], "failed": [3], "lr": [1], "none": [], "all": [0, 1, 2, 3]}
    assert problems == [], problems
    assert requests == [], "the page reached for the network"
    assert (tmp_path / "report.png").stat().st_size > 20_000


def _attempts(storage_dir: Path) -> int:
    return len(read_status(storage_dir).get("attempts", []))


def _saved_step(storage_dir: Path) -> int:
    """The step of the point's own checkpoint (relative to its working dir, wherever that is)."""
    for found in storage_dir.rglob("checkpoints/state.json"):
        try:
            return json.loads(found.read_text())["step"]
        except (OSError, ValueError, KeyError):
            return 0
    return 0


def _ended(sweep_dir: Path) -> bool:
    rows = json.loads(run_cli("status", sweep_dir, "--json").stdout)
    return all(r["state"] in ("completed", "failed") for r in rows)


def test_watch_rewrites_the_page_as_a_local_sweep_runs_and_stops_once_it_has_ended(tmp_path, no_slurm):
    import re

    root, hold = tmp_path / "root", tmp_path / "hold"
    hold.write_text("")
    runner = subprocess.Popen([sys.executable, "-m", "ptslurm", "sweep", "--root", str(root), "--name", "w",
                               str(TEST_EXPERIMENTS / "probe.py"), "with", f"hold_while_exists={hold}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sweep_dir = root / "sweeps" / "w"
    out = tmp_path / "w.html"
    try:
        wait_for("the point to run", lambda: (sweep_dir / "manifest.json").exists() and
                 "running" in run_cli("status", sweep_dir).stdout, timeout=120)
        watcher = subprocess.Popen([sys.executable, "-m", "ptslurm", "report", str(sweep_dir), "-o", str(out),
                                    "--watch", "--every", "0.5"], stdout=subprocess.PIPE, text=True)
        states = []

        def state_seen():
            text = out.read_text() if out.exists() else ""
            found = re.search(r'"state":"(\w+)"', text)
            if found and (not states or states[-1] != found.group(1)):
                states.append(found.group(1))
            return states

        wait_for("a page while the point runs", lambda: "running" in state_seen(), timeout=60)
        hold.unlink()
        wait_for("the page after the end", lambda: "completed" in state_seen(), timeout=60)
        said, _ = watcher.communicate(timeout=60)
    finally:
        hold.unlink(missing_ok=True)
        runner.wait(timeout=120)
    assert watcher.returncode == 0 and said.count("rewritten") >= 1 and "is final" in said, said
    assert states == ["running", "completed"]
