"""TensorBoard's HParams view of a whole sweep: as each point ends, its job writes
``<sweep dir>/tensorboard/<index>/``: an event file holding the point's hparams (its varied
values), how it ended, and each sacred metric's final and best value as a scalar, so that
``tensorboard --logdir <sweep dir>`` lists every point with its settings and metrics in one
table (and the parallel coordinates view). Written with tensorboard's own protocol buffers
and event writer; without tensorboard installed (``pip install 'ptslurm[tensorboard]'``), nothing.
"""
import os
import shutil
import time
import typing as tp
from pathlib import Path

FOLDER = "tensorboard"  # in the sweep dir: one run folder per point


def available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _value(value: tp.Any) -> tp.Any:
    """An hparam as the plugin's protobuf Value: numbers and bools as they are, anything
    else (a list, None, a nested dict) as its text."""
    from google.protobuf.struct_pb2 import Value

    if isinstance(value, bool):
        return Value(bool_value=value)
    if isinstance(value, (int, float)):
        return Value(number_value=float(value))
    return Value(string_value=value if isinstance(value, str) else repr(value))


def write(run_dir: Path, hparams: tp.Mapping[str, tp.Any], metrics: tp.Mapping[str, float], ended_ok: bool,
          started: tp.Optional[float] = None) -> Path:
    """Replace ``run_dir``'s event file by one with ``hparams``, ``metrics`` (tag -> value,
    step 0) and the session's end (success or failure); returns the folder."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    def tagged(tag: str, data: tp.Any) -> Summary:
        content = plugin_data_pb2.HParamsPluginData(version=metadata.PLUGIN_DATA_VERSION, **data).SerializeToString()
        plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=content)
        return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])

    now = time.time()
    start = plugin_data_pb2.SessionStartInfo(start_time_secs=started or now)
    for name, value in hparams.items():
        start.hparams[name].CopyFrom(_value(value))
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS if ended_ok else api_pb2.STATUS_FAILURE,
                                         end_time_secs=now)
    staging = run_dir.with_name(f".{run_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    writer = EventFileWriter(str(staging))
    writer.add_event(Event(wall_time=now, step=0, summary=tagged(metadata.SESSION_START_INFO_TAG,
                                                                 {"session_start_info": start})))
    scalars = [Summary.Value(tag=tag, simple_value=float(v)) for tag, v in sorted(metrics.items())]
    writer.add_event(Event(wall_time=now, step=0, summary=Summary(value=scalars)))
    writer.add_event(Event(wall_time=now, step=0, summary=tagged(metadata.SESSION_END_INFO_TAG,
                                                                 {"session_end_info": end})))
    writer.close()
    shutil.rmtree(run_dir, ignore_errors=True)  # the point's earlier summary: replaced whole
    os.replace(staging, run_dir)
    return run_dir


def point_ended(sweep_dir: Path, index: int) -> tp.Optional[Path]:
    """The summary of point ``index`` as it stands now (its varied values, state, the final
    and best value of each metric over all attempts); None without tensorboard."""
    if not available():
        return None
    from ..records import State
    from ..read.results import point_record
    from ..records.manifests import read_manifest

    manifest = read_manifest(sweep_dir)
    record = point_record(manifest, manifest.points[index])
    hparams = dict(manifest.points[index].varied_values(manifest.varied)) or {"point": index}
    metrics = {k: v for k, v in record.items() if k.endswith(("/final", "/best")) and isinstance(v, (int, float))
               and not isinstance(v, bool) and v == v}
    if isinstance(record.get("result"), (int, float)) and not isinstance(record.get("result"), bool):
        metrics["result"] = record["result"]
    return write(Path(sweep_dir) / FOLDER / str(index), hparams, metrics, record["state"] == State.COMPLETED.value)
