"""The exception hierarchy: every error the library raises on purpose derives from FusionError.

One convention: a subpackage's errors are in its own ``errors.py`` and its face re-exports them
(``fusion_pipeline.transport.WireError``); the top-level modules' errors are here. A message the
pipeline refuses and counts, never fatal, raises a DropError: its ``reason`` names the counter. Two
library errors are also counted where the pipeline meets them: the sync stage counts a SyncError as
``rejected_sync_refused`` and the inference stage a ContractError (a set the model cannot take) as
``bad_sets``; elsewhere they refuse settings or a model.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ContractError",
    "DropError",
    "EndpointError",
    "FusionError",
    "SchemaError",
    "TransportError",
]


class FusionError(Exception):
    """Base of all fusion-pipeline errors."""


class DropError(FusionError):
    """A message that is dropped and counted, never fatal: wire (transport.WireError), schema
    (SchemaError) and set-input (sync.InputError) errors. `reason` is a short stable key that names the
    counter (``malformed_<reason>``, ``schema_<reason>``, ``rejected_<reason>``); a class with several
    reasons takes it as the first argument, a class with one sets it as a class attribute."""

    reason: str

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransportError(FusionError):
    """A socket cannot be set up: its endpoint, its CURVE keys, its kind."""


class EndpointError(TransportError):
    """An endpoint URL is invalid, or its socket cannot be bound or connected. Here, not in the
    transport, because the config checks endpoints without loading zmq (fusion_pipeline.protocol)."""


class ConfigError(FusionError):
    """The config file, or a value in it, is invalid; the message names the key."""


class ContractError(FusionError):
    """A model contract is malformed, or does not match the config."""


class SchemaError(DropError):
    """A wire-valid message does not fit its stream's schema; `reason` is one of ingest.SCHEMA_REASONS."""
