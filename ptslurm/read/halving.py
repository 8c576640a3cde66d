"""Successive halving, ASHA and Hyperband as rules over files: which points go on to the next
budget, given what each point reached. Pure: ``promote`` (the effects) reads the sweep,
records each decision before it acts on it, and extends the chosen points from their
checkpoints.

A sweep file's section::

    halving:
      budget: steps          # the config key that says how long a point trains
      min: 2                 # the first rung's budget
      max: 18                # the last rung's: min * eta ** k
      eta: 3                 # keep the best 1/eta of each rung
      metric: loss           # a sacred metric's last value (or result:min / result:max)
      unit: null             # e.g. iteration: the budget is written (value, 'iteration')
      promotion: sync        # sync: when the rung is full; async: ASHA, as soon as a point qualifies
      brackets: 1            # Hyperband: brackets starting at rungs 0 .. brackets-1

Points of bracket ``b`` start at rung ``b``; the grid's points are shared among the brackets
in Hyperband's proportions (more points where more rungs remain).
"""
import dataclasses
import math
import random
import typing as tp

from ..errors import SpecError

PROMOTIONS = ("sync", "async")
FIELDS = ("budget", "min", "max", "eta", "metric", "unit", "promotion", "brackets")


@dataclasses.dataclass(frozen=True)
class Search:
    budget: str
    min: float
    max: float
    eta: int = 3
    metric: str = "loss"
    unit: tp.Optional[str] = None
    promotion: str = "sync"
    brackets: int = 1

    @property
    def rungs(self) -> tp.List[float]:
        """The budget of each rung, smallest first (whole numbers when min is whole)."""
        count = round(math.log(self.max / self.min, self.eta))
        out = [self.min * self.eta ** k for k in range(count + 1)]
        return [int(b) if float(self.min).is_integer() else b for b in out]

    def value(self, budget: float) -> tp.Any:
        """The config value that asks for ``budget``: the number, or ``[number, unit]``."""
        return [budget, self.unit] if self.unit else budget

    def budget_of(self, value: tp.Any) -> tp.Optional[float]:
        """The budget a config value asks for (None: not a budget)."""
        return budget_number(value)

    def rung_of(self, value: tp.Any) -> tp.Optional[int]:
        number = self.budget_of(value)
        rungs = self.rungs
        return rungs.index(number) if number in rungs else None

    def to_json(self) -> tp.Dict[str, tp.Any]:
        return dataclasses.asdict(self)


def budget_number(value: tp.Any) -> tp.Optional[float]:
    """``30000`` of ``30000``, ``(30000, 'iteration')`` or ``[30000, 'epoch']``; else None."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def parse(data: tp.Any, where: str = "halving") -> Search:
    """The section's Search; SpecError naming the field and the fix."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping like {{budget: steps, min: 2, max: 18, eta: 3, metric: loss}}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r} (valid: {', '.join(FIELDS)})")
    missing = [k for k in ("budget", "min", "max") if k not in data]
    if missing:
        raise SpecError(f"{where}: missing field {missing[0]!r}: give budget (the config key), min and max")
    budget = data["budget"]
    if not isinstance(budget, str) or not budget.strip():
        raise SpecError(f"{where}: budget must name a config key, e.g. steps or trainer.stop_trigger")
    low, high, eta = data["min"], data["max"], data.get("eta", 3)
    for name, v in (("min", low), ("max", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
            raise SpecError(f"{where}: {name} must be a positive number, got {v!r}")
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise SpecError(f"{where}: eta must be a whole number of at least 2, got {eta!r}")
    if not high > low:
        raise SpecError(f"{where}: max ({high}) must be larger than min ({low})")
    count = round(math.log(high / low, eta))
    if count < 1 or not math.isclose(low * eta ** count, high, rel_tol=1e-9):
        near = [low * eta ** k for k in (max(count, 1), max(count, 1) + 1)]
        raise SpecError(f"{where}: max must be min times a power of eta ({low} * {eta}**k), got {high}; "
                        f"e.g. max: {near[0]:g} or {near[1]:g}")
    promotion = data.get("promotion", "sync")
    if promotion not in PROMOTIONS:
        raise SpecError(f"{where}: promotion must be sync or async (ASHA), got {promotion!r}")
    brackets = data.get("brackets", 1)
    if isinstance(brackets, bool) or not isinstance(brackets, int) or not 1 <= brackets <= count + 1:
        raise SpecError(f"{where}: brackets must be a whole number from 1 to {count + 1} (the rungs), got {brackets!r}")
    metric = data.get("metric", "loss")
    if not isinstance(metric, str) or not metric:
        raise SpecError(f"{where}: metric must name a sacred metric (or result:min / result:max)")
    unit = data.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise SpecError(f"{where}: unit must be a word like iteration or epoch, got {unit!r}")
    return Search(budget=budget.strip(), min=low, max=high, eta=eta, metric=metric, unit=unit,
                  promotion=promotion, brackets=brackets)


def from_flag(text: str, section: tp.Optional[Search] = None) -> Search:
    """``--halving budget=steps,min=2,max=18``: the fields laid over a sweep file's section."""
    fields: tp.Dict[str, tp.Any] = dict(section.to_json()) if section is not None else {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"--halving {text!r}: write FIELD=VALUE pairs separated by commas, e.g. "
                            f"budget=steps,min=2,max=18,eta=3,metric=loss")
        word: tp.Any = value.strip()
        for kind in (int, float):
            try:
                word = kind(word)
                break
            except ValueError:
                pass
        fields[name.strip()] = word
    return parse(fields, "--halving")


def from_json(data: tp.Any) -> tp.Optional[Search]:
    """The Search a manifest recorded (None: no search, or a damaged record)."""
    if not isinstance(data, dict):
        return None
    try:
        return parse(data, "the manifest's search")
    except Exception:  # noqa: BLE001 - a damaged record is no search
        return None


def bracket_sizes(search: Search, n: int) -> tp.List[int]:
    """How many of ``n`` points each bracket starts with: Hyperband's proportions (bracket b
    starts at rung b; ceil(B/(s+1)) * eta**s with s the halvings left), at least one each."""
    last = len(search.rungs) - 1
    weights = [math.ceil(search.brackets / (last - b + 1)) * search.eta ** (last - b) for b in range(search.brackets)]
    if n < search.brackets:
        raise SpecError(f"halving: {search.brackets} brackets need at least {search.brackets} points, the sweep has {n}")
    raw = [n * w / sum(weights) for w in weights]
    sizes = [max(1, int(r)) for r in raw]
    while sum(sizes) > n:
        sizes[sizes.index(max(sizes))] -= 1
    order = sorted(range(len(raw)), key=lambda b: raw[b] - int(raw[b]), reverse=True)
    k = 0
    while sum(sizes) < n:
        sizes[order[k % len(order)]] += 1
        k += 1
    return sizes


def brackets_of(search: Search, n: int) -> tp.List[int]:
    """Each point's bracket (by index): a fixed shuffle, so that a bracket is not one corner
    of the grid."""
    if search.brackets == 1:
        return [0] * n
    order = list(range(n))
    random.Random(n).shuffle(order)
    out = [0] * n
    start = 0
    for b, size in enumerate(bracket_sizes(search, n)):
        for i in order[start:start + size]:
            out[i] = b
        start += size
    return out


def first_budgets(search: Search, points: tp.Sequence[tp.Any]) -> tp.List[tp.Any]:
    """The points (``spec.Point``) with the budget of their bracket's first rung; SpecError
    when the grid sets the budget key itself."""
    clash = next((p for p in points if search.budget in p.updates), None)
    if clash is not None:
        raise SpecError(f"halving: the grid sets {search.budget!r} (point {clash.index}), which successive halving "
                        f"sets for every point (min, then each rung's budget); leave it out of the grid and `with`")
    brackets = brackets_of(search, len(points))
    return [dataclasses.replace(p, updates={**p.updates, search.budget: search.value(search.rungs[b])})
            for p, b in zip(points, brackets)]


class View(tp.NamedTuple):
    """One point as the rules see it: its bracket, the rung of its budget, whether its
    attempt at that budget ended, and the metric there (None: failed or no metric)."""

    point: int
    bracket: int
    rung: int
    ended: bool
    value: tp.Optional[float]


class Promotion(tp.NamedTuple):
    bracket: int
    rung: int  # promoted from this rung to the next
    points: tp.Tuple[int, ...]


def _ranked(members: tp.Iterable[tp.Tuple[int, tp.Optional[float]]], way: str) -> tp.List[int]:
    """Indices best first; points without a number (failed, NaN) never rank."""
    numbers = [(v, i) for i, v in members if isinstance(v, (int, float)) and not math.isnan(v)]
    numbers.sort(key=lambda t: (t[0] if way == "min" else -t[0], t[1]))
    return [i for _, i in numbers]


def decide(search: Search, views: tp.Sequence[View], promoted: tp.Mapping[tp.Tuple[int, int], tp.Set[int]],
           values: tp.Mapping[tp.Tuple[int, int], float], way: str) -> tp.List[Promotion]:
    """The promotions due now. ``promoted``: (bracket, rung) -> points already promoted from
    it (a sync rung that has an entry was decided); ``values``: (point, rung) -> the metric
    it reached there (recorded when it was promoted on)."""
    last = len(search.rungs) - 1
    out: tp.List[Promotion] = []
    for b in sorted({v.bracket for v in views}):
        mine = [v for v in views if v.bracket == b]
        for k in range(b, last):
            members = [v for v in mine if v.rung >= k]
            if not members:
                break
            reached = [(v.point, v.value if v.rung == k else values.get((v.point, k))) for v in members
                       if v.rung > k or v.ended]
            done = promoted.get((b, k), set())
            if search.promotion == "sync":
                if (b, k) in promoted:
                    continue
                if any(v.rung == k and not v.ended for v in members):
                    break  # the rung is not full: later rungs wait for it
                keep = max(1, len(members) // search.eta)
                chosen = tuple(_ranked(reached, way)[:keep])
            else:  # ASHA: the top 1/eta of what reached the rung so far, not yet promoted
                top = _ranked(reached, way)[:len(reached) // search.eta]
                chosen = tuple(i for i in top if i not in done and any(v.point == i and v.rung == k for v in members))
                if not chosen:
                    continue
            out.append(Promotion(b, k, chosen))
    return out


def standing(section: tp.Any, log: tp.Any, points: tp.Sequence[tp.Tuple[tp.Any, str]]
             ) -> tp.List[tp.Tuple[tp.Optional[int], str]]:
    """Each point's rung and where the search left it, for ``collect`` and ``status``
    (``points``: each point's budget and state): ``final`` (it reached the last rung),
    ``promoted`` (chosen for the next rung, running or queued there), ``stopped`` (its rung
    was decided without it; ``ptslurm extend`` can still train it longer), ``waiting`` (for
    its rung's decision), or empty (still at its rung, or failed: the state says it)."""
    search = from_json(section)
    if search is None:
        return [(None, "") for _ in points]
    decisions = [d for d in (log or {}).get("decisions") or [] if isinstance(d, dict)] if isinstance(log, dict) else []
    promoted = {(int(i), int(d.get("rung", -1))) for d in decisions for i in d.get("points") or []}
    decided = {(int(d.get("bracket", 0)), int(d.get("rung", -1))) for d in decisions}
    brackets = brackets_of(search, len(points)) if len(points) >= search.brackets else [0] * len(points)
    last = len(search.rungs) - 1
    out: tp.List[tp.Tuple[tp.Optional[int], str]] = []
    for i, (budget, state) in enumerate(points):
        rung = search.rungs.index(budget) if budget in search.rungs else None
        if rung is None:
            said = ""
        elif (i, rung) in promoted:
            said = "promoted"  # the decision is recorded; its extension is on the way
        elif state == "completed":
            said = ("final" if rung == last else
                    "stopped" if search.promotion == "sync" and (brackets[i], rung) in decided else "waiting")
        elif state in ("waiting", "pending", "running", "requeued") and rung > brackets[i]:
            said = "promoted"
        else:
            said = ""
        out.append((rung, said))
    return out


def summary(section: tp.Any, standings: tp.Sequence[tp.Tuple[tp.Optional[int], str]]) -> str:
    """One line under ``status``: how far each rung got (points there now or beyond)."""
    search = from_json(section)
    if search is None:
        return ""
    parts = []
    for k, budget in enumerate(search.rungs):
        there = sum(1 for rung, _ in standings if rung is not None and rung >= k)
        moved = sum(1 for rung, said in standings if rung is not None and (rung > k or (rung == k and said == "promoted")))
        parts.append(f"rung {k} ({search.budget}={budget}): {there}" + (f", {moved} on" if k < len(search.rungs) - 1 else ""))
    waiting = sum(1 for _, said in standings if said == "waiting")
    mode = "ASHA" if search.promotion == "async" else "successive halving"
    brackets = f", {search.brackets} brackets" if search.brackets > 1 else ""
    return (f"{mode} (eta {search.eta}{brackets}, by {search.metric}): " + "; ".join(parts)
            + (f"; {waiting} waiting for a decision" if waiting else ""))
