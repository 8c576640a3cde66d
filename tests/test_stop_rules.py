"""The rules of a stop, in process: a stop the code honoured by returning is a stop, unless it
reported the end of its budget; ptslurm can end the process while the experiment is still
being imported; every end's line says truly what happens next."""
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ptslurm.job import interrupt, point, runtime
from ptslurm.job.attempts import Decision
from ptslurm.records import Action, Cause, State

pytestmark = pytest.mark.fast


class Reporter:
    def __init__(self):
        self.reports = []

    def report(self, progress, resumed):
        self.reports.append(progress)


@pytest.fixture
def stopped():
    interrupt.reset()
    interrupt.request_stop()
    runtime.activate(None, Reporter())
    yield
    interrupt.reset()
    runtime.activate(None, None)


def test_returning_after_should_stop_is_a_stop(stopped):
    assert runtime.should_stop()
    with pytest.raises(interrupt.Interrupted, match="returned after ptslurm.should_stop"):
        point._returned()


def test_returning_after_should_stop_with_the_budget_reported_done_is_the_end(stopped):
    runtime.should_stop()
    runtime.report_progress(300, total={"iteration": 300})
    point._returned()  # no exception: completed


def test_returning_short_of_the_reported_budget_is_a_stop(stopped):
    runtime.should_stop()
    runtime.report_progress(16, total={"iteration": 300})
    with pytest.raises(interrupt.Interrupted):
        point._returned()


def test_a_stop_the_code_never_saw_does_not_turn_its_return_into_one(stopped):
    point._returned()  # it never asked: it ran to its end while the stop arrived
    interrupt.reset()
    runtime.should_stop()  # asked, nothing had come
    point._returned()


def test_once_main_returned_the_watchdog_leaves_the_process_alone(stopped):
    called = []
    interrupt.on_unheeded(lambda: called.append(1))
    point._returned()
    interrupt._check_heeded()
    assert called == []


def test_ptslurm_ends_a_process_whose_experiment_is_still_being_imported(tmp_path):
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(20)\n")
    code = textwrap.dedent(f"""
        import threading
        from ptslurm.plan import experiment
        from ptslurm.job import interrupt
        threading.Timer(0.5, interrupt.end_process).start()
        experiment.load({str(slow)!r})
        print("the import finished: the process was not ended")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert "the import finished" not in proc.stdout, "the process ran on to the end of the import"


def test_an_os_exit_of_the_experiments_own_import_is_still_refused(tmp_path):
    from ptslurm.plan import experiment
    from ptslurm.errors import ExperimentError

    bad = tmp_path / "bad.py"
    bad.write_text("import os\nos._exit(3)\n")
    with pytest.raises(ExperimentError, match=r"calls os._exit\(3\) when imported"):
        experiment.load(bad)


@pytest.mark.parametrize("decision, packed, says", [
    (Decision(State.REQUEUED, Cause.REQUEUED, None, True), "", "SLURM requeues the job; the next attempt resumes"),
    (Decision(State.REQUEUED, Cause.TIMEOUT, Action.REQUEUE, True), "", "the job is requeued; the next attempt"),
    (Decision(State.REQUEUED, Cause.PREEMPTED, Action.REQUEUE, True), "12_3:4",
     "the job is requeued once its points have all stopped"),
    (Decision(State.TIMEOUT, Cause.TIMEOUT, None, False, "3 stops in a row without progress (--max-requeues 2)"),
     "", "it is not requeued (3 stops in a row without progress (--max-requeues 2)); `ptslurm resubmit S --points 4`"),
    (Decision(State.CANCELLED, Cause.CANCELLED, None), "", "it does not run again"),
    (Decision(State.INTERRUPTED, Cause.INTERRUPTED, None), "", "`ptslurm resubmit S --points 4` resumes it"),
])
def test_the_line_that_ends_an_attempt_says_what_happens_next(monkeypatch, decision, packed, says):
    monkeypatch.setenv("PTSLURM_PACK", packed) if packed else monkeypatch.delenv("PTSLURM_PACK", raising=False)
    line = point.story(decision, 4, Path("S"))
    assert line.startswith("ptslurm: this attempt stopped for ") and says in line, line
    if decision.cause == Cause.REQUEUED:
        assert "not requeued" not in line
