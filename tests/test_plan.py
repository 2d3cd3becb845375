"""t2t-jax plan: the real sharded train step compiled ahead of time, for this CPU and (with libtpu, which `make test`
installs in a second environment, .venv-tpu) for a TPU slice that is not here."""

import importlib.util
import json
import os

import jax
import pytest
from train_helpers import ROOT, assert_clear_error, config_flags, run_cli

from t2t_jax.configuration import load_config

needs_libtpu = pytest.mark.skipif(
    importlib.util.find_spec("libtpu") is None,
    reason="libtpu is not installed here: `make test` runs these in .venv-tpu (pip install -e '.[tpu,test]')",
)
MODEL = dict(d_model=64, d_ff=128, num_heads=4, num_encoder_layers=1, num_decoder_layers=1)
DATA = dict(vocab_size=64, max_source_length=32, max_target_length=32, batch_tokens=256)
SMALL = config_flags(model=MODEL, data=DATA)


def small_config(**mesh):
    config = load_config(os.path.join(ROOT, "configs", "tiny.py"))
    config.model.update(MODEL)
    config.data.update(DATA)
    config.mesh.update(mesh)
    return config


def test_plan_for_this_cpu_reports_memory_flops_and_the_largest_batch(tmp_path):
    result = run_cli("plan", "--config", "configs/tiny.py", "--target", "cpu", "--json", str(tmp_path / "p.json"),
                     *SMALL)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["fits"] and report["microbatch"] == [8, 32] and report["accumulation"] == 1
    assert 0 < report["state_gib"] < report["peak_gib"] and report["flops_per_chip"] > 0
    assert report["largest_batch_tokens"] >= 256 and report["largest_batch_tokens"] % 32 == 0
    assert "largest data.batch_tokens that fits" in result.stdout.decode()
    # beam search as decode runs it: decode.batch_tokens (4096) of 32-token sources, 4 beams
    assert report["decode_batch"] == [128, 32] and report["decode_beam_size"] == 4
    assert report["decode_fits"] and 0 < report["decode_peak_gib"] < 1


def test_a_mesh_the_target_cannot_hold_is_one_clear_error():
    assert_clear_error(run_cli("plan", "--config", "configs/tiny.py", "--target", "cpu", "--no_search",
                               "--config.mesh.tensor=3", *SMALL), "mesh", "does not divide")


def test_an_unknown_or_gpu_target_is_one_clear_error():
    assert_clear_error(run_cli("plan", "--config", "configs/tiny.py", "--target", "h100"), "h100",
                       "GPUs cannot be compiled for without one")


@needs_libtpu
def test_the_step_compiles_for_a_v5e_slice_with_every_parameter_sharded_by_the_rules():
    from t2t_jax.plan import compile_step, plan, target_devices

    jax.config.update("jax_platforms", "cpu")
    devices, _ = target_devices("v5e-4")
    assert len(devices) == 4 and devices[0].platform == "tpu"
    step = compile_step(small_config(data=2, fsdp=2), devices)
    state_in = step.compiled.input_shardings[0][0]  # (args, kwargs) -> state
    compiled_specs = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda s: s.spec, state_in))
    rule_specs = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda leaf: leaf.sharding.spec, step.abstract))
    assert compiled_specs == rule_specs  # XLA kept every parameter and optimizer leaf as the rules split it
    kernel = step.abstract.params["encoder"]["layers_0"]["feed_forward"]["wi"]["kernel"]
    assert str(kernel.sharding.spec) == "P('fsdp', 'tensor')"
    config = small_config(data=2, fsdp=2)
    config.model.dtype = "auto"  # resolved for the target's chips, not for this CPU process
    report = plan(config, "v5e-4", search=False)
    assert report["compute_dtype"] == "bfloat16" and report["fits"] and report["flops_per_chip"] > 0
    assert 0 < report["state_gib"] < report["peak_gib"] < 16
    assert report["decode_fits"] and 0 < report["decode_peak_gib"] < 16  # the beam search loop compiled for TPU


@needs_libtpu
def test_a_decoding_batch_larger_than_the_chip_is_reported(monkeypatch):
    """A v5e chip with the memory of the beam search's peak and a bit: training fits, decoding does not."""
    import dataclasses

    from t2t_jax import plan as planner

    jax.config.update("jax_platforms", "cpu")
    config = small_config(data=2, fsdp=2)
    config.decode.batch_tokens = 2**14
    small = dataclasses.replace(planner.TARGETS["v5e-4"], memory_gib=0.1)
    monkeypatch.setitem(planner.TARGETS, "v5e-4", small)
    report = planner.plan(config, "v5e-4", search=False)
    assert report["fits"] and not report["decode_fits"], report
    assert report["decode_peak_gib"] > 0.09 > report["peak_gib"]
    assert any("does NOT fit: lower decode.batch_tokens" in line for line in planner.report_lines(report))


@needs_libtpu
def test_a_batch_that_cannot_fit_a_v5e_chip_is_one_clear_error():
    result = run_cli("plan", "--config", "configs/tiny.py", "--target", "v5e-4", "--no_search", *SMALL,
                     "--config.data.batch_tokens=16777216")
    assert_clear_error(result, "does not fit 4 tpu chips", "HBM", "lower data.batch_tokens")
