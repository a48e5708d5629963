"""Host→device prefetch that keeps the data iterator's checkpoint exact.

JAX transfers are asynchronous: putting batch t+1 (and t+2) on the devices before step t is dispatched lets the copy
overlap the computation, so the step never waits on the host→device link. The transfer is the caller's
`to_device` (in training, `sharding.to_global`, i.e. `jax.make_array_from_process_local_data`, which works on every
host of a multi-host job). No thread is needed: dispatch returns at once and grain already reads ahead in its own
threads.

Read-ahead would break resumption if the checkpoint stored the wrapped iterator's own state (it would be `depth`
batches ahead of training, and a resumed run would skip them). So each queued batch carries the iterator state taken
right after it was read, and `get_state()` returns the state after the last batch actually *handed out*.
"""

from __future__ import annotations

import collections
import json
from typing import Any, Callable, Iterator


class DevicePrefetch:
    """Iterates `to_device(batch)` for the batches of `iterator`, `depth` batches ahead.

    Checkpointable with grain's Orbax handler (get_state/set_state as bytes, start_prefetch), like a grain
    DataLoader iterator.
    """

    def __init__(self, iterator: Iterator[dict], to_device: Callable[[dict], Any], depth: int = 2):
        if depth < 1:
            raise ValueError(f"prefetch depth must be at least 1, got {depth}")
        self._iterator, self._to_device, self._depth = iterator, to_device, depth
        self._queue: collections.deque = collections.deque()
        self._consumed_state = iterator.get_state()

    def __iter__(self):
        return self

    def __next__(self):
        while len(self._queue) < self._depth:
            try:
                batch = next(self._iterator)
            except StopIteration:
                break
            self._queue.append((self._to_device(batch), self._iterator.get_state()))
        if not self._queue:
            raise StopIteration
        batch, self._consumed_state = self._queue.popleft()
        return batch

    def get_state(self) -> bytes:
        """The wrapped iterator's state after the last batch returned by `__next__`."""
        return json.dumps(self._consumed_state).encode()

    def set_state(self, state: bytes) -> None:
        """Restores the wrapped iterator and drops any batch read ahead under the old state."""
        self._consumed_state = json.loads(state)
        self._iterator.set_state(self._consumed_state)
        self._queue.clear()

    def start_prefetch(self) -> None:
        """Called by grain's checkpoint handler after a restore; reading ahead starts with the next `__next__`."""
