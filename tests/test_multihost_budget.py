"""Two processes (jax.distributed) on a time-budgeted schedule, one with a clock that runs at half speed: both
follow the clock they agree on, so they scale every update by the same factor, keep identical parameters, and
save and stop after the same steps (a process that saved alone would leave the other waiting in a collective)."""

import json
import subprocess
import sys
import textwrap

import pytest
from train_helpers import ROOT, cpu_devices_env, distributed_env, free_port

pytestmark = pytest.mark.slow  # subprocesses that train; `make test-fast` leaves them out

RUN = textwrap.dedent("""
    import json, sys, time, types
    sys.path.insert(0, "tests")
    import jax, numpy as np
    from train_helpers import reverse_config
    from t2t_jax.distributed import initialize_from_environment
    from t2t_jax.train import loop
    workdir, clock_rate = sys.argv[1], float(sys.argv[2])
    start = time.time()
    loop.time = types.SimpleNamespace(time=lambda: start + (time.time() - start) * clock_rate)  # a skewed clock
    scales, update = [], loop.Trainer.update
    def recording_update(self, batches, lr_scale=1.0):
        time.sleep(0.1)
        scales.append(lr_scale)
        return update(self, batches, lr_scale)
    loop.Trainer.update = recording_update
    initialize_from_environment()
    config = reverse_config(schedule="cosine", schedule_clock="time", max_seconds=15.0, steps=100_000,
                            learning_rate=3e-3, warmup_steps=2, eval_every=100_000, checkpoint_every=4,
                            keep_checkpoints=3, average_last=3, average_window=0.5)
    config.data.batch_tokens = 128
    trainers = []
    original_init = loop.Trainer.__init__
    def keep(self, *args):
        original_init(self, *args)
        trainers.append(self)
    loop.Trainer.__init__ = keep
    loop.train_and_evaluate(config, workdir)
    params = trainers[0].state.params
    total = sum(float(np.abs(np.asarray(leaf.addressable_data(0), np.float64)).sum())
                for leaf in jax.tree_util.tree_leaves(params))
    print("REPORT " + json.dumps({"scales": scales, "step": int(trainers[0].state.step), "params": total}))
""")


def test_a_skewed_clock_on_one_process_changes_nothing_the_processes_agree_on(tmp_path):
    port, workdir = free_port(), str(tmp_path / "w")
    processes = [
        subprocess.Popen([sys.executable, "-c", RUN, workdir, rate], cwd=ROOT,
                         env=cpu_devices_env(1, **distributed_env(port, rank)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
        for rank, rate in ((0, "1.0"), (1, "0.5"))
    ]
    try:
        outputs = [process.communicate(timeout=180) for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err.decode()[-3000:]
    first, second = (json.loads(next(line[7:] for line in out.decode().splitlines() if line.startswith("REPORT ")))
                     for out, _ in outputs)
    assert first["scales"] == second["scales"] and first["step"] == second["step"]
    assert first["params"] == second["params"]
    # the agreed clock is the faster-running one (the maximum): the run still ends annealed, within its budget
    assert first["scales"][-1] < 0.1 and max(first["scales"]) > 0.5, first["scales"]
    averaged = [path for path in (tmp_path / "w" / "averaged").iterdir()]
    assert len(averaged) == 1
