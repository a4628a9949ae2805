"""Complete lines from log files that grow, get renamed away and get truncated: a plain tailer.

A :class:`SourceTailer` follows every file its globs match, identified by ``(device, inode)``
rather than by path, and reads each from its committed :class:`Position`. It never moves a
position on its own account past a line: :meth:`SourceTailer.poll` returns lines and
:meth:`SourceTailer.commit` advances the positions once the caller has shipped them, so lines a
failed publish did not deliver are read again at the next poll.

- **Partial lines** wait: a line is returned only once its newline is there. The one exception
  is the last line of a file renamed away or deleted, shipped as it is once the file has not
  grown for ``rotate_wait_s`` (nothing will complete it).
- **Rename rotation** (``app.log`` -> ``app.log.1``, a new ``app.log``): the old file stays open
  and is drained through its descriptor, before the new file, which is read from offset 0.
- **Copytruncate** (the file is copied, then truncated in place): a size below the position, or
  a first line that differs from the one recorded (the *fingerprint*; the file was truncated and
  has grown past the old position again), restarts the file at offset 0.
- **Over-long lines** are cut at ``max_line_bytes`` and marked ``truncated``; the rest of such a
  line is skipped (``Position.skipping`` survives a restart).
- **Restarts**: a stored position whose file is no longer matched by a glob (rotated while the
  shipper was down) is looked for by inode in its old directory and drained if found.

Example::

    tailer = SourceTailer(["/var/log/app/*.log"], store.load("app"), 16384, 5.0, time.time)
    lines = tailer.poll(500)
    ...publish lines...
    tailer.commit(lines)
    store.save("app", *tailer.take_changes())
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import BinaryIO

__all__ = ["FileKey", "Line", "Position", "SourceTailer"]

logger = logging.getLogger(__name__)

#: Bytes read from a file at once (at least one over-long line more).
CHUNK_BYTES = 64 * 1024
#: A file's fingerprint covers its first line, or at most this many of its first bytes.
FINGERPRINT_BYTES = 1024


@dataclass(frozen=True, order=True)
class FileKey:
    """Identity of a file that survives a rename: its device and inode numbers."""

    dev: int
    ino: int


@dataclass(frozen=True)
class Position:
    """How far one file is shipped: every byte before ``offset``.

    ``skipping``: ``offset`` lies inside an over-long line whose head was shipped; the bytes up to
    the next newline are dropped. ``fingerprint``: digest of the file's first ``fp_len`` bytes
    ("" until the first line is complete), which tells a truncated-and-rewritten file apart.
    """

    path: str
    key: FileKey
    offset: int = 0
    skipping: bool = False
    fingerprint: str = ""
    fp_len: int = 0


@dataclass(frozen=True)
class Line:
    """One line read from a file: its bytes ``[offset, end)`` and the text without the newline."""

    path: str
    key: FileKey
    fingerprint: str
    offset: int
    end: int
    text: str
    truncated: bool = False


@dataclass
class _Tracked:
    file: BinaryIO
    pos: Position
    size: int
    changed_at: float
    detached: bool = False  # no glob matches it any more (renamed away or deleted)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _decode(raw: bytes, cut: bool) -> str:
    if cut:
        # Do not end a cut line in the middle of a UTF-8 sequence.
        lead = len(raw) - 1
        while lead > 0 and len(raw) - lead < 4 and raw[lead] & 0xC0 == 0x80:
            lead -= 1
        if raw and raw[lead] >= 0xC0:
            need = 2 if raw[lead] < 0xE0 else 3 if raw[lead] < 0xF0 else 4
            if len(raw) - lead < need:
                raw = raw[:lead]
    return raw.removesuffix(b"\r").decode("utf-8", "replace")


def _find_by_inode(position: Position) -> str | None:
    """The path of ``position``'s file in its old directory (a rotated name), if it is there."""
    try:
        with os.scandir(os.path.dirname(position.path) or ".") as entries:
            for entry in entries:
                if entry.inode() != position.key.ino or not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_dev == position.key.dev:
                    return entry.path
    except OSError:
        return None
    return None


class SourceTailer:
    """Every file matched by one source's globs; see the module docstring.

    Args:
        globs: absolute glob patterns, evaluated at every poll.
        positions: the committed positions stored for this source.
        max_line_bytes: longer lines are cut here and marked truncated.
        rotate_wait_s: a detached file is read this long after it last grew.
        clock: seconds, for the rotate wait.
    """

    def __init__(
        self,
        globs: list[str],
        positions: Iterable[Position],
        max_line_bytes: int,
        rotate_wait_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._globs = globs
        self._saved: dict[FileKey, Position] | None = {p.key: p for p in positions}
        self._max = max_line_bytes
        self._rotate_wait = rotate_wait_s
        self._clock = clock
        self._files: dict[FileKey, _Tracked] = {}
        self._dirty: dict[FileKey, Position] = {}
        self._gone: set[FileKey] = set()

    @property
    def file_count(self) -> int:
        return len(self._files)

    @property
    def unread_bytes(self) -> int:
        """Bytes of the followed files beyond their committed positions, as of the last poll."""
        return sum(max(0, t.size - t.pos.offset) for t in self._files.values())

    def positions(self) -> list[Position]:
        return [t.pos for t in self._files.values()]

    def poll(self, max_lines: int) -> list[Line]:
        """Look for new, renamed and removed files, then read up to ``max_lines`` lines.

        Files renamed away are read first (their lines are older), then the others by path.
        """
        self._scan()
        lines: list[Line] = []
        order = sorted(self._files.values(), key=lambda t: (not t.detached, t.pos.path))
        for tracked in order:
            if len(lines) >= max_lines:
                break
            lines.extend(self._read(tracked, max_lines - len(lines)))
        self._close_finished()
        return lines

    def commit(self, lines: Iterable[Line]) -> None:
        """Mark ``lines`` (a prefix of what :meth:`poll` returned, in order) as shipped."""
        for line in lines:
            tracked = self._files.get(line.key)
            if tracked is None:
                continue
            tracked.pos = replace(tracked.pos, offset=line.end, skipping=line.truncated)
            self._dirty[line.key] = tracked.pos

    def take_changes(self) -> tuple[list[Position], list[FileKey]]:
        """Positions changed since the last call, and keys of files no longer followed."""
        dirty, gone = list(self._dirty.values()), sorted(self._gone)
        self._dirty.clear()
        self._gone.clear()
        return dirty, gone

    def close(self) -> None:
        for tracked in self._files.values():
            tracked.file.close()
        self._files.clear()

    # Scanning ------------------------------------------------------------------------------

    def _scan(self) -> None:
        now = self._clock()
        seen: set[FileKey] = set()
        for pattern in self._globs:
            for path in sorted(glob.glob(pattern)):
                key = self._follow(path, now)
                if key is not None:
                    seen.add(key)
        if self._saved is not None:
            # First scan after a start: stored files no glob matches were rotated meanwhile.
            for position in self._saved.values():
                found = _find_by_inode(position)
                if found is None or self._open(found, now, detached=True, saved=position) is None:
                    logger.info("log file %s is gone; dropping its position", position.path)
                    self._gone.add(position.key)
            self._saved = None
        for key, tracked in self._files.items():
            if key not in seen and not tracked.detached:
                tracked.detached, tracked.changed_at = True, now

    def _follow(self, path: str, now: float) -> FileKey | None:
        try:
            st = os.stat(path)
        except OSError:
            return None  # removed since the glob
        if not stat.S_ISREG(st.st_mode):
            return None
        key = FileKey(st.st_dev, st.st_ino)
        tracked = self._files.get(key)
        if tracked is not None:
            tracked.detached = False
            if tracked.pos.path != path:
                tracked.pos = replace(tracked.pos, path=path)
            return key
        return self._open(path, now, detached=False)

    def _open(
        self, path: str, now: float, *, detached: bool, saved: Position | None = None
    ) -> FileKey | None:
        """Follow the file at ``path`` from its stored position (``saved``, or looked up)."""
        try:
            file = open(path, "rb", buffering=0)  # kept open while followed: see _close_finished
        except OSError as exc:
            logger.warning("cannot open log file %s: %s", path, exc)
            return None
        st = os.fstat(file.fileno())
        # The descriptor is the truth: the path may have been replaced since it was stat'ed.
        key = FileKey(st.st_dev, st.st_ino)
        if key in self._files or (saved is not None and saved.key != key):
            file.close()
            return key if key in self._files else None
        if saved is None and self._saved is not None:
            saved = self._saved.pop(key, None)
        pos = replace(saved, path=path) if saved is not None else Position(path, key)
        self._files[key] = _Tracked(file, pos, st.st_size, now, detached)
        return key

    def _close_finished(self) -> None:
        now = self._clock()
        for key, tracked in list(self._files.items()):
            idle = now - tracked.changed_at >= self._rotate_wait
            if tracked.detached and idle and tracked.pos.offset >= tracked.size:
                tracked.file.close()
                del self._files[key]
                self._dirty.pop(key, None)
                self._gone.add(key)

    # Reading -------------------------------------------------------------------------------

    def _read(self, tracked: _Tracked, max_lines: int) -> list[Line]:
        fd = tracked.file.fileno()
        size = os.fstat(fd).st_size
        if size != tracked.size:
            tracked.size, tracked.changed_at = size, self._clock()
        self._check_truncation(tracked, fd, size)
        if tracked.pos.skipping and not self._skip(tracked, fd):
            return []
        self._set_fingerprint(tracked, fd)
        pos = tracked.pos
        lines: list[Line] = []
        cursor = pos.offset
        window = self._max + 1
        chunk = max(CHUNK_BYTES, window)
        while len(lines) < max_lines:
            data = os.pread(fd, chunk, cursor)
            start = 0
            while len(lines) < max_lines:
                newline = data.find(b"\n", start, start + window)
                if newline < 0:
                    break
                raw = data[start:newline]
                lines.append(self._line(pos, cursor + start, cursor + newline + 1, raw))
                start = newline + 1
            rest = len(data) - start
            if len(lines) >= max_lines:
                break
            if rest > self._max:
                # No newline within max_line_bytes: ship the head, skip the rest next time.
                cut = data[start : start + self._max]
                lines.append(
                    self._line(pos, cursor + start, cursor + start + self._max, cut, cut=True)
                )
                break
            if len(data) < chunk:  # end of file, maybe inside a partial line
                final = tracked.detached and self._clock() - tracked.changed_at >= self._rotate_wait
                if rest and final:
                    end = cursor + len(data)
                    lines.append(self._line(pos, cursor + start, end, data[start:]))
                break
            # A full chunk read: go on from the first byte not returned (start > 0 here).
            cursor += start
        return lines

    def _line(self, pos: Position, offset: int, end: int, raw: bytes, cut: bool = False) -> Line:
        text = _decode(raw, cut)
        return Line(pos.path, pos.key, pos.fingerprint, offset, end, text, truncated=cut)

    def _check_truncation(self, tracked: _Tracked, fd: int, size: int) -> None:
        pos = tracked.pos
        if size >= pos.offset and (
            not pos.fingerprint or _digest(os.pread(fd, pos.fp_len, 0)) == pos.fingerprint
        ):
            return
        logger.info("log file %s was truncated or replaced; reading it from the start", pos.path)
        tracked.pos = Position(pos.path, pos.key)
        self._dirty[pos.key] = tracked.pos

    def _skip(self, tracked: _Tracked, fd: int) -> bool:
        """Drop the rest of an over-long line; True once its newline was found."""
        offset = tracked.pos.offset
        found = False
        while data := os.pread(fd, CHUNK_BYTES, offset):
            newline = data.find(b"\n")
            if newline >= 0:
                offset += newline + 1
                found = True
                break
            offset += len(data)
        # Safe to commit directly: nothing before the skipped bytes is waiting to be shipped.
        tracked.pos = replace(tracked.pos, offset=offset, skipping=not found)
        self._dirty[tracked.pos.key] = tracked.pos
        return found

    def _set_fingerprint(self, tracked: _Tracked, fd: int) -> None:
        if tracked.pos.fingerprint:
            return
        head = os.pread(fd, FINGERPRINT_BYTES, 0)
        newline = head.find(b"\n")
        if newline >= 0:
            head = head[: newline + 1]
        elif len(head) < FINGERPRINT_BYTES and not tracked.detached:
            return  # the first line is not complete yet, so no line can be shipped
        if head:
            tracked.pos = replace(tracked.pos, fingerprint=_digest(head), fp_len=len(head))
