"""Config text for unit tests: one `[[streams]]` table without a process behind it."""


def stream_table(name: str, modality: str, extra: str = "") -> str:
    """A `[[streams]]` table at 10 Hz on an ipc path nobody binds; audio at 16 kHz. `extra`: more lines."""
    lines = [f'name = "{name}"', f'modality = "{modality}"', f'endpoint = "ipc:///x/{name}.sock"']
    if modality == "audio":
        lines.append("sample_rate = 16000")
    return "[[streams]]\n" + "\n".join([*lines, "rate_hz = 10", extra]) + "\n"
