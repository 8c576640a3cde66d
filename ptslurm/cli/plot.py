"""``ptslurm plot``: the learning curves of all points of a sweep in one matplotlib figure
(the ``plot`` extra), the rungs of a successive-halving sweep marked."""
import typing as tp
from pathlib import Path

from ..records import manifests
from ..errors import UsageError
from ..records import read_status
from ..read.results import join_metrics


def curves(sweep_dir: Path, metric: str) -> tp.List[tp.Tuple[str, tp.List[float], tp.List[float]]]:
    """``(label, steps, values)`` of ``metric`` for every point that reported it."""
    manifest = manifests.read_manifest(sweep_dir)
    out: tp.List[tp.Tuple[str, tp.List[float], tp.List[float]]] = []
    seen: tp.Set[str] = set()
    for entry in manifest.points:
        metrics = join_metrics(entry.storage_dir, read_status(entry.path).attempts)
        seen.update(metrics)
        if metric in metrics:
            out.append((entry.label(manifest.varied), metrics[metric]["steps"], metrics[metric]["values"]))
    if not out:
        raise UsageError(f"unknown metric {metric!r}; reported metrics: {', '.join(sorted(seen)) or 'none'}")
    return out


def plot(sweep_dir: Path, metric: str, output: tp.Optional[Path] = None) -> tp.Any:
    """Learning curves of all points in one figure; returns the matplotlib Figure. Draws
    with the Agg canvas directly: matplotlib's process-wide backend is left alone."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("plotting needs matplotlib: pip install 'ptslurm[plot]'") from None
    data = curves(sweep_dir, metric)
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, steps, values in data:
        # a curve of one value (a point that failed after its first log) is a line of no
        # length: draw its value as a dot
        ax.plot(steps, values, label=label, marker="o" if len(values) == 1 else None)
    manifest = manifests.read_manifest(sweep_dir)
    from ..read.halving import from_json

    search = from_json(manifest.search)
    for k, budget in enumerate(search.rungs if search is not None else []):  # where each rung ends
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"rung {k}", (budget, 1), xycoords=("data", "axes fraction"), fontsize="small",
                    ha="right", va="top", rotation=90, color="grey")
    ax.set_xlabel("step" if search is None else f"step (rungs at {search.budget} = "
                  f"{', '.join(map(str, search.rungs))})")
    ax.set_ylabel(metric)
    ax.set_title(f"{manifest.name}: {metric}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    if output is not None:
        fig.savefig(output, dpi=100)
    return fig
