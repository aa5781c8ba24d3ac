"""Logs: the MCAP log writer and reader, the recorder, the replayer, ROS 2 and Foxglove conversion."""

from __future__ import annotations

from fusion_pipeline.logs.errors import LogError, LogWriteError, Ros2Error
from fusion_pipeline.logs.foxglove import SCHEMAS, export_foxglove, to_foxglove
from fusion_pipeline.logs.reader import PREFETCH, LogMessage, LogReader, existing_logs, next_part, prefetch
from fusion_pipeline.logs.recorder import (
    Recorder,
    RecordReport,
    RecordSettings,
    existing_output,
    stream_metadata,
    union_limits,
    unused_path,
)
from fusion_pipeline.logs.records import (
    DEFAULT_CHUNK_BYTES,
    FILE_METADATA,
    LOG_FORMAT,
    MESSAGE_ENCODING,
    REPORT_METADATA,
    pack_record,
    unpack_record,
)
from fusion_pipeline.logs.replayer import Replayer, ReplayReport
from fusion_pipeline.logs.ros2 import TopicMap, export_ros2, import_ros2, parse_map
from fusion_pipeline.logs.ros2_messages import AUDIO_COMMON_MSGS, typestore
from fusion_pipeline.logs.send_order import (
    LOOP_GAP_NS,
    Outgoing,
    ReplaySettings,
    absent_streams,
    left_out_streams,
    message_total,
    plan_streams,
    send_order,
)
from fusion_pipeline.logs.sources import LogSources, SourceTopics, log_sources
from fusion_pipeline.logs.writer import (
    LOG_MODE,
    LogWriter,
    SplitPolicy,
    create_log_file,
    part_path,
)

__all__ = [
    "AUDIO_COMMON_MSGS",
    "DEFAULT_CHUNK_BYTES",
    "FILE_METADATA",
    "LOG_FORMAT",
    "LOG_MODE",
    "LOOP_GAP_NS",
    "LogError",
    "LogMessage",
    "LogReader",
    "LogWriteError",
    "LogSources",
    "LogWriter",
    "MESSAGE_ENCODING",
    "PREFETCH",
    "Outgoing",
    "REPORT_METADATA",
    "RecordReport",
    "RecordSettings",
    "Recorder",
    "ReplayReport",
    "ReplaySettings",
    "Replayer",
    "Ros2Error",
    "SCHEMAS",
    "SourceTopics",
    "SplitPolicy",
    "TopicMap",
    "absent_streams",
    "create_log_file",
    "existing_logs",
    "existing_output",
    "export_foxglove",
    "export_ros2",
    "import_ros2",
    "left_out_streams",
    "log_sources",
    "next_part",
    "message_total",
    "pack_record",
    "parse_map",
    "part_path",
    "plan_streams",
    "prefetch",
    "send_order",
    "stream_metadata",
    "to_foxglove",
    "typestore",
    "union_limits",
    "unpack_record",
    "unused_path",
]
