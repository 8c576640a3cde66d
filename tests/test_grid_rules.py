"""Sweep expansion, rule by rule and by property: every refusal of a `with` update with its
whole message; for generated grids (hypothesis), the points are the cartesian product in the
order the axes were given (the first slowest), fixed values reach every point, a later update
of a key replaces an earlier one, command-line updates lay over a sweep file's, duplicates
go with a note, and the varied keys are exactly the keys whose values differ."""
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptslurm.plan import grid
from ptslurm.errors import SpecError

pytestmark = pytest.mark.fast

REFUSED = [
    (['lr=[1e-3,'],
     'bad value in update \'lr=[1e-3,\': unbalanced brackets or quotes; write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
    (['lr=[a,b]'],
     'bad value in update \'lr=[a,b]\': not a Python literal (ValueError); for an axis of strings quote each one: "lr=[\'a\',\'b\']" (the double quotes for the shell)'),
    (['lr=[a-b,c_d]'],
     'bad value in update \'lr=[a-b,c_d]\': not a Python literal (ValueError); for an axis of strings quote each one: "lr=[\'a-b\',\'c_d\']" (the double quotes for the shell)'),
    (['fail=[false,true]'],
     'bad value in update \'fail=[false,true]\': not a Python literal (ValueError); True, False and None are spelled as in Python: \'fail=[False,True]\'; for an axis of strings quote each one: "fail=[\'false\',\'true\']" (the double quotes for the shell)'),
    (['lr=[a b]'],
     'bad value in update \'lr=[a b]\': not a Python literal (SyntaxError); write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
    (["d={'a': 1"],
     'bad value in update "d={\'a\': 1": unbalanced brackets or quotes; write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
    (['x=(1,'],
     'bad value in update \'x=(1,\': unbalanced brackets or quotes; write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
    (['lr=[]'],
     "empty axis in 'lr=[]': give at least one value, or write lr=[[]] to set an empty list"),
    (['[small'],
     "bad named-config axis '[small': unbalanced brackets; write '[small,large]'"),
    (['small]'],
     "bad named-config axis 'small]': unbalanced brackets; write '[small,large]'"),
    (['[]'],
     "empty named-config axis '[]': give at least one named config"),
    (['[ , ]'],
     "empty named-config axis '[ , ]': give at least one named config"),
    (['bad name'],
     "with: 'bad name' is neither KEY=VALUE nor a named config; quote updates whole, e.g. 'lr=[1e-3,1e-4]'"),
    (['a b=1'],
     "update 'a b=1': 'a b' is not a config key; use dotted names like trainer.optimizer.lr"),
    (['=3'],
     "update '=3': '' is not a config key; use dotted names like trainer.optimizer.lr"),
    (['lr=[1,2]', '[x, y z]'],
     "named-config axis '[x, y z]': 'y z' is neither KEY=VALUE nor a named config; quote updates whole, e.g. 'lr=[1e-3,1e-4]'"),
    (["s='unclosed"],
     'bad value in update "s=\'unclosed": unbalanced brackets or quotes; write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
    (['n=[1,2'],
     'bad value in update \'n=[1,2\': unbalanced brackets or quotes; write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
    (['x=1,2]'],
     'bad value in update \'x=1,2]\': unbalanced brackets or quotes; write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
    (['s="a'],
     'bad value in update \'s="a\': unbalanced brackets or quotes; write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
    (['x={1:2}}'],
     'bad value in update \'x={1:2}}\': unbalanced brackets or quotes; write a Python literal, e.g. lr=[1e-3,1e-4] or name=\'"text"\''),
]


@pytest.mark.parametrize("tokens, message", REFUSED)
def test_a_bad_update_is_refused_with_its_message(tokens, message):
    with pytest.raises(SpecError) as caught:
        grid.parse_with(tokens)
    assert str(caught.value) == message


KEYS = st.sampled_from(["lr", "batch_size", "trainer.optimizer.lr", "model.depth", "seed", "a.b.c", "dropout"])
VALUES = st.one_of(st.integers(-1000, 1000), st.sampled_from(["adam", "sgd", "relu", "x_1"]))
AXIS = st.lists(VALUES, min_size=1, max_size=3, unique_by=lambda v: (type(v), v))


def token(key, value) -> str:
    return f"{key}={value!r}"


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(KEYS, AXIS, min_size=1, max_size=4), st.dictionaries(KEYS, VALUES, max_size=3))
def test_points_are_the_product_of_the_axes_in_order_with_the_fixed_values(axes, fixed):
    fixed = {k: v for k, v in fixed.items() if k not in axes}
    tokens = [token(k, v) for k, v in fixed.items()] + [token(k, vs) for k, vs in axes.items()]
    points = grid.expand(grid.parse_with(tokens))
    product = list(itertools.product(*axes.values()))
    assert len(points) == len(product)
    for point, combo in zip(points, product):
        assert point.updates == {**fixed, **dict(zip(axes, combo))}
        assert point.named_configs == ()
    assert [p.index for p in points] == list(range(len(points)))
    assert set(points[0].varied) == {k for k, vs in axes.items() if len(vs) > 1}
    assert list(points[0].varied) == [k for k in axes if len(axes[k]) > 1]


@settings(max_examples=60, deadline=None)
@given(KEYS, st.lists(st.one_of(VALUES, AXIS), min_size=2, max_size=4))
def test_the_last_update_of_a_key_wins(key, updates):
    points = grid.expand(grid.parse_with([token(key, u) for u in updates]))
    last = updates[-1]
    assert [p.updates[key] for p in points] == (last if isinstance(last, list) else [last])


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(KEYS, AXIS, min_size=1, max_size=3), st.dictionaries(KEYS, st.one_of(VALUES, AXIS), max_size=3))
def test_the_command_line_lays_over_the_sweep_files_axes(file_axes, cli):
    base = grid.parse_with([token(k, v) for k, v in file_axes.items()])
    top = grid.parse_with([token(k, v) for k, v in cli.items()])
    points = grid.expand(base, top)
    kept = {k: v for k, v in file_axes.items() if k not in cli}
    order = list(kept) + [k for k in cli]  # the file's axes first, then the command line's
    lists = [kept[k] if k in kept else (cli[k] if isinstance(cli[k], list) else [cli[k]]) for k in order]
    product = list(itertools.product(*lists))
    assert [p.updates for p in points] == [dict(zip(order, combo)) for combo in product]


@settings(max_examples=40, deadline=None)
@given(AXIS, st.integers(2, 3))
def test_repeated_points_are_dropped_with_a_note_or_kept_when_asked(values, times):
    tokens = [token("x", values * times)]
    notes: list = []
    once = grid.expand(grid.parse_with(tokens), notes=notes)
    assert [p.updates["x"] for p in once] == values
    dropped = len(values) * (times - 1)
    assert len(notes) == 1 and notes[0].startswith(f"{dropped} point(s) repeat an earlier one exactly and are dropped")
    assert notes[0].endswith("to run repeats, sweep the seed ('seed=[1,2,3]') or pass --keep-duplicates")
    kept = grid.expand(grid.parse_with(tokens), keep_duplicates=True)
    assert [p.updates["x"] for p in kept] == values * times


def test_more_points_than_allowed_are_refused_before_expanding():
    tokens = ["a=[1,2,3,4,5]", "b=[1,2,3,4]"]
    assert len(grid.expand(grid.parse_with(tokens), max_points=20)) == 20
    with pytest.raises(SpecError) as caught:
        grid.expand(grid.parse_with(tokens), max_points=19)
    assert str(caught.value) == ("the sweep has 20 points, more than --max-points 19; narrow the grid, or raise "
                                 "--max-points if you mean it")


def test_named_configs_fixed_and_as_an_axis():
    points = grid.expand(grid.parse_with(["base", "[small,large]", "lr=[1,2]", "extra"]))
    assert [(p.named_configs, p.updates) for p in points] == [
        (("base", "extra", "small"), {"lr": 1}), (("base", "extra", "small"), {"lr": 2}),
        (("base", "extra", "large"), {"lr": 1}), (("base", "extra", "large"), {"lr": 2})]
    assert points[0].varied == ("lr", "named_configs")
    assert points[3].label == "lr=2 base extra large"
    (one,) = grid.expand(grid.parse_with(["cfg.json", "x=(1, 2)", "  ", "s=word"]))
    assert one.named_configs == ("cfg.json",) and one.updates == {"x": [1, 2], "s": "word"} and one.varied == ()


def test_varied_keys_count_a_missing_key_and_a_type_as_a_difference():
    rows = [({"a": 1, "b": 1}, ()), ({"a": 1, "b": True}, ()), ({"a": 1}, ("n",))]
    assert grid.varied_keys(rows) == ("b", "named_configs")
    assert grid.varied_keys([({"a": 1.0}, ()), ({"a": 1}, ())]) == ("a",)
    assert grid.varied_keys([({"a": 1}, ()), ({"a": 1}, ())]) == ()


@pytest.mark.parametrize("tokens, note", [
    (["a=1,2"], "'a=1,2' is the tuple (1,2) for every point (sacred's reading, a fixed value); for an axis write "
                "'a=[1,2]'"),
    (["a=[1,2]", "b='x,y'", "c=(1,2)", "named,config"], None),
])
def test_a_hydra_style_comma_list_gets_a_note(tokens, note):
    assert grid.comma_notes(tokens) == ([note] if note else [])


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-2.5", -2.5), ("1e-3", 1e-3), ("True", True), ("None", None), ("'quoted'", "quoted"),
    ('"dq"', "dq"), ("word", "word"), ("two words", "two words"), ("{'a': [1, 2]}", {"a": [1, 2]}),
    ("[[1, 2]]", [[1, 2]]), ("(1, 2)", grid.Literal([1, 2])), ("()", grid.Literal([])), ("inf", "inf"),
])
def test_a_value_reads_as_sacred_reads_it(text, value):
    assert grid.parse_value(text, f"k={text}") == value
    from ptslurm.plan.sacred_adapter import convert_value

    expected = value.value if isinstance(value, grid.Literal) else value
    assert convert_value(text) == expected  # sacred's own reading of the same text


def test_unbalanced_counts_brackets_and_quotes():
    for text in ("[1,2", "(1", "{1:2", "'a", '"a', "[1]]", "a)"):
        assert grid._unbalanced(text), text
    for text in ("[1,2]", "({[]})", "'a'", '"a"', "plain"):
        assert not grid._unbalanced(text), text


def test_more_reading_rules():
    for text in ("[[1]", "'a'b'", '"a"b"'):
        assert grid._unbalanced(text), text
    assert grid.comma_notes(["d={1, 2}", 's="a,b"', "k=v=1,2"]) == [
        "'k=v=1,2' is the tuple (v=1,2) for every point (sacred's reading, a fixed value); for an axis write "
        "'k=[v=1,2]'"]
    (one,) = grid.expand(grid.parse_with(["configs/base.yaml", "my-config.json"]))
    assert one.named_configs == ("configs/base.yaml", "my-config.json")
    with pytest.raises(SpecError) as caught:
        grid.Axis(("a",), (), source="here")
    assert str(caught.value) == "here: empty axis; give at least one value (write [[]] to set an empty list literally)"


def test_a_command_line_key_over_part_of_a_zip_names_the_zip(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("zip:\n  - {a: [1, 2], b: [3, 4], c: [5, 6]}\n")
    from ptslurm.plan import sweepfile

    with pytest.raises(SpecError) as caught:
        grid.expand(sweepfile.load(path), grid.parse_with(["a=[1]", "b=[3]"]))
    assert str(caught.value) == ("a, b is given again although the sweep file zips it with c: overriding one zipped "
                                 "key would drop the others; give all of a, b, c or change the zip in the file")


def test_the_spelling_the_hint_suggests_for_booleans_means_booleans_to_sacred():
    from ptslurm.plan.sacred_adapter import convert_value

    assert convert_value("[False,True]") == [False, True]
    assert [p.updates["fail"] for p in grid.expand(grid.Block(), grid.parse_with(["fail=[False,True]"]))] == [False, True]


def _typed(value):
    """A value with the type of every part, so that 1 and True (or 1 and 1.0) differ."""
    if isinstance(value, (list, tuple)):
        return type(value).__name__, [_typed(v) for v in value]
    if isinstance(value, dict):
        return "dict", sorted((repr(_typed(k)), _typed(v)) for k, v in value.items())
    return type(value).__name__, value


_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6)


@settings(deadline=None, max_examples=300)
@given(st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                    | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=2), max_leaves=6))
def test_every_literal_value_reads_as_sacreds_own_parser_reads_it(value):
    from ptslurm.plan.sacred_adapter import convert_value

    text = repr(value)
    ours = grid.parse_value(text, f"k={text}")
    ours = ours.value if isinstance(ours, grid.Literal) else ours
    assert _typed(ours) == _typed(convert_value(text))


@pytest.mark.parametrize("source", ["with", "sweep file"])
def test_named_configs_as_a_config_key_is_refused_not_taken_for_names(source):
    """``named_configs`` is where the named configs go: as a config key (``with
    named_configs=[a,b]``, a grid's ``named_configs: [...]``) its values would silently become
    named configs (a fuzzer's ``[None]`` crashed the plan)."""
    from ptslurm.plan import sweepfile

    with pytest.raises(SpecError) as caught:
        if source == "with":
            grid.parse_with(("named_configs=[1,2]",))
        else:
            sweepfile.parse({"grid": {"named_configs": [None]}}, "s.yaml")
    assert "'named_configs' names the named configs, not a config key" in str(caught.value)
    grid.parse_with(("named_configs.depth=[1,2]",))  # a nested key of that name is a key like any other
