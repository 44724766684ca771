"""One marked section of a Markdown file (docs/benchmarks.md): the text
between ``<!-- TAG:start -->`` and ``<!-- TAG:end -->``, replaced in place,
or appended with its markers when they are absent. Every bench script that
feeds docs/benchmarks.md writes through here; scripts/bench_report keeps
the sections when it writes the criterion report around them."""

from __future__ import annotations

from pathlib import Path


def markers(tag: str) -> tuple[str, str]:
    """The start and end markers of section ``tag``."""
    return f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"


def write_section(path: Path, tag: str, text: str) -> None:
    """Puts ``text`` between the markers of ``tag`` in ``path``."""
    start, end = markers(tag)
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text.rstrip(chr(10))}\n{end}"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new)
