"""The tailer on real files: appends, partial lines, rotation, truncation, over-long lines."""

from __future__ import annotations

import os
from pathlib import Path

from actors.logship.tail import Line, Position, SourceTailer
from tests.unit._observability_helpers import Clock

MAX = 256


def tailer(
    directory: Path, clock: Clock, positions: list[Position] | None = None, pattern: str = "*.log"
) -> SourceTailer:
    return SourceTailer([str(directory / pattern)], positions or [], MAX, 5.0, clock)


def append(path: Path, data: str | bytes) -> None:
    with path.open("ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def texts(lines: list[Line]) -> list[str]:
    return [line.text for line in lines]


def ship(t: SourceTailer, max_lines: int = 100) -> list[str]:
    """One poll whose lines are all committed, as a shipper does after the acks."""
    lines = t.poll(max_lines)
    t.commit(lines)
    return texts(lines)


def test_appended_lines_are_read_once_and_a_partial_line_waits(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "one\ntwo\r\nthr")
    t = tailer(tmp_path, Clock())
    lines = t.poll(100)
    assert texts(lines) == ["one", "two"]
    assert [(line.offset, line.end) for line in lines] == [(0, 4), (4, 9)]
    assert lines[0].fingerprint and not lines[0].truncated
    t.commit(lines)
    assert t.unread_bytes == 3  # the partial "thr"
    assert ship(t) == []
    append(log, "ee\n")
    assert ship(t) == ["three"]
    assert ship(t) == []


def test_lines_not_committed_are_read_again(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "a\nb\nc\n")
    t = tailer(tmp_path, Clock())
    first = t.poll(2)
    assert texts(first) == ["a", "b"]
    t.commit(first[:1])  # only "a" was acknowledged
    assert texts(t.poll(100)) == ["b", "c"]


def test_rename_rotation_drains_the_old_file_first_then_closes_it(tmp_path: Path) -> None:
    clock = Clock()
    log = tmp_path / "app.log"
    append(log, "1\n2\n")
    t = tailer(tmp_path, clock)
    assert ship(t) == ["1", "2"]
    old_key = t.positions()[0].key
    append(log, "3\n")
    log.rename(tmp_path / "app.log.1")
    # The writer still has the old file open and writes once more before reopening.
    append(tmp_path / "app.log.1", "4\n")
    append(log, "new 1\n")
    assert ship(t) == ["3", "4", "new 1"]
    assert t.file_count == 2
    clock.advance(5.0)
    assert ship(t) == []
    assert t.file_count == 1
    _, gone = t.take_changes()
    assert gone == [old_key]


def test_the_last_partial_line_of_a_rotated_file_is_shipped_after_the_wait(tmp_path: Path) -> None:
    clock = Clock()
    log = tmp_path / "app.log"
    append(log, "done\nunfinished")
    t = tailer(tmp_path, clock)
    assert ship(t) == ["done"]
    log.unlink()  # deleted, but still open here
    assert ship(t) == []
    clock.advance(5.0)
    assert ship(t) == ["unfinished"]
    assert ship(t) == []
    assert t.file_count == 0


def test_copytruncate_restarts_the_file_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "old 1\nold 2\n")
    t = tailer(tmp_path, Clock())
    assert ship(t) == ["old 1", "old 2"]
    os.truncate(log, 0)
    append(log, "new\n")
    assert ship(t) == ["new"]


def test_a_truncated_file_that_grew_past_the_old_position_is_read_from_zero(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    append(log, "first line\n")
    t = tailer(tmp_path, Clock())
    assert ship(t) == ["first line"]
    os.truncate(log, 0)
    append(log, "another beginning\nand more\n")  # longer than the old position
    assert ship(t) == ["another beginning", "and more"]


def test_an_over_long_line_is_cut_marked_and_its_rest_skipped(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "A" * 1000 + "\nnext\n")
    t = tailer(tmp_path, Clock())
    (cut,) = t.poll(100)
    assert (cut.text, cut.truncated, cut.end) == ("A" * MAX, True, MAX)
    t.commit([cut])
    assert ship(t) == ["next"]


def test_an_over_long_line_still_being_written_is_skipped_up_to_its_newline(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    append(log, "B" * 300)
    t = tailer(tmp_path, Clock())
    assert ship(t) == ["B" * MAX]
    append(log, "B" * 500)
    assert ship(t) == []
    assert t.positions()[0].skipping
    append(log, "B\nok\n")
    assert ship(t) == ["ok"]
    assert not t.positions()[0].skipping


def test_a_line_of_exactly_the_limit_is_whole(tmp_path: Path) -> None:
    append(tmp_path / "app.log", "C" * MAX + "\n")
    (line,) = tailer(tmp_path, Clock()).poll(10)
    assert (len(line.text), line.truncated) == (MAX, False)


def test_a_cut_never_splits_a_utf8_character(tmp_path: Path) -> None:
    append(tmp_path / "app.log", "é" * 200 + "\n")  # two bytes each, cut at 256
    (line,) = tailer(tmp_path, Clock()).poll(10)
    assert line.truncated and line.text == "é" * 128


def test_more_lines_than_one_chunk_are_all_read(tmp_path: Path) -> None:
    append(tmp_path / "app.log", "".join(f"line {i:06d}\n" for i in range(20_000)))
    t = tailer(tmp_path, Clock())
    got = ship(t, 50_000)
    assert len(got) == 20_000 and got[-1] == "line 019999"


def test_a_restart_resumes_from_the_stored_positions(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "a\nb\n")
    t = tailer(tmp_path, Clock())
    assert ship(t) == ["a", "b"]
    saved, _ = t.take_changes()
    t.close()
    append(log, "c\n")
    assert ship(tailer(tmp_path, Clock(), saved)) == ["c"]


def test_a_file_rotated_while_stopped_is_found_by_inode_and_drained(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "a\n")
    t = tailer(tmp_path, Clock())
    assert ship(t) == ["a"]
    saved, _ = t.take_changes()
    t.close()
    append(log, "b\n")
    log.rename(tmp_path / "app.log.1")  # no longer matched by *.log
    append(log, "c\n")
    assert ship(tailer(tmp_path, Clock(), saved)) == ["b", "c"]


def test_a_stored_file_that_is_gone_is_forgotten(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "a\n")
    t = tailer(tmp_path, Clock())
    ship(t)
    saved, _ = t.take_changes()
    t.close()
    log.unlink()
    again = tailer(tmp_path, Clock(), saved)
    assert ship(again) == []
    assert again.take_changes() == ([], [saved[0].key])
