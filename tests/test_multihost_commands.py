"""decode, eval and average on several hosts, and on fewer devices than the model was trained on.

One model is trained by 2 processes x 2 simulated devices with mesh.fsdp=4 and a BLEU evaluation (each host
decodes a share of the eval set); then the commands run on 1 process with 1 device and on 2 processes."""

import json
import os
import subprocess
import sys
import time

import pytest
from train_helpers import ROOT, TINY_DATA, TINY_MODEL, config_flags, cpu_devices_env, distributed_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multihost_commands")]

STEPS = 4
TRAIN = ["--config", "configs/reverse.py", *config_flags(
    model=TINY_MODEL, data=dict(TINY_DATA, batch_tokens=64, algorithmic_eval_examples=16),
    train=dict(steps=STEPS, log_every=1, checkpoint_every=2, eval_every=STEPS, eval_bleu="true", bleu_examples=7,
               average_last=0),
    mesh=dict(data=1, fsdp=4),
)]
SOURCES = ["1 2 3", "4 5 6 7", "8", "9 9 1", "2 4 6 8", "3 1", "7 7 7"]  # 7 lines: shares of 4 and 3


def _command(*args):
    return [sys.executable, "-m", "t2t_jax", *args]


def one_process(*args, stdin=b""):
    result = subprocess.run(_command(*args), cwd=ROOT, env=cpu_devices_env(1), capture_output=True, timeout=300,
                            input=stdin)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return result.stdout.decode()


def two_processes(*args_by_rank):
    """Runs each rank's arguments as one of 2 processes x 2 devices; returns (exit code, stdout, stderr) per rank."""
    port = free_port()
    processes = [subprocess.Popen(_command(*args), cwd=ROOT, env=cpu_devices_env(2, **distributed_env(port, rank)),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for rank, args in enumerate(args_by_rank)]
    outputs = [process.communicate(timeout=300) for process in processes]
    # stdout exactly as written: what gloo prints as it connects goes to stderr (distributed.keep_stdout_for_our_output)
    return [(process.returncode, out.decode(), err.decode()) for process, (out, err) in zip(processes, outputs)]


def _succeeded(results):
    for rank, (code, _, err) in enumerate(results):
        assert code == 0, f"process {rank} exited {code}:\n{err[-3000:]}"
    return results


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("multihost") / "run")
    _succeeded(two_processes(*[["train", *TRAIN, "--workdir", workdir]] * 2))
    return workdir


@pytest.fixture(scope="module")
def sources_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "sources.txt"
    path.write_text("".join(f"{line}\n" for line in SOURCES))
    return str(path)


def test_the_bleu_of_two_hosts_evaluating_shares_is_the_bleu_of_one(workdir, tmp_path):
    """Training's BLEU evaluation: each host decodes its share and the hypotheses are gathered in order, so the
    score is the one a single process gets for the same checkpoint and pairs (a host that scored only its own
    share, or pairs out of order, gives another number)."""
    from t2t_jax.configuration import load_workdir_config
    from t2t_jax.data import eval_pairs

    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    [evaluation] = [row for row in rows if row["kind"] == "eval"]
    pairs = eval_pairs(load_workdir_config(workdir).data, max_examples=7)
    (tmp_path / "src").write_text("".join(f"{source}\n" for source, _ in pairs))
    (tmp_path / "ref").write_text("".join(f"{target}\n" for _, target in pairs))
    scored = one_process("eval", "--workdir", workdir, "--checkpoint", str(STEPS),
                         "--source", str(tmp_path / "src"), "--reference", str(tmp_path / "ref"))
    bleu = float(scored.splitlines()[0].split()[1])
    assert evaluation["bleu"] == pytest.approx(bleu, abs=0.01), (evaluation, scored)


def test_decode_on_two_hosts_writes_every_line_in_input_order(workdir, sources_file, tmp_path):
    alone = one_process("decode", "--workdir", workdir, "--input", sources_file).splitlines()
    assert len(alone) == len(SOURCES)
    output = tmp_path / "together.txt"
    results = _succeeded(two_processes(*[["decode", "--workdir", workdir, "--input", sources_file,
                                          "--output", str(output)]] * 2))
    assert output.read_text().splitlines() == alone
    assert [out for _, out, _ in results] == ["", ""]  # only process 0 writes, and to --output


def test_a_model_trained_on_4_devices_averages_on_1_and_on_2_hosts(workdir):
    """average built the training mesh (fsdp=4) with no fallback: on fewer devices it failed."""
    assert "averaged checkpoints [2, 4]" in one_process("average", "--workdir", workdir, "--last", "2")
    results = _succeeded(two_processes(*[["average", "--workdir", workdir, "--last", "2"]] * 2))
    assert "averaged checkpoints [2, 4]" in results[0][1] and results[1][1] == ""
    decoded = one_process("decode", "--workdir", workdir, "--checkpoint", "averaged", "--input", "-")
    assert decoded == ""  # empty stdin: nothing to translate, and no error


def test_an_input_missing_on_one_host_is_one_error_on_both(workdir, sources_file, tmp_path):
    """Host 1 cannot read the input (a file on host 0's disk only): both exit 2 with one line naming process 1,
    instead of host 0 waiting in a collective for a host that has failed."""
    missing = str(tmp_path / "not-on-this-host.txt")
    started = time.time()
    results = two_processes(["decode", "--workdir", workdir, "--input", sources_file],
                            ["decode", "--workdir", workdir, "--input", missing])
    assert time.time() - started < 120
    for code, _, err in results:
        last = err.strip().splitlines()[-1]
        assert code == 2 and "Traceback" not in err, err[-3000:]
        assert last.startswith("error: process 1: input file") and "does not exist" in last, last


def test_a_diverging_run_ends_both_hosts_with_one_error_and_keeps_its_checkpoints(workdir, tmp_path):
    """The loss is a global sum, so every host sees it become nan at the same step: both exit 2 with the same
    line after the same step, none waits in a collective, and the checkpoints already saved stay as they were."""
    import shutil

    copy = str(tmp_path / "run")
    shutil.copytree(workdir, copy)
    before = sorted(os.listdir(os.path.join(copy, "checkpoints")))
    diverging = ["train", *TRAIN, "--workdir", copy, f"--config.train.steps={STEPS + 4}",
                 "--config.train.eval_every=1000", "--config.train.learning_rate=nan"]
    results = two_processes(diverging, diverging)
    lines = [err.strip().splitlines()[-1] for _, _, err in results]
    assert [code for code, _, _ in results] == [2, 2], [err[-2000:] for _, _, err in results]
    assert lines[0] == lines[1] and "loss became nan" in lines[0], lines
    assert sorted(os.listdir(os.path.join(copy, "checkpoints"))) == before
