"""The transport's errors: a message that breaks wire v1 (counted and dropped, its `reason` the counter's
key), a keypair that cannot be written. A socket that cannot be set up is fusion_pipeline.errors'
TransportError: the config checks endpoints below the transport."""

from __future__ import annotations

from typing import Any

from fusion_pipeline.errors import DropError, FusionError

__all__ = [
    "ArraySizeError",
    "DTypeError",
    "HeaderError",
    "KeysError",
    "LimitError",
    "MalformedError",
    "StaleError",
    "UnknownVersionError",
    "WireError",
]


class WireError(DropError):
    """A message does not follow wire v1. Each subclass has one `reason` (a class attribute), so it
    takes the message only."""

    reason = "bad_encoding"
    #: The message's header, where it was read before the message was refused (its arrays were not).
    header: dict[str, Any] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(self.reason, message)


class MalformedError(WireError):
    """Frame structure or header encoding is broken (wrong frame count, bad msgpack, not a map)."""

    reason = "bad_encoding"


class UnknownVersionError(WireError):
    reason = "unknown_version"


class HeaderError(WireError):
    """A header key is missing or has the wrong type or value."""

    reason = "bad_header"


class DTypeError(WireError):
    reason = "dtype_not_allowed"


class ArraySizeError(WireError):
    """The declared shape and dtype disagree with the buffer length."""

    reason = "size_mismatch"


class LimitError(WireError):
    """A declared size is over a configured limit."""

    reason = "over_limit"


class StaleError(WireError):
    """A shared-memory array was overwritten (or its segment removed) before it was read: the message
    is older than the publisher's ring, the shared-memory form of a high-water-mark drop."""

    reason = "stale"


class KeysError(FusionError):
    """A keypair cannot be written safely."""
