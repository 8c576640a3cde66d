"""Objects built from nested config dicts, in padertorch's style.

A config is a dict whose ``factory`` key names a class (the class itself or an importable
dotted name); the other keys are constructor arguments, and any of them may be a config of its
own. ``get_config`` fills in the constructor defaults recursively (so ``print_config`` shows
the whole tree), ``from_config`` builds the objects. Factories are stored as dotted strings,
so configs round-trip through JSON. No torch here.
"""
import copy
import importlib
import inspect
import typing as tp

from ..errors import UsageError
from ..records.writes import jsonable

FACTORY = "factory"


def factory_name(factory: tp.Any) -> str:
    """``package.module.Class`` for a class or function; strings pass through."""
    if isinstance(factory, str):
        return factory
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", None)
    if not name:
        raise UsageError(f"factory {factory!r} is not a class or function")
    return name if module in (None, "__main__") else f"{module}.{name}"


def import_factory(name: tp.Any) -> tp.Any:
    """The class or function for a dotted name (or the object itself)."""
    if not isinstance(name, str):
        return name
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        import __main__

        if hasattr(__main__, attr):
            return getattr(__main__, attr)
        raise UsageError(f"factory {name!r} is not importable: give its module, e.g. 'mymodels.{name}'")
    # nested classes: try the longest importable module prefix
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for part in parts[i:]:
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            break
    raise UsageError(f"factory {name!r} cannot be imported; is its module on sys.path?")


def _is_config(value: tp.Any) -> bool:
    return isinstance(value, dict) and FACTORY in value


def _parameters(factory: tp.Callable) -> tp.List[inspect.Parameter]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = list(inspect.signature(target).parameters.values())
    if inspect.isclass(factory):
        params = params[1:]  # self
    return [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def fill_config(config: dict) -> dict:
    """Fill ``config`` (which has a ``factory``) IN PLACE with the factory's defaults,
    recursively, and return it. Existing values win; sub-configs get their own defaults.
    In place, so the seed's ``pt.Trainer.get_config(trainer)`` works inside a config scope."""
    factory = import_factory(config[FACTORY])
    config[FACTORY] = factory_name(config[FACTORY])
    hook = getattr(factory, "finalize_config", None)
    if hook is not None:
        hook(config)
    for p in _parameters(factory):
        if p.name not in config:
            if p.default is inspect.Parameter.empty:
                continue
            config[p.name] = jsonable(copy.deepcopy(p.default))
        # read back: inside a sacred config scope the dict stores its own (dogmatic) copy
        # that carries the command line's fixed values
        value = config[p.name]
        if _is_config(value):
            fill_config(value)
        elif isinstance(value, (tuple, type)) or inspect.isfunction(value):
            config[p.name] = jsonable(value)
    return config


def from_config(config: dict, check: tp.Optional[tp.Callable[[tp.Any, bool], None]] = None) -> tp.Any:
    """Build the object a config describes (sub-configs first). Unknown keys are an error
    that lists the valid ones. ``check(factory, top)`` sees every factory (``top``: the
    outermost) before anything is called, and raises to refuse it."""
    return _build(config, check, True)


def _build(config: dict, check: tp.Optional[tp.Callable[[tp.Any, bool], None]], top: bool) -> tp.Any:
    if not _is_config(config):
        raise UsageError(f"config has no 'factory' key: {sorted(config)!r}")
    factory = import_factory(config[FACTORY])
    if check is not None:
        check(factory, top)
    params = _parameters(factory)
    names = {p.name for p in params}
    accepts_kwargs = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(
        factory.__init__ if inspect.isclass(factory) else factory).parameters.values())
    kwargs = {}
    for key, value in config.items():
        if key == FACTORY:
            continue
        if key not in names and not accepts_kwargs:
            raise UsageError(f"{factory_name(factory)} has no argument {key!r} "
                             f"(valid: {', '.join(sorted(names))})")
        kwargs[key] = _build(value, check, False) if _is_config(value) else copy.deepcopy(value)
    return factory(**kwargs)


class Configurable:
    """Mixin: ``Cls.get_config(updates)`` and ``Cls.from_config(config)``."""

    @classmethod
    def get_config(cls, updates: tp.Optional[dict] = None) -> dict:
        """The full config of ``cls`` with ``updates`` applied; ``updates`` is filled in
        place when given (seed style), and returned."""
        config = updates if updates is not None else {}
        if FACTORY not in config or config[FACTORY] is None:
            config[FACTORY] = factory_name(cls)
        return fill_config(config)

    @classmethod
    def from_config(cls, config: dict, trusted: bool = True):
        """``trusted=False`` (a config from a file someone else may have written): the
        factory must be ``cls`` or a subclass, and every sub-config's a class that is a
        Configurable or a torch module, checked before anything is called."""
        config = dict(config)
        config.setdefault(FACTORY, factory_name(cls))

        def check(factory: tp.Any, top: bool) -> None:
            if top and inspect.isclass(cls) and cls is not Configurable:
                if not (inspect.isclass(factory) and issubclass(factory, cls)):
                    raise UsageError(f"factory {factory_name(factory)!r} is not a {factory_name(cls)} subclass: "
                                     f"refused without trusted=True (the config would call it)")
            elif not top and not _plain_part(factory):
                raise UsageError(f"sub-config factory {factory_name(factory)!r} is neither a Configurable nor a "
                                 f"torch module: refused without trusted=True (the config would call it)")

        obj = from_config(config, None if trusted else check)
        if inspect.isclass(cls) and cls is not Configurable and not isinstance(obj, cls):
            raise UsageError(f"{factory_name(type(obj))} built from the config is not a {factory_name(cls)}")
        return obj


def _plain_part(factory: tp.Any) -> bool:
    """A class that building a model from an untrusted config may call: a Configurable or a
    ``torch.nn.Module`` (torch only when it is already imported)."""
    if not inspect.isclass(factory):
        return False
    if issubclass(factory, Configurable):
        return True
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and issubclass(factory, torch.nn.Module)

