"""The training programs compile on mixed meshes without XLA's "[SPMD] Involuntary full rematerialization":
a sharding transition the partitioner can only make by replicating a whole tensor on every device (at pod scale,
a full copy per step). The embedding lookup produced activations split along d_model (the table's fsdp split),
which then had to be re-split by batch; the model now names its activations' axes (layers.constrain)."""

import subprocess
import sys
import textwrap

import pytest
from train_helpers import ROOT, cpu_devices_env

pytestmark = pytest.mark.slow  # compiles in subprocesses with simulated devices

COMPILE = textwrap.dedent("""
    import sys, tempfile
    sys.path.insert(0, "tests")
    from train_helpers import wide_reverse_config
    from t2t_jax import sharding
    from t2t_jax.train import step
    from t2t_jax.train.loop import Trainer
    data, fsdp, tensor = map(int, sys.argv[1:4])
    config = wide_reverse_config()
    config.mesh.update(data=data, fsdp=fsdp, tensor=tensor)
    trainer = Trainer(config, tempfile.mkdtemp())
    batch = sharding.global_batch(next(trainer.iterator), trainer.batch_sharding)
    key = step.dropout_key(0, 0)
    trainer.train_step.lower(trainer.state, batch, key, 1.0).compile()
    trainer.compute_gradients.lower(trainer.state.params, batch, key).compile()  # accumulation's program
    trainer.eval_step.lower(trainer.state.params, batch).compile()
    print("COMPILED")
""")


@pytest.mark.parametrize("mesh", [(2, 2, 1), (2, 2, 2), (1, 2, 2)])
def test_the_train_eval_and_accumulation_steps_compile_without_involuntary_rematerialization(mesh):
    devices = mesh[0] * mesh[1] * mesh[2]
    result = subprocess.run(
        [sys.executable, "-c", COMPILE, *map(str, mesh)], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=cpu_devices_env(devices),
    )
    assert result.returncode == 0 and "COMPILED" in result.stdout, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "Involuntary full rematerialization" in line]
    assert not warnings, "\n".join(line[:400] for line in warnings)
