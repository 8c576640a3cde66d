"""The pre-flight check in a fresh process: load the experiment from its code snapshot, in
the working directory the job will have and with nothing of the user's tree on ``sys.path``,
and build every point's config with sacred. Whatever the job would miss (a data file, a
module outside the snapshot) fails here, before anything is created or queued.

``python -m ptslurm.preflight REQUEST.json RESULT.json``; ``run`` is the submit side's call.
"""
import json
import os
import sys
import tempfile
import typing as tp
from pathlib import Path

from . import commands
from .errors import ExperimentError

TIMEOUT_S = 600


def run(code_dir: Path, experiment_file: Path, workdir: Path, module: str, points: tp.Sequence[dict],
        storage_keys: tp.Sequence[str], placeholders: tp.Sequence[str], flat_axes: tp.Sequence[str],
        source_root: Path) -> dict:
    """Run the pre-flight of ``points`` (``Point.to_json()``) against the snapshot's
    ``experiment_file``. Returns ``{"injected", "seeds", "warnings"}``; raises
    ExperimentError with the first problem."""
    request = {"code_dir": str(code_dir), "experiment": str(experiment_file), "module": module, "points": list(points),
               "storage_keys": list(storage_keys), "placeholders": list(placeholders),
               "flat_axes": list(flat_axes), "source_root": str(source_root)}
    with tempfile.TemporaryDirectory(prefix="ptslurm-preflight-") as scratch:
        req, out = Path(scratch) / "request.json", Path(scratch) / "result.json"
        req.write_text(json.dumps(request))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        try:
            proc = commands.python_module("ptslurm.preflight", [str(req), str(out)], workdir, TIMEOUT_S, env)
        except commands.TimeoutExpired:
            raise ExperimentError(f"loading the experiment and building its configs took over {TIMEOUT_S} s; "
                                  f"does the file do heavy work at import time?") from None
        try:
            result = json.loads(out.read_text())
        except (OSError, ValueError):
            tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            detail = f": {tail[-1].strip()}" if tail else " and printed nothing"
            raise ExperimentError(f"the experiment ended the pre-flight process (exit code {proc.returncode}) "
                                  f"before its configs were built{detail}; an experiment must not exit on import "
                                  f"(check for sys.exit/os._exit at module level)") from None
    if result.get("error"):
        raise ExperimentError(result["error"])
    return result


def _main(request: dict) -> dict:
    from . import experiment
    from .spec import Point

    from .snapshot import isolate

    isolate(Path(request["source_root"]), Path(request["code_dir"]))
    _, ex = experiment.load(Path(request["experiment"]), module_name=request["module"], light=True)
    points = [Point.from_json(p) for p in request["points"]]
    default, _configs, injected, seeds = experiment.preflight(ex, points, request["storage_keys"],
                                                              request["placeholders"])
    warnings = experiment.list_defaults(default, points, request["flat_axes"])
    return {"injected": injected, "seeds": seeds, "warnings": warnings}


def main(argv: tp.Optional[tp.List[str]] = None) -> int:
    req, out = (sys.argv[1:] if argv is None else argv)[:2]
    try:
        result = _main(json.loads(Path(req).read_text()))
    except ExperimentError as exc:
        result = {"error": exc.message}
    except Exception as exc:  # noqa: BLE001 - anything the experiment raises is reported, not crashed on
        result = {"error": f"pre-flight failed: {type(exc).__name__}: {exc}"}
    Path(out).write_text(json.dumps(result, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
