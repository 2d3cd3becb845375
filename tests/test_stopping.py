"""The stop decision's parts on one process (the many-process agreement is tested in test_scale.py)."""

import subprocess
import sys

from train_helpers import ROOT

from t2t_jax.train.stopping import SIGTERM, TIME_BUDGET, StopVote

SIGNAL_TWICE = """
import os, signal, time
from t2t_jax.train.stopping import SigtermFlag
flag = SigtermFlag()
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.5)
print("first:", flag.raised, flush=True)
os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM does not wait for a checkpoint
time.sleep(5)
print("still running", flush=True)
"""


def test_the_first_sigterm_sets_the_flag_and_the_second_ends_the_process():
    result = subprocess.run([sys.executable, "-c", SIGNAL_TWICE], cwd=ROOT, capture_output=True, timeout=60)
    assert result.stdout.decode().splitlines() == ["first: True"], result.stdout.decode()
    assert result.returncode == -15


def test_one_process_decides_at_once_with_every_reason():
    vote = StopVote()
    assert vote.decide((False, False)) == ((), 0.0)
    assert vote.decide((True, False), 2.5) == ((SIGTERM,), 2.5)
    assert vote.decide((True, True)) == ((SIGTERM, TIME_BUDGET), 0.0)
    assert vote.settle() == ()
