"""TensorBoard's HParams view of a whole sweep (issue 30): every point's run writes its
hparams, how it ended and its metrics; read back through tensorboard's own event reader and
the HParams plugin's own parsers, as `tensorboard --logdir <sweep>` shows them."""
import json
from pathlib import Path

import pytest

from conftest import EXAMPLES, run_cli

pytest.importorskip("tensorboard", reason="the tensorboard extra: pip install 'ptslurm[tensorboard]'")


def read_back(logdir: Path):
    """run -> (hparams, session status, {metric tag: value}) as TensorBoard reads them."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    out = {}
    for run, tags in mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
        start = metadata.parse_session_start_info_plugin_data(tags[metadata.SESSION_START_INFO_TAG])
        end = metadata.parse_session_end_info_plugin_data(tags[metadata.SESSION_END_INFO_TAG])
        hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
        scalars = {tag: float(tensor_util.make_ndarray(mux.Tensors(run, tag)[-1].tensor_proto))
                   for tag in mux.PluginRunToTagToContent("scalars").get(run, {})}
        out[run] = (hparams, end.status, scalars)
    return out


def test_tensorboard_lists_every_point_with_its_hparams_status_and_metrics(tmp_path, no_slurm):
    from tensorboard.plugins.hparams import api_pb2

    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", EXAMPLES / "tiny.py", "with",
                   "lr=[0.05,0.1]", "batch_size=[4,8]", "steps=[20]")
    assert proc.returncode == 0, proc.stderr
    sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
    rows = {r["index"]: r for r in json.loads(run_cli("collect", sweep_dir, "--format", "json").stdout)}
    seen = read_back(sweep_dir)
    assert sorted(seen) == [f"tensorboard/{i}" for i in range(4)]
    for i, row in rows.items():
        hparams, status, scalars = seen[f"tensorboard/{i}"]
        assert hparams == {"lr": row["lr"], "batch_size": float(row["batch_size"])}, hparams
        assert status == api_pb2.STATUS_SUCCESS
        assert scalars["loss/final"] == pytest.approx(row["loss/final"], rel=1e-6)
        assert scalars["loss/best"] == pytest.approx(row["loss/best"], rel=1e-6)


def test_a_failed_point_shows_as_failed_and_a_rerun_replaces_its_summary(tmp_path, no_slurm):
    from tensorboard.plugins.hparams import api_pb2

    from conftest import TEST_EXPERIMENTS

    flag = tmp_path / "broken"
    flag.write_text("")
    proc = run_cli("sweep", "--json", "--root", tmp_path / "runs", TEST_EXPERIMENTS / "probe.py", "with", "x=[1,2]",
                   f"fail_if_exists={flag}")
    sweep_dir = Path(json.loads(proc.stdout)["sweep_dir"])
    assert [s for _, s, _ in read_back(sweep_dir).values()] == [api_pb2.STATUS_FAILURE] * 2
    flag.unlink()
    assert run_cli("resubmit", sweep_dir, "--failed").returncode == 0
    seen = read_back(sweep_dir)
    assert [seen[f"tensorboard/{i}"][1] for i in range(2)] == [api_pb2.STATUS_SUCCESS] * 2
    assert [seen[f"tensorboard/{i}"][2]["score/final"] for i in range(2)] == [1.0, 2.0]
    assert len(list((sweep_dir / "tensorboard" / "0").iterdir())) == 1, "one event file a point"
