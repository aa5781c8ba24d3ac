"""The protocol's values that the config checks and the transport uses (docs/PROTOCOL.md).

Endpoint URLs and the CURVE key files of a tcp socket (section 1), nanoseconds, the unit of every
stamp (3), the dtype strings an array may have (3.1), the streams of the pipeline's outputs and the
names of their stage timestamps (8). Values and their checks only: no sockets, no files touched, so
config.py stays below the transport. What a socket does with them (bind, CURVE handshake, decode) is in
fusion_pipeline/transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from fusion_pipeline.errors import EndpointError

__all__ = [
    "ALLOWED_DTYPES",
    "CAPTURE",
    "CONTINUOUS_MODALITIES",
    "INFERENCE_END",
    "INFERENCE_START",
    "INGEST_IN",
    "INGEST_OUT",
    "NS_PER_S",
    "PUBLISH",
    "RESULT_MODALITY",
    "RESULT_STREAM",
    "SET_MODALITY",
    "SET_STREAM",
    "STAGES",
    "STREAM_NAME_MAX",
    "STREAM_NAME_PATTERN",
    "SYNC_EMIT",
    "SYNC_IN",
    "Curve",
    "Endpoint",
    "SeqGaps",
    "SeqMark",
]

#: Stamps and stage times are integer nanoseconds since the UNIX epoch.
NS_PER_S = 1_000_000_000

#: A stream name (PROTOCOL.md section 6): 1 to STREAM_NAME_MAX characters of A-Z a-z 0-9 _ . / -.
STREAM_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$"
STREAM_NAME_MAX = 128

#: Streams whose every message the pipeline takes, in order: a skipped message would be a hole in every
#: window over it. The others are discrete: a node behind on one skips to its newest message.
CONTINUOUS_MODALITIES: tuple[str, ...] = ("audio", "generic")

#: The stream and modality of the synchronizer's set messages and of the inference node's results.
SET_STREAM, SET_MODALITY = "set/fused", "set"
RESULT_STREAM, RESULT_MODALITY = "result/fused", "result"

# The keys of meta["stages"] in sets and results: wall-clock ns at each step of the pipeline.
CAPTURE = "capture"  # the set's reference stamp
INGEST_IN = "ingest_in"  # the reference stream's message reached its ingest node
INGEST_OUT = "ingest_out"  # ... and left it
SYNC_IN = "sync_in"  # the message that completed the set reached the synchronizer (or its deadline woke it)
SYNC_EMIT = "sync_emit"
INFERENCE_START = "inference_start"
INFERENCE_END = "inference_end"
PUBLISH = "publish"
#: The stages in pipeline order: a stage's latency is the difference to the one before.
STAGES: tuple[str, ...] = (
    CAPTURE,
    INGEST_IN,
    INGEST_OUT,
    SYNC_IN,
    SYNC_EMIT,
    INFERENCE_START,
    INFERENCE_END,
    PUBLISH,
)

#: dtype strings as numpy spells them (``np.dtype(x).str``); multi-byte types are little endian.
ALLOWED_DTYPES: frozenset[str] = frozenset(
    {"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"}
)


class SeqMark(NamedTuple):
    """Where a stream's sequence left off: the last seq a receiver accepted and when it came (ns on the
    stream's clock). A restarted node goes on from its predecessor's, so what the stream sent between
    the two counts as lost."""

    seq: int
    time_ns: int


class SeqGaps:
    """How many messages of one sender never came, from the gaps in the seq a pipeline node numbers its
    output with (0, 1, 2, ...): a full queue drops them unseen (section 7). A seq at or below the last
    one is a restarted sender numbering anew, not a loss."""

    def __init__(self) -> None:
        self._next: int | None = None  # the seq that follows the last one

    def missing_before(self, seq: int) -> int:
        """The messages between the last one and `seq` that never came."""
        missing = 0 if self._next is None else max(0, seq - self._next)
        self._next = seq + 1
        return missing

    def pass_over(self, seq: object) -> None:
        """A message that came but was dropped for another reason (counted there) used `seq`, as its
        header said it: the next one does not count it as missing. Only forward, and only an integer seq
        in range: the header was not trusted (it may be what got the message dropped), nor is it taken
        for a restarted sender."""
        if type(seq) is int and 0 <= seq < 2**64 and (self._next is None or seq >= self._next):
            self._next = seq + 1


@dataclass(frozen=True)
class Endpoint:
    """A ZeroMQ endpoint URL: ``ipc:///abs/path.sock`` on one host or ``tcp://host:port`` across hosts."""

    url: str

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme == "ipc":
            if not self.url.startswith("ipc:///"):
                raise EndpointError(
                    f"endpoint {self.url!r}: ipc endpoints need an absolute path (ipc:///...)"
                )
        elif parts.scheme == "tcp":
            # "*" is ZeroMQ's wildcard port: bind to any free port, read it back with last_endpoint.
            host, colon, port = parts.netloc.rpartition(":")
            if not colon or not host:
                raise EndpointError(f"endpoint {self.url!r}: tcp endpoints need host:port")
            # isascii: str.isdigit() also takes digits such as "²", which int() refuses.
            if not (port == "*" or port.isascii() and port.isdigit() and 0 < int(port) < 65536):
                raise EndpointError(f"endpoint {self.url!r}: port {port!r} is not 1-65535 or *")
        else:
            raise EndpointError(f"endpoint {self.url!r}: scheme must be ipc:// or tcp://")

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    @property
    def ipc_path(self) -> Path | None:
        return Path(self.url[len("ipc://") :]) if self.scheme == "ipc" else None


@dataclass(frozen=True)
class Curve:
    """CURVE encryption and authentication of one tcp socket.

    The side that binds is the CURVE server: it proves itself with `certificate` and admits only clients
    whose public certificate is in `authorized_keys` (a directory), checked by a ZAP authenticator. The
    side that connects is a client: it needs `server_key`, the server's public certificate. Certificates
    are ZeroMQ certificate files (`fusion-pipeline keys generate`); a secret certificate holds both keys.
    """

    certificate: Path
    authorized_keys: Path | None = None
    server_key: Path | None = None
