"""Sweep grammar and grid expansion: no I/O, no scheduler, no torch.

The ``with`` tokens use sacred's syntax and value parser. A list value is a sweep axis
(``lr=[1e-3,1e-4]``); a literal list is a one-element axis (``layers=[[64,64]]``). A bare word
is a named config, as in sacred; a bracketed list of names (``'[small,large]'``) is an axis over
named configs. Expansion order: the product of all axes with the FIRST axis varying slowest
(nested for-loops in the order the axes were written: sweep file first, then command line).
"""
import ast
import dataclasses
import itertools
import math
import random
import re
import typing as tp

from ..errors import SpecError
from ..records.spec import Point

NAMED = "named_configs"
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LITERAL_CHARS = set("[](){}'\"")


@dataclasses.dataclass(frozen=True)
class Axis:
    """One sweep dimension. ``keys`` has several entries for coupled (zipped) axes;
    ``values`` holds one tuple per step, aligned with ``keys``. For a named-config axis,
    ``keys == ("named_configs",)`` and each step is a tuple of config names."""

    keys: tp.Tuple[str, ...]
    values: tp.Tuple[tuple, ...]
    source: str = ""
    flat_list: bool = False  # written as a flat list on the command line

    def __post_init__(self):
        if not self.values:
            raise SpecError(f"{self.source}: empty axis; give at least one value "
                            f"(write [[]] to set an empty list literally)")


@dataclasses.dataclass(frozen=True)
class RandomSpec:
    """``samples`` draws of the ``samplers`` (key -> callable(rng)) with a fixed ``seed``."""

    samples: tp.Optional[int]  # None: a sub-grid's block that takes its parent's
    seed: tp.Optional[int]
    samplers: tp.Tuple[tp.Tuple[str, tp.Callable[[random.Random], tp.Any]], ...]
    source: str = "random"

    def axis(self) -> Axis:
        """The samples as one coupled axis. A parameter with a ``seed`` of its own draws from
        its own stream (so adding a parameter does not change its values), the others from
        the block's."""
        if self.samples is None:
            raise SpecError(f"{self.source}: 'samples' is missing (give it here or in the parent's random block)")
        shared = random.Random(self.seed or 0)
        streams = [random.Random(getattr(fn, "seed")) if getattr(fn, "seed", None) is not None else shared
                   for _, fn in self.samplers]
        keys = tuple(k for k, _ in self.samplers)
        rows = tuple(tuple(fn(rng) for (_, fn), rng in zip(self.samplers, streams)) for _ in range(self.samples))
        return Axis(keys, rows, source=self.source)


@dataclasses.dataclass(frozen=True)
class Block:
    """A layer of a sweep: fixed values, named configs, axes, random samples, sub-grids."""

    fixed: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)
    named: tp.Tuple[str, ...] = ()
    axes: tp.Tuple[Axis, ...] = ()
    random: tp.Optional[RandomSpec] = None
    subgrids: tp.Dict[str, "Block"] = dataclasses.field(default_factory=dict)
    # a sweep file's ``resources:`` (Resources field names -> values; a sub-grid's win key by key)
    resources: tp.Dict[str, tp.Any] = dataclasses.field(default_factory=dict)
    search: tp.Any = None  # a sweep file's ``halving:`` section (``halving.Search``), top level only
    optuna: tp.Optional[tp.Dict[str, tp.Any]] = None  # its ``optuna:`` section (``optuna_search.parse``)


# ----------------------------------------------------------------------------- parsing


def parse_value(text: str, token: str) -> tp.Any:
    """Parse one update value like sacred does, but refuse what sacred would silently
    turn into a string although it was meant as a literal (``[1e-3,`` or ``{'a': 1``)."""
    try:
        literal = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        if _LITERAL_CHARS & set(text):
            problem = "unbalanced brackets or quotes" if _unbalanced(text) else f"not a Python literal ({type(exc).__name__})"
            words = [w.strip() for w in text.strip()[1:-1].split(",")] if text.strip()[:1] == "[" else []
            key = token.partition("=")[0]
            if words and text.strip().endswith("]") and all(w and w.replace("_", "a").replace("-", "a").isalnum()
                                                             for w in words):
                quoted = ",".join(repr(w) for w in words)
                fix = f"for an axis of strings quote each one: \"{key}=[{quoted}]\" (the double quotes for the shell)"
                python = {"true": "True", "false": "False", "none": "None", "null": "None"}
                if any(w.lower() in python for w in words):  # YAML's or JSON's spelling of a literal
                    spelled = ",".join(python.get(w.lower(), repr(w)) for w in words)
                    fix = f"True, False and None are spelled as in Python: '{key}=[{spelled}]'; {fix}"
            else:
                fix = "write a Python literal, e.g. lr=[1e-3,1e-4] or name='\"text\"'"
            raise SpecError(f"bad value in update {token!r}: {problem}; {fix}") from None
        return text  # sacred's fallback: a bare word is a string
    from .sacred_adapter import convert_value  # sacred's own parser, for exact parity

    value = convert_value(text)
    if isinstance(literal, tuple) and isinstance(value, list):
        return Literal(value)  # sacred turns tuples into lists; a tuple is never an axis
    return value


class Literal(tp.NamedTuple):
    """A value written as a tuple: passed to sacred as it parses it, never swept."""

    value: tp.Any


def _unbalanced(text: str) -> bool:
    depth = {"[": 0, "(": 0, "{": 0}
    pairs = {"]": "[", ")": "(", "}": "{"}
    for ch in text:
        if ch in depth:
            depth[ch] += 1
        elif ch in pairs:
            depth[pairs[ch]] -= 1
    return any(depth.values()) or text.count("'") % 2 == 1 or text.count('"') % 2 == 1


def check_key(key: str, where: str) -> str:
    if key == NAMED:  # the sentinel of the named-config axis: as a key, its values would be taken for names
        raise SpecError(f"{where}: {key!r} names the named configs, not a config key: list them in the sweep "
                        f"file's top-level named_configs: [NAME] (an axis: [[NAME1, NAME2]]), or `with NAME`")
    if not _KEY_RE.match(key):
        raise SpecError(f"{where}: {key!r} is not a config key; use dotted names like trainer.optimizer.lr")
    return key


def parse_with(tokens: tp.Sequence[str]) -> Block:
    """Turn the tokens after ``with`` into a Block (fixed values and axes, in order)."""
    fixed: tp.Dict[str, tp.Any] = {}
    named: tp.List[str] = []
    axes: tp.List[Axis] = []
    for token in tokens:
        if not token.strip():
            continue
        key, sep, text = token.partition("=")
        if not sep:
            named_axis = _parse_named(token.strip())
            if isinstance(named_axis, Axis):
                axes.append(named_axis)
            else:
                named.append(named_axis)
            continue
        key = check_key(key.strip(), f"update {token!r}")
        value = parse_value(text.strip(), token)
        axes = [a for a in axes if key not in a.keys]
        fixed.pop(key, None)
        if isinstance(value, Literal):
            fixed[key] = value.value
        elif isinstance(value, list):
            if not value:
                raise SpecError(f"empty axis in {token!r}: give at least one value, "
                                f"or write {key}=[[]] to set an empty list")
            flat = not any(isinstance(v, (list, dict)) for v in value)
            axes.append(Axis((key,), tuple((v,) for v in value), source=f"update {token!r}",
                             flat_list=flat and len(value) > 1))
        else:
            fixed[key] = value
    return Block(fixed=fixed, named=tuple(named), axes=tuple(axes))


def _parse_named(token: str) -> tp.Union[str, Axis]:
    if token.startswith("[") or token.endswith("]"):
        if not (token.startswith("[") and token.endswith("]")):
            raise SpecError(f"bad named-config axis {token!r}: unbalanced brackets; write '[small,large]'")
        names = [n.strip() for n in token[1:-1].split(",") if n.strip()]
        if not names:
            raise SpecError(f"empty named-config axis {token!r}: give at least one named config")
        for name in names:
            check_named(name, f"named-config axis {token!r}")
        return Axis((NAMED,), tuple((n,) for n in names), source=f"named-config axis {token!r}")
    return check_named(token, "with")


CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml", ".pickle")  # sacred loads `with FILE` as a named config


def check_named(name: str, where: str) -> str:
    if name.lower().endswith(CONFIG_FILE_SUFFIXES) and "=" not in name:
        return name  # a config file, as sacred takes it
    if not _KEY_RE.match(name):
        raise SpecError(
            f"{where}: {name!r} is neither KEY=VALUE nor a named config; "
            f"quote updates whole, e.g. 'lr=[1e-3,1e-4]'"
        )
    return name


def comma_notes(tokens: tp.Iterable[str]) -> tp.List[str]:
    """A note for each hydra-style ``a=1,2``: sacred reads it as the tuple ``(1, 2)``, one
    fixed value; an axis is ``a=[1,2]``."""
    out = []
    for token in tokens:
        key, sep, raw = token.partition("=")
        text = raw.strip()
        if sep and "," in text and not text.startswith(("[", "(", "{", "'", '"')):
            out.append(f"{token!r} is the tuple ({text}) for every point (sacred's reading, a fixed value); "
                       f"for an axis write '{key}=[{text}]'")
    return out


# ----------------------------------------------------------------------------- expansion


def overlay(base: Block, top: Block) -> Block:
    """``top`` wins: its fixed values and axes replace those of ``base`` for the same keys;
    axes that stay keep ``base``'s order and ``top``'s new axes follow."""
    top_keys = set(top.fixed) | {k for a in top.axes for k in a.keys if k != NAMED}
    if top.random:
        top_keys |= {k for k, _ in top.random.samplers}
    fixed = {k: v for k, v in base.fixed.items() if k not in top_keys}
    fixed.update(top.fixed)
    for axis in base.axes:
        given = set(axis.keys) & top_keys
        if given and given != set(axis.keys):
            partners = ", ".join(k for k in axis.keys if k not in given)
            raise SpecError(f"{', '.join(sorted(given))} is given again although the sweep file zips it with "
                            f"{partners}: overriding one zipped key would drop the others; give all of "
                            f"{', '.join(axis.keys)} or change the zip in the file")
    axes = [a for a in base.axes if not (set(a.keys) & top_keys)]
    fixed_keys = set(top.fixed)
    axes = [a for a in axes if not (set(a.keys) & fixed_keys)]
    rnd = base.random
    if top.random is not None and rnd is not None:  # merged key by key, as seml's sub-configs do
        kept = tuple((k, f) for k, f in rnd.samplers if k not in {t for t, _ in top.random.samplers}
                     and k not in top_keys - {t for t, _ in top.random.samplers})
        rnd = RandomSpec(top.random.samples if top.random.samples is not None else rnd.samples,
                         top.random.seed if top.random.seed is not None else rnd.seed,
                         kept + top.random.samplers, source=top.random.source)
    elif top.random is not None:
        rnd = top.random
    elif rnd is not None and {k for k, _ in rnd.samplers} & top_keys:
        kept = tuple((k, f) for k, f in rnd.samplers if k not in top_keys)
        rnd = dataclasses.replace(rnd, samplers=kept) if kept else None
    resources = dict(base.resources)
    resources.update(top.resources)
    if "sbatch_args" in base.resources and "sbatch_args" in top.resources:
        resources["sbatch_args"] = {**base.resources["sbatch_args"], **top.resources["sbatch_args"]}
    for key in ("setup", "srun_args"):  # lines join: the top's, then the sub-grid's
        if key in base.resources and key in top.resources:
            resources[key] = tuple(base.resources[key]) + tuple(top.resources[key])
    return Block(fixed=fixed, named=base.named + top.named, axes=tuple(axes) + top.axes,
                 random=rnd, subgrids=dict(top.subgrids or base.subgrids), resources=resources)


DEFAULT_MAX_POINTS = 10000


def expand(block: Block, command_line: tp.Optional[Block] = None,
           max_points: int = DEFAULT_MAX_POINTS, keep_duplicates: bool = False,
           notes: tp.Optional[tp.List[str]] = None) -> tp.List[Point]:
    """All points of ``block`` (sub-grids each crossed with the rest, then concatenated in
    file order), with ``command_line`` laid over every sub-grid. Exact duplicates are dropped
    (first kept) unless ``keep_duplicates``; ``notes`` receives one line saying so. Raises
    SpecError when the sweep has no point, or more than ``max_points`` (counted before
    anything is expanded)."""
    leaves = _leaves(block)
    if command_line is not None:
        leaves = [overlay(leaf, command_line) for leaf in leaves]
    total = 0
    for leaf in leaves:
        size = 1
        for axis in leaf.axes:
            size *= len(axis.values)
        if leaf.random and leaf.random.samplers:
            size *= leaf.random.samples or 1
        total += size
    if total > max_points:
        raise SpecError(f"the sweep has {total:,} points, more than --max-points {max_points:,}; "
                        f"narrow the grid, or raise --max-points if you mean it")
    raw: tp.List[tp.Tuple[dict, tuple]] = []
    wants: tp.List[tp.Dict[str, tp.Any]] = []  # each raw point's resources (its leaf's)
    for leaf in leaves:
        axes = list(leaf.axes) + ([leaf.random.axis()] if leaf.random and leaf.random.samplers else [])
        for combo in itertools.product(*(a.values for a in axes)):
            updates = dict(leaf.fixed)
            named: tp.List[str] = list(leaf.named)
            for axis, step in zip(axes, combo):
                if axis.keys == (NAMED,):
                    named.extend(step)
                else:
                    updates.update(zip(axis.keys, step))
            raw.append((updates, tuple(named)))
            wants.append(leaf.resources)
    seen: tp.Set[str] = set()
    unique: tp.List[tp.Tuple[tp.Dict[str, tp.Any], tp.Tuple[str, ...]]] = []
    kept: tp.List[tp.Dict[str, tp.Any]] = []
    repeated: tp.List[str] = []
    for (updates, named_), want in zip(raw, wants):
        ident = Point(0, updates, named_).identity()
        if ident not in seen or keep_duplicates:
            seen.add(ident)
            unique.append((updates, named_))
            kept.append(want)
        else:
            repeated.append(Point(0, updates, named_, tuple(updates) + ((NAMED,) if named_ else ())).label)
    if repeated and notes is not None:
        shown = "; ".join(repeated[:3]) + (f" and {len(repeated) - 3} more" if len(repeated) > 3 else "")
        notes.append(f"{len(repeated)} point(s) repeat an earlier one exactly and are dropped ({shown}); to run "
                     f"repeats, sweep the seed ('seed=[1,2,3]') or pass --keep-duplicates")
    varied = varied_keys(unique)
    return [Point(i, u, n, varied, dict(r)) for i, ((u, n), r) in enumerate(zip(unique, kept))]


def _leaves(block: Block) -> tp.List[Block]:
    if not block.subgrids:
        return [block]
    stem = dataclasses.replace(block, subgrids={})
    out: tp.List[Block] = []
    for sub in block.subgrids.values():
        out.extend(_leaves(overlay(stem, sub)))
    return out


def varied_keys(rows: tp.Sequence[tp.Tuple[dict, tuple]]) -> tp.Tuple[str, ...]:
    """Keys whose value is not the same in every row (missing counts as a value), in
    order of first appearance; ``named_configs`` when the named configs differ."""
    order: tp.Dict[str, None] = {}
    for updates, _ in rows:
        order.update(dict.fromkeys(updates))
    varied = []
    missing = object()
    for key in order:
        first = rows[0][0].get(key, missing)
        if any(_differs(u.get(key, missing), first) for u, _ in rows[1:]):
            varied.append(key)
    if len({named for _, named in rows}) > 1:
        varied.append(NAMED)
    return tuple(varied)


def _differs(a, b) -> bool:
    return type(a) is not type(b) or a != b


# ----------------------------------------------------------------------------- value ranges


def arange(start: float, stop: float, step: float, where: str) -> tp.List[tp.Any]:
    """Like ``numpy.arange`` (stop excluded), exact for ints, without accumulated error."""
    if step == 0 or (stop - start) / step < 0:
        raise SpecError(f"{where}: range from {start} to {stop} with step {step} is empty; "
                        f"step must move from min towards max")
    count = math.ceil((stop - start) / step - 1e-12)
    if all(isinstance(v, int) for v in (start, stop, step)):
        return [start + i * step for i in range(count)]
    return [float(start + i * step) for i in range(count)]


def linspace(start: float, stop: float, num: int, log: bool, where: str) -> tp.List[float]:
    if not isinstance(num, int) or num < 1:
        raise SpecError(f"{where}: num must be a positive integer, got {num!r}")
    if log and (start <= 0 or stop <= 0):
        raise SpecError(f"{where}: logspace needs min and max > 0, got {start} and {stop}")
    a, b = (math.log(start), math.log(stop)) if log else (float(start), float(stop))
    pts = [a + (b - a) * i / (num - 1) for i in range(num)] if num > 1 else [a]
    # 12 significant digits: 1e-4..1e-2 gives 0.001, not 0.0010000000000000002
    return [float(f"{(math.exp(p) if log else p):.12g}") for p in pts]
