"""Length classes: the items' lengths counted per class, block by block."""
from __future__ import annotations

import numpy as np

BLOCK = 1 << 16  # items per counting/assignment block (the assignment's 32-bit sort keys need <= 2**16)


class LengthClasses:
    """Length classes of the items, counted block by block (`BLOCK` items).

    Class of item i = its length; `capacity + 1` if it is longer, 0 if it is <= 0 (both dropped).
    `classes` is the lengths array itself when every length is a class already (nothing to drop),
    else a clipped copy; `small`: every class < 2**16 (the assignment sorts 32-bit keys);
    `block_counts[j, s]` = items of class s in block j; `class_counts` = their sum."""

    def __init__(self, lengths: np.ndarray, capacity: int):
        lengths = np.asarray(lengths)
        if not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"lengths must be integers, got {lengths.dtype}")
        self.capacity = capacity
        self.n = n = lengths.size
        self.n_classes = capacity + 2
        self.small = self.n_classes <= 65536
        clip = bool(n) and (int(lengths.min()) < 1 or int(lengths.max()) > capacity)
        self.classes = np.empty(n, dtype=np.uint16 if self.small else np.int64) if clip else lengths
        self.block_counts = np.empty((max(1, -(-n // BLOCK)), self.n_classes), dtype=np.int32)
        buffer = np.empty(min(n, BLOCK), dtype=np.int64)
        for j in range(self.block_counts.shape[0]):
            block = lengths[j * BLOCK : (j + 1) * BLOCK]
            if clip:  # in a cache-sized buffer, then stored as classes
                block = np.clip(block, 0, capacity + 1, out=buffer[: block.size], casting="unsafe")
                self.classes[j * BLOCK : j * BLOCK + block.size] = block
            self.block_counts[j] = np.bincount(block, minlength=self.n_classes)
        self.class_counts = self.block_counts.sum(axis=0, dtype=np.int64)

    def counts(self) -> np.ndarray:
        """counts[s] for 1 <= s <= capacity; counts[0] = dropped items."""
        counts = self.class_counts[: self.capacity + 1].copy()
        counts[0] += self.class_counts[self.capacity + 1]
        return counts

    @property
    def n_dropped(self) -> int:
        return int(self.class_counts[0] + self.class_counts[self.capacity + 1])


def size_counts(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """counts[s] = number of items of length s, for 1 <= s <= capacity; counts[0] = dropped items."""
    return LengthClasses(lengths, capacity).counts()
