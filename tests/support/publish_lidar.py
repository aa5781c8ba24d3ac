"""Child process for transport tests: publishes COUNT lidar samples with fusion_pipeline's Publisher.

Usage: python publish_lidar.py ENDPOINT COUNT [--lossless] [--shm]
Prints the bound endpoint on its first line (resolves a tcp wildcard port), then publishes and exits.
Sample i holds 20,000 points (320 KB, so it takes the zero-copy path) filled with the value i.
"""

import sys
import time

import numpy as np

from fusion_pipeline.transport import Publisher


def main() -> None:
    endpoint, count, lossless = sys.argv[1], int(sys.argv[2]), "--lossless" in sys.argv
    with Publisher(
        endpoint,
        stream="lidar/top",
        modality="lidar",
        frame_id="lidar_top",
        lossless=lossless,
        shm="--shm" in sys.argv,
    ) as pub:
        print(pub.last_endpoint, flush=True)
        if lossless:
            assert pub.wait_for_subscribers(1, timeout_s=10), "no subscriber joined"
        else:
            time.sleep(0.5)  # PUB/SUB: give the subscriber time to connect
        for i in range(count):
            pub.publish(1_000_000_000 + i * 100_000_000, points=np.full((20_000, 4), i, np.float32))
            if not lossless:
                time.sleep(0.01)
        if lossless:
            assert pub.wait_for_unsubscribe(1, timeout_s=10), "subscriber did not finish"


if __name__ == "__main__":
    main()
