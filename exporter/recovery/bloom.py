"""Which closed keys the journal may still know though memory forgot them: a Bloom filter
in two generations, so that a new key (the common case in an alert flood) costs a few
hashes instead of a read of the journal.

Each generation takes `capacity` keys (the journal's max_episodes); when the current one is
full it becomes the previous one and the oldest is dropped: a key forgotten that long ago
has left the journal too (it keeps the newest max_episodes closed episodes). A "maybe" is
wrong about 1% of the time, and then costs one read; a "no" is always right.
"""

from __future__ import annotations

import math

HASHES = 7
FALSE_POSITIVES = 0.01


class _Bits:
    def __init__(self, capacity: int) -> None:
        self.size = max(64, int(-capacity * math.log(FALSE_POSITIVES) / math.log(2) ** 2))
        self.bits = bytearray((self.size + 7) // 8)
        self.count = 0

    def _indexes(self, key: str) -> list[int]:
        first, second = hash(key), hash(key + "\0") | 1  # double hashing (Kirsch-Mitzenmacher)
        return [(first + n * second) % self.size for n in range(HASHES)]

    def add(self, key: str) -> None:
        for i in self._indexes(key):
            self.bits[i >> 3] |= 1 << (i & 7)
        self.count += 1

    def __contains__(self, key: str) -> bool:
        return all(self.bits[i >> 3] & (1 << (i & 7)) for i in self._indexes(key))


class Forgotten:
    """Keys memory let go of that the journal may still hold."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._current = _Bits(self._capacity)
        self._previous: _Bits | None = None

    def add(self, key: str) -> None:
        """Remember that the journal may know key."""
        if self._current.count >= self._capacity:
            self._previous, self._current = self._current, _Bits(self._capacity)
        self._current.add(key)

    def __contains__(self, key: str) -> bool:
        return key in self._current or (self._previous is not None and key in self._previous)

    def __bool__(self) -> bool:
        """Whether any key was added (an empty filter answers "no" without hashing)."""
        return self._current.count > 0 or self._previous is not None

    def clear(self) -> None:
        """The journal forgot them too (reset)."""
        self._current, self._previous = _Bits(self._capacity), None
