"""Bindings: which config stream feeds which model input, checked before anything starts.

Pure (a Config and a ModelContract in, no files, no sockets). Each ``[[streams]]`` entry feeds one sensor
input of the model: the one its ``input`` key names; without it, the input named like the stream (or its
slug, ``camera/front`` -> ``camera_front``); failing that, the model's only input of the stream's
modality when the config has one stream of it too. Every input needs a stream, unless
``model.unbound_inputs`` lists it: then it is always absent (presence bit 0). Every stream needs an input,
unless ``model.unbound_streams`` lists it (generic streams only): then it is checked, synchronized into
the sets under its own name and recorded, never given to the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from fusion_pipeline.config import Config, StreamConfig
from fusion_pipeline.contract import InputSpec, ModelContract
from fusion_pipeline.errors import ContractError
from fusion_pipeline.preprocess import (
    AudioParams,
    GenericParams,
    InputPreprocessor,
    preprocessor_for,
)

__all__ = ["Binding", "Bindings", "bind", "unbound_arrays"]


@dataclass(frozen=True)
class Binding:
    """One stream bound to one sensor input; `bit` is its index in the presence mask."""

    stream: StreamConfig
    input: InputSpec
    bit: int
    prepare: InputPreprocessor


@dataclass(frozen=True)
class Bindings:
    """The bound streams (`by_stream`) and the generic ones that feed no input (`unbound`), by name."""

    contract: ModelContract
    by_stream: Mapping[str, Binding]
    unbound: Mapping[str, StreamConfig] = field(default_factory=dict)

    def of(self, stream: str) -> Binding:
        return self.by_stream[stream]

    def for_ingest(
        self, stream: str, front_end: Callable[[Binding], Binding] | None = None
    ) -> Binding | StreamConfig:
        """What `Ingest` takes for `stream`: its binding (through `front_end`, e.g. deferring its front
        end: preprocess.deferred.defer), or its config when it feeds no model input."""
        if stream in self.unbound:
            return self.unbound[stream]
        binding = self.by_stream[stream]
        return binding if front_end is None else front_end(binding)


def bind(config: Config, contract: ModelContract, model: str = "the model") -> Bindings:
    """Bind the config's streams to `contract`'s inputs; refuse (ContractError listing every problem, each
    naming the config key and the model input) what cannot run."""
    chosen: dict[int, InputSpec] = {}
    problems = list(_unbound_problems(config, contract))
    for i in range(len(config.streams)):
        if config.streams[i].name in config.model.unbound_streams:
            continue
        spec = _input_for(config, i, contract)
        if isinstance(spec, str):
            problems.append(spec)
        else:
            chosen[i] = spec
    problems += list(_binding_problems(config, contract, chosen))
    prepared: dict[int, InputPreprocessor] = {}
    for i, spec in chosen.items():
        prepared[i] = preprocessor_for(spec)  # the contract was refused if it could raise (contract.py)
        if spec.modality == config.streams[i].modality:  # else refused above already
            problems += list(_audio_problems(config, i, prepared[i]))
            problems += list(_generic_problems(config, i, prepared[i]))
    if problems:
        raise ContractError(f"{model} does not fit the config:\n" + "\n".join(f"  {p}" for p in problems))
    bits = {name: bit for bit, name in enumerate(contract.presence_order)}
    by_stream = {
        config.streams[i].name: Binding(config.streams[i], spec, bits[spec.name], prepared[i])
        for i, spec in chosen.items()
    }
    unbound = {name: config.stream(name) for name in config.model.unbound_streams}
    return Bindings(contract, by_stream, unbound)


def _input_for(config: Config, i: int, contract: ModelContract) -> InputSpec | str:
    """The input stream i feeds, or what is wrong."""
    stream = config.streams[i]
    names = [s.name for s in contract.inputs]
    if stream.input:
        if stream.input not in names:
            return f"streams[{i}].input: {stream.input!r} is not an input of the model (inputs: {names})"
        return contract.input(stream.input)
    candidates = list(dict.fromkeys((stream.name, stream.slug)))  # the slug may be the name
    for name in candidates:
        if name in names:
            return contract.input(name)
    same = contract.inputs_for(stream.modality)
    streams_of_modality = [s for s in config.streams if s.modality == stream.modality]
    if len(same) == 1 and len(streams_of_modality) == 1:
        return same[0]
    # With no input of its modality, naming one cannot help: the stream is not this model's.
    fix = f"set streams[{i}].input" if same else "remove the stream, or run a model that takes it"
    return (
        f"streams[{i}] ({stream.name!r}): no model input is named {' or '.join(map(repr, candidates))}, and "
        f"the model has {_count(len(same), stream.modality + ' input')} ({[s.name for s in same]}) for "
        f"{_count(len(streams_of_modality), stream.modality + ' stream')}: {fix}"
        + (", or list it in model.unbound_streams to record it only" if stream.modality == "generic" else "")
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _binding_problems(
    config: Config, contract: ModelContract, chosen: Mapping[int, InputSpec]
) -> Iterator[str]:
    fed_by: dict[str, int] = {}
    for i, spec in chosen.items():
        stream = config.streams[i]
        if spec.modality != stream.modality:
            yield (
                f"streams[{i}].input: stream {stream.name!r} is {stream.modality}, model input "
                f"{spec.name!r} is {spec.modality}"
            )
        if spec.name in fed_by:
            j = fed_by[spec.name]
            yield (
                f"streams[{i}].input: model input {spec.name!r} is already fed by streams[{j}] "
                f"({config.streams[j].name!r}); one stream per input"
            )
        fed_by.setdefault(spec.name, i)
    names = [s.name for s in contract.inputs]
    for j, name in enumerate(config.model.unbound_inputs):
        if name not in names:
            yield f"model.unbound_inputs[{j}]: {name!r} is not an input of the model (inputs: {names})"
        elif name in fed_by:
            yield f"model.unbound_inputs[{j}]: {name!r} is fed by streams[{fed_by[name]}]"
    for spec in contract.inputs:
        if spec.name not in fed_by and spec.name not in config.model.unbound_inputs:
            yield (
                f"model input {spec.name!r} ({spec.modality}, shape {spec.shape}) has no stream: bind one "
                "with streams[].input, or list it in model.unbound_inputs to run with it always absent"
            )


def _audio_problems(config: Config, i: int, prepare: InputPreprocessor) -> Iterator[str]:
    """An audio stream must deliver the sample rate its input takes, in windows at least as long."""
    params = prepare.params
    if not isinstance(params, AudioParams):
        return
    stream = config.streams[i]
    if stream.sample_rate != params.sample_rate:
        yield (
            f"streams[{i}].sample_rate: {stream.sample_rate} Hz, model input {prepare.name!r} takes "
            f"{params.sample_rate} Hz"
        )
    if round(config.sync.audio_window_ms * params.sample_rate / 1000) < params.window_samples:
        yield (
            f"sync.audio_window_ms = {config.sync.audio_window_ms:g}: model input {prepare.name!r} needs "
            f"{params.window_s * 1000:g} ms"
        )


def _generic_problems(config: Config, i: int, prepare: InputPreprocessor) -> Iterator[str]:
    """A generic stream must deliver the sample shape its input takes, picked or stacked as it was trained."""
    params = prepare.params
    generic = config.streams[i].generic
    if not isinstance(params, GenericParams) or generic is None:
        return
    where = f"streams[{i}].generic"
    if tuple(generic.shape) != params.sample_shape:
        want = list(params.sample_shape)
        yield f"{where}.shape: {generic.shape}, model input {prepare.name!r} takes {want}"
    if generic.mode != params.mode:
        yield f"{where}.mode: {generic.mode!r}, model input {prepare.name!r} takes {params.mode!r}"
    elif generic.mode == "window" and generic.window_samples != params.samples:
        yield (
            f"{where}.window_samples: {generic.window_samples}, model input {prepare.name!r} takes "
            f"{params.samples}"
        )


def _unbound_problems(config: Config, contract: ModelContract) -> Iterator[str]:
    """An unbound stream's arrays in a set (its name, and in window mode NAME_mask) must not take a name
    the model's tensors use."""
    tensors = set(contract.tensors)
    for j, name in enumerate(config.model.unbound_streams):
        taken = sorted(tensors & set(unbound_arrays(config.stream(name))))
        if taken:
            yield (
                f"model.unbound_streams[{j}]: {name!r} would put arrays {taken} in the sets, which are "
                "names of model inputs"
            )


def unbound_arrays(stream: StreamConfig) -> tuple[str, ...]:
    """The arrays a generic stream that feeds no model input adds to a set: its samples, and in window
    mode the mask of the rows that hold one."""
    window = stream.generic is not None and stream.generic.mode == "window"
    return (stream.name, f"{stream.name}_mask") if window else (stream.name,)
