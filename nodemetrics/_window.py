"""The rolling window of a node's most recent durations."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import cast


# A sorted chunk splits in two once it holds twice this many samples: small
# enough that inserting into a chunk is a short memmove at any window size,
# large enough that a window of 100 is one chunk and one of 100,000 about a
# hundred, cheap to walk when reading.
_LOAD = 1024

#: The ring's slots are filled in stretches of this many (see
#: RollingWindow.add): whoever must read the newest samples before they are
#: evicted reads them at the end of each stretch, at most this many.
STRETCH = 1024

# A full window at least this large notes nothing per sample: the newcomers
# since the last read are a slice of the ring, and the leavers are saved a
# stretch at a time, as each stretch begins (see RollingWindow._turn). Its
# quarter plus a stretch is then less than the window, so where the head is
# tells how many samples came since the last read.
_SAVED_FROM = 2 * STRETCH

# (low rank, high rank, fraction) of p50, p90 and p99 among n samples, by n:
# a full window reads the same ranks every time. Bounded, as sizes are few.
_Ranks = tuple[int, int, float, int, int, float, int, int, float]
_RANKS: dict[int, _Ranks] = {}
_RANKS_KEPT = 1024


def _ranks(n: int) -> _Ranks:
    # Integer arithmetic keeps the rank h = (n-1) * p / 100 exact. The high
    # rank is the next one, but never past the last sample.
    lo50, rem50 = divmod((n - 1) * 50, 100)
    lo90, rem90 = divmod((n - 1) * 90, 100)
    lo99, rem99 = divmod((n - 1) * 99, 100)
    last = n - 1
    ranks = (
        lo50,
        min(lo50 + 1, last),
        rem50 / 100,
        lo90,
        min(lo90 + 1, last),
        rem90 / 100,
        lo99,
        min(lo99 + 1, last),
        rem99 / 100,
    )
    if len(_RANKS) < _RANKS_KEPT:
        _RANKS[n] = ranks
    return ranks


class _Saved:
    """
    What a full window of :data:`_SAVED_FROM` samples or more saves instead of notes.

    The samples since the last read are the ring's slots from *mark* to the
    head, and the leavers they replaced are ``old[used:]``, in the same
    order; *old* reaches the end of the head's stretch.
    """

    __slots__ = ("mark", "old", "used")

    def __init__(self, mark: int, old: array[float]) -> None:
        self.mark = mark
        self.old = old
        self.used = 0


class RollingWindow:
    """
    The last *size* durations of a node, in arrival order and sorted.

    The samples live in a ring of unboxed doubles (arrival order, for
    eviction) and in a sorted list of chunks of at most ``2 * _LOAD``
    samples, each found by bisecting the chunks' maxima (the design of
    ``sortedcontainers.SortedList``), so that a percentile is an index
    look-up.

    Recording is the hot path and reading is rare, so :meth:`add` only
    touches the ring and notes what came and went; the sorted chunks catch
    up when they are read: the notes are sorted, and each newcomer is
    bisect-inserted and each leaver bisect-deleted, chunk after chunk in
    order. Once more samples than a quarter of the window have arrived
    since the last read, catching up one by one would cost more than sorting
    the ring afresh, so the notes are dropped and the next read sorts. Either
    way a read gives exactly what an always-sorted window would, and
    :meth:`add` costs the same at any window size.

    A full window of :data:`_SAVED_FROM` samples or more notes nothing per
    sample: a read takes the newcomers from the ring, where they lie since
    the head's place at the last read, and the leavers from a copy of the
    ring's slots saved as each stretch of them began to be overwritten.

    A window of several chunks also keeps where the snapshot's three ranks
    lie (chunk and index). When one sample came and one went since the last
    read, the common case of a full window read after every recording, each
    moves at most one place and one chunk, so it is moved along instead of
    looked up afresh, and :meth:`p50_p90_p99` costs about the same at window
    100,000 as at 100.

    Not thread-safe: the collector's lock guards it.
    """

    __slots__ = (
        "_at",
        "_cap",
        "_chunks",
        "_failed",
        "_full",
        "_gone",
        "_head",
        "_maxes",
        "_new",
        "_notes",
        "_ring",
        "_saving",
        "_size",
        "_stale",
        "failures",
    )

    def __init__(self, size: int, *, count_failures: bool = False) -> None:
        self._size = size
        self._cap = max(8, size // 4)
        self._ring = array("d")
        self._head = 0
        # Samples that came and went since the last read (boxed: appending
        # to a list is much cheaper than to an array, and there are few).
        self._new: list[float] = []
        self._gone: list[float] = []
        self._stale = False
        # Whether add() notes each newcomer and leaver in _new and _gone:
        # when not stale and not saving.
        self._notes = True
        # What the window saves instead when it saves its leavers (see
        # _SAVED_FROM and _Saved), else None: one slot, as most windows are
        # small and never save.
        self._saving: _Saved | None = None
        self._chunks: list[array[float]] = []
        # Each chunk's largest sample, for finding a sample's chunk. While
        # there is only one chunk nothing reads it, so it may lag until
        # _catch_up() is about to insert by it.
        self._maxes: list[float] = []
        # Where p50's, p90's and p99's lower ranks lie when there are several
        # chunks, flat: (chunk index, index in that chunk) thrice; None when
        # it must be looked up afresh.
        self._at: list[int] | None = None
        self._failed = bytearray() if count_failures else None
        # The ring while it is full and keeps no failure flags, else None:
        # the collector's record_success() then writes it in line, and one
        # attribute tells it so (see _check_full).
        self._full: array[float] | None = None
        #: How many samples in the window are failures, when counted.
        self.failures = 0

    def __len__(self) -> int:
        return len(self._ring)

    def add(self, value: float, failed: bool) -> bool:
        """
        Add *value* (a finite float >= 0), evicting the oldest if full.

        Returns:
            Whether *value* took the last slot of a stretch: the ring's slots
            are filled in stretches of :data:`STRETCH` (the last one shorter,
            ending where the ring does), so the samples added since the
            previous stretch ended are then all in the ring, in order, and
            :meth:`latest` reads them, until the next add begins to
            overwrite the oldest of them.
        """
        ring = self._ring
        if len(ring) < self._size:
            self._fill([value], failed)
            filled = len(ring)
            return filled == self._size or not filled % STRETCH
        flags = self._failed
        head = self._head
        if self._notes:
            self._gone.append(ring[head])
        ring[head] = value
        if flags is not None:
            self.failures += failed - flags[head]
            flags[head] = failed
        head += 1
        if head < self._size:
            self._head = head
            ended = not head % STRETCH
        else:
            self._head = 0
            ended = True
        if self._notes:
            new = self._new
            new.append(value)
            if len(new) > self._cap:
                self._go_stale()
        elif ended and self._saving:
            self._turn()
        return ended

    def extend(self, values: list[float]) -> None:
        """
        Add each of *values* (finite floats >= 0, all successes) in order.

        The same as calling :meth:`add` for each, in a few slice operations.
        """
        ring = self._ring
        size = self._size
        flags = self._failed
        room = size - len(ring)
        if room > 0:
            self._fill(values[:room], False)
            rest = values[room:]
        else:
            rest = values
        head = self._head
        done = 0
        while done < len(rest):
            # From the head up to the end of the ring, then round again; a
            # window that saves its leavers, a stretch at a time, as _turn()
            # saves them.
            k = min(len(rest) - done, size - head)
            if self._saving:
                k = min(k, STRETCH - head % STRETCH)
            end = head + k
            came = rest[done : done + k]
            if self._notes:
                self._gone.extend(ring[head:end])
                self._new += came
            ring[head:end] = array("d", came)
            if flags is not None:
                self.failures -= flags.count(1, head, end)
                flags[head:end] = bytes(k)
            head = end if end < size else 0
            done += k
            self._head = head
            if self._saving and not head % STRETCH:
                self._turn()
        if self._notes and len(self._new) > self._cap:
            self._go_stale()

    def _fill(self, values: list[float], failed: bool) -> None:
        # Append *values*, which the ring has room for.
        ring = self._ring
        ring.fromlist(values)
        flags = self._failed
        if flags is not None:
            flags.extend(bytes([failed]) * len(values))
            self.failures += failed * len(values)
        self._check_full()
        if self._notes:
            new = self._new
            new += values
            if len(new) > self._cap:
                self._go_stale()
            elif len(ring) == self._size:
                self._watch()

    def _check_full(self) -> None:
        # After the ring grew or was repaired. A change cut short before
        # this leaves _full None under a full ring: slower, never wrong, and
        # only until the node is repaired (repair() calls this).
        ring = self._ring
        self._full = ring if len(ring) == self._size and self._failed is None else None

    def _go_stale(self) -> None:
        # Catching up one by one would now cost more than sorting afresh.
        self._stale = True
        self._notes = False
        self._saving = None
        self._at = None
        del self._new[:], self._gone[:], self._chunks[:], self._maxes[:]

    def _watch(self) -> None:
        # The chunks hold the ring (or will, once the notes are merged): from
        # here on note what comes and goes, or save it in a large full window.
        ring = self._ring
        size = self._size
        if len(ring) == size and size >= _SAVED_FROM:
            head = self._head
            self._notes = False
            # The leavers of the head's stretch, before any is overwritten.
            self._saving = _Saved(head, ring[head : head - head % STRETCH + STRETCH])
        else:
            self._notes = True

    def _turn(self) -> None:
        # The head begins a stretch of a window that saves its leavers: save
        # the stretch before its first slot is overwritten. Checked once a
        # stretch, how many came since the last read stays under a quarter
        # of the window plus a stretch, less than the window (_SAVED_FROM):
        # the head alone tells how many.
        head = self._head
        saved = cast("_Saved", self._saving)
        if len(self._new) + (head - saved.mark) % self._size > self._cap:
            self._go_stale()
            return
        old = saved.old
        del old[: saved.used]
        saved.used = 0
        old += self._ring[head : head + STRETCH]

    def _collect(self) -> None:
        # Note the samples that came and went since the last read of a window
        # that saves its leavers, to be merged as add() would have noted them.
        ring = self._ring
        head = self._head
        saved = cast("_Saved", self._saving)
        mark = saved.mark
        new = self._new
        if mark < head:
            came = head - mark
            new += ring[mark:head]
        else:
            came = len(ring) - mark + head
            new += ring[mark:]
            new += ring[:head]
        used = saved.used
        self._gone += saved.old[used : used + came]
        saved.used = used + came
        saved.mark = head
        if len(new) > self._cap:
            self._go_stale()

    def _catch_up(self) -> None:
        if self._stale:
            ordered = sorted(self._ring)
            # In place: a reader may hold the list.
            self._chunks[:] = [
                array("d", ordered[i : i + _LOAD]) for i in range(0, len(ordered), _LOAD)
            ]
            self._maxes = [chunk[-1] for chunk in self._chunks]
            self._stale = False
            self._at = None
            self._watch()
            return
        new = self._new
        gone = self._gone
        chunks = self._chunks
        # Inserting every newcomer before deleting any leaver is right as a
        # multiset even when a sample both came and went since the last read.
        if len(chunks) == 1 and len(chunks[0]) + len(new) <= 2 * _LOAD:
            # A window that fits one chunk (window_size 100 always does) needs
            # no chunk bookkeeping.
            chunk = chunks[0]
            for value in new:
                chunk.insert(bisect_right(chunk, value), value)
            for value in gone:
                del chunk[bisect_left(chunk, value)]
        else:
            if len(chunks) == 1:
                self._maxes[0] = chunks[0][-1]
            self._merge_notes()
            self._at = None
        del new[:], gone[:]

    def _merge_notes(self) -> None:
        # The notes, sorted, go into the chunks in order, so a sample's chunk
        # is usually the last one's (one comparison instead of a bisect of
        # the maxima), and the loops are written out: a method call per
        # sample was a fifth of a catch-up.
        self._new.sort()
        self._gone.sort()
        self._merge_new()
        self._merge_gone()

    def _merge_new(self) -> None:
        new = self._new
        chunks = self._chunks
        maxes = self._maxes
        twice = 2 * _LOAD
        if not maxes:
            chunks.append(array("d"))
            maxes.append(new[0])
        i = 0
        last = len(maxes) - 1
        chunk = chunks[0]
        # Where the previous newcomer went in this chunk: the next one, no
        # smaller, goes no earlier, so the search starts there.
        at = 0
        for value in new:
            if value > maxes[i]:
                # Notes spread over many chunks (a few per chunk) mostly go
                # to the next chunk: a look at its maximum costs a fraction
                # of a bisect.
                if i < last and value <= maxes[i + 1]:
                    i += 1
                else:
                    i = bisect_right(maxes, value, i)
                    if i > last:
                        # Beyond every chunk: it ends the last one.
                        i = last
                        maxes[i] = value
                chunk = chunks[i]
                at = 0
            at = bisect_right(chunk, value, at)
            chunk.insert(at, value)
            if len(chunk) > twice:
                chunks.insert(i + 1, chunk[_LOAD:])
                del chunk[_LOAD:]
                maxes.insert(i, chunk[-1])
                last += 1
                if value > maxes[i]:
                    i += 1
                chunk = chunks[i]
                at = 0

    def _merge_gone(self) -> None:
        chunks = self._chunks
        maxes = self._maxes
        i = 0
        chunk = chunks[0]
        # As in _merge_new: each leaver is found from where the previous was.
        j = 0
        for value in self._gone:
            if value > maxes[i]:
                # As in _merge_new. A leaver is in a chunk: never past the last.
                if value <= maxes[i + 1]:
                    i += 1
                else:
                    i = bisect_left(maxes, value, i)
                chunk = chunks[i]
                j = 0
            j = bisect_left(chunk, value, j)
            del chunk[j]
            # Only a leaver equal to its chunk's maximum can change it (the
            # maxima are exact here) or have been its last sample.
            if value == maxes[i]:
                if chunk:
                    maxes[i] = chunk[-1]
                else:
                    del chunks[i], maxes[i]
                    if i < len(chunks):
                        chunk = chunks[i]
                    j = 0

    def _swap(self, chunks: list[array[float]], value: float, old: float) -> None:
        # One sample came (value) and one went (old) since the last read of
        # a window of several chunks: a full window read after every
        # recording. Each rank's look-up is moved along instead of found
        # afresh.
        maxes = self._maxes
        j = bisect_left(maxes, old)
        chunk = chunks[j]
        k = bisect_left(chunk, old)
        del chunk[k]
        if k == len(chunk):
            if not chunk:
                del chunks[j], maxes[j]
                self._insert(value)
                self._at = None
                return
            maxes[j] = chunk[-1]
        i = self._insert(value)
        at = self._at
        if i < 0:
            self._at = None
        elif at is not None and i != j:
            # Chunk i gained a sample and chunk j lost one. A rank's place in
            # its chunk shifts by one when exactly one of them lies before
            # that chunk, and falls off the end when its chunk lost the
            # sample: either way the rank moves one chunk at most.
            for r in 0, 2, 4:
                c = at[r]
                shift = (j < c) - (i < c)
                if shift or c == j:
                    k = at[r + 1] + shift
                    if k < 0:
                        c -= 1
                        k += len(chunks[c])
                    elif k >= len(chunks[c]):
                        k -= len(chunks[c])
                        c += 1
                    at[r] = c
                    at[r + 1] = k

    def _insert(self, value: float) -> int:
        """Insert *value*; return its chunk's index, or -1 if chunks were added."""
        maxes = self._maxes
        i = bisect_right(maxes, value)
        if i == len(maxes):
            i -= 1
            maxes[i] = value
            chunk = self._chunks[i]
            chunk.append(value)
        else:
            chunk = self._chunks[i]
            chunk.insert(bisect_right(chunk, value), value)
        if len(chunk) > 2 * _LOAD:
            self._chunks.insert(i + 1, chunk[_LOAD:])
            del chunk[_LOAD:]
            maxes.insert(i, chunk[-1])
            return -1
        return i

    def p50_p90_p99(self) -> tuple[float | None, float | None, float | None]:  # noqa: C901, PLR0912, PLR0915 -- the common reads in line
        """
        Return the window's p50, p90 and p99; ``None`` thrice when it is empty.

        Linear interpolation between closest ranks, the default of
        ``numpy.percentile`` and ``statistics.quantiles(method="inclusive")``:
        with the samples sorted as ``x[0..n-1]`` and ``h = (n-1) * p / 100``,
        the value is ``x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] -
        x[floor(h)])``.
        """
        n = len(self._ring)
        if not n:
            return None, None, None
        chunks = self._chunks
        saved = self._saving
        if saved is not None:
            mark = saved.mark
            if self._head != mark:
                if self._head == mark + 1 and len(chunks) > 1 and not self._new:
                    # One came and one went: what _swap() takes, in line.
                    used = saved.used
                    saved.used = used + 1
                    saved.mark = mark + 1
                    self._swap(chunks, self._ring[mark], saved.old[used])
                else:
                    self._collect()
        new = self._new
        if new or self._stale:
            # Leavers never outnumber newcomers: this is one of each.
            if len(new) == 1 and self._gone:
                if len(chunks) == 1:
                    # One sample came and one went since the last read of a
                    # one-chunk window: reading after every recording at
                    # window size 100, the case worth writing out in line.
                    # (clear() is cheaper than pop() to empty.)
                    only = chunks[0]
                    value = new[0]
                    new.clear()
                    only.insert(bisect_right(only, value), value)
                    gone = self._gone
                    del only[bisect_left(only, gone[0])]
                    gone.clear()
                else:
                    gone = self._gone
                    value = new[0]
                    old = gone[0]
                    new.clear()
                    gone.clear()
                    self._swap(chunks, value, old)
            else:
                self._catch_up()
        lo50, hi50, f50, lo90, hi90, f90, lo99, hi99, f99 = _RANKS.get(n) or _ranks(n)
        # Where a fraction is 0.0 this adds 0.0, which changes no sample (all
        # >= +0.0).
        if len(chunks) == 1:
            only = chunks[0]
            p50 = only[lo50]
            p90 = only[lo90]
            p99 = only[lo99]
            return (
                p50 + f50 * (only[hi50] - p50),
                p90 + f90 * (only[hi90] - p90),
                p99 + f99 * (only[hi99] - p99),
            )
        at = self._at
        if at is None:
            at = self._locate(lo50, lo90, lo99)
        # Each rank's sample is at (chunk, index); the next one may begin
        # the next chunk. Written out thrice: a loop over the ranks costs a
        # tenth of a read at window 100,000 (callgrind, 28.9k -> 31.7k).
        c50, k50, c90, k90, c99, k99 = at
        chunk = chunks[c50]
        p50 = chunk[k50]
        try:
            above = chunk[k50 + 1]
        except IndexError:
            above = chunks[c50 + 1][0]
        p50 += f50 * (above - p50)
        chunk = chunks[c90]
        p90 = chunk[k90]
        try:
            above = chunk[k90 + 1]
        except IndexError:
            above = chunks[c90 + 1][0]
        p90 += f90 * (above - p90)
        chunk = chunks[c99]
        p99 = chunk[k99]
        try:
            above = chunk[k99 + 1]
        except IndexError:
            above = chunks[c99 + 1][0]
        p99 += f99 * (above - p99)
        return p50, p90, p99

    def _locate(self, *ranks: int) -> list[int]:
        # Find each rank's (chunk, index) afresh, by the chunks' lengths.
        chunks = self._chunks
        ends = list(accumulate(map(len, chunks)))
        at: list[int] = []
        for rank in ranks:
            c = bisect_right(ends, rank)
            at += (c, rank - ends[c] + len(chunks[c]))
        self._at = at
        return at

    # -- after an exception cut a change short (see the collector's _sync) --

    def repair(self) -> None:
        """Make the window consistent again; the next read sorts it afresh."""
        ring = self._ring
        flags = self._failed
        if len(ring) > self._size:
            del ring[self._size :]
        if flags is not None:
            n = min(len(ring), len(flags))
            del ring[n:], flags[n:]
            self.failures = flags.count(1)
        if not 0 <= self._head < self._size:
            self._head = 0
        self._check_full()
        self._go_stale()

    def added(self) -> int:
        """
        Return how many samples were added, modulo the size once the ring is full.

        Until then the ring holds them all; from then on its head is where
        the next one goes.
        """
        ring = self._ring
        return len(ring) if len(ring) < self._size else self._head

    def disown(self, added: int) -> None:
        """
        Disown the samples added after the first *added*.

        A change cut short added them and counted nothing (see
        ``_Node.repair``). A ring not yet full drops them. A full one makes
        them its oldest, the next to be evicted: the samples they replaced
        are gone, and its newest is again the newest of the first *added*.
        """
        ring = self._ring
        if len(ring) < self._size:
            if 0 <= added < len(ring):
                del ring[added:]
                flags = self._failed
                if flags is not None:
                    del flags[added:]
                    self.failures = flags.count(1)
        else:
            self._head = added % self._size
        self._go_stale()

    def reset(self) -> None:
        """Forget every sample."""
        # First: an emptied ring must never be written in line. Cut short
        # before the ring is emptied, it is only written the slower way.
        self._full = None
        del self._ring[:]
        if self._failed is not None:
            del self._failed[:]
        self.failures = 0
        self._head = 0
        self._go_stale()

    def newest(self) -> float:
        """Return the most recent sample (0.0 for an empty window)."""
        ring = self._ring
        if not ring:
            return 0.0
        if len(ring) < self._size:
            return ring[-1]
        return ring[self._head - 1]

    def latest(self, k: int) -> list[float]:
        """Return the *k* most recent samples, oldest first (at most all of them)."""
        ring = self._ring
        k = min(k, len(ring))
        if len(ring) < self._size:
            return ring[len(ring) - k :].tolist()
        head = self._head
        if k <= head:
            return ring[head - k : head].tolist()
        if not head:
            # A lap just ended (where the collector buckets): the whole ring
            # is wanted, unless a read bucketed part of it since.
            return ring.tolist() if k == len(ring) else ring[len(ring) - k :].tolist()
        return ring[len(ring) - (k - head) :].tolist() + ring[:head].tolist()
