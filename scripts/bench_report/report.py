"""The whole report, section by section, and the file it goes into."""

from pathlib import Path

from . import run_info
from .criterion import Criterion
from .doc import Doc
from .logs import RunLogs
from .markers import kept_sections
from .run_info import RunInfo
from .sections import (
    allocations,
    end_to_end,
    goals,
    latency,
    many_streams,
    memory,
    pop_chunk,
    ring,
    streaming,
    wakeup,
)


def render(crit: Criterion, logs: RunLogs, run: RunInfo) -> Doc:
    doc = Doc()
    run_info.write(doc, run)
    ring.write(doc, crit)
    latency.write(doc, crit, run.iceoryx2_note)
    streaming.write(doc, crit)
    pop_chunk.write(doc, crit)
    wakeup.write(doc, crit, logs, run.futex_tool)
    memory.write(doc, logs)
    allocations.write(doc, logs)
    many_streams.write(doc, crit, logs)
    end_to_end.write(doc, logs)
    goals.write(doc, run.leftover)
    return doc


def write(path: Path, report: str) -> None:
    """Replaces the report in `path`, keeping the other scripts' sections."""
    old = path.read_text() if path.exists() else ""
    path.write_text(report + kept_sections(old))
