"""The pre-flight check in a fresh process: load the experiment from its code snapshot, in
the working directory the job will have and with nothing of the user's tree on ``sys.path``,
and build every point's config with sacred. Whatever the job would miss (a data file, a
module outside the snapshot) fails here, before anything is created or queued.

``python -m ptslurm.plan.preflight REQUEST.json RESULT.json``; ``run`` is the submit side's call.
"""
import json
import os
import sys
import tempfile
import typing as tp
from pathlib import Path

from .. import programs
from ..errors import ExperimentError

TIMEOUT_S = 600


def run(code_dir: Path, experiment_file: Path, workdir: Path, module: str, points: tp.Sequence[dict],
        storage_keys: tp.Sequence[str], placeholders: tp.Sequence[str], flat_axes: tp.Sequence[tp.Any],
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
            proc = programs.python_module("ptslurm.plan.preflight", [str(req), str(out)], workdir, TIMEOUT_S, env)
        except programs.TimeoutExpired:
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
    from ..records.spec import Point

    from ..records.snapshot import isolate

    isolate(Path(request["source_root"]), Path(request["code_dir"]))
    _, ex = experiment.load(Path(request["experiment"]), module_name=request["module"], light=True)
    points = [Point.from_json(p) for p in request["points"]]
    default, configs, injected, seeds = experiment.preflight(ex, points, request["storage_keys"],
                                                             request["placeholders"])
    warnings = experiment.list_defaults(default, points, request["flat_axes"])
    warnings += same_configs(points, configs, injected, seeds)
    return {"injected": injected, "seeds": seeds, "warnings": warnings}


def same_configs(points: tp.Sequence[tp.Any], configs: tp.Sequence[dict], injected: tp.Optional[str],
                 seeds: tp.Optional[tp.Sequence[tp.Any]] = None) -> tp.List[str]:
    """Points whose updates differ but whose resolved configs (storage dir aside) are the
    same (``lr=0.1`` and ``lr=1e-1``): a warning line per group. A seed the point sets
    (``seeds[i]`` not None: ``'seed=[1,2,3]'``, a named config) makes points differ; one that
    sacred would draw does not."""
    groups: tp.Dict[str, tp.List[tp.Any]] = {}
    for n, (point, config) in enumerate(zip(points, configs)):
        config = dict(config)
        if seeds is None or n >= len(seeds) or seeds[n] is None:
            config.pop("seed", None)
        if injected:
            node = config
            *parents, last = injected.split(".")
            for part in parents:
                node = dict(node.get(part) or {}) if isinstance(node.get(part), dict) else {}
            node.pop(last, None)
            if parents:
                config[parents[0]] = _without(config.get(parents[0]), parents[1:] + [last])
            else:
                config.pop(last, None)
        groups.setdefault(json.dumps(config, sort_keys=True, default=repr), []).append(point)
    return [f"points {', '.join(str(p.index) for p in same)} ({'; '.join(p.label for p in same)}) resolve to the "
            f"same config: they would train the same thing; drop all but one"
            for same in groups.values() if len(same) > 1]


def _without(node: tp.Any, path: tp.List[str]) -> tp.Any:
    """``node`` (a dict) without the key at ``path``."""
    if not isinstance(node, dict) or not path:
        return node
    out = dict(node)
    if len(path) == 1:
        out.pop(path[0], None)
    else:
        out[path[0]] = _without(out.get(path[0]), path[1:])
    return out


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


if __name__ == "__main__":  # run by its own name: its functions are the module's (pickles, coverage), not __main__'s
    from ptslurm.plan import preflight as _self

    sys.exit(_self.main())
