"""A time-budgeted schedule's clock (train.schedule_clock=time): how far the budget is spent, the learning-rate
factor that follows, and when the checkpoints to average are taken.

The progress is the training time all processes agree on (the stop vote's) over train.max_seconds, so every
process scales its updates and saves after the same steps. With train.average_last = k, the k checkpoints to
average are taken when the progress passes 1 - w + w * j / k (j = 1 .. k, w = train.average_window): evenly over
the end of the budget however fast the machine is; periodic checkpoints stop inside that window so that the last
k are these. A resumed run continues from the training time saved in its checkpoint.
"""

from __future__ import annotations

from t2t_jax.settings import TrainSettings
from t2t_jax.train.optim import budget_decay


class TimeBudget:
    """The schedule's progress through train.max_seconds; on a step-clocked schedule a factor of 1, always."""

    def __init__(self, settings: TrainSettings, seconds: float) -> None:
        self.settings, self.seconds = settings, seconds

    @property
    def progress(self) -> float:
        return self.seconds / self.settings.max_seconds if self.settings.timed else 0.0

    def lr_scale(self) -> float:
        """The factor of the next update's learning rate: the cosine's decay at the agreed progress."""
        return budget_decay(self.progress) if self.settings.timed else 1.0

    def averaging(self) -> bool:
        """Whether the run is inside the window where only the checkpoints to average are taken."""
        return self.settings.timed and self.settings.average_last > 0 and self.progress > self._start

    def advance(self, seconds: float | None) -> bool:
        """Moves the clock to the newly agreed training time (None: no agreement yet); returns whether a checkpoint
        to average falls between the previous time and this one."""
        if seconds is None or not self.settings.timed:
            return False
        before, self.seconds = self.progress, seconds
        return self.settings.average_last > 0 and any(before < mark <= self.progress for mark in self._marks)

    @property
    def _start(self) -> float:
        return 1.0 - self.settings.average_window

    @property
    def _marks(self) -> list[float]:
        count, window = self.settings.average_last, self.settings.average_window
        return [self._start + window * j / count for j in range(1, count + 1)]
