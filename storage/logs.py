"""Worker log files: reading their last lines (for error texts and ``flowopd runs logs``)."""

from __future__ import annotations

import os
from pathlib import Path


def tail_lines(path: Path, n: int = 40, *, block: int = 8192) -> list[str]:
    """The last ``n`` lines of a text file (read from the end, so cheap on huge logs); [] if it is missing."""
    if n <= 0 or not path.is_file():
        return []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = pos = f.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= n:
            pos = max(0, pos - block)
            f.seek(pos)
            data = f.read(end - pos)
    return data.decode("utf-8", errors="replace").splitlines()[-n:]


def with_log_tail(message: str, path: Path, n: int = 20) -> str:
    """``message`` followed by the last ``n`` lines of the log at ``path`` (if it has any)."""
    lines = tail_lines(path, n)
    return message + (f"\n--- last {len(lines)} lines of {path.name} ---\n" + "\n".join(lines) if lines else "")
