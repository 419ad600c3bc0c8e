"""Static arena planning: tensor lifetimes from the op order, greedy-by-size first-fit placement.

Two buffers alive at the same time never share bytes, with one exception the kernels allow: an
:class:`Overlap` lets a raster-order kernel (convolutions, depthwise, 1x1 convolutions on the matrix
kernel) write its output over the bytes of its input that no later output pixel reads, the output
starting at most `delta` bytes after the input (delta is negative: the output starts before the
input and catches up with it). Buffers tied that way are placed together, at fixed distances."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Buffer:
    """One activation buffer: `size_bytes`, alive from op `first` to op `last` (inclusive)."""

    key: int
    size_bytes: int
    first: int
    last: int


@dataclass(frozen=True)
class Overlap:
    """Buffer `out` may share bytes with buffer `inp` (which the writing op reads last) when
    offset(out) - offset(inp) <= delta."""

    inp: int
    out: int
    delta: int


@dataclass
class ArenaPlan:
    """Byte offset of every buffer in one arena of `arena_bytes` (a multiple of `align_bytes`)."""

    arena_bytes: int
    offsets: dict[int, int] = field(default_factory=dict)
    buffers: list[Buffer] = field(default_factory=list)
    align_bytes: int = 4
    ties: list[Overlap] = field(default_factory=list)  #: the overlaps the plan uses

    def overlaps(self) -> list[tuple[int, int]]:
        """Pairs of buffers alive at the same time whose bytes overlap other than as a tie allows
        (empty for a valid plan)."""
        allowed = {(t.inp, t.out): t.delta for t in self.ties}
        bad = []
        for i, a in enumerate(self.buffers):
            for b in self.buffers[i + 1:]:
                if not (_alive_together(a, b) and _bytes_overlap(self.offsets[a.key], a.size_bytes,
                                                                 self.offsets[b.key], b.size_bytes)):
                    continue
                for inp, out in ((a.key, b.key), (b.key, a.key)):
                    if (inp, out) in allowed and self.offsets[out] - self.offsets[inp] <= allowed[(inp, out)]:
                        break
                else:
                    bad.append((a.key, b.key))
        return bad


def _alive_together(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def _bytes_overlap(off_a: int, size_a: int, off_b: int, size_b: int) -> bool:
    return off_a < off_b + size_b and off_b < off_a + size_a


def _align(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _groups(buffers: list[Buffer], ties: list[Overlap], align: int) -> tuple[list[dict[int, int]], list[Overlap]]:
    """Buffers tied by overlaps -> groups {key: offset within the group}, and the ties used. A tie joins
    a buffer not yet in a group (`out`) to the group of `inp` at delta rounded down to the alignment."""
    keys = {b.key for b in buffers}
    rel: dict[int, int] = {}
    group_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    used = []
    for t in ties:
        if t.inp not in keys or t.out not in keys or t.out in group_of or t.inp == t.out:
            continue
        if t.inp not in group_of:
            group_of[t.inp], rel[t.inp], members[t.inp] = t.inp, 0, [t.inp]
        g = group_of[t.inp]
        delta = t.delta // align * align
        group_of[t.out], rel[t.out] = g, rel[t.inp] + delta
        members[g].append(t.out)
        used.append(Overlap(t.inp, t.out, delta))
    out = []
    for ks in members.values():
        low = min(rel[k] for k in ks)
        out.append({k: rel[k] - low for k in ks})
    out += [{b.key: 0} for b in buffers if b.key not in group_of]
    return out, used


def plan_buffers(buffers: list[Buffer], align_bytes: int = 4, ties: list[Overlap] | tuple = ()) -> ArenaPlan:
    """Place buffers (groups of tied buffers as one piece) largest first, each at the lowest aligned
    offset where none of its buffers collides with a buffer already placed whose lifetime intersects."""
    if align_bytes < 1:
        raise ValueError(f"align_bytes must be >= 1, got {align_bytes}")
    by_key = {b.key: b for b in buffers}
    for buf in buffers:
        if buf.size_bytes < 0 or buf.first > buf.last:
            raise ValueError(f"invalid buffer {buf}")
    groups, used = _groups(buffers, list(ties), align_bytes)

    def span(g: dict[int, int]) -> int:
        return max(rel + by_key[k].size_bytes for k, rel in g.items())

    groups.sort(key=lambda g: (-span(g), min(by_key[k].first for k in g), min(g)))
    placed: list[tuple[int, Buffer]] = []
    offsets: dict[int, int] = {}
    end = 0
    for g in groups:
        candidates = {0, _align(end, align_bytes)}  # past everything placed: always free
        for k, rel in g.items():
            for off, b in placed:
                if _alive_together(b, by_key[k]):
                    candidates.add(max(0, _align(off + b.size_bytes - rel, align_bytes)))
        for base in sorted(candidates):
            if all(not (_alive_together(b, by_key[k]) and _bytes_overlap(base + rel, by_key[k].size_bytes, off,
                                                                           b.size_bytes))
                   for k, rel in g.items() for off, b in placed):
                break
        for k, rel in g.items():
            offsets[k] = base + rel
            placed.append((base + rel, by_key[k]))
            end = max(end, base + rel + by_key[k].size_bytes)
    return ArenaPlan(_align(end, align_bytes), offsets, list(buffers), align_bytes, used)
