"""A multi-host process's stdout carries only our output: what native libraries print on descriptor 1 (gloo, as
the processes connect) goes to stderr, so that `decode` on several hosts writes translations and nothing else."""

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import os
    from t2t_jax.distributed import keep_stdout_for_our_output
    print("before", flush=True)
    keep_stdout_for_our_output()
    os.write(1, b"0 is connected to 1 peer ranks\\n")  # what gloo's C++ prints
    print("ours")
""")


def test_native_output_on_descriptor_1_goes_to_stderr_and_ours_stays_on_stdout():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "before\nours\n"
    assert "0 is connected to 1 peer ranks" in result.stderr
