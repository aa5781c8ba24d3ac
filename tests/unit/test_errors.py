"""The error convention: every drop is a DropError whose `reason` names its counter; a bad endpoint is a
TransportError."""

import pytest

from fusion_pipeline.errors import DropError, EndpointError, SchemaError, TransportError
from fusion_pipeline.ingest import SCHEMA_REASONS
from fusion_pipeline.protocol import Endpoint
from fusion_pipeline.sync import INPUT_REASONS, InputError
from fusion_pipeline.transport import HeaderError, StaleError, WireError


def test_a_wire_error_carries_its_class_reason_and_its_message() -> None:
    exc = HeaderError("missing key 'seq'")
    assert isinstance(exc, DropError) and isinstance(exc, WireError)
    assert (exc.reason, str(exc)) == ("bad_header", "missing key 'seq'")
    assert StaleError("gone").reason == "stale"


@pytest.mark.parametrize(
    ("cls", "reason"), [(SchemaError, SCHEMA_REASONS[0]), (InputError, INPUT_REASONS[1])]
)
def test_schema_and_input_errors_take_the_reason_first(cls: type[DropError], reason: str) -> None:
    exc = cls(reason, "why")
    assert isinstance(exc, DropError) and (exc.reason, str(exc)) == (reason, "why")


def test_a_bad_endpoint_is_caught_as_a_transport_error() -> None:
    with pytest.raises(TransportError, match="absolute path"):
        Endpoint("ipc://relative.sock")
    assert issubclass(EndpointError, TransportError)
