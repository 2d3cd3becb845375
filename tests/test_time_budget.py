"""A time-budgeted run (train.schedule_clock=time) uses its budget and ends annealed on a slow and a fast machine
(simulated: the loop's clock advances by a fixed time per update), spaces the checkpoints it averages over the end
of the budget, and a resumed run continues the same schedule."""

import json
import math
import types

import pytest
from train_helpers import reverse_config

from t2t_jax.errors import UserError
from t2t_jax.settings import TrainSettings
from t2t_jax.train import loop
from t2t_jax.train.budget import TimeBudget

BUDGET, PEAK, WINDOW, AVERAGED = 10.0, 3e-3, 0.4, 4  # simulated seconds


def timed_config(**overrides):
    settings = dict(schedule="cosine", schedule_clock="time", max_seconds=BUDGET, steps=100_000, learning_rate=PEAK,
                    warmup_steps=2, eval_every=100_000, checkpoint_every=10, keep_checkpoints=AVERAGED + 1,
                    average_last=AVERAGED, average_window=WINDOW)
    return reverse_config(**{**settings, **overrides})


def train(monkeypatch, config, workdir, seconds_per_step):
    """Trains in this process on a simulated machine: the training loop's clock moves only with updates,
    `seconds_per_step` each (compiling, saving and evaluating take no time), so that what the test asserts holds
    however fast or busy the real machine is."""
    update, updates = loop.Trainer.update, []
    clock = types.SimpleNamespace(time=lambda: len(updates) * seconds_per_step)

    def timed_update(self, batches, lr_scale=1.0):
        updates.append(lr_scale)
        return update(self, batches, lr_scale)

    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(loop.Trainer, "update", timed_update)
    loop.train_and_evaluate(config, str(workdir))
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == "train"]


def checkpoint_seconds(workdir, step):
    return json.loads((workdir / "checkpoints" / str(step) / "meta" / "metadata").read_text())["train_seconds"]


def averaged_steps(workdir):
    (averaged,) = (workdir / "averaged").iterdir()
    return json.loads((averaged / "meta" / "metadata").read_text())["averaged_steps"]


@pytest.mark.slow  # 40 and 200 updates of a small model
@pytest.mark.parametrize("seconds_per_step", [0.05, 0.25])
def test_slow_and_fast_machines_use_the_budget_and_end_annealed(monkeypatch, tmp_path, seconds_per_step):
    workdir = tmp_path / "w"
    lines = train(monkeypatch, timed_config(), workdir, seconds_per_step)
    steps, last_lr = lines[-1]["step"], lines[-1]["learning_rate"]
    assert last_lr < 0.03 * PEAK, lines[-1]
    assert round(BUDGET / seconds_per_step) <= steps <= round(BUDGET / seconds_per_step) + 1, steps
    # the learning rate falls with the training time, never rises after the warmup
    rates = [line["learning_rate"] for line in lines[2:]]
    assert all(later <= earlier + 1e-9 for earlier, later in zip(rates, rates[1:])), rates
    # the averaged checkpoints were taken as the budget passed 1 - w + w * j / k, in time order
    chosen = averaged_steps(workdir)
    assert len(chosen) == AVERAGED and chosen == sorted(chosen), chosen
    for j, step in enumerate(chosen, 1):
        mark = (1 - WINDOW + WINDOW * j / AVERAGED) * BUDGET
        assert mark <= checkpoint_seconds(workdir, step) < mark + seconds_per_step + 1e-6, (j, step)


@pytest.mark.slow  # 40 updates of a small model
def test_a_step_clocked_cosine_on_a_slow_machine_stops_mid_decay(monkeypatch, tmp_path):
    """What the time clock is for: the same budget with the decay planned in steps leaves it half done."""
    config = timed_config(schedule_clock="steps", steps=80, average_last=0)
    lines = train(monkeypatch, config, tmp_path / "w", 0.25)
    assert lines[-1]["step"] == 40 and lines[-1]["learning_rate"] > 0.25 * PEAK, lines[-1]


@pytest.mark.slow  # 46 updates of a small model, in two runs
def test_a_resumed_run_continues_the_schedule_of_the_training_time_so_far(monkeypatch, tmp_path):
    workdir, budget = tmp_path / "w", BUDGET
    first = train(monkeypatch, timed_config(steps=6, average_last=0, max_seconds=budget), workdir, 0.25)
    assert first[-1]["step"] == 6
    stopped_at = checkpoint_seconds(workdir, 6)
    assert stopped_at == pytest.approx(1.5)
    both = train(monkeypatch, timed_config(average_last=0, max_seconds=budget), workdir, 0.25)
    resumed = [line for line in both if line["step"] > 6]
    expected = PEAK * 0.5 * (1 + math.cos(math.pi * stopped_at / budget))
    assert resumed[0]["learning_rate"] == pytest.approx(expected, rel=1e-4)
    assert resumed[-1]["learning_rate"] < 0.03 * PEAK
    final = checkpoint_seconds(workdir, resumed[-1]["step"])
    assert budget <= final < budget + 0.25 + 1e-6, final  # one budget for both runs, not one each


def test_the_marks_of_the_averaged_checkpoints():
    settings = TrainSettings(schedule="cosine", schedule_clock="time", max_seconds=100.0, average_last=4,
                             average_window=0.4)
    budget, crossed = TimeBudget(settings, 0.0), []
    for seconds in range(1, 101):
        if budget.advance(float(seconds)):
            crossed.append(seconds)
    assert crossed == [70, 80, 90, 100]
    assert TimeBudget(settings, 50.0).lr_scale() == pytest.approx(0.5)
    assert TimeBudget(TrainSettings(), 50.0).lr_scale() == 1.0 and not TimeBudget(TrainSettings(), 0.0).advance(9.0)


@pytest.mark.parametrize("changes, words", [
    (dict(schedule_clock="time", schedule="cosine"), "max_seconds > 0"),
    (dict(schedule_clock="time", schedule="rsqrt", max_seconds=60.0), "train.schedule=cosine"),
    (dict(schedule_clock="wall"), "train.schedule_clock must be"),
])
def test_a_time_clock_without_a_budget_or_a_cosine_is_one_clear_error(changes, words):
    with pytest.raises(UserError, match=words):
        TrainSettings.from_config(changes)
