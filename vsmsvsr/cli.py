"""Command line: ``python -m vsmsvsr weights ...`` and ``python -m vsmsvsr enhance ...`` (= ``vsmsvsr-enhance``).

``weights list | download NAME|all | verify [NAME] | remove NAME|all | path NAME`` and
``cache list | clear [--older-than DAYS]`` (the static-program cache): results (tables, paths) go to
stdout. ``enhance``: PaddleGAN's video-enhance flags (see :mod:`vsmsvsr.pipeline`); it writes
nothing to stdout. Progress and messages go to stderr. A failure prints one line naming what went
wrong and exits with status 1 (2 for invalid flags), without a traceback. SIGINT (Ctrl-C) and
SIGTERM stop it cleanly (encoder ended, temporary files removed, an existing output untouched)
with status 130 and 143.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import logging
import shlex
import signal
import sys
import time
from typing import Callable, Iterator, Sequence

from vsmsvsr import weights
from vsmsvsr.engine.backends import BACKEND_NAMES
from vsmsvsr.engine.programs import human_size


def _names(name: str) -> list[str]:
    if name == "all":
        return list(weights.OFFICIAL)
    weights.cached_path(name)  # raises WeightsError listing the valid names
    return [name]


def _weights_list(_: argparse.Namespace) -> int:
    rows = [("MODEL", "STATUS", "SIZE", "PATH", "URL")]
    for name, entry in weights.OFFICIAL.items():
        path = weights.cached_path(name)
        size = human_size(path.stat().st_size, binary=True) if path.is_file() else "-"
        rows.append((name, weights.status(name), size, str(path), entry.source_url))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] + "\n")
    return 0


def _weights_download(args: argparse.Namespace) -> int:
    failed = 0
    for name in _names(args.name):
        try:
            path = weights.fetch(name, progress=not args.quiet)
            # a file cached earlier (by hand, or by a version that did not check downloads) may not be
            # the model's: say so now rather than at every later run
            weights.check_file(name, path)
        except weights.WeightsError as exc:
            path = weights.cached_path(name)
            hint = f" {weights.bad_cache_hint(name, path)}" if path.is_file() else ""
            logging.getLogger("vsmsvsr").error("%s%s", exc, hint)
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
        except weights.WeightsError as exc:
            sys.stdout.write(f"{name}: FAILED\n")
            logging.getLogger("vsmsvsr").error("%s", exc)
            failed += 1
            continue
        try:
            weights.check_file(name, weights.cached_path(name))
        except weights.WeightsError as exc:
            sys.stdout.write(f"{name}: FAILED\n")
            logging.getLogger("vsmsvsr").error("%s: %s", exc, weights.bad_cache_hint(name, weights.cached_path(name)))
            failed += 1
        else:
            sys.stdout.write(f"{name}: {result}\n")
    return 1 if failed else 0


def _weights_remove(args: argparse.Namespace) -> int:
    for name in _names(args.name):
        for path in weights.remove(name):
            sys.stdout.write(f"removed {path}\n")
    return 0


def _weights_path(args: argparse.Namespace) -> int:
    sys.stdout.write(f"{weights.cached_path(args.name)}\n")
    return 0


def _cache_list(_: argparse.Namespace) -> int:
    from vsmsvsr.engine import programs

    root = programs.static_dir()
    entries = programs.list_programs(root)
    by_model: dict[str, list] = {}
    for entry in entries:
        by_model.setdefault(entry.model, []).append(entry)
    rows = [("MODEL", "PROGRAMS", "SIZE", "LAST USED")]
    for model, group in sorted(by_model.items(), key=lambda kv: -max(e.last_used for e in kv[1])):
        last = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(e.last_used for e in group)))
        rows.append((model, str(len(group)), programs.human_size(sum(e.size for e in group)), last))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    limit = programs.cache_limit()
    cap = "no cap" if limit is None else f"cap {programs.human_size(limit)}"
    sys.stdout.write(f"total {programs.human_size(sum(e.size for e in entries))} in {len(entries)} programs "
                     f"({cap}, {programs.LIMIT_ENV}) at {root}\n")
    return 0


def _cache_clear(args: argparse.Namespace) -> int:
    from vsmsvsr.engine import programs

    removed = programs.clear(older_than_days=args.older_than)
    sys.stdout.write(f"removed {len(removed)} programs, {programs.human_size(sum(e.size for e in removed))}\n")
    return 0


ENHANCE_PROG = "vsmsvsr-enhance"
ENHANCE_DESCRIPTION = (
    "Run PaddleGAN video models on a video in one VapourSynth graph and encode the result, with the "
    "input's audio copied unchanged (PaddleGAN's applications/tools/video-enhance.py flags)."
)


def add_enhance_arguments(parser: argparse.ArgumentParser) -> None:
    """PaddleGAN video-enhance's flags (same names and defaults), then vsmsvsr's encoding flags."""
    from vsmsvsr.pipeline import ENCODERS, PRESETS, STEPS

    p = parser.add_argument_group("PaddleGAN video-enhance flags")
    p.add_argument("--input", required=True, help="input video")
    p.add_argument("--output", default="output",
                   help="output folder (default: output); the file is <output>/<input stem>_<order>.mkv unless -o")
    p.add_argument("--process_order", required=True, nargs="+", metavar="MODEL",
                   help=f"models to apply, in order: {', '.join(STEPS)}")
    p.add_argument("--num_frames", type=int, default=10,
                   help="PP-MSVSR: frames per temporal window (default 10)")
    p.add_argument("--time_step", default="0.5",
                   help="DAIN: output frame spacing in input frames, 0.5 doubles the frame rate; the "
                        "factor is exactly 1/time_step (0.25, 1/3 ...; default 0.5)")
    p.add_argument("--remove_duplicates", action="store_true",
                   help="DAIN: interpolate across runs of repeated input frames instead of holding them")
    p.add_argument("--render_factor", type=int, default=32,
                   help="DeOldify: the network sees 16*render_factor pixels square, 7-64 (default 32)")
    p.add_argument("--artistic", action="store_true", help="DeOldify: the artistic model instead of stable")
    p.add_argument("--colorization", action="store_true", help="DeepRemaster: colourise as well as restore")
    p.add_argument("--reference_dir", default=None,
                   help="DeepRemaster: folder of colour reference images (with --colorization)")
    p.add_argument("--mindim", type=int, default=360,
                   help="DeepRemaster: shorter frame edge the network works at (default 360)")
    for step in STEPS.values():
        p.add_argument(f"--{step.weight_flag}", default=None, metavar="PATH",
                       help=f"{step.name} weights file (default: the official file, downloaded once)")
    p.add_argument("--cpu", action="store_true", help="run every model on the CPU")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                   help="fp32 (default: PaddleGAN's numbers within 1e-5), bf16 (OpenVINO on a CPU with bf16/AMX: "
                        "faster, slightly different) or fp16 (GPU)")
    p.add_argument("--fp16", action="store_const", const="fp16", dest="precision",
                   help="the same as --precision fp16")
    p.add_argument("--max_memory", default=None, metavar="SIZE",
                   help="memory budget of the job: 8GB, 8GiB, 50%% (of the available memory) or bytes; "
                        "Upscale tiles its frames to fit (default: 60%% of the available memory)")

    e = parser.add_argument_group("encoding (vsmsvsr)")
    e.add_argument("-o", "--output_file", default=None, metavar="FILE",
                   help="output file, overrides --output: .mkv, or .mp4/.mov with --encoder ffmpeg or x265")
    e.add_argument("--encoder", choices=ENCODERS, default="x264",
                   help="x264 (H.264, x264 program), x265 (HEVC, libx265 through ffmpeg) or ffmpeg "
                        "(H.264, libx264 through ffmpeg); default x264")
    e.add_argument("--crf", type=float, default=None, help="quality, 0-51 (default 16 for H.264, 18 for HEVC)")
    e.add_argument("--preset", choices=PRESETS, default="medium", metavar="PRESET",
                   help=f"encoder speed preset: {', '.join(PRESETS)} (default medium)")
    e.add_argument("--lossless", action="store_true", help="lossless encoding (x264 --qp 0 and equivalents)")
    e.add_argument("--encoder_args", default="", metavar="ARGS",
                   help="extra encoder arguments, one shell-quoted string: --encoder_args='--tune film'")
    e.add_argument("--max_frames", type=int, default=None,
                   help="process only the first N input frames (the audio is cut to match; DAIN's output has more)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    j = parser.add_argument_group("long jobs: chunks, resume, Ray (vsmsvsr)")
    j.add_argument("--backend", default="auto", choices=BACKEND_NAMES,
                   help="backend of every model (default auto: the first that runs here)")
    j.add_argument("--chunk_frames", type=int, default=None, metavar="N",
                   help="output frames per chunk (default 10 Upscale windows, 100 frames with --num_frames 10; "
                        "0: one pass). A job of several chunks keeps finished chunks in a hidden folder beside "
                        "the output and resumes from them when run again")
    j.add_argument("--resume", action="store_true", help="resume the unfinished job of this output (an error if none)")
    j.add_argument("--restart", action="store_true", help="discard an unfinished job of this output and start over")
    j.add_argument("--verify", type=int, default=0, metavar="N",
                   help="recompute N frames here after the chunks are done and compare them with the chunks' hashes")
    j.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="render the chunks as Ray tasks on the cluster at ADDRESS (HOST:PORT), or 'local' "
                        "(a cluster of this machine); needs vsmsvsr[ray]")
    j.add_argument("--ray_shared", action="store_true",
                   help="the input, weights and output folder are at the same paths on every Ray node (default: "
                        "they travel through Ray's object store)")
    j.add_argument("--ray_cpus", type=float, default=1, metavar="N", help="CPUs per chunk task (default 1)")
    j.add_argument("--ray_gpus", type=float, default=None, metavar="N",
                   help="GPUs per chunk task (default 1 when the models run on a GPU, else 0)")


def _enhance(args: argparse.Namespace) -> int:
    from vsmsvsr import pipeline as enhance

    log = logging.getLogger("vsmsvsr")
    try:
        settings = enhance.EnhanceSettings(
            process_order=tuple(args.process_order), num_frames=args.num_frames, time_step=args.time_step,
            remove_duplicates=args.remove_duplicates, render_factor=args.render_factor,
            artistic=args.artistic, colorization=args.colorization, reference_dir=args.reference_dir,
            mindim=args.mindim, device="cpu" if args.cpu else None, max_frames=args.max_frames,
            precision=args.precision, backend=args.backend,
            max_memory=int(args.max_memory) if args.max_memory and args.max_memory.strip().isdigit() else args.max_memory,
            weights={name: getattr(args, step.weight_flag) for name, step in enhance.STEPS.items()},
        )
        try:
            extra = tuple(shlex.split(args.encoder_args))
        except ValueError as exc:
            raise enhance.EnhanceError(f"{enhance.FUNC}: --encoder_args: {exc}") from None
        encode_settings = enhance.EncodeSettings(encoder=args.encoder, crf=args.crf, preset=args.preset,
                                                 lossless=args.lossless, encoder_args=extra)
        output = args.output_file or enhance.default_output_path(args.input, args.output, settings)
        chunks = enhance.ChunkOptions(chunk_frames=args.chunk_frames, resume=args.resume, restart=args.restart,
                                      verify=args.verify, ray=args.ray, ray_shared=args.ray_shared,
                                      ray_cpus=args.ray_cpus, ray_gpus=args.ray_gpus)
    except enhance.EnhanceError as exc:
        log.error("%s", exc)
        return 2
    try:
        enhance.enhance(args.input, output, settings, encode_settings, progress=not args.quiet, chunks=chunks)
    except enhance.EnhanceError as exc:
        log.error("%s", exc)
        return 2
    except Exception as exc:
        # WeightsError (a ValueError) names the URL and where to place the file; filters name
        # themselves; EncodeError ends with the encoder's own message. Anything else is a bug.
        vs = sys.modules.get("vapoursynth")
        expected = (ValueError, TypeError, RuntimeError, OSError) + ((vs.Error,) if vs is not None else ())
        if not isinstance(exc, expected):
            raise
        log.error("%s", str(exc).strip())
        return 1
    return 0


def build_enhance_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=ENHANCE_PROG, description=ENHANCE_DESCRIPTION, allow_abbrev=False)
    add_enhance_arguments(parser)
    return parser


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: raised in the main thread so that every ``finally`` and
    ``except BaseException`` on the way out runs (the encoder is ended, temporary files removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> "Iterator[list[int]]":
    """SIGINT and SIGTERM stop the command the same way, as :class:`Interrupted`.

    Yields the list of signals received, so that a job that fails for another reason after the
    signal (the encoder, which got the signal too, closing its pipe) still exits as interrupted.
    A signal ignored when the command started (SIGINT in a background job of a non-interactive
    shell, ``nohup``) stays ignored, as the shell meant.
    """
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:  # a second signal while cleaning up must not cut the clean-up short
            raise Interrupted(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        if current in (signal.SIG_DFL, signal.default_int_handler):
            previous[signum] = current
            signal.signal(signum, handler)

    def reinstall() -> None:
        for signum in previous:
            signal.signal(signum, handler)

    hook = _AfterImport("paddle", reinstall) if previous and "paddle" not in sys.modules else None
    if hook is not None:
        sys.meta_path.insert(0, hook)
    try:
        yield received
    finally:
        if hook in sys.meta_path:
            sys.meta_path.remove(hook)
        for signum, current in previous.items():
            signal.signal(signum, current)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback`` once module ``name`` has been imported (wherever that happens).

    ``import paddle`` installs Paddle's own C handlers for SIGTERM (and others), which print a
    stack and kill the process; the command's clean stop must win, so it is put back right after.
    """

    def __init__(self, name: str, callback: "Callable[[], None]") -> None:
        self._name, self._callback = name, callback

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname != self._name:
            return None
        sys.meta_path.remove(self)  # find the real spec with the other finders, once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        original, callback = spec.loader, self._callback

        class Loader(importlib.abc.Loader):
            def create_module(self, spec):  # noqa: ANN001 - importlib protocol
                return original.create_module(spec)

            def exec_module(self, module):  # noqa: ANN001 - importlib protocol
                original.exec_module(module)
                callback()

            def __getattr__(self, attr: str):  # resources, get_filename...: the real loader's
                return getattr(original, attr)

        spec.loader = Loader()
        return spec


def _run(func, args: argparse.Namespace) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
    log = logging.getLogger("vsmsvsr")
    with _stop_on_signals() as received:
        try:
            code = func(args)
            sys.stdout.flush()  # inside: a closed pipe is reported here, not at interpreter exit
        except BaseException as exc:  # noqa: BLE001 - after a signal, whatever surfaced is its effect
            if received:
                pass
            elif isinstance(exc, BrokenPipeError):  # `... weights list | head`: the reader has gone
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
            elif isinstance(exc, weights.WeightsError):
                log.error("%s", exc)
                return 1
            elif isinstance(exc, KeyboardInterrupt):  # SIGINT through a handler a caller installed
                log.error("interrupted")
                return 130
            else:
                raise
        if not received:
            return code
    signum = received[0]
    log.error("interrupted by %s: stopped, temporary files removed", signal.Signals(signum).name)
    return 128 + signum


def enhance_main(argv: Sequence[str] | None = None) -> int:
    """``vsmsvsr-enhance``: the enhance command on its own; returns the exit status."""
    args = build_enhance_parser().parse_args(argv)
    return _run(_enhance, args)


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
    r = wsub.add_parser("remove", help="delete NAME's cached file (or all), e.g. a bad download")
    r.add_argument("name", help=f"one of {', '.join(weights.OFFICIAL)}, or all")
    r.set_defaults(func=_weights_remove)
    p = wsub.add_parser("path", help="print where NAME's file is (or goes) in the cache")
    p.add_argument("name")
    p.set_defaults(func=_weights_path)

    c = commands.add_parser("cache", help="list or clear the cache of exported static programs")
    csub = c.add_subparsers(dest="action", required=True)
    csub.add_parser("list", help="cached programs per model, their size and last use").set_defaults(
        func=_cache_list)
    cc = csub.add_parser("clear", help="remove cached programs (they are exported again when needed)")
    cc.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                    help="only those unused for DAYS days")
    cc.set_defaults(func=_cache_clear)

    e = commands.add_parser("enhance", help="PaddleGAN's video-enhance: models in order, then encode "
                            f"(also installed as {ENHANCE_PROG})", description=ENHANCE_DESCRIPTION,
                            allow_abbrev=False)
    add_enhance_arguments(e)
    e.set_defaults(func=_enhance)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    return _run(args.func, args)
