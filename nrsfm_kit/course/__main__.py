"""``python -m nrsfm_kit.course {book,student,solutions,slides} [options]``: see :mod:`nrsfm_kit.course`."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "book": ("nrsfm_kit.course.book", "main"),
    "student": ("nrsfm_kit.course.assignments", "main_student"),
    "solutions": ("nrsfm_kit.course.assignments", "main_solutions"),
    "slides": ("nrsfm_kit.course.slides", "main"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        found = argv[0] if argv else "nothing"
        print(f"usage: python -m nrsfm_kit.course {{{','.join(COMMANDS)}}} [options]: expected a command, "
              f"found {found!r}", file=sys.stderr)
        return 2
    module, func = COMMANDS[argv[0]]
    return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
