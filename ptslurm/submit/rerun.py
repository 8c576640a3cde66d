"""The re-run shortcut: the same ``ptslurm sweep`` command again, once its sweep is
submitted, is recognised from the command line and the files it names alone (no snapshot,
no experiment loaded, no config built), and answered from the sweep's manifest."""
import dataclasses
import hashlib
import json
import os
import typing as tp
from pathlib import Path

from ..records import manifests, storage, writes
from ..errors import PtslurmError, UsageError
from ..plan.make import Plan, SweepRequest, check_resources, choose_executor
from ..records import Executor


REQUESTS = ".requests"  # in <root>/sweeps/: which sweep each command made (the re-run shortcut)


def request_key(request: SweepRequest, executor: str) -> tp.Optional[str]:
    """What makes a ``sweep`` command the same command again, without loading anything: the
    experiment file (path and content), the ``with`` words, the sweep file (path and
    content), the name, root, storage key, executor and resources. None when a file cannot
    be read (the full plan then says why)."""
    def digest(path: tp.Optional[str]) -> tp.Optional[str]:
        if path is None:
            return None
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            raise LookupError(path) from None

    try:
        blob = json.dumps({"experiment": [os.path.realpath(request.experiment), digest(request.experiment)],
                           "with": list(request.with_tokens), "name": request.name,
                           "sweep_file": [os.path.realpath(request.sweep_file), digest(request.sweep_file)]
                           if request.sweep_file else None, "storage_key": request.storage_key,
                           "root": str(storage.resolve_root(request.root)), "executor": executor,
                           "resources": request.resources.to_json(), "max_points": request.max_points,
                           "keep_duplicates": request.keep_duplicates, "notify": request.notify},
                          sort_keys=True, default=repr)
    except (LookupError, UsageError):
        return None
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def remember(p: Plan, sweep_dir: Path, manifest: tp.Any) -> None:
    """Note which sweep this command made, for ``rerun`` (best effort)."""
    key = request_key(p.request, p.executor)
    if key is None:
        return
    folder = manifests.sweeps_dir(p.root) / REQUESTS
    try:
        folder.mkdir(mode=0o755, exist_ok=True)
        writes.atomic_write_json(folder / key, {"name": sweep_dir.name, "spec_hash": manifest.spec_hash})
    except OSError:
        pass


def rerun(request: SweepRequest, scheduler_given: bool = False
          ) -> tp.Tuple[tp.Optional[Plan], tp.Optional[Executor]]:
    """The plan of a sweep that this very command made before and submitted in full: from its
    manifest, with no snapshot, no experiment loaded and no config built (a re-run of the
    same command submits nothing new: it only has to be recognised); None when it is not such
    a re-run (anything else goes through ``plan``). And the executor chosen on the way (None
    for a dry run), so that ``plan`` need not ask the scheduler again."""
    from ..records import read_json

    if request.dry_run:
        return None, None
    try:
        request = dataclasses.replace(request, resources=check_resources(request.resources)[0])
        executor = Executor.SLURM if scheduler_given else choose_executor(request.executor)
    except UsageError:
        return None, None  # ``plan`` says it, in its order of checks
    key = request_key(request, executor)
    if key is None:
        return None, executor
    root = storage.resolve_root(request.root)
    hint = read_json(manifests.sweeps_dir(root) / REQUESTS / key)
    if not isinstance(hint, dict) or not isinstance(hint.get("name"), str):
        return None, executor
    sweep_dir = manifests.sweeps_dir(root) / hint["name"]
    try:
        if os.lstat(sweep_dir).st_uid != os.geteuid():
            return None, executor
        manifest = manifests.read_manifest(sweep_dir)
    except (OSError, PtslurmError):
        return None, executor
    if manifest.state != "submitted" or manifest.spec_hash != hint.get("spec_hash") or manifest.executor != executor:
        return None, executor
    return Plan(request=request, points=[e.to_point() for e in manifest.points], root=root,
                experiment_name=manifest.experiment.name, module_name=manifest.experiment.module,
                experiment_file=Path(manifest.experiment.file), storage_key=manifest.storage_key,
                predicted_dirs=[], warnings=[], executor=executor, name=manifest.name,
                spec_hash=manifest.spec_hash), executor
