"""The on-disk spool alone: order, bound, delivery offsets, torn lines, exclusive ownership."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.storage._spool import DATA_NAME, OFFSET_NAME, Spool, SpoolBusyError


def records(n: int, start: int = 0) -> list[bytes]:
    return [f"vitals,device=d hr={i}.0,seq={i}i {1000 + i}".encode() for i in range(start, start + n)]


def drain_all(spool: Spool, batch: int) -> list[bytes]:
    out: list[bytes] = []
    while True:
        lines, end = spool.peek(batch)
        if not lines:
            return out
        out += lines
        spool.commit(end)


def test_records_come_back_in_order_and_the_file_is_reclaimed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20, reclaim_bytes=0)
    assert spool.append(records(10)) == 10
    assert spool.append(records(5, start=10)) == 5
    assert spool.pending_lines == 15
    assert drain_all(spool, batch=4) == records(15)
    assert spool.pending_lines == 0 and spool.pending_bytes == 0
    assert (tmp_path / DATA_NAME).stat().st_size == 0
    spool.close()


def test_a_small_delivered_file_is_reclaimed_on_close_not_after_every_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)  # reclaim_bytes: min(1 MiB, max/4) = 256 KiB
    spool.append(records(10))
    drain_all(spool, batch=3)
    size = (tmp_path / DATA_NAME).stat().st_size
    assert size > 0 and int((tmp_path / OFFSET_NAME).read_text()) == size  # delivered, not truncated
    spool.append(records(2, start=10))
    assert drain_all(spool, batch=10) == records(2, start=10)
    spool.close()
    assert (tmp_path / DATA_NAME).stat().st_size == 0
    assert int((tmp_path / OFFSET_NAME).read_text()) == 0
    again = Spool(tmp_path, 1 << 20)
    assert again.pending_lines == 0
    again.close()


def test_positions_only_grow_across_truncation_and_compaction(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1 << 20)
    first.append(records(3))
    first.close()  # 3 left over for the next owner: numbered first
    one = len(records(1)[0]) + 1  # records 0-9 are all this long
    spool = Spool(tmp_path, 9 * one, reclaim_bytes=0)
    assert (spool.appended_lines, spool.delivered_lines, spool.mark) == (3, 0, 0)
    spool.append(records(4, start=3))
    assert (spool.appended_lines, spool.mark) == (7, 4 * one)
    _, end = spool.peek(5)
    spool.commit(end)
    assert spool.delivered_lines == 5
    assert spool.append(records(4, start=7)) == 4  # compaction: 2 undelivered + 4 new in a fresh file
    assert (spool.appended_lines, spool.delivered_lines) == (11, 5)
    assert spool.mark == sum(len(r) + 1 for r in records(8, start=3))
    assert drain_all(spool, 100) == records(6, start=5)  # emptied: the file is truncated
    assert (tmp_path / DATA_NAME).stat().st_size == 0
    assert (spool.appended_lines, spool.delivered_lines) == (11, 11)
    spool.close()


def test_undelivered_records_survive_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append(records(10))
    lines, end = spool.peek(3)
    spool.commit(end)
    lines, _ = spool.peek(3)  # read but not acknowledged: must come back
    spool.close()
    again = Spool(tmp_path, 1 << 20)
    assert again.pending_lines == 7
    assert drain_all(again, batch=100) == records(7, start=3)
    again.close()


def test_bound_refuses_what_does_not_fit(tmp_path: Path) -> None:
    one = len(records(1)[0]) + 1
    spool = Spool(tmp_path, 10 * one)
    assert spool.append(records(6)) == 6
    assert spool.append(records(6, start=6)) == 4  # 2 refused: caller counts them dropped
    assert spool.size_bytes <= spool.max_bytes
    assert drain_all(spool, 100) == records(10)
    spool.close()


def test_compaction_reclaims_the_delivered_prefix(tmp_path: Path) -> None:
    one = len(records(1)[0]) + 1
    spool = Spool(tmp_path, 10 * one)
    spool.append(records(10))
    _, end = spool.peek(6)
    spool.commit(end)  # 4 left; the file still holds 10
    assert spool.append(records(5, start=10)) == 5  # fits only after compaction
    assert int((tmp_path / OFFSET_NAME).read_text()) == 0
    assert drain_all(spool, 3) == records(4, start=6) + records(5, start=10)
    spool.close()


def test_torn_last_line_is_cut_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append(records(3))
    spool.close()
    with open(tmp_path / DATA_NAME, "ab") as f:
        f.write(b"vitals,device=d hr=1")  # killed mid-append
    again = Spool(tmp_path, 1 << 20)
    assert again.pending_lines == 3
    assert again.append(records(1, start=3)) == 1
    assert drain_all(again, 10) == records(4)
    again.close()


def test_corrupt_offset_file_means_resend_not_skip(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append(records(4))
    spool.close()
    (tmp_path / OFFSET_NAME).write_text("garbage")
    again = Spool(tmp_path, 1 << 20)
    assert drain_all(again, 10) == records(4)
    again.close()


def test_one_owner_per_folder(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1024)
    with pytest.raises(SpoolBusyError, match="in use"):
        Spool(tmp_path, 1024)
    first.close()
    Spool(tmp_path, 1024).close()


def test_commit_outside_range_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1024)
    spool.append(records(1))
    with pytest.raises(ValueError, match="outside"):
        spool.commit(10**6)
    spool.close()
