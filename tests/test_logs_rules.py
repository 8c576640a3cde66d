"""Reading a point's log for `ptslurm logs` (``read.logs``), in-process on real files: a log
copied a block at a time in whole lines (a last line without its newline waits for the next
look), the last N lines found from the end, the machinery's frames dropped from tracebacks,
and a failure's traceback shown once: not again when the log already ends with it."""
import io

import pytest

from ptslurm.read import logs

pytestmark = pytest.mark.fast

TRACEBACK = ('Traceback (most recent call last):\n'
             '  File "/usr/lib/python3.11/runpy.py", line 198, in _run_module_as_main\n'
             '    return _run_code(code, main_globals, None,\n'
             '  File "/home/me/exp.py", line 12, in main\n'
             '    train()\n'
             '  File "/venv/site-packages/sacred/experiment.py", line 3, in run\n'
             '    run()\n'
             'ValueError: lr must be positive\n')


def test_a_log_streams_in_whole_lines_and_the_unfinished_one_waits(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "BLOCK", 7)  # lines cut across blocks
    log = tmp_path / "0.log"
    log.write_text("epoch 1 loss 0.5\nepoch 2 loss 0.4\nepo")
    out, seen = io.StringIO(), logs.Recent()
    offset = logs.stream(log, 0, out, seen)
    assert out.getvalue() == "epoch 1 loss 0.5\nepoch 2 loss 0.4\n" and offset == 34
    with open(log, "a") as fh:
        fh.write("ch 3 loss 0.3\n")
    assert logs.stream(log, offset, out, seen) == log.stat().st_size
    assert out.getvalue().splitlines() == ["epoch 1 loss 0.5", "epoch 2 loss 0.4", "epoch 3 loss 0.3"]
    assert list(seen.lines) == out.getvalue().splitlines()
    assert logs.stream(tmp_path / "missing.log", 5, out) == 5


def test_the_last_lines_are_found_from_the_end_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "BLOCK", 4)
    log = tmp_path / "0.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    assert log.read_text()[logs.tail_offset(log, 3):] == "line 7\nline 8\nline 9\n"
    assert logs.tail_offset(log, 1) == log.read_text().index("line 9")
    assert logs.tail_offset(log, 50) == 0
    log.write_text("a\nb")  # no final newline: b is the last line
    assert log.read_text()[logs.tail_offset(log, 1):] == "b"
    assert logs.tail_offset(tmp_path / "missing", 3) == 0


def test_the_machinerys_frames_leave_the_traceback_and_the_users_stay():
    shown = logs.user_traceback(TRACEBACK)
    assert shown == ('Traceback (most recent call last):\n  File "/home/me/exp.py", line 12, in main\n'
                     '    train()\nValueError: lr must be positive\n')
    only_machinery = 'Traceback (most recent call last):\n  File "/x/runpy.py", line 1, in f\n    g()\nKeyError: 1\n'
    assert logs.user_traceback(only_machinery) == only_machinery, "nothing of the user's: left as it was"
    frames = logs.Frames()
    assert "".join(ln for ln in ("before\n" + TRACEBACK + "after\n").splitlines(keepends=True)
                   if frames.keep(ln)) == "before\n" + shown + "after\n"


@pytest.mark.parametrize("error, ends_with_it", [
    ("ValueError: lr must be positive", True),
    ("ValueError: lr must be positive\nmore detail", True),  # its first line is what a traceback ends with
    ("KeyError: 'lr'", False),
    (None, False),
    ("", False),
])
def test_a_failures_traceback_is_shown_once(error, ends_with_it):
    seen = logs.Recent()
    seen.feed(TRACEBACK[:50])
    seen.feed(TRACEBACK[50:])
    assert seen.has_traceback_of(error) is ends_with_it


def test_without_a_traceback_in_the_log_the_error_is_shown():
    seen = logs.Recent()
    seen.feed("ValueError: lr must be positive\n")  # printed by the code, no traceback
    assert not seen.has_traceback_of("ValueError: lr must be positive")
    partial = logs.Recent()
    partial.feed("Traceback (most recent call last):\nValueError: lr must be positive")  # no newline yet
    assert partial.has_traceback_of("ValueError: lr must be positive")
    short = logs.Recent(keep=2)
    short.feed(TRACEBACK + "".join(f"step {i}\n" for i in range(5)))
    assert not short.has_traceback_of("ValueError: lr must be positive"), "only the last lines count"
