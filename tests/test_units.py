"""Pure functions that the end-to-end tests only cover in passing, on literal inputs: the
scheduler parsers (output captured from the test cluster's SLURM 22.05, and the forms newer
versions document), time and point-list parsing, the command line's ``with``
split, metric joining and ranking, and the table formatter."""
import math

import pytest

from ptslurm.schedulers import commands
from ptslurm.cli import render
from ptslurm.read import results, state
from ptslurm.errors import UsageError
from ptslurm.records import Attempt, Manifest, PointEntry

pytestmark = pytest.mark.fast

# captured from the test cluster (SLURM 22.05.8): task 0 of an array after `scontrol requeue`,
# pending again (note: no PreemptTime field at all in this state, a double space before StdErr)
JOB_22_05 = ("JobId=2 ArrayJobId=1 ArrayTaskId=0 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A "
             "Priority=4294901759 Nice=0 Account=root QOS=normal JobState=PENDING Reason=Resources "
             "Dependency=(null) Requeue=1 Restarts=1 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 "
             "TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-29T05:27:04 EligibleTime=2026-11-29T05:27:10 "
             "AccrueTime=2026-11-29T05:27:10 StartTime=Unknown EndTime=Unknown Deadline=N/A SuspendTime=None "
             "SecsPreSuspend=0 LastSchedEval=2026-11-29T05:27:10 Scheduler=Main Partition=debug "
             "AllocNode:Sid=vm:17643 ReqNodeList=(null) ExcNodeList=(null) NodeList= NumNodes=1 NumCPUs=8 "
             "NumTasks=1 CPUs/Task=8 ReqB:S:C:T=0:0:*:* TRES=cpu=8,mem=2G,node=1,billing=8 Socks/Node=* "
             "NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=8 MinMemoryCPU=256M MinTmpDiskNode=0 Features=(null) "
             "DelayBoot=00:00:00 OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=(null) "
             "WorkDir=/work/main/tests Comment=ptslurm:0123456789abcdef:0-1  StdErr=/dev/null StdIn=/dev/null "
             "StdOut=/dev/null Power= \n")
PARTITIONS_22_05 = (
    "PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=10 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 "
    "RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=REQUEUE State=UP TotalCPUs=8 "
    "TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
    "TRES=cpu=8,mem=12052M,node=1,billing=8,gres/gpu=2\n"
    "PartitionName=timed AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=NO QoS=N/A "
    "DefaultTime=00:45:00 DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=02:00:00 MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=vm PriorityJobFactor=1 PriorityTier=1 "
    "RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=8 "
    "TotalNodes=1 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED "
    "TRES=cpu=8,mem=12052M,node=1,billing=8,gres/gpu=2\n")
QUEUE_22_05 = "1_0 PENDING\n1_1 RUNNING\n"  # squeue -h -r -o '%i %T' (captured)
MARKED_22_05 = "1_0|ptslurm:0123456789abcdef:0-1\n1_1|ptslurm:0123456789abcdef:0-1\n"  # squeue -h -r -o '%i|%k'
# sacct -n -D -X -P -o JobID,State,Start (captured): the requeued run of 1_0 stays in the history
HISTORY_22_05 = "1_0|REQUEUED|2026-11-29T05:27:01\n1_1|RUNNING|2026-11-29T05:27:04\n1_0|PENDING|Unknown\n"
# scontrol show job -o as documented for 23.11/24.05: more fields, same Key=Value form;
# a preempted job has PreemptTime set
JOB_24_05 = ("JobId=1234 ArrayJobId=1230 ArrayTaskId=4 ArrayTaskThrottle=2 JobName=train UserId=alice(1000) "
             "GroupId=alice(1000) MCS_label=N/A Priority=1 Nice=0 Account=lab QOS=normal JobState=COMPLETING "
             "Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 "
             "RunTime=01:00:00 TimeLimit=2-00:00:00 PreemptTime=2026-11-29T05:00:00 SuspendTime=None "
             "Partition=gpu NodeList=gpu[01-02] BatchHost=gpu01 NumNodes=2 NumCPUs=16 NumTasks=8 CPUs/Task=2 "
             "ReqB:S:C:T=0:0:*:* ReqTRES=cpu=16,mem=64G,node=2,billing=16,gres/gpu=8 "
             "AllocTRES=cpu=16,mem=64G,node=2,billing=16,gres/gpu=8 Socks/Node=* NtasksPerN:B:S:C=4:0:*:* "
             "CoreSpec=* MinCPUsNode=2 MinMemoryNode=32G MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 "
             "OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Power= TresPerNode=gres/gpu:4\n")
PARTITIONS_22_05 = ("PartitionName=debug AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES "
                    "QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO "
                    "MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED "
                    "Nodes=localhost PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO "
                    "OverTimeLimit=NONE PreemptMode=REQUEUE State=UP TotalCPUs=8 TotalNodes=1 SelectTypeParameters=NONE "
                    "JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED\n"
                    "PartitionName=timed AllowGroups=ALL Default=NO DefaultTime=00:45:00 MaxTime=02:00:00 State=UP "
                    "TRES=cpu=8,mem=7900M,node=1,billing=8\n")
# squeue -h -r -o '%i %T': array tasks, a pending array range (newer versions print the
# throttle as %N), a plain job
QUEUE = "5_0 RUNNING\n5_1 PENDING\n6_[2-4,7%2] PENDING\n9 RUNNING\n"
# sacct -n -D -X -P -o JobID,State,Start: every run of each job (-D keeps the requeued ones);
# 23.02 and later write "CANCELLED by <uid>"
HISTORY = ("5_0|PREEMPTED|2026-11-29T04:01:03\n5_0|REQUEUED|2026-11-29T04:02:00\n5_0|RUNNING|2026-11-29T04:03:03\n"
           "5_1|CANCELLED by 0|2026-11-29T04:01:03\n6_[2-3]|PENDING|Unknown\n")


def test_scontrol_records_of_22_05_and_of_newer_versions():
    job = commands.parse_scontrol(JOB_22_05)
    assert (job["JobState"], job["Restarts"], job.get("PreemptTime")) == ("PENDING", "1", None)
    assert job["TRES"] == "cpu=8,mem=2G,node=1,billing=8"  # values may hold '='
    assert job["Comment"] == "ptslurm:0123456789abcdef:0-1" and job["NodeList"] == ""
    new = commands.parse_scontrol(JOB_24_05)
    assert (new["JobState"], new["PreemptTime"], new["ArrayTaskId"]) == ("COMPLETING", "2026-11-29T05:00:00", "4")
    assert commands.parse_scontrol("") == {}
    timed = [commands.parse_scontrol(line) for line in PARTITIONS_22_05.splitlines()][1]
    assert commands.slurm_minutes(timed["DefaultTime"]) == 45 and commands.slurm_minutes(timed["MaxTime"]) == 120


def test_captured_queue_marks_and_history_of_22_05():
    assert commands.parse_queue(QUEUE_22_05) == {"1_0": "PENDING", "1_1": "RUNNING"}
    assert commands.parse_marked(MARKED_22_05, "ptslurm:0123456789abcdef") == {0: "1_0", 1: "1_1"}
    history = commands.parse_history(HISTORY_22_05)
    assert history["1_0"] == [("2026-11-29T05:27:01", "REQUEUED"), ("Unknown", "PENDING")]
    assert history["1_1"] == [("2026-11-29T05:27:04", "RUNNING")]


def test_queue_and_history():
    assert commands.parse_queue(QUEUE) == {"5_0": "RUNNING", "5_1": "PENDING", "6_2": "PENDING", "6_3": "PENDING",
                                           "6_4": "PENDING", "6_7": "PENDING", "9": "RUNNING"}
    history = commands.parse_history(HISTORY)
    assert [state for _, state in history["5_0"]] == ["PREEMPTED", "REQUEUED", "RUNNING"]
    assert history["5_1"] == [("2026-11-29T04:01:03", "CANCELLED")] and history["6_3"] == [("Unknown", "PENDING")]


@pytest.mark.parametrize("text,ids", [("12", ["12"]), ("12_3", ["12_3"]), ("12_[0-2,5%4]", ["12_0", "12_1", "12_2", "12_5"]),
                                      ("12_[7]", ["12_7"]), ("12_[]", [])])
def test_expand_ids(text, ids):
    assert commands.expand_ids(text) == ids


def test_ranges_round_trip_and_marked_jobs():
    for indices in ([0], [0, 1, 2, 5, 7, 8], list(range(1000)), [3, 9]):
        assert commands.parse_ranges(commands.ranges(indices)) == indices
    assert commands.ranges([]) == ""
    marked = "7_0|ptslurm:abc:3-4,9\n7_2|ptslurm:abc:3-4,9\n7_5|ptslurm:abc:3-4,9\n8_0|other\n9|ptslurm:abc:1\n"
    assert commands.parse_marked(marked, "ptslurm:abc") == {3: "7_0", 9: "7_2"}  # task 5 holds no index


def test_pipe_tables_and_time_formats():
    rows = commands.parse_pipe_table("root|lab|4|normal\nbob|lab||\n", ["user", "account", "max_submit", "qos"])
    assert rows[0]["max_submit"] == "4" and rows[1] == {"user": "bob", "account": "lab", "max_submit": "", "qos": ""}
    cases = {"UNLIMITED": None, "NONE": None, "45": 45, "45:30": 45.5, "01:00:00": 60, "1-02:03:00": 1563, "2-12": 3600}
    for text, minutes in cases.items():
        assert commands.slurm_minutes(text) == minutes, text


# sbatch --time's documented forms (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S); seconds round up
@pytest.mark.parametrize("value,minutes", [(90, 90), ("90", 90), ("1:30:00", 90), ("1-00:00:00", 1440),
                                           ("0:00:30", 1), (None, None), ("0-08:00", 480), ("1-12:30", 2190),
                                           ("2-12", 3600), ("1:30", 2), ("45:00", 45), ("2-0:0:1", 2881),
                                           ("0-1", 60), ("1-2:3:4", 1564), (" 10 ", 10)])
def test_parse_time(value, minutes):
    from ptslurm.plan.profile import parse_time

    assert parse_time(value) == minutes


@pytest.mark.parametrize("value", ["-5", "0", "abc", "1:2:3:4", "1-x", "1-", "x-1", "1:-1", "0-0", 1.5, True, "",
                                   "UNLIMITED", "1-2-3"])
def test_parse_time_refuses(value):
    from ptslurm.plan.profile import parse_time

    with pytest.raises(UsageError, match="bad time"):
        parse_time(value)


def test_select_points():
    from ptslurm.submit.lifecycle import select_points

    manifest = Manifest(name="s", points=tuple(PointEntry(index=i) for i in range(10)))
    assert select_points(manifest, None) == list(range(10))
    assert select_points(manifest, "0,2,5-7, 2") == [0, 2, 5, 6, 7]
    with pytest.raises(UsageError, match="point 10 is out of range: sweep 's' has points 0-9"):
        select_points(manifest, "8-10")
    with pytest.raises(UsageError, match="bad point list"):
        select_points(manifest, "a-b")


def test_split_with_keeps_options_after_the_updates():
    from ptslurm.cli import split_with

    assert split_with(["sweep", "x.py"]) == (["sweep", "x.py"], [])
    assert split_with(["sweep", "x.py", "with", "lr=[1,2]", "base", "--gpus", "1", "-j", "2"]) == (
        ["sweep", "x.py", "--gpus", "1", "-j", "2"], ["lr=[1,2]", "base"])
    assert split_with(["sweep", "x.py", "with", "offset=-1", "-3"]) == (["sweep", "x.py"], ["offset=-1", "-3"])


@pytest.mark.parametrize("verb", [["status", "s"], ["collect", "s"], ["cancel", "s"], ["promote", "s"],
                                  ["next-wave", "s"], ["logs", "s", "0"], ["list"]])
def test_with_after_a_verb_that_takes_no_config_updates_is_refused(verb, capsys, tmp_path, monkeypatch):
    """`ptslurm status S with lr=1` was run as `status S`, the updates dropped without a word:
    only sweep and extend take `with`; every other verb refuses it before doing anything."""
    from ptslurm.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(verb + ["with", "lr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ptslurm: error: `ptslurm {verb[0]}` takes no config updates: `with` belongs after "
                   f"`ptslurm sweep EXPERIMENT` or `ptslurm extend SWEEP`"), err
    assert list(tmp_path.iterdir()) == []


def test_best_of_ignores_nan_and_knows_what_to_maximize():
    nan = float("nan")
    assert results.best_of("loss", [3.0, nan, 1.0, 2.0]) == 1.0
    assert results.best_of("val/accuracy", [0.5, nan, 0.9]) == 0.9
    assert results.best_of("loss", [nan, "x"]) is None and results.best_of("loss", []) is None


def test_join_metrics_replaces_the_steps_an_attempt_reported_again(tmp_path):
    import json

    def metrics(run, steps, values):
        (tmp_path / "sacred" / str(run)).mkdir(parents=True)
        (tmp_path / "sacred" / str(run) / "metrics.json").write_text(
            json.dumps({"loss": {"steps": steps, "values": values}}))

    metrics(1, [10, 20, 30], [1.0, 0.8, 0.7])  # died after step 30, last checkpoint at 20
    metrics(2, [30, 40], [0.71, 0.5])
    attempts = [Attempt(attempt=1, sacred_id=1), Attempt(attempt=2), Attempt(attempt=3, sacred_id=2)]
    joined = results.join_metrics(tmp_path, attempts)
    assert joined["loss"] == {"steps": [10, 20, 30, 40], "values": [1.0, 0.8, 0.71, 0.5]}
    (tmp_path / "sacred" / "2" / "metrics.json").write_text('{"loss": {"steps": [30')  # torn
    broken = []
    assert results.join_metrics(tmp_path, attempts, broken)["loss"]["steps"] == [10, 20, 30]
    assert broken == [f"{tmp_path}/sacred/2/metrics.json"]


def test_table_aligns_cuts_and_wraps_wide_tables_in_blocks():
    text = render.table(["#", "name", "value"], [["0", "a" * 50, "1"], ["1", "b", "22"]], max_width=10)
    lines = text.splitlines()
    assert lines[0].split() == ["#", "name", "value"] and set(lines[1]) <= {"-", " "}
    assert "a" * 9 + "…" in lines[2] and all(len(line) <= 1 + 2 + 10 + 2 + 5 for line in lines)
    wide = render.table(["#"] + [f"column{i}" for i in range(20)], [["0"] + ["x"] * 20], total_width=60)
    blocks = wide.split("\n\n")
    assert len(blocks) > 1 and all(block.startswith("#") for block in blocks)  # each block repeats the index
    assert all(len(line) <= 60 for line in wide.splitlines())


def test_age_and_duration():
    assert render.duration(3725.9) == "1:02:05"
    assert render.age("2026-11-29T04:00:00+00:00", now=state.timestamp("2026-11-29T04:00:42+00:00")) == "42s ago"
    assert render.age("2026-11-29T04:00:00+00:00", now=state.timestamp("2026-11-29T05:59:00+00:00")) == "119m ago"
    assert render.age("2026-11-29T04:00:00+00:00", now=state.timestamp("2026-11-29T07:00:00+00:00")) == "3h ago"
    assert render.age(None) == "-" and render.age("garbage") == "-" and state.timestamp("garbage") is None
    assert math.isclose(state.timestamp("2026-11-29T04:00:00+00:00") or 0, 1795924800.0)


@pytest.mark.parametrize("metric,way", [
    ("loss", "min"), ("val/loss", "min"), ("training/loss", "min"), ("wer", "min"), ("test_rmse", "min"),
    ("val/accuracy", "max"), ("acc", "max"), ("f1_macro", "max"), ("cv_neg_log_loss", "max"),
    ("neg_mean_squared_error", "max"), ("test_neg_root_mean_squared_error", "max"), ("r2", "max"),
    ("test_r2", "max"), ("iou", "max"), ("val/mIoU", "max"), ("dice", "max"), ("psnr", "max"), ("mAP", "max"),
    ("si_sdr", "max"), ("SI-SDR", "max"), ("pesq", "max"), ("stoi", "max"), ("bleu", "max"), ("rouge_l", "max"),
    ("perplexity", "min"), ("accuracy:min", "min"), ("loss:max", "max"), ("result:max", "max"),
    ("result:min", "min"), ("something", "min")])
def test_metric_direction_table(metric, way):
    assert results.direction(metric)[1] == way


def test_result_without_a_direction_is_refused_and_unknown_names_say_so():
    with pytest.raises(UsageError, match="result:min or result:max"):
        results.direction("result")
    assert results.direction("something")[2] == "", "an unknown name is not presented as known"
    assert results.direction("cv_neg_log_loss")[2].startswith("a negated score")


def recs(key, values):
    return [{"index": i, "state": "completed", key: v, "storage_dir": None} for i, v in enumerate(values)]


def test_best_of_a_neg_scorer_is_the_highest_and_a_maximised_result_wins():
    ranking = results.rank(recs("cv_neg_log_loss/best", [-0.9, -0.1, -0.5]), "cv_neg_log_loss")
    assert [r["index"] for r in ranking.records] == [1, 2, 0] and ranking.way == "max"
    assert "negated" in ranking.note()
    ranking = results.rank(recs("result", [0.7, 0.95, float("nan"), 0.2]), "result:max")
    assert [r["index"] for r in ranking.records] == [1, 0, 3, 2], "NaN never wins"
    assert "highest first" in ranking.note()
    assert [r["index"] for r in results.rank(recs("result", [0.7, 0.95, 0.2]), "result:min").records] == [2, 0, 1]


def test_a_tie_is_named():
    ranking = results.rank(recs("loss/best", [0.5, 0.2, 0.2, 0.9]), "loss")
    assert ranking.ties == [1, 2] and "tie: points 1, 2" in ranking.note()
    assert results.rank(recs("loss/best", [0.5, 0.2, 0.9]), "loss").ties == []


@pytest.mark.parametrize("columns", [80, 200])
def test_tables_fit_the_terminal_and_round_floats(monkeypatch, columns):
    from ptslurm.cli import render

    monkeypatch.setenv("COLUMNS", str(columns))
    header = ["#", "model.num_layers", "optimizer.lr"] + [f"metric_{i}/best" for i in range(16)]
    rows = [[str(i), str(i + 2), render.cell(0.000123456789 * (i + 1))] + [render.number(1 / 7 * i)] * 16
            for i in range(5)]
    text = render.table(header, rows)
    lines = text.splitlines()
    assert max(map(len, lines)) <= columns, "a line wider than the terminal wraps"
    assert "0.000123457" in text or "0.00012" in text, "floats are rounded, not cut"
    assert not any("…" in ln and ln.split("…")[0][-1:].isdigit() for ln in lines[2:]), "no number is cut"
    if columns == 200:
        narrow = render.table(header[:8], [r[:8] for r in rows])
        assert "\n\n" not in narrow and "model.num_layers" in narrow, "fits: one block, headers whole"


def test_select_columns_keeps_the_identity_and_refuses_unknown_patterns():
    records = [{"index": 0, "lr": 0.1, "state": "completed", "loss/final": 1.0, "loss/best": 0.5, "acc/best": 0.9,
                "storage_dir": "/x"}]
    assert list(results.select_columns(records, ["loss"])[0]) == ["index", "state", "loss/final", "loss/best",
                                                                   "storage_dir"]
    assert list(results.select_columns(records, ["lr", "*/best"])[0]) == ["index", "lr", "state", "loss/best",
                                                                          "acc/best", "storage_dir"]
    with pytest.raises(UsageError, match="matches no column; columns: index, lr"):
        results.select_columns(records, ["nope"])


def test_log_tail_offsets_and_streaming_across_blocks(tmp_path, monkeypatch):
    import io

    from ptslurm.read import logs

    monkeypatch.setattr(logs, "BLOCK", 7)  # lines straddle block boundaries
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(50)))
    assert path.read_text()[logs.tail_offset(path, 3):] == "line 47\nline 48\nline 49\n"
    assert logs.tail_offset(path, 500) == 0 and logs.tail_offset(tmp_path / "missing", 3) == 0
    out = io.StringIO()
    end = logs.stream(path, 0, out)
    assert out.getvalue() == path.read_text() and end == path.stat().st_size
    with open(path, "a") as fh:
        fh.write("partial")  # a line still being written waits for its newline
    out = io.StringIO()
    assert logs.stream(path, end, out) == end and out.getvalue() == ""


def test_user_traceback_drops_the_machinery():
    from ptslurm.read import logs

    text = ('Traceback (most recent call last):\n'
            '  File "<frozen runpy>", line 198, in _run_module_as_main\n'
            '  File "<frozen runpy>", line 88, in _run_code\n'
            '  File "/x/ptslurm/job.py", line 5, in main\n    run()\n    ^^^^^\n'
            '  File "/v/site-packages/sacred/run.py", line 238, in __call__\n    self.result = f()\n'
            '  File "/s/code/exp.py", line 9, in main\n    raise ValueError("bad")\n'
            'ValueError: bad\n')
    assert logs.user_traceback(text) == ('Traceback (most recent call last):\n'
                                         '  File "/s/code/exp.py", line 9, in main\n    raise ValueError("bad")\n'
                                         'ValueError: bad\n')
    frames = logs.Frames()
    assert "".join(ln for ln in text.splitlines(True) if frames.keep(ln)) == logs.user_traceback(text)


def test_duplicates_are_dropped_with_a_note_or_kept_when_asked():
    from ptslurm.plan import grid

    notes = []
    points = grid.expand(grid.Block(), grid.parse_with(["fail=[True,False,True]"]), notes=notes)
    assert [p.updates for p in points] == [{"fail": True}, {"fail": False}]
    assert len(notes) == 1 and "1 point(s) repeat an earlier one" in notes[0] and "--keep-duplicates" in notes[0]
    kept = grid.expand(grid.Block(), grid.parse_with(["fail=[True,False,True]"]), keep_duplicates=True)
    assert [p.updates["fail"] for p in kept] == [True, False, True]
    assert grid.comma_notes(["a=1,2", "b=[1,2]", "c='x,y'", "d=3"]) == [
        "'a=1,2' is the tuple (1,2) for every point (sacred's reading, a fixed value); for an axis write 'a=[1,2]'"]


def test_points_resolving_to_the_same_config_are_named():
    from ptslurm.plan.preflight import same_configs
    from ptslurm.records.spec import Point

    points = [Point(0, {"lr": 0.1}, (), ("lr",)), Point(1, {"lr": 0.2}, (), ("lr",)),
              Point(2, {}, ("fast",), ("lr", "named_configs"))]
    configs = [{"lr": 0.1, "seed": 1, "trainer": {"storage_dir": "/a"}},
               {"lr": 0.2, "seed": 2, "trainer": {"storage_dir": "/b"}},
               {"lr": 0.1, "seed": 3, "trainer": {"storage_dir": "/c"}}]
    notes = same_configs(points, configs, "trainer.storage_dir")
    assert len(notes) == 1 and notes[0].startswith("points 0, 2 ")
    assert same_configs(points, configs[:2], "trainer.storage_dir") == []


def test_progress_shows_total_rate_and_eta():
    from ptslurm.cli import render
    from ptslurm.records import Attempt, PointStatus, State
    from ptslurm.read.state import PointRow

    t0 = "2026-12-01T10:00:00+00:00"
    status = PointStatus(attempts=(Attempt(state=State.RUNNING, started=t0, progress_at_start=None),),
                         progress={"iteration": 150, "epoch": 2, "time": "2026-12-01T10:00:30+00:00",
                                   "total": {"iteration": 1000}})
    row = PointRow(index=0, state=State.RUNNING, job_id="1_0", storage_dir="/x", status=status, iteration=150,
                   epoch=2)
    from ptslurm.read.state import timestamp

    text = render.progress_cell(row, now=timestamp("2026-12-01T10:00:30+00:00"))
    assert text == "150/1000 ep 2 5/s ETA 0:02:50", text
    ended = row.replace(state=State.COMPLETED)
    assert render.progress_cell(ended) == "150/1000 ep 2"
    assert render.progress_cell(row.replace(iteration=None)) == "-"


@pytest.mark.fast
@pytest.mark.parametrize("changes, message", [
    ({"nodes": 0}, "--nodes must be a positive integer"), ({"gpus": -2}, "--gpus must be a non-negative"),
    ({"tasks_per_node": -1}, "--tasks-per-node must be a positive"), ({"max_attempts": 0}, "--max-attempts"),
    ({"cpus": 1.5}, "--cpus must be a non-negative integer"), ({"nodes": True}, "--nodes must be a positive")])
def test_the_library_path_refuses_the_resources_the_command_line_refuses(changes, message):
    from ptslurm.errors import UsageError
    from ptslurm.records.spec import Resources
    from ptslurm.plan.make import check_resources

    with pytest.raises(UsageError, match=message):
        check_resources(Resources(**changes))
    assert check_resources(Resources(nodes=2, gpus=1))[0].world_size == 2


def test_points_that_set_different_seeds_differ(tmp_path, no_slurm):
    """`'seed=[1,2,3]'`: ten seeds of one config are ten different runs, not duplicates; a seed
    sacred would draw for each point does not make them differ."""
    from ptslurm.plan.preflight import same_configs
    from ptslurm.records.spec import Point

    points = [Point(i, {"seed": s}, (), ("seed",)) for i, s in enumerate((1, 2, 3))]
    configs = [{"lr": 0.1, "seed": s} for s in (1, 2, 3)]
    assert same_configs(points, configs, None, seeds=[1, 2, 3]) == []
    assert len(same_configs(points, configs, None, seeds=[None, None, None])) == 1
    from conftest import EXAMPLES, run_cli

    proc = run_cli("sweep", "--dry-run", "--root", tmp_path, EXAMPLES / "tiny.py", "with", "seed=[1,2,3]")
    assert proc.returncode == 0 and "same config" not in proc.stderr, proc.stderr


def test_status_keeps_state_progress_and_job_whole_at_80_columns(tmp_path, monkeypatch):
    """What a user reads first stays whole in an 80-column terminal: the state, the ETA of the
    progress column, a shared job's `(2 points)`; elapsed time, heartbeat and attempts give way
    (`status --json` has them)."""
    import dataclasses

    from ptslurm.cli import render
    from ptslurm.records import PointStatus, State
    from ptslurm.read.state import PointRow

    monkeypatch.setenv("COLUMNS", "80")
    entries = [PointEntry(index=i, updates={"lr": 0.001, "batch_size": 16 * (i + 1)}, varied=("lr", "batch_size"),
                          storage_dir=str(tmp_path / str(i)), job_id="33_0") for i in range(2)]
    manifest = Manifest(name="wide", points=tuple(entries), varied=("lr", "batch_size"))
    fields = {f.name for f in dataclasses.fields(PointRow)}
    rows = [PointRow(**{k: v for k, v in dict(index=e.index, state=State.RUNNING, job_id="33_0",
                                               storage_dir=e.storage_dir, status=PointStatus(), attempts=2,
                                               varied=e.updates, heartbeat=None, elapsed_s=12000.0).items()
                        if k in fields}) for e in entries]
    monkeypatch.setattr(render, "progress_cell", lambda row, now=None: "150/1000 ep 2 12.5/s ETA 1:08:00")
    text = render.status(manifest, rows)
    assert max(map(len, text.splitlines())) <= 80, text
    assert "ETA 1:08:00" in text and "33_0 (2 points)" in text and "running" in text and "…" not in text, text
    assert "elapsed" not in text, "the least needed column gave way"


def test_status_at_80_columns_puts_whole_reasons_under_the_table(tmp_path, no_slurm):
    from conftest import EXAMPLES, run_cli

    proc = run_cli("sweep", "--root", tmp_path, "--name", "w", "-j", "2", EXAMPLES / "tiny.py", "with",
                   "lr=[0.05,0.1]", "fail=[False,True]", "steps=5")
    assert proc.returncode == 1
    narrow = run_cli("status", "w", "--root", tmp_path, env={"COLUMNS": "80"}).stdout
    assert max(map(len, narrow.splitlines())) <= 80, narrow
    assert "why, points 1, 3 failed: RuntimeError: tiny: failing on purpose (fail=True)" in narrow, narrow
    assert "…" not in narrow, narrow
    wide = run_cli("status", "w", "--root", tmp_path, env={"COLUMNS": "200"}).stdout
    assert "why, points" not in wide and wide.count("RuntimeError: tiny: failing on purpose (fail=True)") == 2
