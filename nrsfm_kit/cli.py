"""The ``nrsfm-kit`` command.

``nrsfm-kit demo`` runs every method on embedded synthetic data. Topic subpackages add their own
subcommands by providing ``nrsfm_kit/<topic>/cli.py`` with ``register(subparsers)``.

Errors a user can fix (a bad flag value, a missing or unreadable file) print one line naming the flag
(``--node-coverage``) or the file and exit with code 2. Commands check their arguments before any work
starts, with the helpers below (:func:`check_input_file`, :func:`check_output_file`, ...); a ``ValueError``
raised deeper in the package that starts with a parameter name the command maps to a flag (the option's
own ``dest``, or ``param_flags`` set with ``parser.set_defaults``) is reported under the flag's name.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import math
import re
import sys
from pathlib import Path

from nrsfm_kit import __version__
from nrsfm_kit.config import smoke

# the first line of `nrsfm-kit --help` (plain text: argparse does not render reST)
DESCRIPTION = (
    "nrsfm-kit: non-rigid structure from motion, deformation graphs, non-rigid tracking and unsupervised "
    "monocular depth, each method as in its paper, on synthetic data with exact ground truth and on real data."
)
EPILOG = """\
Start with `nrsfm-kit demo` (every method on embedded synthetic data, about 40 s on 2 quiet CPU cores).
`nrsfm-kit COMMAND --help` documents each command's options with their defaults and units.
Exit codes: 0 done; 2 a bad argument or input file (the message names the flag or the path).
Environment: NRSFM_KIT_SMOKE=1 shrinks sizes (as --smoke); NRSFM_KIT_DATA is the folder of real data samples.
"""

# subpackages that may contribute subcommands (``nrsfm_kit/<name>/cli.py`` with ``register``)
_COMMAND_PACKAGES = ("data", "graph", "solver", "nrsfm", "edm", "tracking", "matching", "fusion")
_SECTIONS_DIR = Path(__file__).resolve().parent / "demo" / "sections"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps one-paragraph texts (descriptions) to the terminal; keeps multi-line ones (epilogs, tables) as written."""

    def _fill_text(self, text, width, indent):
        if "\n" not in text.strip():
            return argparse.HelpFormatter._fill_text(self, text, width, indent)
        return super()._fill_text(text, width, indent)


# ----------------------------------------------------------------------------------------------------------
# argument checks shared by the commands (torch-free: `nrsfm-kit --help` imports this module)


def check_input_file(flag: str, path, what: str) -> Path:
    """``Path(path)`` when it is an existing file; FileNotFoundError / ValueError naming ``flag`` and the path."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag}: {p} does not exist (expected {what})")
    if p.is_dir():
        raise ValueError(f"{flag}: expected {what}, found a directory {p}")
    return p


def check_input_dir(flag: str, path, what: str) -> Path:
    """``Path(path)`` when it is an existing folder; FileNotFoundError / ValueError naming ``flag`` and the path."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag}: {p} does not exist (expected {what})")
    if not p.is_dir():
        raise ValueError(f"{flag}: expected {what}, found a file {p}")
    return p


def _existing_ancestor(p: Path) -> Path:
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def check_output_file(flag: str, path) -> Path:
    """``Path(path)`` when a file can be written there (missing parent folders are created on writing).

    ValueError naming ``flag`` when the path is a directory, a file stands where a parent folder must be, or the
    nearest existing folder is not writable or full (:func:`nrsfm_kit.utils.io.probe_writable`).
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag}: expected a file path to write, found a directory {p}")
    anc = _existing_ancestor(p.parent)
    if not anc.is_dir():
        raise ValueError(f"{flag}: expected a folder at {anc} to write {p} into, found a file")
    from nrsfm_kit.utils.io import probe_writable

    probe_writable(anc, flag, target=p)  # unwritable or full: refused before any work
    return p


def check_output_dir(flag: str, path) -> Path:
    """``Path(path)`` when it is a folder or can be created; ValueError naming ``flag`` when a file is in the way
    or the nearest existing folder is not writable or full."""
    p = Path(path)
    anc = _existing_ancestor(p)
    if not anc.is_dir():
        what = "found a file" if anc == p.absolute() else f"found a file at {anc}"
        raise ValueError(f"{flag}: expected a folder (existing or new) at {p}, {what}")
    from nrsfm_kit.utils.io import probe_writable

    probe_writable(anc, flag, target=p)  # unwritable or full: refused before any work
    return p


def add_amp_arg(parser: argparse.ArgumentParser, what: str = "the networks") -> None:
    """The ``--amp {bf16,fp16}`` flag of the commands that train (:class:`nrsfm_kit.train.TrainConfig` ``amp``)."""
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None,
                        help=f"mixed precision of {what} (torch.autocast): bf16 (CPU or CUDA) or fp16 (CUDA only, "
                        "with a gradient scaler) (default: off, float32)")


def check_int_arg(flag: str, value: int | None, minimum: int) -> int | None:
    """``value`` (None passes) when >= ``minimum``; ValueError naming ``flag`` otherwise."""
    if value is not None and value < minimum:
        raise ValueError(f"{flag}: expected an integer >= {minimum}, found {value}")
    return value


def check_float_arg(flag: str, value: float | None, minimum: float = 0.0, strict: bool = True) -> float | None:
    """``value`` (None passes) when finite and > ``minimum`` (>= when not ``strict``); ValueError naming ``flag``."""
    if value is None:
        return None
    ok = math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        raise ValueError(f"{flag}: expected a finite value {'>' if strict else '>='} {minimum:g}, found {value}")
    return value


# ----------------------------------------------------------------------------------------------------------
# demo


def demo_sections() -> list[tuple[str, str]]:
    """(module name, title) of the demo sections in page order, read from their files without importing them.

    Importing a section imports torch; the names are needed by ``nrsfm-kit demo --help``, which stays fast.
    """
    found = []
    for f in sorted(_SECTIONS_DIR.glob("*.py")):
        if f.name.startswith("_"):
            continue
        order, title = 100, f.stem
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                if isinstance(node.value, ast.Constant):
                    if node.targets[0].id == "ORDER" and isinstance(node.value.value, int):
                        order = node.value.value
                    elif node.targets[0].id == "TITLE" and isinstance(node.value.value, str):
                        title = node.value.value
        found.append((order, f.stem, title))
    return [(name, title) for _, name, title in sorted(found)]


def _section_names(given: list[str] | None) -> list[str] | None:
    """``--section`` values as module names: ``s10_geometry`` or its short form ``geometry``."""
    if not given:
        return None
    names = [n for n, _ in demo_sections()]
    short = {n.split("_", 1)[1]: n for n in names if "_" in n}
    out, unknown = [], []
    for g in given:
        if g in names:
            out.append(g)
        elif g in short:
            out.append(short[g])
        else:
            unknown.append(g)
    if unknown:
        raise ValueError(f"--section: expected one of {names} (or without the sNN_ prefix), found {unknown}")
    return out


def _demo(args: argparse.Namespace) -> int:
    only = _section_names(args.section)
    check_output_dir("--out", args.out)
    from nrsfm_kit.demo import run_demo

    return run_demo(args.out, smoke=args.smoke or smoke(), only=only)


def _add_demo(sub) -> None:
    sections = demo_sections()
    listing = "\n".join(f"  {name:<24} {title}" for name, title in sections)
    demo = sub.add_parser(
        "demo", help="run every method on embedded synthetic data, write an HTML page",
        description="Run every method on embedded synthetic data with exact ground truth, print a results table "
        "and write an offline HTML page with the figures.",
        epilog=f"sections (in page order; --section takes the name, with or without its sNN_ prefix):\n{listing}",
        formatter_class=HelpFormatter,
    )
    demo.add_argument("--out", default="build/demo", metavar="DIR",
                      help="output folder for index.html (default build/demo)")
    demo.add_argument("--smoke", action="store_true",
                      help="smoke sizes: small problems, few iterations (also NRSFM_KIT_SMOKE=1; default off)")
    names = ", ".join(n for n, _ in sections)
    demo.add_argument("--section", action="append", metavar="NAME",
                      help=f"run only this section (repeatable; default all): {names}")
    demo.set_defaults(func=_demo)


# ----------------------------------------------------------------------------------------------------------
# parser and error reporting


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nrsfm-kit", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"nrsfm-kit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
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


def flag_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """{parameter name: how the user typed it} for the (sub)command that ``args`` selected.

    Every option's ``dest`` maps to its long flag (``node_coverage`` -> ``--node-coverage``), with the value
    typed when it is a path or other text (``--mask m.png``); ``param_flags`` (a dict set with
    ``set_defaults``) adds the package's own parameter names (``num_frames`` -> ``--frames``).
    """
    names: dict[str, str] = {}
    p: argparse.ArgumentParser | None = parser
    while p is not None:
        nxt = None
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                nxt = a.choices.get(getattr(args, a.dest, None))
            elif a.option_strings and a.dest not in ("help", "version"):
                flag = max(a.option_strings, key=len)
                value = getattr(args, a.dest, None)
                shown = isinstance(value, str) and not a.choices
                names[a.dest] = f"{flag} {value}" if shown else flag
        p = nxt
    names.update(getattr(args, "param_flags", None) or {})
    return names


_LEADING_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*): ")


def user_message(message: str, names: dict[str, str]) -> str:
    """``message`` with a leading ``name:`` replaced by the flag the user typed, when ``name`` is known."""
    m = _LEADING_NAME.match(message)
    if m and m.group(1) in names:
        return f"{names[m.group(1)]}: {message[m.end():]}"
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from nrsfm_kit.utils.threads import configure_threads

        configure_threads()  # intra-op threads from the CPUs this process may use (NRSFM_KIT_THREADS overrides)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        msg = str(exc) if not isinstance(exc, OSError) or exc.filename is None else f"{exc.filename}: {exc.strerror}"
        print(f"nrsfm-kit: error: {user_message(msg, flag_names(parser, args))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
