"""Length classes: the items' lengths counted per class, block by block."""
from __future__ import annotations

import numpy as np

BLOCK = 1 << 16  # items per counting/assignment block


class LengthClasses:
    """Length classes of the items, counted block by block (`BLOCK` items).

    Class of item i = its length; `capacity + 1` if it is longer, 0 if it is <= 0 (both dropped).
    `classes` holds them as uint16 when `capacity < 65535` (else int64); `block_counts[j, s]` =
    items of class s in block j; `class_counts` = their sum."""

    def __init__(self, lengths: np.ndarray, capacity: int):
        lengths = np.asarray(lengths)
        if not np.issubdtype(lengths.dtype, np.integer):
            lengths = lengths.astype(np.int64)
        self.capacity = capacity
        self.n = n = lengths.size
        self.n_classes = capacity + 2
        too_long = capacity + 1
        self.small = self.n_classes <= 65536
        longest = int(lengths.max()) if n else 0
        if self.small:
            self.classes = np.empty(n, dtype=np.uint16)
        elif longest > too_long or (n and int(lengths.min()) < 0):
            self.classes = lengths = np.clip(lengths, 0, too_long).astype(np.int64)
        else:
            self.classes = lengths
        self.block_counts = np.empty((max(1, -(-n // BLOCK)), self.n_classes), dtype=np.int32)
        for j in range(self.block_counts.shape[0]):
            block = lengths[j * BLOCK : (j + 1) * BLOCK]
            if longest > too_long:
                block = np.minimum(block, too_long)
            try:
                self.block_counts[j] = np.bincount(block, minlength=self.n_classes)
            except ValueError:  # negative lengths
                block = np.maximum(block, 0)
                self.block_counts[j] = np.bincount(block, minlength=self.n_classes)
            if self.small:
                self.classes[j * BLOCK : (j + 1) * BLOCK] = block
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
