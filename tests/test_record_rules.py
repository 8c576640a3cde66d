"""The records' tolerant reading, field type by field type: what an older or newer ptslurm,
or a damaged file, wrote becomes a default, never an exception; unknown keys (even one named
``extra``) survive a round trip; the words the files hold print as themselves."""
import json

import pytest

from ptslurm import records
from ptslurm.records import (Attempt, Cause, Executor, Intent, Manifest, PointEntry, PointStatus, State, Word, read,
                             read_json)
from ptslurm.records.spec import Resources

pytestmark = pytest.mark.fast


def test_wrong_types_become_defaults():
    entry = PointEntry.from_json({"index": "x", "updates": 3, "named_configs": "base", "varied": None,
                                  "seed": None, "job_id": None, "code_version": "2"})
    assert (entry.index, entry.updates, entry.named_configs, entry.varied, entry.seed, entry.job_id,
            entry.code_version) == (0, {}, (), (), None, None, 2)
    assert PointEntry.from_json({"seed": "7", "job_id": 12, "named_configs": ["a", 1]}).seed == 7
    assert PointEntry.from_json({"job_id": 12}).job_id == "12"
    assert PointEntry.from_json({"named_configs": ("a", 1)}).named_configs == ("a", "1")
    manifest = Manifest.from_json({"points": 5, "resources": [1], "runner": "host", "waves": None,
                                   "code_versions": "x", "sbatch_calls": "n"})
    assert manifest.points == () and manifest.resources == Resources() and manifest.runner is None
    assert manifest.code_versions == {} and manifest.sbatch_calls == 0
    assert Manifest.from_json({"points": [{"index": 1}, "junk", 3]}).points == (PointEntry(index=1),)
    assert Manifest.from_json({"resources": {"gpus": 2, "unknown": 1}}).resources.gpus == 2
    assert Manifest.from_json({"runner": {"pid": 3}}).runner == {"pid": 3}
    status = PointStatus.from_json({"attempts": [{"attempt": 2, "state": "nonsense", "pid": "9"}, 7],
                                    "progress": [1], "state": 42})
    assert len(status.attempts) == 1 and status.attempts[0].state == State.UNKNOWN and status.attempts[0].pid == 9
    assert status.progress is None and status.state == State.UNKNOWN


def test_unknown_keys_survive_a_round_trip_and_extra_is_not_a_key():
    data = {"submission": 2, "cancelled": True, "from_a_newer_version": {"x": 1}, "extra": 5}
    intent = Intent.from_json(data)
    assert intent.extra == {"from_a_newer_version": {"x": 1}, "extra": 5}
    assert intent.to_json() == dict(data, time=None)
    assert Intent().to_json() == {"submission": 0, "cancelled": False, "time": None}
    assert "extra" not in Attempt().to_json()


def test_none_is_left_out_only_where_the_record_says():
    out = Attempt(attempt=1).to_json()
    assert "ended" not in out and "cause" not in out and out["job_id"] is None and out["pid"] is None
    out = Attempt(cause=Cause.TIMEOUT, state=State.TIMEOUT, action="requeue").to_json()
    assert out["cause"] == "timeout" and out["state"] == "timeout" and out["action"] == "requeue"
    assert json.loads(json.dumps(out)) == out


def test_a_record_is_a_json_object():
    for bad in ([1], "x", 3, None):
        with pytest.raises(ValueError) as caught:
            Intent.from_json(bad)
        assert str(caught.value) == f"a Intent is a JSON object, not {type(bad).__name__}"


def test_reading_a_record_never_raises(tmp_path):
    path = tmp_path / "r.json"
    assert read(path, Intent) == records.Read(None, None)
    path.write_text("[1, 2]")
    assert read(path, Intent) == records.Read(None, str(path))
    path.write_text("{broken")
    assert read(path, Intent) == records.Read(None, str(path))
    path.write_text('{"submission": 3, "loss": NaN}')
    found = read(path, Intent)
    assert found.damaged is None and found.record.submission == 3
    assert read_json(tmp_path / "none.json") is None
    path.write_bytes(b"\xff\xfe")
    assert read_json(path) is None


def test_the_result_is_the_latest_completed_attempts():
    status = PointStatus(attempts=(Attempt(attempt=1, state=State.COMPLETED, result=1),
                                   Attempt(attempt=2, state=State.COMPLETED, result=2),
                                   Attempt(attempt=3, state=State.FAILED, result=3)))
    assert status.result() == 2 and status.latest.attempt == 3
    assert PointStatus().result() is None and PointStatus().latest is None


def test_words_print_as_themselves_and_parse_with_a_default():
    assert str(State.RUNNING) == "running" and f"{State.RUNNING:>9}|" == "  running|" and f"{Cause.LOST}" == "lost"
    assert f"{Executor.SLURM:<7}|" == "slurm  |" and Executor("local") is Executor.LOCAL
    assert State.parse("failed") is State.FAILED and State.parse("junk") is State.UNKNOWN
    assert State.parse("junk", default=State.PENDING) is State.PENDING and State.parse(None) is State.UNKNOWN
    assert isinstance(State.FAILED, Word) and State.FAILED == "failed" and json.dumps(State.FAILED) == '"failed"'
    assert Cause.TIMEOUT in records.STOPS and "failed" not in records.STOPS and "lost" in records.STOPS


def test_a_point_entry_is_its_point():
    entry = PointEntry(index=4, updates={"lr": 1, "b": 2}, named_configs=("x",), varied=("lr",))
    point = entry.to_point()
    assert (point.index, point.updates, point.named_configs, point.varied) == (4, {"lr": 1, "b": 2}, ("x",), ("lr",))
    assert entry.varied_values(["lr", "named_configs"]) == {"lr": 1, "named_configs": "x"}


def test_resources_of_a_foreign_type_are_the_defaults_not_a_later_crash(tmp_path):
    """A hand-edited manifest's resources: each wrong-typed field falls back to its default."""
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"resources": {"nodes": "x", "gpus": [1], "sbatch_args": 3, "timeout_min": "y",
                                              "mem_gb": True, "partition": 5, "max_requeues": None, "cpus": None,
                                              "tasks_per_node": 2, "qos": "high", "signal_delay_s": 30.5}}))
    none = Manifest.from_json({"resources": {"gpus": None, "nodes": None}}).resources
    assert (none.gpus, none.nodes, none.world_size) == (0, 1, 1)
    found = read(path, Manifest)
    r = found.record.resources
    assert found.damaged is None
    assert (r.nodes, r.gpus, r.sbatch_args, r.timeout_min, r.mem_gb, r.partition, r.max_requeues, r.cpus,
            r.tasks_per_node, r.qos, r.signal_delay_s) == (1, 0, {}, None, None, None, 3, None, 2, "high", None)
    assert r.world_size == 2 and r.requested() == ["qos high"]
    ok = Manifest.from_json({"resources": {"mem_gb": 1.5, "timeout_min": 90, "sbatch_args": {"exclusive": True},
                                           "origins": {"x": "y"}, "unknown": 1}}).resources
    assert (ok.mem_gb, ok.timeout_min, ok.sbatch_args, ok.origins) == (1.5, 90, {"exclusive": True}, {})


@pytest.mark.parametrize("kind, data", [
    (PointEntry, {"index": True, "seed": False, "job_id": None, "storage_dir": 5, "code_version": 2.0,
                  "updates": {"lr": 1}, "varied": ["lr"], "extra": 1, "new_key": [1]}),
    (PointEntry, {"index": 3, "seed": 7, "job_id": "1_3", "storage_dir": "/d", "named_configs": ["a"]}),
    (PointEntry, {}),
    (Attempt, {"attempt": "2", "state": "requeued", "job_id": 12, "pid": 1.5, "sacred_id": None, "cause": "x"}),
    (PointStatus, {"state": "completed", "attempts": [{"attempt": 1, "state": "completed"}], "submission": True}),
    (Intent, {"cancelled": 1, "submission": "3", "time": None}),
])
def test_a_record_read_fast_is_the_one_its_init_builds(kind, data):
    """Records are built without their dataclass __init__ (status reads 10,000 entries): the
    result equals what the loads and __init__ give, a bool is never taken for an int, a
    default list or dict is never shared between records, unknown keys land in extra."""
    import dataclasses

    fields = [f for f in dataclasses.fields(kind) if f.name != "extra"]
    loads = {f.name: f.metadata.get("load") for f in fields}
    slow = kind(**{k: (loads[k](v) if loads[k] else v) for k, v in data.items() if k in loads},
                extra={k: v for k, v in data.items() if k not in loads})
    fast = kind.from_json(data)
    assert fast == slow and fast.extra == slow.extra and fast.to_json() == slow.to_json()
    assert all(type(getattr(fast, f.name)) is type(getattr(slow, f.name)) for f in fields)
    again = kind.from_json(data)
    for f in fields:
        if isinstance(getattr(fast, f.name), (dict, list)):
            assert getattr(fast, f.name) is not getattr(again, f.name), f.name


def test_a_bulk_read_leaves_the_cycle_collector_as_it_found_it(tmp_path, monkeypatch):
    """The collector is paused while thousands of records are built, never left off (a
    long-running `ptslurm sweep` would keep its cyclic garbage) nor turned on for a caller
    that had it off."""
    import gc

    from ptslurm.records import manifests

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / records.MANIFEST).write_text(json.dumps({"schema": 1, "points": [{"index": i} for i in range(3)]}))
    seen = []
    original = records.Manifest.from_json

    def noting(data):  # whether the collector runs while the manifest is built
        seen.append(gc.isenabled())
        return original(data)

    monkeypatch.setattr(records.Manifest, "from_json", noting)
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            assert len(manifests.read_manifest(sweep_dir).points) == 3
            assert gc.isenabled() is enabled
        finally:
            gc.enable()
    assert seen == [False, False], "the manifest was built with the collector on"


@pytest.mark.parametrize("kind, data", [
    (PointEntry, {"index": True, "seed": "3", "job_id": None, "storage_dir": 5, "updates": {"lr": 1},
                  "varied": ["lr"], "budgets": [{"value": 2}], "extra": 1, "new_key": [1]}),
    (PointEntry, {}),
    (Attempt, {"attempt": "2", "state": "requeued", "job_id": 12, "sacred_id": None, "gave_up": None}),
    (Manifest, {"schema": 1, "points": [{"index": 0}], "waves": None, "note": "n", "resources": {"gpus": 2}}),
])
def test_a_schema_worked_out_afresh_reads_and_writes_the_same_records(kind, data, monkeypatch):
    """Each record class's fields are worked out once per process (the first read fills the
    cache): worked out again from nothing, they read and write exactly what the dataclass
    says (loads, dumps, fields left out when None, unknown keys kept)."""
    import dataclasses

    from ptslurm.records import recordkit

    expected_read, expected_json = kind.from_json(data), kind.from_json(data).to_json()
    monkeypatch.setattr(recordkit, "_SCHEMAS", {})
    monkeypatch.setattr(recordkit, "_BUILDERS", {})
    fresh = kind.from_json(data)
    assert fresh == expected_read and fresh.extra == expected_read.extra and fresh.to_json() == expected_json
    fields = {f.name for f in dataclasses.fields(kind)} - {"extra"}
    assert set(fresh.to_json()) <= fields | set(data)
    assert all(type(getattr(fresh, n)) is type(getattr(expected_read, n)) for n in fields)
    monkeypatch.setattr(recordkit, "_SCHEMAS", {})
    monkeypatch.setattr(recordkit, "_BUILDERS", {})
    assert kind(**{n: getattr(expected_read, n) for n in fields}, extra=dict(expected_read.extra)).to_json() == expected_json


def test_a_points_wish_is_read_in_one_place_and_says_what_a_stop_shows():
    """The intent file's wish: run (the default, and after a resubmit) or cancel; a wish that
    stops a point names the state it shows and the cause of its stopped attempt."""
    from ptslurm.records import WISHED, Wish

    assert Intent().wish is Wish.RUN and not Intent().stops
    assert Intent.from_json({"cancelled": True, "submission": 2}).wish is Wish.CANCEL
    assert Intent(cancelled=True).stops and WISHED[Wish.CANCEL] == (State.CANCELLED, Cause.CANCELLED)
    assert set(WISHED) == set(Wish) - {Wish.RUN}, "every wish but run stops the point"


def test_point_paths_name_every_file_of_a_storage_dir():
    from pathlib import Path

    from ptslurm.records import PointPaths

    p = PointPaths(Path("/runs/exp/3"))
    assert (p.status, p.intent, p.lease, p.config) == tuple(Path("/runs/exp/3", n) for n in (
        "ptslurm_status.json", "ptslurm_intent.json", "ptslurm_lease.json", "config.json"))
    assert (p.checkpoints, p.sacred, p.work) == tuple(Path("/runs/exp/3", n) for n in ("checkpoints", "sacred", "work"))
    assert p.run(2) == Path("/runs/exp/3/sacred/2/run.json") and p.run(2, "cout.txt").name == "cout.txt"


def test_a_record_class_made_now_reads_writes_and_defaults_as_its_fields_declare():
    """``recordkit.field`` run here, not at import (mutmut switches mutants in only for calls
    made during a test): each field's default, factory, load, dump and omit_none reach the
    class it builds, and a factory's value is fresh for each record."""
    import dataclasses
    import typing as tp

    from ptslurm.records import recordkit

    @dataclasses.dataclass(frozen=True)
    class Made(recordkit.Record):
        count: int = recordkit.field(3, load=recordkit._int)
        tags: tp.Dict[str, tp.Any] = recordkit.field(factory=dict, load=recordkit._mapping)
        note: tp.Optional[str] = recordkit.field(None, load=recordkit._str, omit_none=True)
        shown: tp.Optional[str] = recordkit.field(None, load=recordkit._str)
        when: str = recordkit.field("t0", load=str, dump=lambda v: v.upper())

    empty = Made.from_json({})
    assert (empty.count, empty.tags, empty.note, empty.shown, empty.when) == (3, {}, None, None, "t0")
    assert empty.to_json() == {"count": 3, "tags": {}, "shown": None, "when": "T0"}
    assert Made().tags is not Made().tags and Made.from_json({}).tags is not empty.tags
    read_back = Made.from_json({"count": "7", "tags": {"a": 1}, "note": 5, "when": "x", "other": 1})
    assert (read_back.count, read_back.tags, read_back.note, read_back.when) == (7, {"a": 1}, "5", "x")
    assert read_back.to_json() == {"count": 7, "tags": {"a": 1}, "note": "5", "shown": None, "when": "X", "other": 1}
    assert Made.from_json({"tags": [1]}).to_json()["tags"] == {}
    assert [f.default for f in dataclasses.fields(Made)][1:] == [3, dataclasses.MISSING, None, None, "t0"]
