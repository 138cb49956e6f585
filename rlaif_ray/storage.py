"""Where a run keeps its outputs: a local directory or a URI pyarrow understands
(`s3://bucket/prefix`, `gs://bucket/prefix`, `hdfs://...`), through one small path type.

Every file a run writes (data parts, metrics.jsonl, summary, plots, the review queue,
policy/, Ray Train's checkpoints) goes through `StoragePath`, so the same code serves a
laptop and a cluster whose nodes share only an object store. Credentials and endpoints
come from the standard environment of each process (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION; GOOGLE_APPLICATION_CREDENTIALS ...), never
from the config file.

Writes are whole-file: locally a temp file renamed into place, on an object store one
upload of a complete buffer. Either way a reader never sees half a file."""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")  # what pyarrow opens


def is_uri(location: str | Path) -> bool:
    """Whether `location` names a filesystem by scheme (`s3://...`), not a local path."""
    return "://" in str(location) and not str(location).startswith("file://")


def scheme_problem(location: str) -> str | None:
    """Why `location` cannot be a run directory (None: it can). Checked offline."""
    if not is_uri(location):
        return None
    scheme, _, rest = location.partition("://")
    if scheme not in SCHEMES:
        return f"has scheme {scheme!r}; use a local path or one of {', '.join(SCHEMES)}"
    if not rest.strip("/"):
        return "names no bucket or path"
    return None


@contextmanager
def replacing_dir(target: Path) -> Iterator[Path]:
    """A new directory next to `target` to fill; when the block completes it replaces
    `target` whole (a reader never sees half of it), and on an error it is removed. It gets
    the permissions any `mkdir` gets (`tempfile.mkdtemp` makes 0700, which the directory
    would keep: a policy or model another user serves or reads would be unreadable)."""
    staging = target.parent / f".{target.name}-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def join(parent: str, child: str) -> str:
    """`child` under `parent`, a local directory or a URI."""
    return f"{parent.rstrip('/')}/{child.lstrip('/')}" if is_uri(parent) else \
        os.path.join(parent, child)


class StoragePath:
    """A file or directory in local or remote storage, with the part of pathlib's interface
    rlaif-ray needs. `str()` gives the location a user passes back (a URI or a local
    absolute path)."""

    def __init__(self, fs: pafs.FileSystem, path: str, scheme: str = "") -> None:
        self.fs, self.path, self.scheme = fs, path.rstrip("/") or "/", scheme

    @classmethod
    def of(cls, location: Location) -> StoragePath:
        """The storage path of a local path (made absolute) or a URI."""
        if isinstance(location, StoragePath):
            return location
        location = str(location)
        if not is_uri(location):
            return cls(pafs.LocalFileSystem(), os.path.abspath(location.removeprefix("file://")))
        try:
            fs, path = pafs.FileSystem.from_uri(location)
        except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"cannot open storage {location!r}: {err}") from None
        return cls(fs, path, location.split("://", 1)[0])

    # -- naming ------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return not self.scheme

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0] if "." in self.name else self.name

    @property
    def parent(self) -> StoragePath:
        return StoragePath(self.fs, self.path.rsplit("/", 1)[0] or "/", self.scheme)

    def __truediv__(self, name: str) -> StoragePath:
        return StoragePath(self.fs, f"{self.path}/{str(name).strip('/')}", self.scheme)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.path}" if self.scheme else self.path

    def __fspath__(self) -> str:
        """A local path for os/pathlib/pyarrow (an object store has none)."""
        if not self.is_local:
            raise TypeError(f"{self} is not on the local filesystem")
        return self.path

    def __repr__(self) -> str:
        return f"StoragePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoragePath) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: StoragePath) -> bool:
        return str(self) < str(other)

    # -- queries -------------------------------------------------------------------------
    def _info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    def size(self) -> int | None:
        """The file's size in bytes (None: no such file)."""
        info = self._info()
        return info.size if info.type == pafs.FileType.File else None

    def iterdir(self) -> list[StoragePath]:
        """The entries directly under this directory (none when it does not exist)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted(StoragePath(self.fs, info.path, self.scheme)
                      for info in self.fs.get_file_info(selector))

    def glob(self, pattern: str) -> list[StoragePath]:
        """Entries matching `pattern`, `/`-separated fnmatch segments (no `**`)."""
        found = [self]
        for segment in pattern.strip("/").split("/"):
            if not any(c in segment for c in "*?["):  # listed entries exist; named ones may not
                found = [p / segment for p in found if (p / segment).exists()]
                continue
            found = [child for p in found for child in p.iterdir()
                     if fnmatch.fnmatchcase(child.name, segment)]
        return sorted(found)

    # -- reading and writing ---------------------------------------------------------------
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as handle:
            return handle.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    @contextmanager
    def open_output(self) -> Iterator[pa.NativeFile]:
        """A stream that becomes this file only when the block completes: locally a temp
        file renamed into place, remotely a memory buffer uploaded at the end (an object
        store's stream would publish half a file on an error)."""
        if not self.is_local:
            buffer = pa.BufferOutputStream()
            yield buffer
            with self.fs.open_output_stream(self.path) as handle:
                handle.write(buffer.getvalue())
            return
        self.parent.mkdir()
        target = f"{self.path}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            with self.fs.open_output_stream(target) as handle:
                yield handle
            self.fs.move(target, self.path)
        finally:
            if os.path.exists(target):
                os.remove(target)

    def write_bytes(self, data: bytes) -> None:
        with self.open_output() as handle:
            handle.write(data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def append_text(self, text: str) -> None:
        """Append to the file (an object store rewrites it: keep such files small)."""
        if self.is_local:
            self.parent.mkdir()
            with open(self.path, "a") as handle:
                handle.write(text)
            return
        self.write_text((self.read_text() if self.exists() else "") + text)

    def mkdir(self) -> None:
        """Create the directory and its parents (object stores need none)."""
        if self.is_local:
            os.makedirs(self.path, exist_ok=True)

    def rmtree(self) -> None:
        """Delete this directory and everything under it (nothing when absent)."""
        if self.is_local:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.is_dir():
            self.fs.delete_dir(self.path)

    def unlink(self) -> None:
        if self.exists():
            self.fs.delete_file(self.path)

    # -- moving whole trees ------------------------------------------------------------------
    def upload(self, local: str | Path) -> None:
        """Copy a local file or directory tree here (replacing files of the same name)."""
        self.parent.mkdir()
        pafs.copy_files(str(local), self.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)

    @contextmanager
    def local_copy(self) -> Iterator[Path]:
        """This file or directory as a local path: itself when local, else a temporary
        download removed after the block."""
        if self.is_local:
            yield Path(self.path)
            return
        scratch = Path(tempfile.mkdtemp(prefix="rlaif-storage-"))
        try:
            target = scratch / self.name
            if self.is_file():
                target.write_bytes(self.read_bytes())
            else:
                target.mkdir()
                pafs.copy_files(self.path, str(target), source_filesystem=self.fs,
                                destination_filesystem=pafs.LocalFileSystem())
            yield target
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


Location = str | Path | StoragePath  # what functions taking a place in storage accept
