"""The ``nrsfm-kit`` command.

``nrsfm-kit demo`` runs every method on embedded synthetic data. Topic subpackages add their own
subcommands by providing ``nrsfm_kit/<topic>/cli.py`` with ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from nrsfm_kit import __version__
from nrsfm_kit.config import smoke

# subpackages that may contribute subcommands (``nrsfm_kit/<name>/cli.py`` with ``register``)
_COMMAND_PACKAGES = ("data", "graph", "solver", "nrsfm", "edm", "tracking")


def _demo(args: argparse.Namespace) -> int:
    from nrsfm_kit.demo import run_demo

    return run_demo(args.out, smoke=args.smoke or smoke(), only=args.section)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nrsfm-kit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nrsfm-kit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run every method on embedded synthetic data, write an HTML page")
    demo.add_argument("--out", default="build/demo", help="output folder (default build/demo)")
    demo.add_argument("--smoke", action="store_true", help="small sizes (also NRSFM_KIT_SMOKE=1)")
    demo.add_argument("--section", action="append", help="run only this section (repeatable)")
    demo.set_defaults(func=_demo)
    for name in _COMMAND_PACKAGES:
        module = _load_topic_cli(name)
        if module is not None:
            module.register(sub)
    return parser


def _load_topic_cli(name: str):
    """The module ``nrsfm_kit.<name>.cli``, or None when the topic has no ``cli.py``.

    Importing it stays fast (``nrsfm-kit --help``): the topic packages load their names lazily (PEP 562)
    and the ``cli.py`` files import torch, Warp and Open3D only inside the command functions.
    """
    if not (Path(__file__).resolve().parent / name / "cli.py").is_file():
        return None  # checked on disk: importing the package to find out could be slow
    return importlib.import_module(f"nrsfm_kit.{name}.cli")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"nrsfm-kit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
