"""k8s/README.md as a list of steps: its ```bash blocks, in order.

A block may be tagged by an HTML comment on the line before it:
``<!-- e2e: cluster -->`` (creates the kind cluster), ``<!-- e2e: image -->``
(builds and loads the image), ``<!-- e2e: skip (why) -->`` (not run by the test).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "k8s" / "README.md"

_BLOCK = re.compile(r"(?:<!-- e2e: (?P<tag>\w+)[^>]*-->\n)?```bash\n(?P<body>.*?)```", re.S)


@dataclass(frozen=True)
class Step:
    tag: str | None
    script: str

    @property
    def commands(self) -> list[str]:
        """Logical command lines (backslash continuations joined)."""
        text = self.script.replace("\\\n", " ")
        return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def steps(path: Path = README) -> list[Step]:
    return [Step(m.group("tag"), m.group("body")) for m in _BLOCK.finditer(path.read_text())]


def commands(path: Path = README) -> list[str]:
    return [c for s in steps(path) for c in s.commands]
