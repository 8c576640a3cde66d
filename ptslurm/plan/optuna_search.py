"""Model-based sampling through Optuna, with no server: the study lives in a journal file in
the sweep dir (``optuna.journal``), and the sweep's points are its trials. A sweep file's

    random: {samples: 30, seed: 1, lr: {type: loguniform, min: 1e-4, max: 1e-1}}   # the space, N
    optuna: {sampler: tpe, parallel: 4, metric: loss}

makes ``samples`` points whose random values Optuna proposes (ask-and-tell) as results come in:
``parallel`` at a time; when a point ends its result is told and the next waiting point asks.
Optuna is an optional extra (``pip install ptslurm[search]``) imported only here, only when such
a sweep is decided. The deciders are those of successive halving (``promote``), under the
manifest lock; an ask is recorded (point -> trial) right after it, and a trial that a killed
decider asked but never recorded is given to the next waiting point, so no trial is asked twice
and none is lost.
"""
import typing as tp
from pathlib import Path

from ..errors import SpecError, UsageError

SAMPLERS = ("tpe", "cmaes", "gp", "random", "qmc")
FIELDS = ("sampler", "parallel", "metric", "seed")
JOURNAL = "optuna.journal"


def parse(data: tp.Any, where: str, space: tp.Any) -> tp.Dict[str, tp.Any]:
    """The section as the manifest keeps it (with the search space of the ``random:``
    section ``space``, a ``grid.RandomSpec``); SpecError naming the field and the fix."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping like {{sampler: tpe, parallel: 4, metric: loss}}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r} (valid: {', '.join(FIELDS)})")
    if space is None:
        raise SpecError(f"{where}: Optuna searches the space of a `random:` section (its samples are the trials); "
                        f"add e.g. random: {{samples: 30, lr: {{type: loguniform, min: 1e-4, max: 1e-1}}}}")
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise SpecError(f"{where}: sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    parallel = data.get("parallel", 4)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise SpecError(f"{where}: parallel (trials running at once) must be a positive whole number, got {parallel!r}")
    metric = data.get("metric", "loss")
    if not isinstance(metric, str) or not metric:
        raise SpecError(f"{where}: metric must name a sacred metric (or result:min / result:max)")
    seed = data.get("seed", space.seed or 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpecError(f"{where}: seed must be a whole number, got {seed!r}")
    params = {}
    for key, fn in space.samplers:
        spec = dict(getattr(fn, "spec", {}))
        if spec.get("type") == "choice" and not all(o is None or isinstance(o, (bool, int, float, str))
                                                    for o in spec["options"]):
            raise SpecError(f"{where}: {key}: Optuna chooses among numbers, strings, booleans and None; "
                            f"name the lists and choose a named config, or put them in a grid")
        params[key] = spec
    return {"sampler": sampler, "parallel": parallel, "metric": metric, "seed": seed, "space": params,
            "trials": space.samples}


def _distributions(space: tp.Mapping[str, tp.Mapping[str, tp.Any]]) -> tp.Dict[str, tp.Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: tp.Dict[str, tp.Any] = {}
    for key, spec in space.items():
        kind = spec.get("type")
        if kind in ("uniform", "loguniform"):
            out[key] = FloatDistribution(float(spec["min"]), float(spec["max"]), log=kind == "loguniform")
        elif kind == "randint":  # ptslurm's (and Python's randrange) max is excluded
            out[key] = IntDistribution(int(spec["min"]), int(spec["max"]) - 1)
        else:
            out[key] = CategoricalDistribution(list(spec["options"]))
    return out


def _sampler(config: tp.Mapping[str, tp.Any], asked: int) -> tp.Any:
    """A fresh sampler per decision (each decider is a new process): seeded with the sweep's
    seed and the number of trials asked so far, so no two asks draw the same start."""
    import optuna

    seed = int(config.get("seed") or 0) * 1_000_003 + asked
    name = config.get("sampler", "tpe")
    try:
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, int(config["trials"]) // 3)))
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        if name == "qmc":
            return optuna.samplers.QMCSampler(seed=0, scramble=True)
        return optuna.samplers.RandomSampler(seed=seed)
    except ImportError as exc:
        raise UsageError(f"Optuna's {name} sampler needs {exc.name or 'more packages'}: install them, or choose "
                         f"sampler: tpe") from None


def study(sweep_dir: Path, name: str, config: tp.Mapping[str, tp.Any], way: str, asked: int = 0) -> tp.Any:
    """The sweep's study, in its journal file (created on first use)."""
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        raise UsageError("this sweep's points are proposed by Optuna, which is not installed: "
                         "pip install 'ptslurm[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(Path(sweep_dir) / JOURNAL)))
    return optuna.create_study(study_name=name, storage=storage, sampler=_sampler(config, asked),
                               direction="maximize" if way == "max" else "minimize", load_if_exists=True)


def step(sweep_dir: Path, manifest: tp.Any, rows: tp.Sequence[tp.Any], log: tp.Dict[str, tp.Any],
         save: tp.Callable[[], None], failpoint: tp.Callable[[str], None],
         by: str = "") -> tp.Tuple[tp.Any, tp.List[int]]:
    """Tell the ended points' results, ask for waiting points while fewer than ``parallel``
    run, and write the asked values into their manifest entries. Returns the manifest and
    the points to start now (asked, never started). ``log["trials"]``: point -> trial;
    ``log["asked_by"]``: point -> the decider (``by``) that asked for it."""
    from optuna.trial import TrialState

    from .. import schedulers
    from ..records import manifests
    from ..records import TERMINAL, State
    from ..read.results import direction, rung_value

    config = manifest.optuna
    here = not schedulers.of(manifest.executor).keeps_queue  # a local sweep: its points run on this machine
    way = direction(config["metric"])[1]
    trials: tp.Dict[str, int] = log.setdefault("trials", {})
    s = study(sweep_dir, manifest.name, config, way)
    known = {t.number: t for t in s.get_trials(deepcopy=False)}
    for index, number in sorted(trials.items(), key=lambda kv: int(kv[0])):
        row, trial = rows[int(index)], known.get(number)
        if trial is None or trial.state != TrialState.RUNNING or row.state not in TERMINAL:
            continue
        if row.status.latest is None:
            continue  # asked, not run yet
        if here and row.state in (State.LOST, State.INTERRUPTED):
            continue  # the sweep command run again resumes it from its checkpoint
        value = rung_value(manifest.points[int(index)], row.status, config["metric"]) \
            if row.state == State.COMPLETED else None
        s.tell(number, value) if value is not None else s.tell(number, state=TrialState.FAIL)
    known = {t.number: t for t in s.get_trials(deepcopy=False)}
    mapped = set(trials.values())
    orphans = sorted(n for n, t in known.items() if t.state == TrialState.RUNNING and n not in mapped)
    running = sum(1 for n in mapped if known.get(n) is not None and known[n].state == TrialState.RUNNING)
    waiting = [e.index for e in manifest.points if str(e.index) not in trials]
    if waiting and running < int(config["parallel"]):
        s = study(sweep_dir, manifest.name, config, way, asked=len(known))  # this decision's sampler
        dists = _distributions(config["space"])
        for index in waiting[:int(config["parallel"]) - running]:
            number = orphans.pop(0) if orphans else s.ask(dists).number  # the journal holds the ask
            failpoint("asked")
            trials[str(index)] = number
            log.setdefault("asked_by", {})[str(index)] = by
            save()
        known = {t.number: t for t in s.get_trials(deepcopy=False)}
    params = {int(i): known[n].params for i, n in trials.items() if n in known}
    changed = [i for i, p in params.items() if any(manifest.points[i].updates.get(k) != v for k, v in p.items())]
    if changed:  # the asked values, before the points are queued or run
        manifest = manifest.with_points(lambda e: e.replace(updates={**e.updates, **params[e.index]}), changed)
        manifests.write_manifest(sweep_dir, manifest)
    start = [i for i, n in sorted(params.items()) if known[trials[str(i)]].state == TrialState.RUNNING
             and rows[i].status.latest is None and (not manifest.points[i].job_id or here)]
    return manifest, start
