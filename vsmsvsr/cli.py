"""Command line: ``python -m vsmsvsr weights list | download NAME|all | verify [NAME] | path NAME``.

Results (tables, paths) go to stdout; progress and messages go to stderr. A failure prints one
line naming what went wrong and exits with status 1, without a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from vsmsvsr import weights


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _names(name: str) -> list[str]:
    if name == "all":
        return list(weights.OFFICIAL)
    weights.cached_path(name)  # raises WeightsError listing the valid names
    return [name]


def _weights_list(_: argparse.Namespace) -> int:
    rows = [("MODEL", "STATUS", "SIZE", "PATH", "URL")]
    for name, entry in weights.OFFICIAL.items():
        path = weights.cached_path(name)
        size = _human(path.stat().st_size) if path.is_file() else "-"
        rows.append((name, weights.status(name), size, str(path), entry.url))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] + "\n")
    return 0


def _weights_download(args: argparse.Namespace) -> int:
    failed = 0
    for name in _names(args.name):
        try:
            path = weights.fetch(name, progress=not args.quiet)
        except weights.WeightsError as exc:
            logging.getLogger("vsmsvsr").error("%s", exc)
            failed += 1
        else:
            sys.stdout.write(f"{name}: {path}\n")
    return 1 if failed else 0


def _weights_verify(args: argparse.Namespace) -> int:
    names = _names(args.name) if args.name else list(weights.OFFICIAL)
    failed = 0
    for name in names:
        if args.name is None and weights.status(name) == "missing":
            sys.stdout.write(f"{name}: missing\n")
            continue
        try:
            result = weights.verify(name)
            _check_fits_model(name)
        except weights.WeightsError as exc:
            sys.stdout.write(f"{name}: FAILED\n")
            logging.getLogger("vsmsvsr").error("%s", exc)
            failed += 1
        else:
            sys.stdout.write(f"{name}: {result}\n")
    return 1 if failed else 0


def _check_fits_model(name: str) -> None:
    """A file is accepted only if its keys and shapes fit the architecture exactly."""
    from vsmsvsr.models import MODEL_SPECS, load_model

    if name in MODEL_SPECS:
        load_model(name, weights=weights.cached_path(name), device="cpu")


def _weights_path(args: argparse.Namespace) -> int:
    sys.stdout.write(f"{weights.cached_path(args.name)}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vsmsvsr", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    w = commands.add_parser("weights", help="list, download, verify or locate the official weight files")
    wsub = w.add_subparsers(dest="action", required=True)
    wsub.add_parser("list", help="every official file with its cache path and status").set_defaults(
        func=_weights_list)
    d = wsub.add_parser("download", help="download NAME (or all) into the cache")
    d.add_argument("name", help=f"one of {', '.join(weights.OFFICIAL)}, or all")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_weights_download)
    v = wsub.add_parser("verify", help="check cached files against their recorded sha256 "
                                      "and the model's keys and shapes")
    v.add_argument("name", nargs="?", help="one model (default: every cached file)")
    v.set_defaults(func=_weights_verify)
    p = wsub.add_parser("path", help="print where NAME's file is (or goes) in the cache")
    p.add_argument("name")
    p.set_defaults(func=_weights_path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except weights.WeightsError as exc:
        logging.getLogger("vsmsvsr").error("%s", exc)
        return 1
    except KeyboardInterrupt:
        logging.getLogger("vsmsvsr").error("interrupted")
        return 130
