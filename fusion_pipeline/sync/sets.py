"""Set building, pure (no sockets, no clock reads): check the ingest samples the sync stage receives
against the model contract, and turn each FusedSet into a set message (docs/PROTOCOL.md section 8).
:class:`~fusion_pipeline.sync.stage.SyncStage` owns a SetBuilder beside its Synchronizer.

A set message holds the model inputs of the present modalities only, named as in the contract
(``camera``, ``lidar``, ``radar`` + ``radar_mask``, ``audio``). The audio log-mel is computed by
:meth:`SetBuilder.audio_features`, which the sync stage hands to the Synchronizer as its window_transform:
it runs once per window, as soon as the window is cut, not when the set's last message arrives.
The presence mask follows ``contract.MODALITIES``; a modality with no stream in the config is always
absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_pipeline.config import Config
from fusion_pipeline.contract import AUDIO_SAMPLE_RATE, MODALITIES, ModelContract, default_contract
from fusion_pipeline.preprocess.audio import WINDOW_SAMPLES, preprocess_audio
from fusion_pipeline.preprocess.errors import PreprocessError
from fusion_pipeline.protocol import CAPTURE, INGEST_IN, INGEST_OUT, SET_MODALITY, SET_STREAM, SYNC_IN
from fusion_pipeline.sync.errors import InputError, SetLayoutError
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


@dataclass(frozen=True)
class _Input:
    name: str
    shape: tuple[int, ...]


class SetBuilder:
    """Maps the config's streams onto the contract's modalities and builds set messages."""

    def __init__(self, config: Config, contract: ModelContract | None = None) -> None:
        contract = contract or default_contract()
        self.modality_of: dict[str, str] = {}  # stream -> modality
        self.stream_of: dict[str, str] = {}  # modality -> stream
        for stream in config.streams:
            if stream.modality in self.stream_of:
                raise SetLayoutError(
                    f"streams {self.stream_of[stream.modality]!r} and {stream.name!r} are both "
                    f"{stream.modality}; the model contract has one {stream.modality} input"
                )
            self.stream_of[stream.modality] = stream.name
            self.modality_of[stream.name] = stream.modality
            if stream.modality == "audio":
                self._check_audio(stream.name, stream.sample_rate or 0, config.sync.audio_window_ms)
        self.inputs: dict[str, tuple[_Input, ...]] = {
            m: tuple(_Input(s.name, s.shape) for s in contract.inputs_for(m)) for m in MODALITIES
        }
        self.reference = config.sync.reference
        self.built = 0  # also the sets' seq

    @staticmethod
    def _check_audio(stream: str, sample_rate: int, window_ms: float) -> None:
        if sample_rate != AUDIO_SAMPLE_RATE:
            raise SetLayoutError(
                f"stream {stream!r}: sample_rate {sample_rate} Hz, the model's audio front end takes "
                f"{AUDIO_SAMPLE_RATE} Hz"
            )
        if round(window_ms * sample_rate / 1000) < WINDOW_SAMPLES:
            raise SetLayoutError(
                f"sync.audio_window_ms = {window_ms}: the audio input needs at least "
                f"{WINDOW_SAMPLES * 1000 / AUDIO_SAMPLE_RATE:g} ms"
            )

    def payload(self, sample: Sample) -> Sample | np.ndarray:
        """What Synchronizer.add takes for this sample: the sample itself for a discrete stream (its
        arrays and stages travel with it), the float32 frames x channels chunk for audio."""
        modality = self.modality_of.get(sample.stream)
        if modality is None:
            raise InputError("unknown_stream", f"stream {sample.stream!r} is not in the config")
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
            if sample.meta.get("sample_rate") != AUDIO_SAMPLE_RATE:
                raise InputError(
                    "bad_meta", f"stream {sample.stream!r}: meta.sample_rate must be {AUDIO_SAMPLE_RATE}"
                )
            return samples
        for spec in self.inputs[modality]:
            array = sample.arrays.get(spec.name)
            if array is None:
                raise InputError("missing_array", f"stream {sample.stream!r}: no array {spec.name!r}")
            if array.dtype != np.float32 or array.shape != spec.shape:
                raise InputError(
                    "bad_array",
                    f"stream {sample.stream!r} array {spec.name!r}: {array.dtype} {array.shape}, the "
                    f"contract says float32 {spec.shape}",
                )
        return sample

    @staticmethod
    def audio_features(samples: np.ndarray) -> np.ndarray | None:
        """The model's audio input (log-mel) of one cut window; None (absent) if the front end refuses it."""
        try:
            return preprocess_audio(samples)
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
        for modality in MODALITIES:
            stream = self.stream_of.get(modality)
            present = stream is not None and fused.presence.get(stream, False)
            if present and modality == "audio":
                window = fused.windows[stream]  # samples: already the log-mel (audio_features)
                arrays["audio"] = window.samples
                audio_window = [window.start_ns, window.end_ns]
                stamps[stream] = window.last_ns  # its last frame's capture time, as a discrete stamp
            elif present:
                sample = fused.payloads[stream]
                arrays.update({spec.name: sample.arrays[spec.name] for spec in self.inputs[modality]})
            presence.append(int(present))
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
            "modalities": list(MODALITIES),
            "audio_window": audio_window,
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
