"""t2t_jax.storage on local paths (gs:// is tests/test_object_storage.py, against an emulator)."""

import os

import pytest
from train_helpers import assert_clear_error, run_cli

from t2t_jax import storage
from t2t_jax.errors import UserError


def test_local_files_are_written_whole_and_folders_moved_with_everything_in_them(tmp_path):
    target = str(tmp_path / "a" / "b" / "config.json")
    storage.write_atomically(target, b"{}")
    assert storage.read_bytes(target) == b"{}" and os.listdir(tmp_path / "a" / "b") == ["config.json"]
    (tmp_path / "step" / "state").mkdir(parents=True)
    (tmp_path / "step" / "state" / "array").write_bytes(b"x")
    storage.move_folder(storage.path(str(tmp_path / "step")), storage.path(str(tmp_path / "corrupt" / "step")))
    assert (tmp_path / "corrupt" / "step" / "state" / "array").read_bytes() == b"x"
    assert not (tmp_path / "step").exists()


def test_a_line_log_keeps_the_lines_of_earlier_runs(tmp_path):
    location = str(tmp_path / "metrics.jsonl")
    for line in ("first", "second"):
        log = storage.LineLog(location)
        log.write(line)
        log.close()
    assert (tmp_path / "metrics.jsonl").read_text() == "first\nsecond\n"


def test_an_unsupported_scheme_is_one_clear_error():
    with pytest.raises(UserError, match="unsupported storage scheme"):
        storage.path("s3://bucket/run")
    assert_clear_error(run_cli("decode", "--workdir", "s3://bucket/run", stdin=b"1 2\n"), "s3://bucket/run",
                       "unsupported storage scheme")
