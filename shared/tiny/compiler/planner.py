"""Static arena planning: tensor lifetimes from the op order, greedy-by-size first-fit placement."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Buffer:
    """One activation buffer: `size_bytes`, alive from op `first` to op `last` (inclusive)."""

    key: int
    size_bytes: int
    first: int
    last: int


@dataclass
class ArenaPlan:
    """Byte offset of every buffer in one arena of `arena_bytes` (a multiple of `align_bytes`)."""

    arena_bytes: int
    offsets: dict[int, int] = field(default_factory=dict)
    buffers: list[Buffer] = field(default_factory=list)
    align_bytes: int = 4

    def overlaps(self) -> list[tuple[int, int]]:
        """Pairs of buffers alive at the same time whose bytes overlap (empty for a valid plan)."""
        bad = []
        for i, a in enumerate(self.buffers):
            for b in self.buffers[i + 1:]:
                if _alive_together(a, b) and _bytes_overlap(self.offsets[a.key], a.size_bytes,
                                                            self.offsets[b.key], b.size_bytes):
                    bad.append((a.key, b.key))
        return bad


def _alive_together(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def _bytes_overlap(off_a: int, size_a: int, off_b: int, size_b: int) -> bool:
    return off_a < off_b + size_b and off_b < off_a + size_a


def _align(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def plan_buffers(buffers: list[Buffer], align_bytes: int = 4) -> ArenaPlan:
    """Place buffers largest first, each at the lowest aligned offset that does not collide with a
    buffer already placed whose lifetime intersects its own."""
    if align_bytes < 1:
        raise ValueError(f"align_bytes must be >= 1, got {align_bytes}")
    order = sorted(buffers, key=lambda b: (-b.size_bytes, b.first, b.key))
    placed: list[tuple[int, Buffer]] = []
    offsets: dict[int, int] = {}
    end = 0
    for buf in order:
        if buf.size_bytes < 0 or buf.first > buf.last:
            raise ValueError(f"invalid buffer {buf}")
        busy = sorted((off, off + b.size_bytes) for off, b in placed if _alive_together(b, buf))
        candidate = 0
        for lo, hi in busy:
            if candidate + buf.size_bytes <= lo:
                break
            candidate = max(candidate, _align(hi, align_bytes))
        offsets[buf.key] = candidate
        placed.append((candidate, buf))
        end = max(end, candidate + buf.size_bytes)
    return ArenaPlan(_align(end, align_bytes), offsets, list(buffers), align_bytes)
