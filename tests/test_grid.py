"""Grid grammar and expansion: pure functions over literal values."""
import pytest

from ptslurm.plan import grid
from ptslurm.errors import SpecError

pytestmark = pytest.mark.fast


def points(*tokens):
    return grid.expand(grid.Block(), grid.parse_with(tokens))


def test_two_axes_make_a_grid_with_the_first_axis_slowest():
    ps = points("lr=[1e-3,1e-4]", "batch_size=[16,32]")
    assert [(p.updates["lr"], p.updates["batch_size"]) for p in ps] == [
        (1e-3, 16), (1e-3, 32), (1e-4, 16), (1e-4, 32)]
    assert [p.index for p in ps] == [0, 1, 2, 3]
    assert ps[0].varied == ("lr", "batch_size")
    assert ps[1].label == "lr=0.001 batch_size=32"


def test_literal_list_is_a_one_element_axis_and_fixed_values_are_not_varied():
    ps = points("layers=[[64,64]]", "dropout=0.1", "lr=[1,2]")
    assert len(ps) == 2
    assert all(p.updates["layers"] == [64, 64] and p.updates["dropout"] == 0.1 for p in ps)
    assert ps[0].varied == ("lr",)


def test_a_tuple_is_a_literal_value_not_an_axis():
    ps = points("trainer.stop_trigger=(100,'iteration')", "lr=[1,2]")
    assert len(ps) == 2 and ps[0].updates["trainer.stop_trigger"] == [100, "iteration"]


def test_dotted_keys_strings_and_sacred_value_syntax():
    ps = points("trainer.optimizer.lr=[0.1,0.01]", "name=adam", "tag='a b'", "flag=True", "cfg={'a': 1}")
    assert ps[0].updates == {"name": "adam", "tag": "a b", "flag": True, "cfg": {"a": 1},
                             "trainer.optimizer.lr": 0.1}


def test_named_configs_fixed_and_as_axis():
    ps = points("base", "[small,large]", "lr=[1,2]")
    assert [p.named_configs for p in ps] == [("base", "small"), ("base", "small"), ("base", "large"),
                                             ("base", "large")]
    assert [p.updates["lr"] for p in ps] == [1, 2, 1, 2]
    assert ps[0].varied == ("lr", "named_configs")


def test_later_update_of_the_same_key_wins_like_sacred():
    ps = points("lr=[1,2]", "lr=3")
    assert len(ps) == 1 and ps[0].updates == {"lr": 3}


def test_duplicate_points_are_dropped():
    ps = points("a=[1,1,2]")
    assert [p.updates["a"] for p in ps] == [1, 2]


def test_flat_list_is_marked_for_the_list_default_warning():
    cli = grid.parse_with(["sizes=[1,2]", "layers=[[64,64]]"])
    assert [a.flat_list for a in cli.axes] == [True, False]


@pytest.mark.parametrize("token, fragment", [
    ("lr=[1e-3,1e-4", "unbalanced"),
    ("lr=[1e-3,,]", "not a Python literal"),
    ("lr=[]", "empty axis"),
    ("x={'a': 1", "unbalanced"),
    ("1bad=3", "not a config key"),
    ("foo bar", "neither KEY=VALUE nor a named config"),
    ("[small,", "unbalanced"),
    ("[]", "empty named-config axis"),
])
def test_bad_updates_raise_one_line_spec_errors(token, fragment):
    with pytest.raises(SpecError) as info:
        grid.parse_with([token])
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_ranges():
    assert grid.arange(0, 10, 3, "x") == [0, 3, 6, 9]
    assert grid.arange(0.0, 0.3, 0.1, "x") == pytest.approx([0.0, 0.1, 0.2])
    assert grid.linspace(1e-4, 1e-2, 3, True, "x") == [1e-4, 1e-3, 1e-2]
    assert grid.linspace(0, 1, 5, False, "x") == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(SpecError):
        grid.arange(0, 10, -1, "x")
    with pytest.raises(SpecError):
        grid.linspace(0, 1, 3, True, "x")


def test_errors_pickle_cleanly():
    import pickle

    err = SpecError("bad thing; fix it")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is SpecError and str(back) == "bad thing; fix it"
