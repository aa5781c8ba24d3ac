"""ZeroMQ transport for wire v1: endpoints, per-role HWM, zero-copy send, drain-newest and lossless receive.

Two delivery modes:
- real-time (default): PUB with a small send HWM; once a slow subscriber's queue is full, further
  samples for it are dropped and the sender never blocks; `Subscriber.recv_newest` drains its queue and
  counts what it skipped. Sensor data is perishable: a planner wants the newest set, not a backlog.
- lossless (replay): XPUB with ZMQ_XPUB_NODROP, so a send blocks while the slowest subscriber's
  queue is full instead of dropping; back-pressure travels to the publisher through the socket.

A driver publishes in three lines::

    pub = Publisher("ipc:///tmp/fp/camera.sock", stream="camera/front", modality="camera")
    pub.publish(stamp_ns, image=frame)
    pub.close()
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import math
import os
import socket
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import zmq
import zmq.auth
import zmq.backend
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from fusion_pipeline.errors import EndpointError, TransportError
from fusion_pipeline.protocol import CONTINUOUS_MODALITIES, Curve, Endpoint
from fusion_pipeline.transport import shm as shared_memory
from fusion_pipeline.transport.errors import KeysError, StaleError, WireError
from fusion_pipeline.transport.keys import load_allow_list, load_certificate
from fusion_pipeline.transport.wire import (
    DEFAULT_LIMITS,
    Buffer,
    Checked,
    Limits,
    Sample,
    check,
    encode,
)

__all__ = [
    "CONTINUOUS_SENSOR_HWM",
    "MAX_SUBSCRIPTION_BYTES",
    "ZERO_COPY_MIN_BYTES",
    "Publisher",
    "Role",
    "Subscriber",
    "prepare_bind",
    "received_frame",
    "recv_frames",
    "ipc_served",
    "remove_ipc_file",
    "say_handshakes",
    "send_frames",
]

_LOG = logging.getLogger(__name__)
_AUTH_LOG = logging.getLogger("fusion_pipeline.auth")

#: Buffers at least this large are handed to libzmq without a copy; smaller ones are cheaper to copy.
ZERO_COPY_MIN_BYTES = 64 * 1024
# Plain ints: or-ing pyzmq's IntFlag members goes through enum machinery, microseconds per frame.
_SNDMORE = int(zmq.SNDMORE)
# pyzmq's Socket.send less its Python layer (routing_id and group, for draft sockets only): a quarter
# of a microsecond per frame.
_send = zmq.backend.Socket.send
#: What a publisher receives is (un)subscriptions, a stream-name prefix each; a larger message is refused.
MAX_SUBSCRIPTION_BYTES = 4096
#: How often a subscriber looks for connections libzmq dropped and will not make again (one still down,
#: with no retry, at the next look is connected again; libzmq says CONNECT_RETRIED at once when it retries).
REJOIN_CHECK_S = 1.0
#: Handshakes libzmq does not retry: connecting again helps only once the peer's keys or security change
#: (an allow-list fixed, a server restarted), so it is tried this often, and said once per endpoint.
REFUSED_RETRY_S = 10.0
_HANDSHAKE_FAILURES = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the CURVE server refused this client's key",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the peer's security does not match this socket's (CURVE or none)",
}
#: A handshake that failed with no detail on this side (the peer closed it), which libzmq retries itself.
#: Of a CURVE client, most often a server that cannot decrypt our hello, its key not the one this client
#: expects; of a plain one, a CURVE server (which sometimes closes before saying the mismatch), a peer
#: restarting, or no ZeroMQ program at all.
_CURVE_HANDSHAKE_CLOSED = (
    "the CURVE handshake failed, closed by the peer: most often the server's key is not this client's "
    "server_key (another server on this port?); else a plain server without CURVE, a peer restarting, "
    "or a program that is no ZeroMQ one"
)
_PLAIN_HANDSHAKE_CLOSED = (
    "the peer closed the connection in its handshake: a CURVE server, whose security does not match "
    "this socket's (CURVE or none), a peer restarting, or a program that is no ZeroMQ one"
)
_CONNECTION_EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def say_handshakes(failing: Mapping[str, str]) -> str:
    """`Subscriber.handshake_failing` in words: "URL: how; URL: how"."""
    return "; ".join(f"{url}: {how}" for url, how in failing.items())


class Role(enum.Enum):
    """What a socket carries; decides its default HWM (in messages)."""

    SENSOR = "sensor"  # raw sensor samples: a few frames of slack, then new ones are dropped
    SET = "set"  # fused sets between synchronizer and inference
    RESULT = "result"  # model results to consumers
    REPLAY = "replay"  # lossless: deeper queues, back-pressure instead of drops


DEFAULT_HWM: dict[Role, int] = {Role.SENSOR: 8, Role.SET: 4, Role.RESULT: 64, Role.REPLAY: 256}
#: A sensor publisher's queue for a continuous stream (audio, generic) given no `hwm`: a second of a
#: 1 kHz IMU. Its samples are not perishable (a lost one is a hole in every window over it) and small.
CONTINUOUS_SENSOR_HWM = 1024


def prepare_bind(endpoint: Endpoint, create: bool = True) -> None:
    """Create the directory of an ipc socket, private to this user (0700), and refuse one that other
    users can enter: anyone who can reach an ipc socket file can publish into it or listen to it.
    Without `create` (a dry run), a directory not there yet is left for the run to make. Whatever stops
    it (a file in the way, a directory this user cannot search) is an EndpointError naming the endpoint."""
    path = endpoint.ipc_path
    if path is None:
        return
    where = f"endpoint {endpoint.url!r}: its directory {str(path.parent)!r}"
    try:
        if path.parent.exists() and not path.parent.is_dir():
            raise EndpointError(f"{where} is not a directory")
        if create:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        elif not path.parent.exists():
            _check_creatable(path.parent, where)
            return
        mode = path.parent.stat().st_mode & 0o777
    except OSError as exc:
        raise EndpointError(
            f"{where} cannot be {'created' if create else 'checked'} ({exc.strerror})"
        ) from None
    if mode & 0o077:
        raise EndpointError(
            f"{where} has mode {mode:04o}; ipc sockets must live in a directory only their user can access "
            "(chmod 700, or another run_dir)"
        )


def _check_creatable(directory: Path, where: str) -> None:
    """Refuse a directory that mkdir could not make: the nearest existing one above it is a file, or
    this user cannot write in it (a dry run: whatever else stops mkdir is said when the run makes it)."""
    above = next(parent for parent in directory.parents if parent.exists())
    if not above.is_dir():
        raise EndpointError(f"{where} cannot be created: {str(above)!r} is not a directory")
    if not os.access(above, os.W_OK | os.X_OK):
        raise EndpointError(f"{where} cannot be created: {str(above)!r} is not writable by this user")


def ipc_probe(path: Path) -> OSError | None:
    """What connect(2) to the unix socket file `path` says: None when a process accepts connections
    there (one whose backlog is full makes connect wait: it listens too), else the error: refused for a
    file left behind by a process that exited."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.connect(str(path))
        except TimeoutError:
            return None
        except OSError as exc:
            return exc
    return None


def ipc_served(endpoint: Endpoint) -> bool:
    """Whether a process accepts connections on the ipc socket file of `endpoint` (not: a tcp endpoint,
    no file, or a file left by a process that exited)."""
    path = endpoint.ipc_path
    return path is not None and path.is_socket() and ipc_probe(path) is None


def _refuse_taken(endpoint: Endpoint) -> None:
    """libzmq binds an ipc path over an existing socket file, taking it from a process still serving
    there (a replay --publish-only onto a running pipeline's driver): refused. A file left by a process
    that exited (nobody accepts on it) is bound over."""
    if ipc_served(endpoint):
        raise EndpointError(
            f"endpoint {endpoint.url!r}: another process is bound there and serving; binding would take "
            "the path from it (stop it, or give this one another endpoint)"
        )


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`: which file a socket bound, to remove that one only."""
    try:
        info = None if path is None else path.stat()
    except OSError:
        return None
    return None if info is None else (info.st_dev, info.st_ino)


def remove_ipc_file(endpoint: Endpoint, identity: tuple[int, int] | None = None) -> None:
    """Remove an ipc endpoint's socket file; given the `identity` of the file this process bound, only
    that file (one bound there since by another process is its own)."""
    path = endpoint.ipc_path
    if path is not None and (identity is None or _file_identity(path) == identity):
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class _AllowList:
    """The ZAP authenticator's credentials provider: admits exactly these client public keys (Z85)."""

    keys: frozenset[bytes]

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.keys


def send_frames(socket: zmq.Socket, frames: Sequence[Buffer], flags: int = 0, zero_copy: bool = True) -> None:
    """Send one multipart message. With `zero_copy` a buffer of ZERO_COPY_MIN_BYTES or more is handed to
    libzmq without a copy (libzmq references the array's memory); smaller ones are cheaper to copy.
    An array that is a received frame's bytes (wire.decode's arrays are) is forwarded as that frame,
    never copied, whatever `zero_copy` says: `received_frame`."""
    flags = int(flags)
    more = flags | _SNDMORE
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        # bytes (topic, header) are copied outright; given copy=False, pyzmq copies a buffer smaller
        # than socket.copy_threshold itself (ZERO_COPY_MIN_BYTES here, pyzmq's default elsewhere).
        frame = received_frame(frame)
        _send(socket, frame, more if index < last else flags, not zero_copy or type(frame) is bytes)


def received_frame(buffer: Buffer) -> Buffer:
    """The zmq.Frame whose bytes `buffer` is, when it is an array over a whole received frame, else
    `buffer`. Sending a Frame shares its content inside libzmq (zmq_msg_copy, reference counted): a node
    that passes on what it received (the synchronizer, the camera's and lidar's tensors of every set)
    copies nothing, and leaves pyzmq no Python buffer to release from its garbage-collector thread."""
    whole = (
        isinstance(buffer, np.ndarray)
        and type(frame := buffer.base) is zmq.Frame
        and buffer.nbytes == len(frame)
        and buffer.flags.c_contiguous
    )
    return frame if whole else buffer


def recv_frames(socket: zmq.Socket, flags: int = 0) -> list[zmq.Frame]:
    """Receive one multipart message as zero-copy frames (Frame.more is cheaper than ZMQ_RCVMORE)."""
    frame = socket.recv(flags, copy=False)
    frames = [frame]
    while frame.more:
        frame = socket.recv(copy=False)
        frames.append(frame)
    return frames


def _release(held: list[zmq.Socket | ThreadAuthenticator], context: zmq.Context | None) -> None:
    """Close what a wrapper that was never closed holds, then term its own context. Run by the garbage
    collector: pyzmq's own finalizer of the context would term it with the sockets open (its list of them
    is of weak references, cleared first when they are cyclic garbage) and hang the process."""
    for thing in reversed(held):  # the authenticator last in, stopped first: its thread holds sockets
        if isinstance(thing, ThreadAuthenticator):
            thing.stop()
        elif not thing.closed:
            thing.close(linger=0)
    if context is not None:
        context.term()


class _Socket:
    """Shared lifecycle: one socket, bound or connected, closed with a bounded linger."""

    def __init__(
        self, kind: int, linger_ms: int, context: zmq.Context | None, curve: Curve | None = None
    ) -> None:
        # A socket owns its context unless given one: closing then terms the context, which waits (up
        # to the linger) for queued zero-copy frames to leave before the process may free their memory.
        self._owns_context = context is None
        self._context = context or zmq.Context()
        self.socket: zmq.Socket = self._context.socket(kind)
        # What `close` releases, released by the garbage collector instead if close is never called.
        self._held: list[zmq.Socket | ThreadAuthenticator] = [self.socket]
        own = self._context if self._owns_context else None
        self._unclosed = weakref.finalize(self, _release, self._held, own)
        self._unclosed.atexit = False  # at exit the process ends with its sockets, as without the finalizer
        self.socket.linger = linger_ms
        self.socket.copy_threshold = ZERO_COPY_MIN_BYTES
        self._bound: list[tuple[Endpoint, tuple[int, int] | None]] = []  # each with its ipc file's identity
        self._curve = curve
        # Shared-memory end (fusion_pipeline.transport.shm), set by a subclass; released with the socket.
        self.segments: shared_memory.SegmentWriter | shared_memory.SegmentReader | None = None
        self._authenticator: ThreadAuthenticator | None = None

    def _attach(self, endpoint: Endpoint, bind: bool) -> None:
        try:
            self._bind_or_connect(endpoint, bind)
        except BaseException:
            # A half-made socket must not be left to the garbage collector: its context's term() would
            # wait forever on the open socket (and on a started authenticator).
            self.close()
            raise

    def _bind_or_connect(self, endpoint: Endpoint, bind: bool) -> None:
        if self._curve is not None and endpoint.scheme == "tcp":
            self._secure(bind)
        elif self._curve is not None:
            # libzmq reads the mechanism at each bind/connect and CURVE also runs over ipc: an ipc
            # endpoint after a tcp one on the same socket goes back to the NULL mechanism.
            self.socket.curve_server = False
        try:
            if bind:
                try:
                    prepare_bind(endpoint)
                except OSError as exc:
                    raise EndpointError(f"cannot bind {endpoint.url!r}: {exc}") from exc
                _refuse_taken(endpoint)
                self.socket.bind(endpoint.url)
                self._bound.append((endpoint, _file_identity(endpoint.ipc_path)))
            else:
                self.socket.connect(endpoint.url)
        except zmq.ZMQError as exc:
            verb = "bind" if bind else "connect"
            raise EndpointError(f"cannot {verb} {endpoint.url!r}: {exc}") from exc

    def _secure(self, server: bool) -> None:
        """Turn on CURVE before bind/connect (libzmq reads the options at that moment)."""
        curve = self._curve
        try:  # a key file missing, malformed or readable by others (transport.keys) is refused here
            public, secret = load_certificate(curve.certificate, need_secret=True)
            self.socket.curve_publickey, self.socket.curve_secretkey = public, secret
            if server:
                if curve.authorized_keys is None:
                    raise TransportError("a CURVE server socket needs an authorized_keys directory")
                allowed = _AllowList(load_allow_list(curve.authorized_keys, need_keys=True))
                if self._authenticator is None:
                    self._authenticator = ThreadAuthenticator(self._context, log=_AUTH_LOG)
                    self._held.append(self._authenticator)
                    self._authenticator.start()
                    self._authenticator.configure_curve_callback(domain="*", credentials_provider=allowed)
                self.socket.curve_server = True
            else:
                if curve.server_key is None:
                    raise TransportError(
                        "a CURVE client socket needs the server's public certificate (server_key)"
                    )
                self.socket.curve_serverkey = load_certificate(curve.server_key, need_secret=False)[0]
        except KeysError as exc:
            raise TransportError(str(exc)) from exc

    @property
    def last_endpoint(self) -> str:
        """The endpoint actually bound (resolves a wildcard tcp port)."""
        return self.socket.last_endpoint.decode()

    def close(self) -> None:
        if self.socket.closed:
            return
        self._unclosed.detach()
        self.socket.close()
        if self._authenticator is not None:
            self._authenticator.stop()
        if self._owns_context:
            self._context.term()
        for endpoint, identity in self._bound:
            remove_ipc_file(endpoint, identity)
        if self.segments is not None:
            self.segments.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Publisher(_Socket):
    """Publishes the samples of one stream, numbering them with `seq`.

    `lossless=True` blocks in `publish` while a subscriber's queue is full instead of dropping.
    `shm=True` on an ipc endpoint copies arrays of `shared_memory.MIN_BYTES` and more into a ring of
    shared-memory slots and sends references (docs/PROTOCOL.md 3.2); a lossless publisher never does, as a
    ring overtaking a slow subscriber would lose messages.
    """

    def __init__(
        self,
        endpoint: str,
        stream: str,
        modality: str,
        *,
        frame_id: str = "",
        bind: bool = True,
        role: Role = Role.SENSOR,
        hwm: int | None = None,
        lossless: bool = False,
        curve: Curve | None = None,
        context: zmq.Context | None = None,
        shm: bool = False,
    ) -> None:
        where = Endpoint(endpoint)  # a bad URL is refused before a socket exists to be left open
        super().__init__(zmq.XPUB if lossless else zmq.PUB, 2000 if lossless else 0, context, curve)
        if lossless:
            self.socket.setsockopt(zmq.XPUB_NODROP, 1)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
        if hwm is None:
            continuous = not lossless and role is Role.SENSOR and modality in CONTINUOUS_MODALITIES
            hwm = CONTINUOUS_SENSOR_HWM if continuous else DEFAULT_HWM[Role.REPLAY if lossless else role]
        self.socket.sndhwm = hwm
        self.stream, self.modality, self.frame_id = stream, modality, frame_id
        self.lossless = lossless
        self.seq = 0
        self._attach(where, bind)
        use_shm = shm and not lossless and where.scheme == "ipc"
        if use_shm and not shared_memory.available():
            _LOG.warning("%s: no shared memory here (needs Linux /dev/shm); arrays go in frames", stream)
            use_shm = False
        self.segments = shared_memory.SegmentWriter(stream) if use_shm else None

    def publish(
        self,
        stamp_ns: int,
        arrays: dict[str, np.ndarray] | None = None,
        *,
        meta: dict[str, Any] | None = None,
        **named_arrays: np.ndarray,
    ) -> int:
        """Send one sample stamped `stamp_ns` (capture time, ns since the UNIX epoch); return its seq."""
        sample = Sample(
            self.stream,
            self.modality,
            self.seq,
            int(stamp_ns),
            {**(arrays or {}), **named_arrays},
            self.frame_id,
            meta or {},
        )
        self.send(sample)
        self.seq += 1
        return sample.seq

    def bind_also(self, endpoint: str) -> None:
        """Serve the same messages on `endpoint` too (results on tcp for other hosts and on ipc for this
        one); CURVE applies to tcp endpoints only."""
        self._attach(Endpoint(endpoint), bind=True)

    def send(self, sample: Sample, zero_copy: bool = True) -> None:
        """Send a sample as it is (its own stream and seq): for nodes that forward or replay."""
        send_frames(self.socket, encode(sample, self.segments), zero_copy=zero_copy)

    def wait_for_subscribers(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        """Lossless mode: block until `count` subscribers joined, so nothing is sent into the void."""
        return self._wait_for(b"\x01", count, timeout_s)

    def wait_for_unsubscribe(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        """Lossless mode: block until `count` subscribers left. A receiver discards what is still queued
        when its publisher disconnects, so a lossless sender waits here before it closes."""
        return self._wait_for(b"\x00", count, timeout_s)

    def _wait_for(self, marker: bytes, count: int, timeout_s: float) -> bool:
        # XPUB delivers each (un)subscription as a message: first byte 1 = subscribe, 0 = unsubscribe.
        if not self.lossless:
            raise TransportError("waiting for subscribers needs a lossless Publisher (XPUB)")
        seen = 0
        deadline = time.monotonic() + timeout_s
        while seen < count:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self.socket.poll(remaining_ms):
                return False
            if self.socket.recv()[:1] == marker:
                seen += 1
        return True


def _resolved_urls(endpoint: Endpoint) -> list[str]:
    """The tcp://ADDRESS:PORT names a tcp endpoint given by host name resolves to (none for ipc, an
    address, or a name that does not resolve now)."""
    if endpoint.scheme != "tcp":
        return []
    host, _, port = urlsplit(endpoint.url).netloc.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return []  # already an address
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return []
    return [
        f"tcp://{address}:{port}" if family == socket.AF_INET else f"tcp://[{address}]:{port}"
        for family, _, _, _, (address, *_) in infos
    ]


class Subscriber(_Socket):
    """Receives wire v1 samples from one or more endpoints, dropping and counting malformed ones.

    `recv()` returns every message in order (lossless consumers: synchronizer, recorder);
    `recv_newest()` drains the queue and returns only the newest (real-time consumers: inference).
    `topics` are prefixes of stream names, as ZeroMQ matches them ("" takes every stream). With `exact`
    they are whole names: on a socket that carries "radar/front" and "radar/front_left", a subscriber to
    the first then passes over the second's messages (counted in `other_streams`, not as malformed).
    """

    def __init__(
        self,
        endpoints: str | Iterable[str],
        topics: Iterable[str] = ("",),
        *,
        limits: Limits = DEFAULT_LIMITS,
        bind: bool = False,
        role: Role = Role.SENSOR,
        hwm: int | None = None,
        curve: Curve | None = None,
        context: zmq.Context | None = None,
        exact: bool = False,
    ) -> None:
        urls = [Endpoint(url) for url in ([endpoints] if isinstance(endpoints, str) else endpoints)]
        super().__init__(zmq.SUB, 0, context, curve)
        self.limits = limits
        self.socket.rcvhwm = hwm if hwm is not None else DEFAULT_HWM[role]
        # libzmq applies the limit per frame: anything larger is refused before it is buffered.
        self.socket.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
        topics = [topic.encode() for topic in topics]
        for topic in topics:
            self.socket.subscribe(topic)
        self._streams = frozenset(topics) if exact and b"" not in topics else None  # whole names taken
        self.other_streams = 0
        # A frame over MAXMSGSIZE is a protocol error to libzmq: it drops that connection and, on the
        # connecting side, never makes it again, which would silence the stream for good. The monitor
        # says so (DISCONNECTED with no CONNECT_RETRIED after it), and `check_connections` connects again.
        self._monitor = None if bind else self.socket.get_monitor_socket(_CONNECTION_EVENTS)
        if self._monitor is not None:
            self._held.append(self._monitor)
        self._connected = {} if bind else {e.url: e for e in urls}
        # libzmq names the events of a connection it made again itself by the address it resolved.
        self._names = {alias: e.url for e in self._connected.values() for alias in _resolved_urls(e)}
        self._dropped: set[str] = set()  # dropped, not retried by libzmq, at the last look
        self._refused: dict[str, float] = {}  # handshakes failed (a refused key): when to connect again
        # Endpoints whose last handshake failed: how, and when last (`handshake_failing`).
        self._handshake_failures: dict[str, tuple[str, float]] = {}
        self._handshakes_said: dict[str, str] = {}  # the problem logged per endpoint, until one succeeds
        self._rejoin_check_at = math.inf if bind else 0.0
        self.reconnects = 0
        for endpoint in urls:
            self._attach(endpoint, bind)
        # Shared-memory references name files on this host: only ipc peers may send them.
        self.segments = shared_memory.SegmentReader() if all(e.scheme == "ipc" for e in urls) else None
        self.received = 0
        self.received_bytes = 0  # of the valid messages: the byte rate of a stream
        self.skipped = 0  # valid messages passed over by recv_newest for a newer one
        self.refused = 0  # valid messages recv_newest's `admit` turned away (the caller counts why)
        self.stale = 0  # shared-memory arrays overwritten before they were read (a late drop, not malformed)
        self.malformed: Counter[str] = Counter()
        self.last_error = ""
        #: Called with the header of each message this socket drops after reading its header (malformed,
        #: over the limits, stale): its seq was used up, not lost upstream, and a replay's ingest holds its
        #: place in the send order with it.
        self.on_refused: Callable[[dict[str, Any]], None] | None = None

    def recv(self, timeout_ms: int | None = None) -> Sample | None:
        """The next valid sample, or None when `timeout_ms` passes first (None waits forever)."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            frames = self._recv_frames(deadline)
            if frames is None:
                return None
            checked = self._check(frames)
            sample = None if checked is None else self._materialize(checked)
            if sample is not None:
                return sample

    def recv_newest(
        self, timeout_ms: int | None = None, admit: Callable[[Checked], bool] | None = None
    ) -> Sample | None:
        """Wait for a message, then drain the queue and return the newest valid one.

        Every drained message has its header checked (its arrays are not touched), so a malformed one
        is counted by its reason. `admit` (the caller's own header checks) runs on each valid one in
        order and may turn it away; it counts its reasons itself, here it is counted as `refused`.
        The newest admitted message is made whole; when that fails (a damaged or overwritten
        shared-memory slot) the one before it is tried, so a bad newest message never costs a good
        one. The admitted ones passed over are counted as `skipped`.
        """
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            frames = self._recv_frames(deadline)
            if frames is None:
                return None
            admitted: list[Checked] = []  # views of their frames, not copies
            while frames is not None:
                checked = self._check(frames)
                if checked is not None and admit is not None and not admit(checked):
                    self.refused += 1
                elif checked is not None:
                    admitted.append(checked)
                try:
                    frames = recv_frames(self.socket, zmq.NOBLOCK)
                except zmq.Again:
                    frames = None
            while admitted:
                sample = self._materialize(admitted.pop())
                if sample is not None:
                    self.skipped += len(admitted)
                    return sample

    def _recv_frames(self, deadline: float | None) -> list[Buffer] | None:
        # A queued message is taken at once: a poll costs more than the rest of a small message's receive.
        # A look at the connections is due at most once a second, checked with each message too: a
        # busy endpoint must not hide another one's dropped connection.
        try:
            frames = recv_frames(self.socket, zmq.NOBLOCK)
        except zmq.Again:
            pass
        else:
            if time.monotonic() >= self._rejoin_check_at:
                self.check_connections()
            return frames
        while True:  # the wait is cut at each look at the connections, so a dropped one is noticed
            now = time.monotonic()
            if now >= self._rejoin_check_at:
                self.check_connections()
            timeout = -1 if deadline is None else max(0, int((deadline - now) * 1000))
            until_look = (
                max(1, int((self._rejoin_check_at - now) * 1000)) if self._monitor is not None else -1
            )
            cut = until_look >= 0 and (timeout < 0 or until_look < timeout)
            if self.socket.poll(until_look if cut else timeout):
                return recv_frames(self.socket)
            if not cut:
                return None

    def check_connections(self) -> None:
        """At most every REJOIN_CHECK_S: connect again, counted in `reconnects`, to each endpoint libzmq
        dropped and did not retry since the last look (a peer's frame over the size limit); and every
        REFUSED_RETRY_S to an endpoint whose handshake failed (its server may take our key by now).
        `recv` calls it as it takes messages and while it waits; a loop that polls the socket itself
        calls it on each pass."""
        now = time.monotonic()
        if self._monitor is None or now < self._rejoin_check_at:
            return
        self._rejoin_check_at = now + REJOIN_CHECK_S
        dropped: set[str] = set()
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            kind, url = event["event"], event["endpoint"].decode()
            url = self._names.get(url, url)  # the name this socket was given, not the address resolved
            if kind in _HANDSHAKE_FAILURES:
                self._refused[url] = now + REFUSED_RETRY_S
                retry = f"connecting again every {REFUSED_RETRY_S:g} s"
                self._handshake_failed(url, _HANDSHAKE_FAILURES[kind], retry)
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                closed = _PLAIN_HANDSHAKE_CLOSED if self._curve is None else _CURVE_HANDSHAKE_CLOSED
                self._handshake_failed(url, closed, "libzmq keeps trying")
            elif kind == zmq.EVENT_DISCONNECTED:
                if url not in self._refused:
                    dropped.add(url)
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED or url not in self._refused:
                # connected (a refused endpoint only once its handshake succeeds), or libzmq retries
                dropped.discard(url)
                self._dropped.discard(url)
                self._refused.pop(url, None)
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._handshake_failures.pop(url, None)
                    self._handshakes_said.pop(url, None)
        retry = {url for url, at in self._refused.items() if at <= now}
        for url in sorted((self._dropped | retry) & self._connected.keys()):
            self.socket.disconnect(url)
            self._bind_or_connect(self._connected[url], bind=False)
            if url in retry:
                self._refused[url] = now + REFUSED_RETRY_S  # until its handshake says otherwise
                continue
            self.reconnects += 1
            self.last_error = (
                f"{url}: libzmq dropped the connection (a frame over {self.limits.max_message_bytes} "
                "bytes, or a protocol error) and did not retry; connected again"
            )
            if self.reconnects == 1:  # then counted (`reconnects`): a peer that keeps doing it would flood
                _LOG.warning("%s", self.last_error)
        self._dropped = dropped

    @property
    def handshake_failing(self) -> dict[str, str]:
        """The endpoints whose handshake failed lately (within two of REFUSED_RETRY_S, the longest
        between two tries) and none succeeded since, and how: a silent stream's reason. One that failed
        and then went quiet (its driver stopped) is no longer said to be failing."""
        recent = time.monotonic() - 2 * REFUSED_RETRY_S
        return {url: how for url, (how, at) in self._handshake_failures.items() if at >= recent}

    def _handshake_failed(self, url: str, problem: str, retry: str) -> None:
        self.last_error = f"{url}: {problem}; {retry}"
        if self._handshakes_said.get(url) != problem:  # each endpoint's problem said once, a new one too
            _LOG.warning("%s", self.last_error)
            self._handshakes_said[url] = problem
        self._handshake_failures[url] = (problem, time.monotonic())

    def _check(self, frames: list[Buffer]) -> Checked | None:
        if self._streams is not None and bytes(frames[0]) not in self._streams:
            self.other_streams += 1
            return None
        try:
            return check(frames, self.limits, shm_refs=self.segments is not None)
        except WireError as exc:
            self._count_malformed(exc, exc.header)
            return None

    def _materialize(self, checked: Checked) -> Sample | None:
        try:
            sample = checked.materialize(self.segments)
        except StaleError:
            self.stale += 1
            self._refused_header(checked.sample.header_fields())
            return None
        except WireError as exc:
            self._count_malformed(exc, checked.sample.header_fields())
            return None
        self.received += 1
        self.received_bytes += checked.header_bytes + checked.nbytes
        return sample

    def _count_malformed(self, exc: WireError, header: dict[str, Any] | None) -> None:
        self.malformed[exc.reason] += 1
        self.last_error = str(exc)
        if header is not None:
            self._refused_header(header)

    def _refused_header(self, header: dict[str, Any]) -> None:
        if self.on_refused is not None:
            self.on_refused(header)

    def counters(self) -> dict[str, int]:
        return {
            "received": self.received,
            "received_bytes": self.received_bytes,
            "skipped": self.skipped,
            "refused": self.refused,
            "stale": self.stale,
            "reconnects": self.reconnects,
            "other_streams": self.other_streams,
            **{f"malformed_{k}": v for k, v in self.malformed.items()},
        }

    def close(self) -> None:
        if self._monitor is not None and not self.socket.closed:
            self.socket.disable_monitor()
            self._monitor.close()
        super().close()
