"""YAML sweep files (``ptslurm sweep EXP -f sweep.yaml``), in the shape seml users know.

    fixed:    {trainer.optimizer.lr: 0.001}         # one value for every point
    grid:                                           # axes, crossed in file order
      batch_size: [16, 32]                          # a list is a choice
      lr: {type: logspace, min: 1e-4, max: 1e-2, num: 3}
      depth: {type: range, min: 2, max: 8, step: 2} # max excluded
      width: {type: linspace, min: 32, max: 128, num: 4}
    zip:                                            # coupled axes, stepped together
      - {warmup: [100, 1000], lr_decay: [0.9, 0.99]}
    random: {samples: 4, seed: 1, dropout: {type: uniform, min: 0.0, max: 0.5}}
    named_configs: [base, [small, large]]           # a name, or a list = named-config axis
    subgrids:                                       # each crossed with the rest, then joined
      adam: {fixed: {optimizer: adam}, grid: {lr: [1e-3, 1e-4]}}
      sgd:  {fixed: {optimizer: sgd}, grid: {momentum: [0.0, 0.9]}}
    resources: {gpus: 1, time: "4:00:00"}           # what the points ask the scheduler for
    halving: {budget: steps, min: 2, max: 18, eta: 3, metric: loss}   # successive halving (``halving``)

``resources:`` (at the top and in any sub-grid, whose keys win) takes the keys of a profile's
``resources`` (partition, gpus, nodes, tasks_per_node, cpus, mem_gb, time, points_per_job, ...);
command-line options win over it. Points with equal resources share one job array.

Nested mappings are dotted paths (``trainer: {lr: [..]}`` is ``trainer.lr``). A grid entry may
also carry seml's ``zip_id``: entries with the same ``zip_id`` are coupled.
"""
import math
import typing as tp
from pathlib import Path

from ..errors import SpecError
from .grid import NAMED, Axis, Block, RandomSpec, arange, check_key, check_named, linspace

SECTIONS = ("fixed", "grid", "zip", "random", "named_configs", "subgrids", "resources", "halving", "optuna")
GRID_TYPES = ("choice", "range", "linspace", "logspace")
RANDOM_TYPES = ("uniform", "loguniform", "choice", "randint")


def load(path: tp.Union[str, Path]) -> Block:
    """Read and validate a sweep file. Raises SpecError naming the file, key and problem."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read sweep file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_loader())
    except SpecError as exc:
        raise SpecError(f"{path.name}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = getattr(exc, "position", None)  # a reader error: a character YAML does not allow
        where = (f" (line {mark.line + 1}, column {mark.column + 1})" if mark else
                 f" (character {position + 1})" if isinstance(position, int) else "")
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "invalid YAML"
        raise SpecError(f"{path.name}: not valid YAML{where}: {problem}") from None
    if _expanded_size(data, {}) > MAX_AXIS:
        raise SpecError(f"{path.name}: the file expands to more than {MAX_AXIS:,} values (YAML aliases "
                        f"nested in aliases?); write the values out, or use a range")
    if _refers_to_itself(data, set()):  # (a walk of at most MAX_AXIS values, measured above)
        raise SpecError(f"{path.name}: a YAML alias refers to the value it is part of (&name ... *name inside "
                        f"it); write the values out")
    return parse(data, path.name)


def _refers_to_itself(node: tp.Any, open_: tp.Set[int]) -> bool:
    """Whether a list or mapping contains itself (a recursive YAML alias), which no config
    value can be."""
    if not isinstance(node, (dict, list)):
        return False
    if id(node) in open_:
        return True
    open_.add(id(node))
    children = node.values() if isinstance(node, dict) else node
    found = any(_refers_to_itself(child, open_) for child in children)
    open_.discard(id(node))
    return found


def _expanded_size(node: tp.Any, memo: tp.Dict[int, int]) -> int:
    """How many values ``node`` stands for once YAML aliases are expanded, computed once per
    shared object, so an alias bomb is measured, not expanded."""
    if not isinstance(node, (dict, list)):
        return 1
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle (a recursive alias) counts once
    children = node.values() if isinstance(node, dict) else node
    size = 1 + sum(_expanded_size(child, memo) for child in children)
    memo[id(node)] = size
    return size


def _loader():
    """SafeLoader that reads ``1e-3`` as a float (YAML 1.2), not as the string PyYAML's
    YAML 1.1 rules give: learning rates are written that way."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: tp.Any, node: tp.Any, deep: bool = False) -> dict:
        seen: tp.Dict[tp.Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(f"duplicate key {key!r} (lines {seen[key]} and {line}): YAML keeps only the "
                                f"last; give it once")
            try:
                seen[key] = line
            except TypeError:
                pass
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.construct_mapping = construct_mapping  # type: ignore
    float_re = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")
    Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    for ch in "-+0123456789.":
        Loader.yaml_implicit_resolvers[ch] = [
            (tag, rx) for tag, rx in Loader.yaml_implicit_resolvers.get(ch, []) if tag != "tag:yaml.org,2002:float"
        ]
        Loader.yaml_implicit_resolvers[ch].append(("tag:yaml.org,2002:float", float_re))
    return Loader


def parse(data: tp.Any, name: str = "sweep file") -> Block:
    if data is None:
        raise SpecError(f"{name}: the file is empty; give at least one of: {', '.join(SECTIONS)}")
    return _block(data, name)


SEML_ONLY = {"seml": "ptslurm takes the experiment file and its options on the command line",
             "slurm": "in ptslurm these are a profile's resources (ptslurm init) or command-line options"}


def _is_subgrid(value: tp.Any) -> bool:
    """seml's top-level sub-configs: a mapping made of sweep-file sections."""
    return isinstance(value, dict) and bool(value) and all(k in SECTIONS for k in value)


def _block(data: tp.Any, where: str, top: bool = True) -> Block:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}, "
                        f"got {type(data).__name__}")
    for key in data:
        if key in SEML_ONLY:
            raise SpecError(f"{where}: the {key!r} section is seml's; {SEML_ONLY[key]}")
    unknown = [k for k in data if k not in SECTIONS and not _is_subgrid(data[k])]
    if unknown:
        raise SpecError(f"{where}: unknown section {unknown[0]!r} (valid: {', '.join(SECTIONS)}; "
                        f"put sub-grids under 'subgrids:')")
    subgrids = dict(data.get("subgrids") or {}) if isinstance(data.get("subgrids") or {}, dict) else data["subgrids"]
    if isinstance(subgrids, dict):  # seml writes sub-configs at the top level: the same meaning
        subgrids.update({k: v for k, v in data.items() if k not in SECTIONS})
    fixed = dict(_flatten(data.get("fixed") or {}, f"{where}: fixed", leaf=lambda v: True))
    axes: tp.List[tp.Any] = []
    zip_groups: tp.Dict[str, tp.List[tp.Tuple[str, list]]] = {}
    for key, spec in _flatten(data.get("grid") or {}, f"{where}: grid", leaf=_is_axis_spec):
        values, zip_id = _grid_values(spec, f"{where}: grid.{key}")
        if zip_id is None:
            axes.append(Axis((key,), tuple((v,) for v in values), source=f"{where}: grid.{key}"))
        else:
            if str(zip_id) not in zip_groups:
                axes.append(str(zip_id))  # the group keeps the place of its first key
            zip_groups.setdefault(str(zip_id), []).append((key, values))
    axes = [_zipped(zip_groups[a], f"{where}: zip_id {a!r}") if isinstance(a, str) else a for a in axes]
    zips = data.get("zip") or []
    if not isinstance(zips, list):
        raise SpecError(f"{where}: zip: expected a list of mappings like "
                        f"- {{warmup: [100, 1000], decay: [0.9, 0.99]}}")
    for i, group in enumerate(zips):
        gwhere = f"{where}: zip[{i}]"
        members = [(k, _grid_values(v, f"{gwhere}.{k}")[0])
                   for k, v in _flatten(group, gwhere, leaf=_is_axis_spec)]
        if not members:
            raise SpecError(f"{gwhere}: empty group; give two or more keys with lists of equal length")
        axes.append(_zipped(members, gwhere))
    named, named_axes = _named(data.get("named_configs") or [], f"{where}: named_configs")
    if not isinstance(subgrids, dict):
        raise SpecError(f"{where}: subgrids: expected a mapping of name -> sub-grid")
    rnd = _random(data["random"], f"{where}: random", top=top) if data.get("random") is not None else None
    search = None
    if "halving" in data:
        if not top:
            raise SpecError(f"{where}: halving belongs at the top of the sweep file (one search per sweep)")
        from ..read import halving

        from ..read.results import direction

        search = halving.parse(data["halving"], f"{where}: halving")
        direction(search.metric)  # the result without a direction: UsageError with the fix
    asking = None
    if "optuna" in data:
        if not top:
            raise SpecError(f"{where}: optuna belongs at the top of the sweep file (one study per sweep)")
        from . import optuna_search
        from ..read.results import direction

        if search is not None:
            raise SpecError(f"{where}: optuna and halving in one sweep are not supported yet; run Optuna's search, "
                            f"then `ptslurm extend` its best points (README: adaptive search)")
        if axes or named_axes or subgrids:
            raise SpecError(f"{where}: optuna proposes every varied value from the random: section; move the "
                            f"grid's axes and sub-grids into random: (type: choice), or keep them fixed")
        asking = optuna_search.parse(data["optuna"], f"{where}: optuna", rnd)
        direction(asking["metric"])
    _no_key_twice(fixed, axes, rnd, where)
    return Block(
        resources=_resources(data.get("resources"), f"{where}: resources"),
        fixed=fixed,
        named=named,
        axes=tuple(axes) + named_axes,
        random=rnd,
        subgrids={str(k): _block(v, f"{where}: subgrids.{k}", top=False) for k, v in subgrids.items()},
        search=search,
        optuna=asking,
    )


def _resources(data: tp.Any, where: str) -> tp.Dict[str, tp.Any]:
    """A ``resources:`` section as Resources field names -> values, each checked as a
    profile's (``time`` in any form sbatch takes, as minutes)."""
    from . import profile
    from ..errors import UsageError

    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping like {{gpus: 1, time: '4:00:00'}}, got {type(data).__name__}")
    out: tp.Dict[str, tp.Any] = {}
    for key, value in data.items():
        if key not in profile.RESOURCE_KEYS:
            raise SpecError(f"{where}: unknown resource {key!r} (valid: {', '.join(profile.RESOURCE_KEYS)})")
        kinds = profile.TYPES[key]
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise SpecError(f"{where}.{key} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
        if key == "time":
            try:
                out["timeout_min"] = profile.parse_time(value)
            except UsageError as exc:
                raise SpecError(f"{where}.time: {exc.message}") from None
        elif key == "sbatch_args":
            out[key] = {str(k): v for k, v in tp.cast(tp.Dict[tp.Any, tp.Any], value or {}).items()}
        elif key in ("setup", "srun_args"):
            lines = [value] if isinstance(value, str) else list(tp.cast(tp.List[tp.Any], value or []))
            if not all(isinstance(line, str) for line in lines):
                raise SpecError(f"{where}.{key} must be a list of strings, got {value!r}")
            out[key] = tuple(lines)
        else:
            out[key] = value
    return out


def _no_key_twice(fixed: tp.Mapping[str, tp.Any], axes: tp.Sequence[Axis], rnd: tp.Optional[RandomSpec],
                  where: str) -> None:
    """A key set in two places of one block (fixed and grid, grid twice as a dotted key and as
    a nested mapping, grid and random) is an error naming both, as seml's is."""
    places: tp.Dict[str, str] = {}
    # an axis's source is "<where>: <section>.<key>" (where may hold ": " itself, in a sub-grid)
    entries = [(k, "fixed") for k in fixed] + [(k, a.source.rsplit(": ", 1)[-1]) for a in axes for k in a.keys]
    entries += [(k, "random") for k, _ in (rnd.samplers if rnd else ())]
    for key, place in entries:
        section = place.split(".")[0].split("[")[0]
        if key in places:
            raise SpecError(f"{where}: {key!r} is given twice, in {places[key]} and in {section}; give it once")
        places[key] = section


def _is_axis_spec(value: tp.Any) -> bool:
    return not isinstance(value, dict) or "type" in value


def _flatten(data: tp.Any, where: str, leaf: tp.Callable[[tp.Any], bool], prefix: str = ""):
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping of config keys, got {type(data).__name__}")
    for key, value in data.items():
        if str(key).startswith("+"):
            raise SpecError(f"{where}: {key!r} is seml's way to select a named config; ptslurm writes it "
                            f"as named_configs: [NAME] (an axis: named_configs: [[NAME1, NAME2]])")
        dotted = check_key(f"{prefix}{key}", where)
        if isinstance(value, dict) and value.get("type") == "parameter_collection":
            # seml's legacy nesting: the same as a nested mapping
            params = value.get("params")
            if not isinstance(params, dict) or set(value) - {"type", "params"}:
                raise SpecError(f"{where}: {dotted}: a parameter_collection needs only 'params' (a mapping)")
            yield from _flatten(params, where, leaf, dotted + ".")
            continue
        if isinstance(value, dict) and value and not leaf(value):
            yield from _flatten(value, where, leaf, dotted + ".")
        elif isinstance(value, dict) and value and where.endswith("fixed"):
            yield from _flatten(value, where, leaf=lambda v: False, prefix=dotted + ".")
        else:
            yield dotted, value


MAX_AXIS = 1_000_000  # values one range, linspace or random section may make before --max-points applies


def _need(spec: dict, keys: tp.Sequence[str], where: str, kind: str) -> tp.List[tp.Any]:
    missing = [k for k in keys if k not in spec]
    if missing:
        raise SpecError(f"{where}: type {kind!r} needs {', '.join(map(repr, missing))}")
    for k in keys:
        if k != "options" and (isinstance(spec[k], bool) or not isinstance(spec[k], (int, float))):
            raise SpecError(f"{where}: {k!r} must be a number, got {spec[k]!r}")
        if k != "options" and not math.isfinite(spec[k]):
            raise SpecError(f"{where}: {k!r} must be a finite number, got {spec[k]!r}")
    return [spec[k] for k in keys]


def _grid_values(spec: tp.Any, where: str) -> tp.Tuple[list, tp.Any]:
    if isinstance(spec, list):
        values, zip_id = spec, None
    elif isinstance(spec, dict):
        kind = spec.get("type")
        if kind in ("uniform", "loguniform") and "num" in spec:  # seml's grid: evenly spaced values
            kind = "linspace" if kind == "uniform" else "logspace"
        allowed = {"type", "zip_id", "options", "min", "max", "step", "num"}
        extra = sorted(set(spec) - allowed)
        if extra:
            raise SpecError(f"{where}: unknown field {extra[0]!r} (valid: {', '.join(sorted(allowed))})")
        zip_id = spec.get("zip_id")
        if kind == "choice":
            (values,) = _need(spec, ["options"], where, kind)
            if not isinstance(values, list):
                raise SpecError(f"{where}: 'options' must be a list")
        elif kind == "range":
            lo, hi, step = _need(spec, ["min", "max", "step"], where, kind)
            if step and (hi - lo) / step > MAX_AXIS:
                raise SpecError(f"{where}: the range has {int((hi - lo) / step):,} values, more than "
                                f"{MAX_AXIS:,}; use a larger step")
            values = arange(lo, hi, step, where=where)
        elif kind in ("linspace", "logspace"):
            lo, hi, num = _need(spec, ["min", "max", "num"], where, kind)
            if num > MAX_AXIS:
                raise SpecError(f"{where}: num {num:,} is more than {MAX_AXIS:,} values")
            values = linspace(lo, hi, num, kind == "logspace", where)
        else:
            raise SpecError(f"{where}: unknown type {kind!r} (valid: {', '.join(GRID_TYPES)})")
    else:
        raise SpecError(f"{where}: expected a list of values or {{type: ...}}, got {spec!r}; "
                        f"put single values under 'fixed:'")
    if not values:
        raise SpecError(f"{where}: empty axis; give at least one value")
    return values, zip_id


def _zipped(members: tp.List[tp.Tuple[str, list]], where: str) -> Axis:
    lengths = {k: len(v) for k, v in members}
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise SpecError(f"{where}: coupled axes must have the same length ({detail})")
    keys = tuple(k for k, _ in members)
    return Axis(keys, tuple(zip(*(v for _, v in members))), source=where)


def _named(items: tp.Any, where: str) -> tp.Tuple[tp.Tuple[str, ...], tp.Tuple[Axis, ...]]:
    if not isinstance(items, list):
        raise SpecError(f"{where}: expected a list such as [base, [small, large]]")
    fixed, axes = [], []
    for item in items:
        if isinstance(item, list):
            if not item:
                raise SpecError(f"{where}: empty named-config axis")
            axes.append(Axis((NAMED,), tuple((check_named(str(n), where),) for n in item), source=where))
        else:
            fixed.append(check_named(str(item), where))
    return tuple(fixed), tuple(axes)


def _random(data: tp.Any, where: str, top: bool = True) -> RandomSpec:
    """A random block; in a sub-grid ``samples`` and ``seed`` may come from the parent's."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping with 'samples', 'seed' and parameters")
    samples = data.get("samples")
    if samples is None and not top:
        pass
    elif isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise SpecError(f"{where}: 'samples' must be a positive integer, got {samples!r}")
    elif samples > MAX_AXIS:
        raise SpecError(f"{where}: {samples:,} samples are more than {MAX_AXIS:,}")
    seed = data.get("seed", None if not top else 0)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise SpecError(f"{where}: 'seed' must be an integer, got {seed!r}")
    params = {k: v for k, v in data.items() if k not in ("samples", "seed")}
    samplers = []
    for key, spec in _flatten(params, where, leaf=_is_axis_spec):
        pwhere = f"{where}.{key}"
        if not isinstance(spec, dict):
            raise SpecError(f"{pwhere}: expected {{type: uniform|loguniform|choice|randint, ...}}")
        samplers.append((key, _sampler(spec, pwhere)))
    if not samplers:
        raise SpecError(f"{where}: no parameters to sample; add e.g. lr: {{type: loguniform, min: 1e-5, max: 1e-2}}")
    return RandomSpec(samples, seed, tuple(samplers), source=where)


def _sampler(spec: dict, where: str):
    """A draw function for one random parameter; a ``seed`` of its own (as seml allows) gives
    it its own random stream (``fn.seed``)."""
    allowed = {"type", "min", "max", "options", "seed"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise SpecError(f"{where}: unknown field {extra[0]!r} (valid: {', '.join(sorted(allowed))})")
    own = spec.get("seed")
    if own is not None and (isinstance(own, bool) or not isinstance(own, int)):
        raise SpecError(f"{where}: 'seed' must be an integer, got {own!r}")
    fn = _draw(spec, where)
    setattr(fn, "seed", own)
    setattr(fn, "spec", {k: v for k, v in spec.items() if k != "seed"})  # what Optuna's distributions need
    return fn


def _draw(spec: dict, where: str):
    kind = spec.get("type")
    if kind == "uniform":
        lo, hi = _need(spec, ["min", "max"], where, kind)
        return lambda rng: rng.uniform(lo, hi)
    if kind == "loguniform":
        lo, hi = _need(spec, ["min", "max"], where, kind)
        if lo <= 0 or hi <= 0:
            raise SpecError(f"{where}: loguniform needs min and max > 0")
        return lambda rng: math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if kind == "randint":
        lo, hi = _need(spec, ["min", "max"], where, kind)
        if hi <= lo:
            raise SpecError(f"{where}: randint needs max > min (max is excluded)")
        return lambda rng: rng.randrange(int(lo), int(hi))
    if kind == "choice":
        (options,) = _need(spec, ["options"], where, kind)
        if not isinstance(options, list) or not options:
            raise SpecError(f"{where}: 'options' must be a non-empty list")
        return lambda rng: rng.choice(options)
    raise SpecError(f"{where}: unknown type {kind!r} (valid: {', '.join(RANDOM_TYPES)})")
