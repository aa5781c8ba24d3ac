"""A script: a local Ray started as `batch --ray` starts it, sent SIGTERM once Ray's own handler is in
and its GCS server runs; prints "stopped" and exits 130 where the stop reached the caller as Ctrl-C."""

import os
import signal
import sys
import threading
import time

import psutil

from fusion_pipeline.offline.cluster import ray_records


def _stop(*_: object) -> None:  # what `batch` makes of SIGTERM (cli.args.stop_on_signals)
    raise KeyboardInterrupt


def _sigterm_while_ray_starts() -> None:
    me = psutil.Process()
    while signal.getsignal(signal.SIGTERM) is _stop or not any(
        "gcs_server" in child.name() for child in me.children(recursive=True)
    ):
        time.sleep(0.002)
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    threading.Thread(target=_sigterm_while_ray_starts, daemon=True).start()
    try:
        list(ray_records([], "", 1))
    except KeyboardInterrupt:
        print("stopped", flush=True)
        sys.exit(130)
    print("not stopped: Ray started before the signal", flush=True)
