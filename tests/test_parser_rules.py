"""The scheduler's output, read by pure parsers: literal tables of what sbatch, squeue, sacct,
sacctmgr and scontrol print, SLURM's special values included (captured formats; the SLURM
tier checks the same parsers against the real programs)."""
import os

import pytest

from ptslurm.schedulers import commands

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("text, line", [
    ("", "(no output)"),
    ("  \n \n", "(no output)"),
    ("first\nlast\n", "last"),
    ("sbatch: error: Batch job submission failed: Invalid partition name specified\n",
     "sbatch: error: Batch job submission failed: Invalid partition name specified"),
    ("sbatch: ERROR first\nnoise\nsbatch: error: second\ntrailing words\n", "sbatch: error: second"),
    ("   indented Error line   \nafter\n", "indented Error line"),
])
def test_the_schedulers_complaint_is_its_last_error_line(text, line):
    assert commands.first_error_line(text) == line


@pytest.mark.parametrize("text, minutes", [
    ("UNLIMITED", None), ("INFINITE", None), ("NONE", None), ("N/A", None), ("", None), (None, None),
    ("unlimited", None),
    ("30", 30), ("0", 0), ("5:30", 5.5), ("1:00:00", 60), ("2:03:04", 123 + 4 / 60),
    ("1-0", 1440), ("0-08", 480), ("0-08:00", 480), ("2-01:02", 2 * 1440 + 62), ("1-00:00:30", 1440.5),
])
def test_slurm_times_in_minutes(text, minutes):
    assert commands.slurm_minutes(text) == minutes


@pytest.mark.parametrize("text", ["1-", "x-01", "1:2:3:4", "-5", "1--2", "a", "1:-1"])
def test_what_is_not_a_slurm_time(text):
    with pytest.raises(ValueError):
        commands.slurm_minutes(text)


@pytest.mark.parametrize("indices, text", [
    ([], ""), ([5], "5"), ([0, 1, 2], "0-2"), ([0, 1, 2, 5, 7, 8], "0-2,5,7-8"), ([3, 9], "3,9"),
    ([1, 2, 4], "1-2,4"), ([4, 1, 2], "4,1-2"),
])
def test_index_ranges_both_ways(indices, text):
    assert commands.ranges(indices) == text
    assert commands.parse_ranges(text) == indices


@pytest.mark.parametrize("text, indices", [
    ("0-2,x,7", [0, 1, 2, 7]), ("a-3,4", [4]), ("3-b,5", [5]), ("", []), ("6-6", [6]), ("2-", [2])])
def test_parse_ranges_skips_what_is_not_a_range(text, indices):
    assert commands.parse_ranges(text) == indices


def test_marked_jobs_from_squeue():
    text = ("77|someone else's job\n"
            "90_0|ptslurm:abc:0-1,7\n"
            "90_2|ptslurm:abc:0-1,7\n"
            "90_3|ptslurm:abc:0-1,7\n"  # a task beyond the indices: not ours to name
            "91|ptslurm:abc:4\n"  # not an array task
            "92_0|ptslurm:abcd:5\n"  # another sweep's marker that starts with ours
            "93_0|ptslurm:abc:9|with|pipes\n"
            "94_x|ptslurm:abc:3\n")
    assert commands.parse_marked(text, "ptslurm:abc") == {0: "90_0", 7: "90_2"}
    assert commands.parse_marked("90_1|ptslurm:abc:2-4\n", "ptslurm:abc") == {3: "90_1"}
    assert commands.parse_marked("", "ptslurm:abc") == {}


def test_the_queue_from_squeue():
    text = "12_3 RUNNING None\n12_[4-6,9%2] PENDING Priority\n13 COMPLETING\nbad line here\n\n14\n" \
           "15 PENDING QOSMaxJobsPerUser\n16 PENDING JobHeldUser\n"
    queue = commands.parse_queue(text)
    assert queue == {"12_3": "RUNNING", "12_4": "PENDING", "12_5": "PENDING", "12_6": "PENDING",
                     "12_9": "PENDING", "13": "COMPLETING", "15": "PENDING", "16": "PENDING"}
    assert [queue[j].reason for j in ("12_3", "12_9", "13", "15", "16")] == [  # type: ignore[attr-defined]
        "", "Priority", "", "QOSMaxJobsPerUser", "JobHeldUser"]
    # states with underscores, reasons with spaces kept whole, the same state with other reasons
    queue = commands.parse_queue("20_1 REQUEUE_HOLD JobHeldAdmin\n20_2 PENDING Nodes required for job are DOWN\n"
                                 "20_3 PENDING Priority\n20_4 PENDING (null)\n20_5 PENDING Priority\n")
    assert queue == {"20_1": "REQUEUE_HOLD", "20_2": "PENDING", "20_3": "PENDING", "20_4": "PENDING",
                     "20_5": "PENDING"}
    assert [queue[j].reason for j in ("20_1", "20_2", "20_3", "20_4", "20_5")] == [  # type: ignore[attr-defined]
        "JobHeldAdmin", "Nodes required for job are DOWN", "Priority", "", "Priority"]


def test_expand_ids():
    assert commands.expand_ids("5") == ["5"]
    assert commands.expand_ids("5_3") == ["5_3"]
    assert commands.expand_ids("5_[0-2,7]") == ["5_0", "5_1", "5_2", "5_7"]
    assert commands.expand_ids("5_[1-2%4]") == ["5_1", "5_2"]
    assert commands.expand_ids("5_[x,3]") == ["5_3"]


def test_history_from_sacct_keeps_every_run():
    text = ("12_0|PREEMPTED|2026-12-01T10:00:00\n"
            "junk\n"
            "|RUNNING|2026-12-01T10:00:00\n"
            "12_0|CANCELLED by 0|2026-12-01T10:05:00\n"
            "12_[1-2]|PENDING|Unknown\n"
            "13||2026-12-01T11:00:00\n")
    assert commands.parse_history(text) == {
        "12_0": [("2026-12-01T10:00:00", "PREEMPTED"), ("2026-12-01T10:05:00", "CANCELLED")],
        "12_1": [("Unknown", "PENDING")], "12_2": [("Unknown", "PENDING")], "13": [("2026-12-01T11:00:00", "")]}


def test_pipe_tables_from_sacctmgr():
    text = "alice|lab|5|normal\n\nbob|lab\ncarol|MAX|X|\n"
    rows = commands.parse_pipe_table(text, ["user", "account", "max_submit", "default_qos"])
    assert rows == [{"user": "alice", "account": "lab", "max_submit": "5", "default_qos": "normal"},
                    {"user": "bob", "account": "lab", "max_submit": "", "default_qos": ""},
                    {"user": "carol", "account": "MAX", "max_submit": "X", "default_qos": ""}]
    assert commands.parse_pipe_table("a|b|c|d\n", ["x", "y"]) == [{"x": "a", "y": "b"}]


@pytest.mark.parametrize("text, value", [("5", 5), ("0", 0), ("", None), ("-1", None), ("x", None), (None, None)])
def test_a_limit_from_sacctmgr(text, value):
    assert commands._int(text) == value


def test_scontrols_first_record():
    text = ("JobId=5 JobName=a Restarts=2 PreemptTime=None EndTime=2026-12-01T10:00:00 Command=/x y=z\n"
            "JobId=6 JobName=b\n")
    fields = commands.parse_scontrol(text)
    assert fields["JobId"] == "5" and fields["Restarts"] == "2" and fields["PreemptTime"] == "None"
    assert fields["Command"] == "/x" and fields["JobName"] == "a" and fields["y"] == "z"
    assert commands.parse_scontrol("") == {} and commands.parse_scontrol("A=1 A=2 flag") == {"A": "1"}


@pytest.mark.parametrize("text", ["1-", "x-01", "1:2:3:4", "1:2:3:4:5", "1--2", "1:-1"])
def test_a_bad_slurm_time_is_named(text):
    with pytest.raises(ValueError) as caught:
        commands.slurm_minutes(text)
    assert str(caught.value) == f"not a SLURM time: {text!r}"


def test_pipe_table_values_are_kept_as_printed():
    rows = commands.parse_pipe_table("dave|lab|X\neve|grp|5 \n", ["user", "account", "max_submit"])
    assert rows == [{"user": "dave", "account": "lab", "max_submit": "X"},
                    {"user": "eve", "account": "grp", "max_submit": "5 "}]


@pytest.fixture
def fake_sacctmgr(tmp_path, monkeypatch):
    """A ``sacctmgr`` on PATH that logs each call: association limit 7 with default QOS
    ``low`` (3 per user); QOS ``normal`` has 5."""
    log = tmp_path / "calls.log"
    script = tmp_path / "bin" / "sacctmgr"
    script.parent.mkdir()
    script.write_text(f"#!/bin/bash\necho \"$*\" >> '{log}'\n"
                      'case "$*" in *assoc*) echo "me|lab|7|low";; *qos*) printf "normal|5\\nlow|3\\n";; esac\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(commands, "_PREFETCHED", [])
    return log


def test_the_submit_limit_is_the_smallest_of_the_association_and_its_qos(fake_sacctmgr):
    assert commands.submit_limit() == 3  # the association's default QOS, low
    assert commands.submit_limit("normal") == 5
    assert commands.submit_limit("other") == 7
    assert len(fake_sacctmgr.read_text().splitlines()) == 6, "two queries a call"


def test_a_prefetched_submit_limit_is_read_once_and_not_asked_again(fake_sacctmgr):
    commands.prefetch_submit_limit()
    commands.prefetch_submit_limit()  # already under way: nothing more is started
    assert commands.submit_limit("normal") == 5
    assert len(fake_sacctmgr.read_text().splitlines()) == 2
    assert commands.submit_limit() == 3, "a later call asks afresh"
    assert len(fake_sacctmgr.read_text().splitlines()) == 4
