"""A live Foxglove WebSocket (foxglove-sdk) with the channels of ``export-foxglove``: each message is
converted by `logs.foxglove.to_foxglove` and published with its schema from `logs.foxglove.SCHEMAS`, on
the topic `logs.sources.SourceTopics` gives it (``/STREAM``), JSON encoded as the export writes it."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from fusion_pipeline.logs.foxglove import SCHEMAS, to_foxglove
from fusion_pipeline.logs.sources import SourceTopics
from fusion_pipeline.transport.wire import Sample
from fusion_pipeline.view.analytics import EXTRA_HINT
from fusion_pipeline.view.errors import ViewError

__all__ = ["FoxgloveLive"]


_SOURCE = "live"  # one source: every stream keeps its plain /STREAM topic


class FoxgloveLive:
    """A Foxglove WebSocket server on 127.0.0.1:`port` (0: any free; `port` says which after start)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        try:
            import foxglove
        except ImportError as exc:
            raise ViewError(EXTRA_HINT) from exc
        self._foxglove = foxglove
        # Its own context: nothing else logged in this process reaches it; other sinks may join it.
        self.context = foxglove.Context()
        try:
            self.server = foxglove.start_server(
                name="fusion-pipeline", host=host, port=port, context=self.context
            )
        except Exception as exc:  # the SDK raises its own error types for a port in use
            raise ViewError(f"Foxglove WebSocket port {port}: cannot serve on {host}: {exc}") from exc
        self.port = int(self.server.port)
        self.url = f"ws://{host}:{self.port}"
        self._topics = SourceTopics()
        self._channels: dict[tuple[str, str], Any] = {}
        self.published: Counter[str] = Counter()
        self.no_schema: Counter[str] = Counter()  # streams Foxglove has no schema for (audio, sets)

    def show(self, sample: Sample, log_time_ns: int) -> None:
        converted = to_foxglove(sample)
        if converted is None:
            self.no_schema[sample.stream] += 1
            return
        schema, payload = converted
        topic = self._topics.topic(sample.stream, _SOURCE)
        channel = self._channels.get((topic, schema))
        if channel is None:
            channel = self._foxglove.Channel(
                topic,
                schema=self._foxglove.Schema(
                    name=schema, encoding="jsonschema", data=json.dumps(SCHEMAS[schema]).encode()
                ),
                message_encoding="json",
                context=self.context,
            )
            self._channels[(topic, schema)] = channel
        channel.log(json.dumps(payload, default=str).encode(), log_time=log_time_ns)
        self.published[topic] += 1

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self.server.stop()
