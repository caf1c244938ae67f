"""Log files that agents upload, kept under `nodes/<nodeID>/` in the data directory.

A file path is accepted only if every segment is a plain name and the
resolved file lies inside its node's folder, whatever the encoding the
request used: no `..`, no `.`, no empty segments (an absolute path inside the
URL), no backslashes, no control characters, no symlinks.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path

from mmab_metrics.jobs import ID_PATTERN

_SEGMENT = re.compile(r"[A-Za-z0-9._+@=,~-]{1,255}", re.ASCII)
MAX_PATH_LENGTH = 1024
MAX_DEPTH = 32


class NodeFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._real_root = Path(os.path.realpath(self.root))
        self._lock = threading.Lock()

    def node_dir(self, node_id: str) -> Path | None:
        if not ID_PATTERN.fullmatch(node_id):
            return None
        return self._real_root / node_id

    def resolve(self, node_id: str, file_path: str) -> Path | None:
        """Return the file's location, or None if the path is not a node file path."""
        base = self.node_dir(node_id)
        if base is None or not file_path or len(file_path) > MAX_PATH_LENGTH:
            return None
        segments = file_path.split("/")
        if len(segments) > MAX_DEPTH:
            return None
        for segment in segments:
            if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
                return None
        target = base.joinpath(*segments)
        # Resolving catches a symlink planted anywhere along the path.
        real = Path(os.path.realpath(target))
        if real != target or not real.is_relative_to(base):
            return None
        return target

    def list(self, node_id: str) -> list[str]:
        """Return the node's file paths relative to its folder, sorted."""
        base = self.node_dir(node_id)
        if base is None or not base.is_dir():
            return []
        found = []
        for directory, _dirs, files in os.walk(base):
            for name in files:
                path = Path(directory, name)
                if path.is_symlink() or name.startswith(".upload-"):
                    continue
                found.append(path.relative_to(base).as_posix())
        return sorted(found)

    def read(self, node_id: str, file_path: str) -> bytes | None:
        target = self.resolve(node_id, file_path)
        if target is None:
            return None
        try:
            # O_NONBLOCK keeps a FIFO planted in the folder from hanging the read.
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read()
        finally:
            os.close(fd)

    def write(
        self,
        node_id: str,
        target: Path,
        data: bytes,
        *,
        append: bool,
        max_file_bytes: int,
        max_total_bytes: int,
    ) -> None:
        """Append to or replace a file, then apply the per-file and per-node caps."""
        with self._lock:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_dir():
                raise IsADirectoryError(str(target))
            old = b""
            if append and target.exists():
                old = target.read_bytes()
            content = _keep_newest(old + data, max_file_bytes)
            # A short random name, because `.upload-<name>` exceeds NAME_MAX (255) for long names.
            fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    os.fchmod(handle.fileno(), 0o644)
                    handle.write(content)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._trim_node(node_id, target, max_total_bytes)

    def _trim_node(self, node_id: str, keep: Path, max_total_bytes: int) -> None:
        """Delete the node's oldest-modified files until it fits its total cap."""
        base = self.node_dir(node_id)
        assert base is not None
        files = []
        for directory, _dirs, names in os.walk(base):
            for name in names:
                path = Path(directory, name)
                stat = path.lstat()
                files.append((stat.st_mtime_ns, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files, key=lambda item: item[0]):
            if total <= max_total_bytes:
                return
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
        if total > max_total_bytes and keep.exists():
            keep.write_bytes(_keep_newest(keep.read_bytes(), max_total_bytes))

    def delete_node(self, node_id: str) -> bool:
        base = self.node_dir(node_id)
        if base is None or not base.exists():
            return False
        shutil.rmtree(base)
        return True


def _keep_newest(content: bytes, limit: int) -> bytes:
    """Keep the newest `limit` bytes, starting at a line boundary when there is one."""
    if len(content) <= limit:
        return content
    tail = content[len(content) - limit :]
    newline = tail.find(b"\n")
    if 0 <= newline < len(tail) - 1:
        return tail[newline + 1 :]
    return tail
