"""Reading a point's logs without reading them whole: streaming in blocks from an offset,
the offset of the last N lines (found from the end), and the user's part of a traceback.

A log can be gigabytes (a chatty training appends to ``cout.txt`` for days): nothing here
holds more than one block in memory."""
import collections
import os
import typing as tp

BLOCK = 1 << 20
# frames of the machinery between the job's start and the user's code
MACHINERY = ("/runpy.py", "<frozen runpy>", "<frozen importlib._bootstrap", "/submitit/", "/ptslurm/", "/sacred/",
             "/wrapt/", "/site-packages/munch/")


class Recent:
    """What ``stream`` saw of the log that matters afterwards: the last lines (a traceback
    that sacred printed ends the captured output)."""

    def __init__(self, keep: int = 200):
        self.lines: tp.Deque[str] = collections.deque(maxlen=keep)
        self._partial = ""

    def feed(self, text: str) -> None:
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self.lines.extend(parts)

    def has_traceback_of(self, error: tp.Optional[str]) -> bool:
        """Whether the output shown ends with a traceback of ``error`` (``Type: message``)."""
        lines = list(self.lines) + ([self._partial] if self._partial else [])
        if not error or not any(ln.startswith("Traceback (most recent call") for ln in lines):
            return False
        first = error.splitlines()[0].strip()
        return any(ln.strip() == first or ln.strip().endswith(first) for ln in lines)


class Frames:
    """A line filter that drops the machinery's frames from the tracebacks in a log (the
    ``File ...`` line of a frame of runpy, submitit, ptslurm or sacred and its source
    lines); everything else passes unchanged."""

    def __init__(self) -> None:
        self.in_traceback = False
        self.skipping = False

    def keep(self, line: str) -> bool:
        if line.startswith("Traceback (most recent call"):
            self.in_traceback, self.skipping = True, False
            return True
        if not self.in_traceback:
            return True
        if line.startswith('  File "'):
            self.skipping = any(part in line for part in MACHINERY)
            return not self.skipping
        if line.startswith("    "):
            return not self.skipping
        self.in_traceback = self.skipping = False  # the exception line ends the traceback
        return True


def stream(path: tp.Union[str, os.PathLike], offset: int, out: tp.TextIO, seen: tp.Optional[Recent] = None,
           frames: tp.Optional[Frames] = None) -> int:
    """Copy the log from ``offset`` to its current end onto ``out``, a block at a time
    (whole lines; ``frames`` filters tracebacks); returns the new offset (the same when the
    file is missing). A last line without its newline yet is left for the next call."""
    try:
        fh = open(path, "rb")
    except OSError:
        return offset
    with fh:
        fh.seek(offset)
        pending = b""
        while True:
            block = fh.read(BLOCK)
            if not block:
                break
            data = pending + block
            cut = data.rfind(b"\n") + 1
            pending = data[cut:]
            text = data[:cut].decode("utf-8", errors="replace")
            if frames is not None:
                text = "".join(ln for ln in text.splitlines(keepends=True) if frames.keep(ln))
            out.write(text)
            if seen is not None:
                seen.feed(text)
        out.flush()
        return fh.tell() - len(pending)


def tail_offset(path: tp.Union[str, os.PathLike], lines: int) -> int:
    """The offset where the last ``lines`` lines of the file begin (0 when it has fewer),
    reading blocks backwards from the end."""
    try:
        fh = open(path, "rb")
    except OSError:
        return 0
    with fh:
        end = fh.seek(0, os.SEEK_END)
        position, found = end, 0
        if end and (fh.seek(end - 1) or True) and fh.read(1) == b"\n":
            end -= 1  # the file's last newline ends the last line
            position = end
        while position > 0:
            start = max(0, position - BLOCK)
            fh.seek(start)
            block = fh.read(position - start)
            for i in range(len(block) - 1, -1, -1):
                if block[i] == 10:
                    found += 1
                    if found == lines:
                        return start + i + 1
            position = start
        return 0


def user_traceback(text: str) -> str:
    """A formatted traceback without the frames of runpy, submitit, ptslurm and sacred
    (the user's frames and the exception stay; unchanged when nothing would be left)."""
    out: tp.List[str] = []
    skipping = False
    kept_frames = 0
    for line in text.splitlines(keepends=True):
        if line.startswith('  File "'):
            skipping = any(part in line for part in MACHINERY)
            if not skipping:
                kept_frames += 1
                out.append(line)
            continue
        if skipping and line.startswith("    "):
            continue  # the source line (and caret lines) of a skipped frame
        skipping = False
        out.append(line)
    return "".join(out) if kept_frames else text
