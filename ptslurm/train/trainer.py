"""A padertorch-style training loop that survives preemption: ``Model``, ``Adam``/``SGD``
with gradient clipping, and ``Trainer``, all ``Configurable``.

Exact continuation: a checkpoint holds the model, the optimizer, iteration, epoch and the
position inside the epoch, the RNG states of python/numpy/torch/cuda and the trainer's own
state (best loss, summaries not yet written). On resume the epoch's data order is rebuilt
(``set_epoch`` on the dataset, see ``Batches``) and the batches already seen are skipped, so an
interrupted run ends bit-identical to an uninterrupted one.
"""
import itertools
import json
import math
import sys
import typing as tp
from pathlib import Path

import torch

from . import checkpoint as ckpt
from ..job import interrupt, runtime
from .configurable import Configurable, import_factory
from .batches import Batches, rng_state, set_rng_state  # noqa: F401 - Batches: ptslurm.train.trainer.Batches
from ..errors import UsageError
from ..records import CONFIG, PointPaths



class Model(torch.nn.Module, Configurable):
    """Base model: ``forward(example)`` returns outputs, ``review(example, outputs)`` returns
    ``{"loss": tensor, "scalars": {name: value}}`` (scalars optional), or padertorch's
    ``{"losses": {name: tensor}, ...}`` (summed with the Trainer's ``loss_weights``)."""

    def review(self, example, outputs) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError("implement review(example, outputs) -> {'loss': ...}")

    @classmethod
    def from_storage_dir(cls, storage_dir, checkpoint_name: str = ckpt.BEST_LOSS,
                         config_name: str = CONFIG, in_config_path: str = "trainer.model",
                         map_location="cpu", import_code: bool = False, trusted: bool = False) -> "Model":
        """Rebuild the model from ``<storage_dir>/config.json`` (the sub-config at
        ``in_config_path``) and load its weights from ``checkpoints/<checkpoint_name>``
        (``ckpt_best_loss.pth`` by default).

        ``import_code=True`` puts the run's code snapshot on ``sys.path`` so that factories
        defined in the experiment (``classify.Net``) import: that runs the code of whoever
        made the run. The weights are read with ``torch.load(weights_only=True)``, and the
        config's factories must be a ``cls`` subclass (sub-configs: Configurables or torch
        modules), checked before anything is called; ``trusted=True`` unpickles a checkpoint
        that needs more and calls any factory the config names (both can run code)."""
        storage_dir = Path(storage_dir)
        config = json.loads((storage_dir / config_name).read_text())
        for part in in_config_path.split(".") if in_config_path else []:
            if part not in config:
                raise UsageError(f"{storage_dir / config_name}: no '{in_config_path}' in the config")
            config = config[part]
        if import_code:
            _code_on_path(storage_dir)
        try:
            model = cls.from_config(config, trusted=trusted)
        except ImportError as exc:
            raise UsageError(f"{storage_dir / config_name}: {exc}; if the model is defined in the run's own code, "
                             f"pass import_code=True (it puts that code on sys.path)") from None
        path = PointPaths(storage_dir).checkpoints / checkpoint_name
        if not path.exists():
            raise UsageError(f"{path} does not exist; available: "
                             f"{sorted(p.name for p in path.parent.glob('ckpt_*.pth'))}")
        state = ckpt.load_file(path, map_location, trusted=trusted)
        model.load_state_dict(state["model"])
        return model


def _code_on_path(storage_dir: Path) -> None:
    """Make the sweep's code snapshot importable (factories like 'classify.Net')."""
    try:
        status = json.loads(PointPaths(storage_dir).status.read_text())
    except (OSError, ValueError):
        return
    code = status.get("code_dir")
    if code and code not in sys.path:
        sys.path.append(code)


class Optimizer(Configurable):
    """Wraps a torch optimizer, created once the parameters are known; clips gradients."""

    torch_class: tp.ClassVar[tp.Callable[..., tp.Any]]

    def __init__(self, gradient_clipping: float = 1e10, **kwargs):
        self.gradient_clipping = gradient_clipping
        self.kwargs = kwargs
        self.optimizer: tp.Any = None

    def set_parameters(self, parameters) -> None:
        self.parameters = [p for p in parameters if p.requires_grad]
        self.optimizer = self.torch_class(self.parameters, **self.kwargs)

    def clip_grad(self) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(self.parameters, self.gradient_clipping)

    def step(self) -> None:
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


class Adam(Optimizer):
    torch_class = torch.optim.Adam

    def __init__(self, gradient_clipping: float = 1e10, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False):
        super().__init__(gradient_clipping, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


class SGD(Optimizer):
    torch_class = torch.optim.SGD

    def __init__(self, gradient_clipping: float = 1e10, lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False):
        super().__init__(gradient_clipping, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)


def _trigger(value) -> tp.Tuple[int, str]:
    n, unit = value
    if unit not in ("epoch", "iteration") or int(n) < 1:
        raise UsageError(f"trigger {value!r}: use (N, 'epoch') or (N, 'iteration') with N >= 1")
    return int(n), unit


class Trainer(Configurable):
    """Trains ``model`` with ``optimizer``, checkpointing to ``<storage_dir>/checkpoints``.

    The parameters are padertorch's Trainer's, so that configs carry over (``loss_weights``
    weights a review's ``losses`` as padertorch does). Triggers are ``(N, 'epoch')`` or
    ``(N, 'iteration')``. ``virtual_minibatch_size`` batches
    are accumulated per optimizer step. ``keep_checkpoints`` numbered checkpoints are kept
    (plus the best). Stop requests (``ptslurm.should_stop()``) are honoured at the next step
    boundary: checkpoint, then ``Interrupted``.
    """

    def __init__(self, model, storage_dir=None, optimizer=None, loss_weights=None,
                 stop_trigger=(1, "epoch"), checkpoint_trigger=(1, "epoch"), summary_trigger=(1, "epoch"),
                 virtual_minibatch_size: int = 1, keep_checkpoints: int = 5, device=None):
        if isinstance(model, dict):
            model = import_factory(model["factory"]).from_config(model)
        if optimizer is None:
            optimizer = Adam()
        elif isinstance(optimizer, dict):
            optimizer = Optimizer.from_config(optimizer) if "factory" in optimizer else Adam(**optimizer)
        if storage_dir is None:
            from ..job.runtime import get_storage_dir

            storage_dir = get_storage_dir()
            if storage_dir is None:
                raise UsageError("Trainer needs storage_dir (ptslurm injects it into trainer.storage_dir)")
        self.model = model
        self.optimizer = optimizer
        self.storage_dir = Path(storage_dir)
        self.loss_weights = loss_weights
        self.stop_trigger = _trigger(stop_trigger)
        self.checkpoint_trigger = _trigger(checkpoint_trigger)
        self.summary_trigger = _trigger(summary_trigger)
        if int(virtual_minibatch_size) < 1:
            raise UsageError("virtual_minibatch_size must be >= 1")
        self.virtual_minibatch_size = int(virtual_minibatch_size)
        self.keep_checkpoints = keep_checkpoints
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.iteration = 0
        self.epoch = 0
        self.epoch_iteration = 0
        self.best_loss = math.inf
        self._scalars: tp.Dict[str, tp.List[torch.Tensor]] = {}
        self._writer: tp.Any = None
        self._ranks = runtime.Distributed()  # set by train()
        self._forward: tp.Any = None  # the DistributedDataParallel wrapper of a distributed point
        self._agreement: tp.Any = None  # the stop flags' all-reduce under way (distributed)
        self._saved_iteration: tp.Optional[int] = None  # the iteration of the last checkpoint taken
        self._validation = None
        self.validation_scalars: tp.Dict[str, float] = {}  # the review's scalars at the last validation
        self._last_loss: tp.Optional[float] = None  # the last summary's training loss (the live line)

    @classmethod
    def finalize_config(cls, config: dict) -> None:
        """The optimizer's default (Adam) appears in the config, with its own defaults."""
        if config.get("optimizer") is None:
            config["optimizer"] = {"factory": Adam}

    @property
    def checkpoint_dir(self) -> Path:
        return PointPaths(self.storage_dir).checkpoints

    def register_validation_hook(self, validation_dataset) -> None:
        self._validation = validation_dataset

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Everything an exact resume needs. In a distributed point every rank must call it
        (the RNG states of all ranks are gathered: ``rng`` is then a list, one per rank)."""
        rng: tp.Any = rng_state()
        pending: tp.Any = {k: [float(v) for v in vs] for k, vs in self._scalars.items()}
        if self._ranks.world_size > 1:  # every rank's own RNG and pending summary values
            import torch.distributed as dist

            gathered: tp.List[tp.Any] = [None] * self._ranks.world_size
            dist.all_gather_object(gathered, (rng, pending))
            rng, pending = [g[0] for g in gathered], [g[1] for g in gathered]
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "iteration": self.iteration, "epoch": self.epoch, "epoch_iteration": self.epoch_iteration,
                "best_loss": self.best_loss, "rng": rng, "pending_scalars": pending}

    def load_state_dict(self, state: dict) -> None:
        rng = state["rng"]
        if isinstance(rng, list) != (self._ranks.world_size > 1) or (
                isinstance(rng, list) and len(rng) != self._ranks.world_size):
            made = len(rng) if isinstance(rng, list) else 1
            raise UsageError(f"the checkpoint was written by a point of {made} rank(s), this one has "
                             f"{self._ranks.world_size}: resume with the same --nodes/--tasks-per-node")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.epoch = state["iteration"], state["epoch"]
        self.epoch_iteration, self.best_loss = state["epoch_iteration"], state["best_loss"]
        pending = state.get("pending_scalars", {})
        if isinstance(pending, list):  # one per rank (a distributed point): this rank's own
            pending = pending[self._ranks.rank] if len(pending) == self._ranks.world_size else {}
        self._scalars = {k: [torch.tensor(v) for v in vs] for k, vs in pending.items()}
        set_rng_state(rng[self._ranks.rank] if isinstance(rng, list) else rng)
        self._saved_iteration = self.iteration

    def save_checkpoint(self, best: bool = False) -> tp.Optional[Path]:
        """Write a checkpoint (rank 0 only; every rank calls this) and report progress."""
        from ..job.runtime import report_progress

        state = self.state_dict()
        self._saved_iteration = self.iteration
        if not self._ranks.is_main:
            return None
        path = ckpt.save(state, self.checkpoint_dir, self.iteration, keep=self.keep_checkpoints, best=best)
        report_progress(self.iteration, self.epoch, total=self._total())
        return path

    def _total(self) -> tp.Dict[str, int]:
        n, unit = self.stop_trigger
        return {unit: int(n)}

    # ------------------------------------------------------------------ loop
    def _done(self) -> bool:
        n, unit = self.stop_trigger
        return (self.iteration >= n) if unit == "iteration" else (self.epoch >= n)

    def _fires(self, trigger, epoch_end: bool) -> bool:
        n, unit = trigger
        if unit == "iteration":
            return not epoch_end and self.iteration % n == 0
        return epoch_end and self.epoch % n == 0

    def train(self, train_dataset, resume: tp.Optional[bool] = None, validation_dataset=None) -> None:
        """Train until the stop trigger. ``resume=None`` resumes when a checkpoint exists;
        ``True`` requires one; ``False`` refuses to overwrite an existing training."""
        if validation_dataset is not None:
            self._validation = validation_dataset
        self._ranks = runtime.init_process_group()  # one rank: nothing to join
        self.model.to(self.device)
        self.optimizer.set_parameters(self.model.parameters())
        found = ckpt.load_latest(self.checkpoint_dir, map_location=self.device)
        if found is not None and resume is False:
            raise UsageError(f"{self.checkpoint_dir} holds checkpoints; pass resume=True (or None) to continue")
        if found is None and resume is True:
            raise UsageError(f"resume=True but {self.checkpoint_dir} has no loadable checkpoint")
        if found is not None:
            self.load_state_dict(found[1])
            print(f"ptslurm: resuming from {found[0].name} (iteration {self.iteration}, epoch {self.epoch})",
                  flush=True)
            from ..job.runtime import report_progress

            report_progress(self.iteration, self.epoch, resumed=True, total=self._total())
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if self._ranks.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self._forward = DistributedDataParallel(self.model, device_ids=[0] if self.device.type == "cuda" else None)
            if hasattr(train_dataset, "set_rank"):
                train_dataset.set_rank(self._ranks.rank, self._ranks.world_size)
        show = sys.stderr.isatty() and self._ranks.is_main
        while not self._done():  # one pass per epoch
            if hasattr(train_dataset, "set_epoch"):
                train_dataset.set_epoch(self.epoch)
            # a resumed epoch skips the batches it saw before the checkpoint
            for batch in itertools.islice(train_dataset, self.epoch_iteration, None):
                self._step(batch)
                if show:
                    last = f"  loss {self._last_loss:.4g}" if self._last_loss is not None else ""
                    sys.stderr.write(f"\rtrain: epoch {self.epoch} iteration {self.iteration}{last}\033[K")
                if self._done():
                    self._finish_accumulation()
                elif self.epoch_iteration % self.virtual_minibatch_size:
                    continue  # stop requests wait for the optimizer step: resume stays exact
                self._boundary(epoch_end=False)
                if self._done():
                    break
            else:
                self._finish_accumulation()
                self.epoch += 1
                self.epoch_iteration = 0
                self._boundary(epoch_end=True)
        if show:
            sys.stderr.write("\n")
        if self._agreement is not None:
            self._agreement[0].wait()  # the last flags' reduction: every rank ends it
            self._agreement = None
        if self._scalars:
            self._write_summary()
        if self._saved_iteration != self.iteration:
            self._checkpoint_and_validate()
        if self._writer:
            self._writer.flush()

    def _boundary(self, epoch_end: bool) -> None:
        """The one place that writes summaries, checkpoints and stops, at an optimizer step
        (``epoch_end`` False) or at the end of an epoch. A stop request is honoured here:
        checkpoint (unless this iteration has one), then ``Interrupted``."""
        if self._fires(self.summary_trigger, epoch_end):
            self._write_summary()
        if self._fires(self.checkpoint_trigger, epoch_end) or (epoch_end and self._done()):
            self._checkpoint_and_validate()
        if not self._done() and self._stop_agreed():
            if self._saved_iteration != self.iteration:
                self.save_checkpoint()
            raise interrupt.Interrupted(f"stop requested at iteration {self.iteration}; checkpoint written")

    def _to_device(self, batch):
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, (tuple, list)):
            return type(batch)(self._to_device(b) for b in batch)
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        return batch

    def _step(self, batch) -> None:
        self.model.train()
        batch = self._to_device(batch)
        review = self.model.review(batch, (self._forward or self.model)(batch))
        loss = self._loss(review)
        (loss / self.virtual_minibatch_size).backward()
        self._record("loss", loss)
        for name, value in review.get("scalars", {}).items():
            self._record(name, value)
        self.iteration += 1
        self.epoch_iteration += 1
        if self.epoch_iteration % self.virtual_minibatch_size == 0:
            self._optimizer_step()

    def _loss(self, review: tp.Mapping[str, tp.Any]) -> torch.Tensor:
        """``review["loss"]``, or, as padertorch's reviews give them, the sum of
        ``review["losses"]`` weighted by ``loss_weights`` (1 for a name it does not list)."""
        if "loss" in review:
            return review["loss"]
        if "losses" not in review:
            raise UsageError("review(example, outputs) must return {'loss': tensor} or {'losses': {name: tensor}}")
        weights = self.loss_weights or {}
        return sum(weights.get(name, 1.0) * value for name, value in review["losses"].items())

    def _optimizer_step(self) -> None:
        grad_norm = self.optimizer.clip_grad()
        self._record("grad_norm", grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad()

    def _finish_accumulation(self) -> None:
        if self.epoch_iteration % self.virtual_minibatch_size:
            self._optimizer_step()

    def _record(self, name: str, value) -> None:
        value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        self._scalars.setdefault(name, []).append(value)

    def _collective_device(self) -> torch.device:
        """Where tensors for collectives live: the GPU with NCCL, the CPU with gloo."""
        import torch.distributed as dist

        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def _stop_agreed(self) -> bool:
        """Whether to stop here. In a distributed point every rank stops at the same step:
        each optimizer step starts an all-reduce (MAX) of the ranks' stop flags in the
        background, and the next step's boundary acts on its result, so the reduction
        overlaps a step's compute instead of adding to it (a stop comes one step later)."""
        stop = interrupt.should_stop()
        if self._ranks.world_size == 1:
            return stop
        import torch.distributed as dist

        agreed = False
        if self._agreement is not None:
            work, flags = self._agreement
            work.wait()
            agreed = bool(flags.item())
        flags = torch.tensor([int(stop)], device=self._collective_device())
        self._agreement = (dist.all_reduce(flags, op=dist.ReduceOp.MAX, async_op=True), flags)
        return agreed

    def _write_summary(self, prefix: str = "training/") -> None:
        names = sorted(k for k, vs in self._scalars.items() if vs)
        means = torch.stack([torch.stack([v.float().cpu() for v in self._scalars[k]]).mean() for k in names]) \
            if names else torch.zeros(0)
        if self._ranks.world_size > 1:  # the mean over all ranks (every rank writes summaries together)
            import torch.distributed as dist

            means = means.to(self._collective_device())
            dist.all_reduce(means)
            means = means.cpu() / self._ranks.world_size
        self._scalars = {}
        self._log({prefix + k: float(v) for k, v in zip(names, means.tolist())})

    def _log(self, scalars: tp.Dict[str, float]) -> None:
        from ..job.runtime import active_run, report_progress

        if not self._ranks.is_main:
            return
        if "training/loss" in scalars:
            self._last_loss = scalars["training/loss"]
        if not sys.stderr.isatty():  # a log file: one line per summary (a terminal has the live line)
            n, unit = self.stop_trigger
            where = f"iteration {self.iteration}" + (f"/{n}" if unit == "iteration" else "") + \
                f" epoch {self.epoch}" + (f"/{n}" if unit == "epoch" else "")
            print(f"ptslurm: {where}: " + "  ".join(f"{k} {v:.6g}" for k, v in scalars.items()), flush=True)
        report_progress(self.iteration, self.epoch, total=self._total())
        run = active_run()
        writer = self._tensorboard()
        for name, value in scalars.items():
            if run is not None:
                run.log_scalar(name, value, self.iteration)
            if writer is not None:
                writer.add_scalar(name, value, self.iteration)

    def _tensorboard(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                self._writer = False
            else:
                self._writer = SummaryWriter(str(self.storage_dir), purge_step=self.iteration or None)
        return self._writer or None

    def _checkpoint_and_validate(self) -> None:
        """Checkpoint; with a validation set, ``ckpt_best_loss.pth`` follows the lowest
        validation loss, without one it follows the latest checkpoint."""
        best = True
        if self._validation is not None:
            loss = self.validate(self._validation)
            best = loss < self.best_loss
            if best:
                self.best_loss = loss
            self._log({"validation/loss": loss, **{f"validation/{k}": v for k, v in self.validation_scalars.items()}})
        self.save_checkpoint(best=best)

    @torch.no_grad()
    def validate(self, dataset) -> float:
        """The mean loss over ``dataset``; the means of the review's ``scalars`` (accuracy,
        ...) are kept in ``validation_scalars`` and logged as ``validation/<name>``."""
        self.model.eval()
        total, count = 0.0, 0
        sums: tp.Dict[str, float] = {}
        for batch in dataset:
            batch = self._to_device(batch)
            review = self.model.review(batch, self.model(batch))
            total += float(self._loss(review))
            for name, value in review.get("scalars", {}).items():
                sums[name] = sums.get(name, 0.0) + float(value)
            count += 1
        self.model.train()
        self.validation_scalars = {k: v / max(count, 1) for k, v in sums.items()}
        return total / max(count, 1)
