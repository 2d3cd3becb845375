"""Every file a workdir holds goes through here, so that a local folder and gs://BUCKET/PATH behave the same.

Paths are etils.epath paths, orbax's own path layer. For gs:// both our files and orbax's small files go through
fsspec's gcsfs (EPATH_USE_TF=false unless you set it: one client, the one the tests run against an emulator);
orbax writes the arrays with TensorStore's GCS driver. STORAGE_EMULATOR_HOST (a local GCS emulator) is passed on
to TensorStore too, so one variable points every client at an emulator.

Object stores have neither rename nor append: one upload is already atomic, and an append-only log is rewritten
whole (`LineLog`). Other hosts of a multi-host run read what process 0 writes here, so writes are atomic.
"""

from __future__ import annotations

import os

from etils import epath

from t2t_jax.errors import UserError

os.environ.setdefault("EPATH_USE_TF", "false")
if os.environ.get("STORAGE_EMULATOR_HOST"):
    os.environ.setdefault("TENSORSTORE_GCS_HTTP_URL", os.environ["STORAGE_EMULATOR_HOST"])
    os.environ.setdefault("GOOGLE_AUTH_TOKEN_FOR_TESTING", "emulator")  # emulators take any token
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # no storage-control API to ask

SCHEMES = ("gs://",)


def is_remote(location: str) -> bool:
    return "://" in location


def path(location: str | os.PathLike) -> epath.Path:
    """`location` as an epath.Path: gs:// kept, a local path made absolute (orbax needs absolute paths)."""
    location = os.fspath(location)
    if is_remote(location):
        if not location.startswith(SCHEMES):
            raise UserError(f"{location}: unsupported storage scheme (use a local path or {', '.join(SCHEMES)})")
        return epath.Path(location)
    return epath.Path(os.path.abspath(os.path.expanduser(location)))


def join(location: str, *names: str) -> str:
    """`location/name/...` as a string, local or remote."""
    return os.fspath(path(location).joinpath(*names))


def exists(location: str) -> bool:
    return path(location).exists()


def is_file(location: str) -> bool:
    return path(location).is_file()


def read_bytes(location: str) -> bytes:
    return path(location).read_bytes()


def make_folder(location: str) -> None:
    path(location).mkdir(parents=True, exist_ok=True)


def write_atomically(location: str, data: bytes) -> None:
    """Readers see no file or all of it: a local file is written beside its place and renamed; an object is one
    upload, atomic by itself."""
    target = path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(location):
        target.write_bytes(data)
        return
    partial = target.parent / f"{target.name}.partial-{os.getpid()}"
    partial.write_bytes(data)
    os.replace(partial, target)


def move_folder(source: epath.Path, destination: epath.Path) -> None:
    """Moves a folder. An object store has no rename: every object is copied first, and only then are the
    originals deleted, so an interruption leaves two copies, never none."""
    if not is_remote(os.fspath(source)):
        destination.parent.mkdir(parents=True, exist_ok=True)
        source.rename(destination)
        return
    import fsspec

    files = fsspec.filesystem("gs")
    files.copy(os.fspath(source), os.fspath(destination), recursive=True)
    files.rm(os.fspath(source), recursive=True)


def upload_folder(local: str, destination: epath.Path) -> None:
    """Copies the files of the local folder `local` (flat) into `destination`."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in sorted(os.listdir(local)):
        (destination / name).write_bytes(epath.Path(local, name).read_bytes())


def download_folder(source: epath.Path, local: str) -> None:
    """Copies the files of `source` (flat) into the local folder `local`."""
    for item in source.iterdir():
        epath.Path(local, item.name).write_bytes(item.read_bytes())


class LineLog:
    """An append-only text file (metrics.jsonl). Local: appended. Remote: objects cannot be appended to, so the
    lines so far (those already there when the run resumed included) are uploaded whole after each write."""

    def __init__(self, location: str) -> None:
        self._path = path(location)
        self._remote = is_remote(location)
        if self._remote:
            self._text = self._path.read_text() if self._path.exists() else ""
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._path, "a", encoding="utf-8")

    def write(self, line: str) -> None:
        if self._remote:
            self._text += line + "\n"
            self._path.write_text(self._text)
        else:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        if not self._remote:
            self._file.close()

