"""Where a training's progress goes besides its record: TensorBoard event files in the run's work
folder (``track.tensorboard``, on by default), so ``tensorboard --logdir results/work`` shows every
run's curves. The JSON record stays the harness's source of truth: nothing here decides a table."""
from __future__ import annotations

from pathlib import Path

TENSORBOARD_DIR = "tensorboard"  # under the run's work folder


class Tracker:
    """Scalars of one training: ``scalars(step, {"train/loss": ...})``; ``close()`` when it ends."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Nothing is tracked."""

    def close(self) -> None:
        """Nothing to flush."""


class TensorBoardTracker(Tracker):
    def __init__(self, folder: Path):
        # deferred: tensorboard takes a second to import and only training needs it
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, float(value), int(step))

    def close(self) -> None:
        self.writer.close()


def open_tracker(config: dict, work_dir: str | Path | None) -> Tracker:
    """The tracker ``config["track"]`` asks for, writing under ``work_dir`` (none without one)."""
    if not config["track"]["tensorboard"] or work_dir is None:
        return Tracker()
    return TensorBoardTracker(Path(work_dir) / TENSORBOARD_DIR)
