"""Set building, pure (no sockets, no clock reads): check the ingest samples the sync stage receives
against the model input each stream is bound to, and turn each FusedSet into a set message
(docs/PROTOCOL.md section 8). :class:`~fusion_pipeline.sync.stage.SyncStage` owns a SetBuilder beside
its Synchronizer.

A set message holds the tensors of the present sensor inputs only, named as in the model contract
(``camera``, ``lidar``, ``radar`` + ``radar_mask``, ``audio`` for the demo; ``camera_front`` ... for a
surround suite). An audio input's log-mel is computed by :meth:`SetBuilder.audio_features`, which the
sync stage hands to the Synchronizer as its window_transform: it runs once per window, as soon as the
window is cut, not when the set's last message arrives. The presence mask has one bit per sensor input,
in the contract's presence order; an input no stream feeds (``model.unbound_inputs``) is always absent.
A generic stream's samples (the nearest one, or a window stacked with its mask) fill its input as float32;
one that feeds no input (``model.unbound_streams``) adds them under its own name (NAME, NAME_mask) in
their own dtype, its presence in ``meta.unbound``.
"""

from __future__ import annotations

import numpy as np

from fusion_pipeline.binding import Bindings, unbound_arrays
from fusion_pipeline.config import Config
from fusion_pipeline.preprocess import AudioParams, LogMelWindows, PreprocessError
from fusion_pipeline.protocol import CAPTURE, INGEST_IN, INGEST_OUT, SET_MODALITY, SET_STREAM, SYNC_IN
from fusion_pipeline.sync.errors import InputError
from fusion_pipeline.sync.synchronizer import FusedSet
from fusion_pipeline.transport.wire import Sample

__all__ = [
    "INPUT_REASONS",
    "SetBuilder",
]


#: Why the synchronizer refused an ingest sample: unknown_stream, wrong_modality, missing_array,
#: bad_array (dtype or shape differs from the contract), bad_meta (audio without its sample rate).
INPUT_REASONS: tuple[str, ...] = (
    "unknown_stream",
    "wrong_modality",
    "missing_array",
    "bad_array",
    "bad_meta",
)


class SetBuilder:
    """Builds set messages from the streams `bindings` ties to the model's inputs."""

    def __init__(self, config: Config, bindings: Bindings) -> None:
        self.bindings = bindings
        self.order = bindings.contract.presence_order
        self.stream_of = {b.input.name: name for name, b in bindings.by_stream.items()}
        # An audio stream's front end, keeping the power spectrum rows the next window shares.
        self.log_mel = {
            name: LogMelWindows(b.prepare.params)
            for name, b in bindings.by_stream.items()
            if isinstance(b.prepare.params, AudioParams)
        }
        self.sample_rates = {name: f.params.sample_rate for name, f in self.log_mel.items()}
        self.reference = config.sync.reference
        # The generic streams' samples, as ingest checked them: (dtype, shape) by stream.
        self.generic = {
            s.name: (np.dtype(s.generic.dtype), tuple(s.generic.shape))
            for s in config.streams
            if s.generic is not None and (s.name in bindings.by_stream or s.name in bindings.unbound)
        }
        self.built = 0  # also the sets' seq
        # Sets that held each unbound stream's samples: no result says it (it feeds no model input).
        self.unbound_held = dict.fromkeys(bindings.unbound, 0)

    def payload(self, sample: Sample) -> Sample | np.ndarray:
        """What Synchronizer.add takes for this sample: the sample itself for a discrete stream (its
        arrays and stages travel with it), the float32 frames x channels chunk for audio."""
        binding = self.bindings.by_stream.get(sample.stream)
        if sample.stream in self.generic:
            return self._generic_values(sample)
        if binding is None:
            raise InputError("unknown_stream", f"stream {sample.stream!r} is not in the config")
        modality = binding.input.modality
        if sample.modality != modality:
            raise InputError(
                "wrong_modality", f"stream {sample.stream!r}: modality {sample.modality!r}, not {modality!r}"
            )
        if modality == "audio":
            samples = sample.arrays.get("samples")
            if samples is None:
                raise InputError("missing_array", f"stream {sample.stream!r}: no array 'samples'")
            if samples.dtype != np.float32 or samples.ndim != 2 or 0 in samples.shape:
                raise InputError(
                    "bad_array",
                    f"stream {sample.stream!r}: samples must be float32 frames x channels, got "
                    f"{samples.dtype} {samples.shape}",
                )
            rate = self.sample_rates[sample.stream]
            if sample.meta.get("sample_rate") != rate:
                raise InputError("bad_meta", f"stream {sample.stream!r}: meta.sample_rate must be {rate}")
            return samples
        for name, shape in binding.input.tensors.items():
            array = sample.arrays.get(name)
            if array is None:
                raise InputError("missing_array", f"stream {sample.stream!r}: no array {name!r}")
            if array.dtype != np.float32 or array.shape != shape:
                raise InputError(
                    "bad_array",
                    f"stream {sample.stream!r} array {name!r}: {array.dtype} {array.shape}, the "
                    f"contract says float32 {shape}",
                )
        return sample

    def _generic_values(self, sample: Sample) -> np.ndarray:
        """A generic stream's one sample, checked as ingest declared it (its dtype and shape)."""
        if sample.modality != "generic":
            raise InputError(
                "wrong_modality", f"stream {sample.stream!r}: modality {sample.modality!r}, not 'generic'"
            )
        values = sample.arrays.get("values")
        if values is None:
            raise InputError("missing_array", f"stream {sample.stream!r}: no array 'values'")
        dtype, shape = self.generic[sample.stream]
        if values.dtype != dtype or values.shape != shape:
            raise InputError(
                "bad_array",
                f"stream {sample.stream!r}: values {values.dtype} {values.shape}, the config says "
                f"{dtype} {shape}",
            )
        return values

    def audio_features(self, stream: str, samples: np.ndarray, first: int) -> np.ndarray | None:
        """The model input (log-mel) of one cut window of `stream` whose first frame is the stream's
        frame `first`; None (absent) if the front end refuses it."""
        try:
            return self.log_mel[stream](samples, first)
        except PreprocessError:
            return None

    def build(self, fused: FusedSet[Sample], sync_in_ns: int, completed_by: str) -> Sample:
        """The set message of `fused`. `sync_in_ns` is when the message (or the deadline) that
        completed the set arrived, `completed_by` its stream name or "deadline"; the node adds the
        sync_emit stage just before it sends."""
        arrays: dict[str, np.ndarray] = {}
        presence: list[int] = []
        stamps = dict(fused.stamps)
        audio_window = None
        for input_name in self.order:
            stream = self.stream_of.get(input_name)
            present = stream is not None and fused.presence.get(stream, False)
            if present and stream in fused.windows:
                window = fused.windows[stream]  # samples: already the log-mel (audio_features)
                arrays[input_name] = window.samples
                audio_window = [window.start_ns, window.end_ns]
                stamps[stream] = window.last_ns  # its last frame's capture time, as a discrete stamp
            elif present and stream in fused.taken:
                taken = fused.taken[stream]
                binding = self.bindings.of(stream)
                arrays[input_name] = binding.prepare(taken.values)[input_name]  # float32
                if taken.mask is not None:
                    arrays[binding.input.mask] = taken.mask
                stamps[stream] = taken.last_ns  # the newest sample taken
            elif present:
                sample = fused.payloads[stream]
                arrays.update({name: sample.arrays[name] for name in self.bindings.of(stream).input.tensors})
            presence.append(int(present))
        unbound = {}
        for stream, config in self.bindings.unbound.items():
            taken = fused.taken.get(stream)
            unbound[stream] = int(taken is not None)
            self.unbound_held[stream] += unbound[stream]
            if taken is not None:
                names = unbound_arrays(config)
                arrays[names[0]] = taken.values
                if taken.mask is not None:
                    arrays[names[1]] = taken.mask
                stamps[stream] = taken.last_ns
        stages = {CAPTURE: fused.stamp_ns}
        reference = self._reference_sample(fused)
        if reference is not None:
            ingest = reference.meta.get("stages")
            ingest = ingest if isinstance(ingest, dict) else {}
            for key in (INGEST_IN, INGEST_OUT):
                if isinstance(ingest.get(key), int):
                    stages[key] = ingest[key]
        stages[SYNC_IN] = sync_in_ns
        meta = {
            "stamps": stamps,
            "presence": presence,
            "modalities": self.bindings.contract.modalities,
            "inputs": list(self.order),
            "streams": [self.stream_of.get(name, "") for name in self.order],
            "audio_window": audio_window,
            "unbound": unbound,
            "completed_by": completed_by,
            "stages": stages,
        }
        self.built += 1
        return Sample(SET_STREAM, SET_MODALITY, self.built - 1, fused.stamp_ns, arrays, "", meta)

    def _reference_sample(self, fused: FusedSet[Sample]) -> Sample | None:
        """The message whose stamp is the set's: the reference stream's, else the newest one."""
        name = self.reference if self.reference in fused.payloads else None
        if name is None:
            name = next((n for n, t in fused.stamps.items() if t == fused.stamp_ns), None)
        return fused.payloads.get(name) if name is not None else None
