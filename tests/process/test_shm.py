"""A publisher killed while it copies into shared memory leaves no torn slot."""

import os
import time

import numpy as np

from fusion_pipeline.transport import (
    ShmRef,
    StaleError,
    shm,
)


def test_a_publisher_killed_mid_copy_leaves_no_torn_slot() -> None:
    """The generation is cleared before the copy, so a half-written slot never matches a reference."""
    big = 8 * 1024 * 1024  # a copy takes long enough that a kill lands in one most times
    for attempt in range(5):
        refs_out, refs_in = os.pipe()
        child = os.fork()
        if child == 0:  # the publisher: rewrites its only slot with all-0 and all-1 arrays, forever
            os.close(refs_out)
            writer = shm.SegmentWriter("torn", slots=1)
            for i in range(1_000_000):
                ref = writer.place(np.full(big, i % 2, np.uint8))
                os.write(refs_in, f"{ref.segment} {ref.gen}\n".encode())
            os._exit(1)  # never reached: the test kills it long before
        os.close(refs_in)
        with os.fdopen(refs_out) as lines:
            # Killed once it placed a slot: on a busy machine the child may not have placed one in 50 ms.
            first = lines.readline()
            time.sleep(0.05 + 0.01 * attempt)
            os.kill(child, 9)
            os.waitpid(child, 0)
            name, gen = (first + lines.read()).splitlines()[-1].split()
        try:
            data = shm.SegmentReader().read(ShmRef(name, 0, int(gen)), big)
            assert data.min() == data.max(), "a torn slot was read as valid"
        except StaleError:
            pass  # killed while rewriting the slot: the reference is stale, as it should be
        finally:
            (shm.SEGMENT_DIR / name).unlink()
