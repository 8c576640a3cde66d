"""What a point used (issue 30): nvidia-smi's output read, the sampler's figures for a
process tree and the GPUs it was given (a fake nvidia-smi on PATH), and the hints that name
the option to change. Fast: no scheduler, no GPU."""
import os

import pytest

from ptslurm.job import sampler
from ptslurm.read import usage

pytestmark = pytest.mark.fast

SMI = "0, 3, 1200, 81559\n1, 97, 70000, 81559\n2, [N/A], [N/A], 81559\n"


def test_nvidia_smis_csv_is_read_and_what_it_cannot_say_is_left_out():
    assert usage.parse_gpus(SMI) == [(0, 3.0, 1200.0, 81559.0), (1, 97.0, 70000.0, 81559.0)]
    assert usage.parse_gpus("") == [] and usage.parse_gpus("No devices were found\n") == []


@pytest.mark.parametrize("variable, seen", [("1", {1}), ("0,2", {0, 2}), ("GPU-5d2c,GPU-77aa", None), (None, None)])
def test_the_gpus_sampled_are_those_cuda_visible_devices_names(variable, seen):
    assert sampler.visible(variable) == seen


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """An nvidia-smi that answers the next line of ``answers`` each call (then the last)."""
    answers = tmp_path / "answers"
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    count = tmp_path / "count"
    count.write_text("0")
    script.write_text(f"""#!/bin/bash
n=$(cat '{count}'); echo $((n + 1)) > '{count}'
awk -v n=$n 'BEGIN{{RS="---\\n"}} NR==n+1{{printf "%s", $0; found=1}} END{{if(!found) printf "%s", $0}}' '{answers}'
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return answers


def test_the_sampler_averages_the_given_gpus_use_and_keeps_their_peak_memory(fake_smi, monkeypatch):
    fake_smi.write_text("0, 90, 100, 1000\n1, 10, 300, 1000\n---\n0, 90, 100, 1000\n1, 30, 200, 1000\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    s = sampler.Sampler(interval_s=3600)
    s.sample()
    s.sample()
    used = s.usage()
    assert used["samples"] == 2 and used["gpus"] == [{"index": 1, "util_mean": 20.0, "mem_peak_mb": 300.0,
                                                      "mem_total_mb": 1000.0}]
    assert usage.columns(used) == {"max_rss_mb": used["max_rss_mb"], "gpu_util": 20.0, "gpu_mem_peak_mb": 300.0}


def test_a_point_given_no_gpu_never_samples_the_nodes_gpus(fake_smi, monkeypatch):
    fake_smi.write_text("0, 90, 100, 1000\n")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    s = sampler.Sampler(interval_s=3600)
    s.sample()
    assert "gpus" not in s.usage() and "gpu_util" not in usage.columns(s.usage())


def test_the_peak_memory_counts_what_the_process_tree_holds():
    import subprocess
    import sys

    alone = sampler.tree_rss_mb(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; b = bytearray(300 * 2**20); "
                              "b[::4096] = b'x' * len(b[::4096]); print('held', flush=True); time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        together = sampler.tree_rss_mb(os.getpid())
        assert together >= alone + 290, "a child's 300 MB count"
        s = sampler.Sampler(interval_s=3600)
        s.sample()
    finally:
        child.kill()
        child.wait()
    s.sample()
    assert s.usage()["max_rss_mb"] >= together - 20, "the peak is kept after the child ended"


@pytest.mark.parametrize("used, mem_gb, gpus, expected", [
    ({"max_rss_mb": 900, "samples": 3, "gpus": [{"util_mean": 4.0}, {"util_mean": 6.0}]}, None, 2,
     ["point 3 kept its 2 GPU(s) 5% busy on average: the work waits elsewhere (data loading?); ask for fewer "
      "with --gpus, or give each GPU more work"]),
    ({"max_rss_mb": 1500, "samples": 3}, 32, 0,
     ["point 3 used 1.5 of the 32 GB of memory it asked for: --mem 3 would do"]),
    ({"max_rss_mb": 9000, "samples": 3, "gpus": [{"util_mean": 55.0}]}, 16, 1, []),  # well used
    ({"max_rss_mb": 100, "samples": 3}, None, 0, []),  # the cluster's default memory: nothing to say
    (None, 32, 1, []),
])
def test_a_hint_names_the_option_for_an_idle_gpu_or_mostly_unused_memory(used, mem_gb, gpus, expected):
    assert usage.hints(3, used, mem_gb, gpus) == expected


@pytest.mark.parametrize("per_job, hinted", [(1, True), (4, False)])
def test_packed_points_are_measured_against_their_share_of_the_jobs_memory(per_job, hinted):
    from ptslurm.records import Attempt, Manifest, PointEntry, PointStatus, State
    from ptslurm.cli.render import usage_hints
    from ptslurm.records.spec import Resources
    from ptslurm.read.state import PointRow

    manifest = Manifest(name="s", points=(PointEntry(index=0),), resources=Resources(mem_gb=32, points_per_job=per_job))
    used = Attempt(state=State.COMPLETED, usage={"max_rss_mb": 6 * 1024, "samples": 4})
    row = PointRow(index=0, state=State.COMPLETED, job_id="1_0", storage_dir="/x", status=PointStatus(attempts=(used,)))
    shown = usage_hints(manifest, [row])
    assert (shown == "\nhint: point 0 used 6.0 of the 32 GB of memory it asked for: --mem 9 would do") == hinted, shown
    assert hinted or shown == "", "6 GB of a quarter of 32 GB is well used"


def test_a_point_started_by_a_big_process_does_not_inherit_its_peak_memory():
    """Linux carries ``ru_maxrss`` over fork and exec: a point's job started by a launcher
    that held 300 MB would report 300 MB it never used. The sampler's own peak is the job's
    own address space's (VmHWM)."""
    import subprocess
    import sys

    child = ("import resource; from ptslurm.job import sampler; s = sampler.Sampler(); s.sample(); "
             "print(s.usage()['max_rss_mb'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    parent = ("import subprocess, sys; held = bytearray(300 * 2 ** 20); held[::4096] = b'x' * len(held[::4096]); "
              f"subprocess.run([sys.executable, '-c', {child!r}])")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True).stdout
    own, inherited = map(float, out.split())
    assert inherited >= 300, "the mechanism this guards against (ru_maxrss inherited)"
    assert own < 150, own


@pytest.mark.parametrize("used, mem_gb, gpus, expected", [
    # at the thresholds exactly: a GPU 10% busy and memory at a quarter are not waste
    ({"max_rss_mb": 8192, "samples": 3, "gpus": [{"util_mean": 10.0}]}, 32, 1, []),
    ({"max_rss_mb": 8191, "samples": 3}, 32, 0,
     ["point 3 used 8.0 of the 32 GB of memory it asked for: --mem 12 would do"]),
    # a tiny peak still asks for a whole gigabyte; GPUs sampled but not asked for: no GPU hint
    ({"max_rss_mb": 50, "samples": 3, "gpus": [{"util_mean": 1.0}]}, 4, 0,
     ["point 3 used 0.0 of the 4 GB of memory it asked for: --mem 1 would do"]),
    ({"max_rss_mb": 700, "samples": 3}, 4, 0, ["point 3 used 0.7 of the 4 GB of memory it asked for: --mem 2 would do"]),
])
def test_hints_at_their_thresholds(used, mem_gb, gpus, expected):
    assert usage.hints(3, used, mem_gb, gpus) == expected


def test_collects_usage_columns():
    gpus = [{"util_mean": 33.33, "mem_peak_mb": 900}, {"util_mean": 66.66, "mem_peak_mb": 1200}]
    assert usage.columns({"samples": 2, "max_rss_mb": 400, "gpus": gpus}) == {
        "max_rss_mb": 400, "gpu_util": 50.0, "gpu_mem_peak_mb": 1200}
    assert usage.columns({"samples": 2, "max_rss_mb": 400, "gpus": gpus[:1]})["gpu_util"] == 33.3
    assert usage.columns({"samples": 1, "max_rss_mb": 400}) == {"max_rss_mb": 400}
    assert usage.columns({"samples": 0, "max_rss_mb": 400}) == {} and usage.columns(None) == {}


def iso(t):
    import datetime

    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat()


def test_the_time_an_attempt_ran_and_the_share_of_it_spent_training():
    from ptslurm.records import Attempt

    t0 = 1_800_000_000.0
    assert usage.span(Attempt(started=iso(t0), ended=iso(t0 + 100), heartbeat=iso(t0 + 50))) == (t0, t0 + 100)
    assert usage.span(Attempt(started=iso(t0), heartbeat=iso(t0 + 50))) == (t0, t0 + 50)  # still running
    assert usage.span(Attempt(started=iso(t0))) == (t0, t0)
    assert usage.span(Attempt(ended=iso(t0))) is None
    # 5 steps logged 10 s apart from t0+20: 40 s between first and last, plus one step's 10 s
    series = {"timestamps": [iso(t0 + 20 + 10 * k).replace("+00:00", "") for k in range(5)]}
    metrics = {"loss": series, "acc": {"timestamps": series["timestamps"][:2]}, "junk": 3}
    assert usage.trained_share(metrics, t0, t0 + 100) == 0.5
    assert usage.trained_share({"loss": {"timestamps": series["timestamps"][:1]}}, t0, t0 + 100) == 0.0
    assert usage.trained_share(metrics, t0, t0 + 40) == 1.0, "never more than the whole attempt"
    assert usage.trained_share(metrics, t0, t0) is None and usage.trained_share({}, t0, t0 + 9) is None
    assert usage.trained_share(metrics, t0, t0 + 300) == 0.167
    # a point's time: every attempt's, and the trained share weighed by the attempts that logged
    # (0.5 of 100 s and all of 300 s: 0.875)
    first = Attempt(started=iso(t0), ended=iso(t0 + 100))
    second = Attempt(started=iso(t0 + 200), ended=iso(t0 + 500))
    assert usage.time_columns([first, Attempt(), second], [metrics, {}, {}]) == {"time_s": 400, "trained": 0.5}
    assert usage.time_columns([first, second], [metrics, {"loss": {"timestamps": [
        iso(t0 + 200 + 30 * k).replace("+00:00", "") for k in range(11)]}}]) == {"time_s": 400, "trained": 0.875}
    assert usage.time_columns([Attempt()], [{}]) == {}
