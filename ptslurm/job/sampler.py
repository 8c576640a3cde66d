"""The job's side of ``usage``: a daemon thread that samples the attempt's process tree
(resident memory, from /proc) and the GPUs the scheduler gave it (``nvidia-smi``)."""
import os
import threading
import typing as tp

from .. import programs
from ..read.usage import parse_gpus

SAMPLE_S = float(os.environ.get("PTSLURM_SAMPLE_S", "10"))


def visible(indices: tp.Optional[str]) -> tp.Optional[tp.Set[int]]:
    """The GPU indices ``CUDA_VISIBLE_DEVICES`` names (None: all; UUIDs: all, nvidia-smi's
    numbering cannot be matched to them)."""
    if indices is None:
        return None
    wanted = [i.strip() for i in indices.split(",") if i.strip()]
    return {int(i) for i in wanted} if all(i.isdigit() for i in wanted) else None


def own_peak_mb() -> float:
    """This process's own peak resident memory since it started, in MiB: /proc's VmHWM of its
    address space (``ru_maxrss`` is no use: Linux carries it over from the process that
    forked and exec'd this one, so a point started by a big launcher would inherit its peak)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def tree_rss_mb(root: int) -> float:
    """The resident memory of process ``root`` and its descendants now, in MiB (Linux /proc)."""
    parent: tp.Dict[int, int] = {}
    rss: tp.Dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(name)] = int(fields[1])
        rss[int(name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    total = 0.0
    for pid in rss:
        chain, depth = pid, 0
        while chain != root and chain in parent and chain > 1 and depth < 64:  # (pids reused mid-walk)
            chain, depth = parent[chain], depth + 1
        if chain == root:
            total += rss[pid]
    return total


class Sampler:
    """Samples this process tree's memory and the visible GPUs every ``interval_s`` in a
    daemon thread; ``usage()`` is the summary so far (a JSON-able dict)."""

    def __init__(self, interval_s: float = SAMPLE_S):
        self.interval_s = interval_s
        self.gpus = visible(os.environ.get("CUDA_VISIBLE_DEVICES"))
        # the GPUs the scheduler gave (SLURM and ptslurm's packing set the variable): a point
        # without one is never shown another job's GPUs on a shared node
        self.has_gpus = bool(os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()) and programs.has_nvidia_smi()
        self._lock = threading.Lock()
        self._peak_mb = 0.0
        self._gpu: tp.Dict[int, tp.List[float]] = {}  # index -> [samples, util sum, peak used, total]
        self._samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ptslurm-usage", daemon=True)

    def start(self) -> "Sampler":
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        own = own_peak_mb()
        try:
            now = tree_rss_mb(os.getpid())
        except OSError:
            now = 0.0
        gpus = parse_gpus(programs.gpu_query() or "") if self.has_gpus else []
        with self._lock:
            self._samples += 1
            self._peak_mb = max(self._peak_mb, own, now)
            for index, util, used, total in gpus:
                if self.gpus is not None and index not in self.gpus:
                    continue
                seen = self._gpu.setdefault(index, [0, 0.0, 0.0, total])
                seen[0] += 1
                seen[1] += util
                seen[2] = max(seen[2], used)

    def usage(self) -> tp.Dict[str, tp.Any]:
        with self._lock:
            out: tp.Dict[str, tp.Any] = {"max_rss_mb": round(self._peak_mb, 1), "samples": self._samples,
                                         "interval_s": self.interval_s}
            if self._gpu:
                out["gpus"] = [{"index": i, "util_mean": round(s[1] / s[0], 1), "mem_peak_mb": s[2],
                                "mem_total_mb": s[3]} for i, s in sorted(self._gpu.items()) if s[0]]
            return out
