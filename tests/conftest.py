"""Test tiers: pure unit tests, filesystem tests on tmp_path, and an integration tier on a
real local SLURM cluster (tests/slurm_cluster.py) that this session starts and stops.

With CI set, a SLURM test that cannot run fails the run instead of being skipped."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TEST_EXPERIMENTS = Path(__file__).resolve().parent / "experiments"
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
MAX_ARRAY_SIZE = 10

sys.path.insert(0, str(Path(__file__).resolve().parent))
if os.environ.get("PYTEST_XDIST_WORKER"):  # xdist's workers get COLUMNS=80: the tests see a pipe, as without it
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


def _require_slurm() -> None:
    """Skip without SLURM's packages; in CI, fail (the SLURM tier must run there)."""
    from slurm_cluster import installed

    if not installed():
        msg = "SLURM packages are not installed (run tests/run.sh, which installs them)"
        if IN_CI:
            pytest.fail(msg + " -- in CI the SLURM tier must run")
        pytest.skip(msg)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    from slurm_cluster import Cluster, namespaces_work

    _require_slurm()
    # with namespaces (root, iproute2), a partition 'multi' of two more nodes for multi-node points
    cluster = Cluster(tmp_path_factory.mktemp("slurm"), max_array_size=MAX_ARRAY_SIZE, two_nodes=namespaces_work())
    old = os.environ.get("SLURM_CONF")
    os.environ.update(cluster.env)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


@pytest.fixture(scope="module")
def own_slurm_cluster(tmp_path_factory):
    """A second cluster of its own (other ports, name and job ids) for the longest tests (one
    module's), which run on it in the other pytest worker while the SLURM tier uses the first."""
    from slurm_cluster import Cluster

    _require_slurm()
    cluster = Cluster(tmp_path_factory.mktemp("slurm-own"), max_array_size=MAX_ARRAY_SIZE, second=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def no_slurm(monkeypatch, tmp_path):
    """A machine where no SLURM controller answers (what a laptop looks like)."""
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-slurm.conf"))


@pytest.fixture
def fake_slurm(monkeypatch, tmp_path):
    """A ``backends.FakeCluster`` standing in for SLURM for every question and order outside
    a submission (``schedulers.slurm()``): the job side's requeue, its reading of how a stop
    came, the lease's question whether a job runs. ``.scheduler`` is the one answering."""
    from ptslurm import schedulers
    from ptslurm.schedulers.backends import FakeCluster
    from ptslurm.records.spec import Resources

    cluster = FakeCluster()
    cluster.scheduler = cluster.backend(tmp_path, Resources(), "fake")
    monkeypatch.setattr(schedulers, "_SLURM", [cluster.scheduler])
    return cluster


@pytest.fixture
def small_tmpfs(tmp_path):
    """``mount(size)`` mounts a tmpfs of ``size`` (e.g. "256k") and returns its path; a full
    disk for tests that run as root, where chmod makes nothing unwritable. Unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mounted = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"tmpfs-{len(mounted)}"
        mnt.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], check=True)


def wait_for(what, check, timeout=120, every=0.2):
    """Poll ``check`` until it returns something true (which is returned); fail naming ``what``."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_status(storage_dir) -> dict:
    """A point's ptslurm_status.json as the file holds it ({} before it exists)."""
    import json

    try:
        return json.loads((Path(storage_dir) / "ptslurm_status.json").read_text())
    except (OSError, ValueError):
        return {}


def joined_metrics(storage_dir, attempts) -> dict:
    """The sacred metrics of these attempts (dicts from the status file), joined as collect does."""
    from ptslurm.records import Attempt
    from ptslurm.read.results import join_metrics

    return join_metrics(storage_dir, [Attempt.from_json(a) for a in attempts])


def fake_sweep(template, name: str, cluster):
    """``ptslurm sweep --name NAME ...`` of a plan (``template``, made once per module: the
    pre-flight takes a second or two) on a ``backends.FakeCluster``; the same call again is the
    same command run again. Returns (outcome, sweep dir)."""
    import dataclasses
    import shutil
    import tempfile

    from ptslurm.submit.sweep import execute

    staging = Path(tempfile.mkdtemp(prefix="ptslurm-test-staging-"))
    shutil.copytree(template.staging, staging, dirs_exist_ok=True)
    p = dataclasses.replace(template, name=name, staging=staging)
    try:
        return execute(p, make=cluster.backend), p.sweep_dir
    finally:
        p.discard()


def end_point(cluster, sweep_dir: Path, index: int, loss: float, state: str = "completed") -> None:
    """Point ``index`` of a sweep on a ``FakeCluster`` ends its current submission in ``state``
    having reached ``loss``, as its job would leave it (an attempt in the status file, sacred's
    metrics and result), and its fake job ends."""
    import json

    from ptslurm import records

    entry = json.loads((Path(sweep_dir) / records.MANIFEST).read_text())["points"][index]
    where = Path(entry["storage_dir"])
    submission = records.read_intent(where).submission
    before = [a.to_json() for a in records.read_status(where).attempts]
    n = len(before) + 1
    steps = entry["updates"].get("steps", 1)
    attempt = {"attempt": n, "state": state, "job_id": entry["job_id"], "submission": submission,
               "sacred_id": str(n), "started": "2026-12-08T01:00:00+00:00", "ended": "2026-12-08T01:01:00+00:00",
               "result": loss if state == "completed" else None}
    (where / "sacred" / str(n)).mkdir(parents=True, exist_ok=True)
    (where / "sacred" / str(n) / "metrics.json").write_text(json.dumps(
        {"loss": {"steps": [steps], "values": [loss], "timestamps": ["2026-12-08T01:01:00"]}}))
    (where / records.STATUS).write_text(json.dumps({"state": state, "attempt": n, "job_id": entry["job_id"],
                                                    "submission": submission, "attempts": before + [attempt]}))
    cluster.end([entry["job_id"]], "COMPLETED" if state == "completed" else "FAILED")


def run_cli(*args, cwd=None, env=None, timeout=300):
    """Run ``python -m ptslurm`` as a user would; returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ptslurm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=full_env, timeout=timeout)


def kill_group_after(command, seconds: float) -> None:
    """Start ``command`` in a session of its own and, ``seconds`` later, SIGKILL it with every
    process it started (nothing of a command killed at a random moment may live on)."""
    import signal
    import time

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(seconds)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def tree(path: Path):
    """All paths below ``path`` (relative), for 'nothing was created' checks."""
    if not path.exists():
        return set()
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def cluster_group(item) -> str:
    """"own" for a test on a cluster of its own, "slurm" for the rest of the SLURM tier, ""."""
    fixtures = getattr(item, "fixturenames", ())
    if "own_slurm_cluster" in fixtures:
        return "own"
    if item.get_closest_marker("slurm") is not None or "slurm_cluster" in fixtures:
        return "slurm"
    return ""


def pytest_configure(config):
    """Under mutmut's coverage run, the functions tests reach in child processes count too
    (tests/mutation/children.py)."""
    from mutation import children

    children.register(config)


def pytest_itemcollected(item):
    """With pytest-xdist (tests/run.sh runs two workers), every test of the SLURM tier goes to
    one worker, in order: they share one cluster (fixed ports), and some need its queue empty.
    The test on a cluster of its own is a group too. (Marked as each test is collected: xdist
    reads the groups in its own collection hook.)"""
    group = cluster_group(item)
    if group:
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_modifyitems(items):
    """The test on its own cluster first, then the SLURM tier, then the rest: xdist hands the
    first two groups to different workers, and the rest goes to whichever is free."""
    rank = {"own": 0, "slurm": 1, "": 2}
    items.sort(key=lambda item: rank[cluster_group(item)])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped SLURM test is a failure: the integration tier must run there."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
    if IN_CI and report.skipped and item.get_closest_marker("slurm") is not None:
        report.outcome = "failed"
        report.longrepr = f"SLURM test skipped in CI ({report.longrepr}): the SLURM tier must run"


@pytest.fixture(autouse=True)
def _a_failed_slurm_test_leaves_an_empty_queue(request):
    """A SLURM test that failed (a timeout, say) may have left jobs on the shared test cluster:
    cancel this user's jobs and wait until the queue is empty, so that no later test fails on
    its leftovers."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed or cluster_group(request.node) != "slurm":
        return
    import time

    subprocess.run(["scancel", "--user", str(os.getuid())], capture_output=True, timeout=60)
    deadline = time.time() + 120
    while time.time() < deadline and subprocess.run(["squeue", "-h", "-u", str(os.getuid())], capture_output=True,
                                                    text=True, timeout=60).stdout.strip():
        time.sleep(0.5)


@pytest.fixture
def venv_inside():
    """``mount(folder)`` puts the running virtualenv at ``folder`` (a bind mount, so its
    site-packages really lie inside the project: no symlink resolves them away, as with a
    ``python3 -m venv .venv`` in the project) and returns that copy's python. Root only."""
    if sys.prefix == sys.base_prefix:
        pytest.fail("the suite must run in a virtualenv (tests/run.sh makes one)") if IN_CI else pytest.skip("not in a venv")
    if os.geteuid() != 0:
        pytest.skip("needs root for a bind mount")
    mounted = []

    def mount(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", sys.prefix, str(folder)], check=True)
        mounted.append(folder)
        return folder / "bin" / "python"

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=True)


def snapshot_files(sweep_dir) -> list:
    """The files of a sweep's code snapshot, relative to ``code/``."""
    code = Path(sweep_dir) / "code"
    return sorted(str(p.relative_to(code)) for p in code.rglob("*") if p.is_file())


@pytest.fixture
def other_user():
    """A second Unix user (useradd), for sweeps that belong to somebody else."""
    import shutil

    if os.geteuid() != 0 or shutil.which("useradd") is None:
        if IN_CI:
            pytest.fail("the two-user tests need root and useradd in CI")
        pytest.skip("needs root and useradd")
    name = "ptslurm-other"
    subprocess.run(["useradd", "-M", "-N", name], capture_output=True)
    import pwd

    yield pwd.getpwnam(name).pw_uid
