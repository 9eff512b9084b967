"""The compiled deformable convolution: sampling and GEMM fused in C++, on several threads.

Paddle's CPU ``deform_conv2d`` samples its im2col columns on one thread (~0.35 s per PP-MSVSR
call at 180x320, a quarter of a window's time) into a (c*9, h*w) buffer, then multiplies.
``deform_conv.cpp`` copies the input channels-last, then works on blocks of 64 output positions
on ``threads`` ``std::thread``s: the four corners of the block's samples are computed in vectors
(once per deformable group and tap), each sample reads its group's channels as four contiguous
runs, and the block's columns are multiplied while they are in the cache; no column buffer is
ever written out. 13.5 ms per PP-MSVSR stage-2 call at 180x320 on 2 threads (the first version
of this kernel: 32 ms; Paddle's: ~350 ms). The library is built with the
system's C++ compiler (``$CXX``, else ``g++``/``c++``/``clang++``) on first use, once per source,
compiler and CPU, into ``<cache>/ops/`` (written to a temporary name and renamed: a crash or a
concurrent build never leaves half a library), and called through ``ctypes`` on the tensors' data
pointers (no copies; ctypes releases the GIL during the call).

Where no compiler is found or the build fails, :func:`library` returns ``None`` after one log line
and the callers keep Paddle's kernel (split over threads by deformable group). ``VSMSVSR_DEFORM=
paddle`` forces that fallback (for comparisons).
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import paddle

log = logging.getLogger("vsmsvsr.engine")
_WHO = "vsmsvsr.Engine"

SOURCE = Path(__file__).with_name("deform_conv.cpp")
#: ``paddle`` disables the compiled kernel (Paddle's own is used).
ENV = "VSMSVSR_DEFORM"
_FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-pthread")

_lock = threading.Lock()
_loaded: dict[str, Any] = {}  # "lib": ctypes library or None once decided


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_identity() -> str:
    """What ``-march=native`` depends on: the CPU's feature flags (a cache shared by machines of
    different CPUs keeps one library per CPU kind)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _library_path(compiler: str) -> Path:
    from vsmsvsr.weights import cache_dir

    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    h = hashlib.sha256()
    for part in (SOURCE.read_bytes(), version.encode(), " ".join(_FLAGS).encode(), _cpu_identity().encode(),
                 platform.machine().encode()):
        h.update(part)
        h.update(b"\0")
    return cache_dir() / "ops" / f"deform_conv-{h.hexdigest()[:16]}.so"


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *_FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(compiler).name} exited with {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def library() -> Any:
    """The ctypes library (built on first use), or ``None`` where it cannot be had (logged once)."""
    with _lock:
        if "lib" in _loaded:
            return _loaded["lib"]
        lib = None
        if os.environ.get(ENV, "").strip().lower() == "paddle":
            log.info("%s: %s=paddle: deformable convolutions use Paddle's kernel", _WHO, ENV)
        else:
            compiler = _compiler()
            if compiler is None:
                log.warning("%s: no C++ compiler found (g++, c++, clang++ or $CXX): deformable convolutions use "
                            "Paddle's single-threaded kernel, split by group (slower; install g++ for the fast "
                            "one)", _WHO)
            else:
                try:
                    path = _library_path(compiler)
                    if not path.is_file():
                        log.info("%s: compiling the deformable convolution kernel with %s (once; cached in %s)",
                                 _WHO, Path(compiler).name, path.parent)
                        _build(compiler, path)
                    lib = ctypes.CDLL(str(path))
                    if lib.vsmsvsr_deform_conv_version() != 3:
                        raise RuntimeError(f"{path} is another version of the kernel")
                    fn = lib.vsmsvsr_deform_conv
                    fn.restype = ctypes.c_int
                    fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 17
                except Exception as exc:  # noqa: BLE001 - any failure: Paddle's kernel, said once
                    log.warning("%s: the deformable convolution kernel could not be built (%s: %s): using Paddle's "
                                "kernel, split by group (slower)", _WHO, type(exc).__name__, exc)
                    lib = None
        _loaded["lib"] = lib
        return lib


def forget() -> None:
    """Drop the decision of :func:`library` (tests change ``$VSMSVSR_DEFORM``/``$CXX``)."""
    with _lock:
        _loaded.clear()


def deform_conv2d(lib: Any, x: "paddle.Tensor", offset: "paddle.Tensor", mask: "paddle.Tensor",
                  weight: "paddle.Tensor", bias: "paddle.Tensor | None", stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int], deformable_groups: int,
                  threads: int) -> "paddle.Tensor":
    """Modulated deformable convolution (Paddle's ``deform_conv2d`` with ``mask``, ``groups=1``).

    ``x`` (n, c, h, w), ``offset`` (n, 2*g*kh*kw, ho, wo), ``mask`` (n, g*kh*kw, ho, wo), ``weight``
    (o, c, kh, kw), ``bias`` (o,) or None; float32 CPU tensors. Returns (n, o, ho, wo). Same
    products as Paddle's kernel, summed in another order (rel-L2 ~1e-7).
    """
    import paddle

    n, c, h, w = (int(d) for d in x.shape)
    o, _, kh, kw = (int(d) for d in weight.shape)
    ho, wo = (int(d) for d in offset.shape[2:])
    x, offset, mask, weight = (t if t.is_contiguous() else t.contiguous() for t in (x, offset, mask, weight))
    if bias is not None and not bias.is_contiguous():
        bias = bias.contiguous()
    out = paddle.empty([n, o, ho, wo], dtype="float32")
    rc = lib.vsmsvsr_deform_conv(x.data_ptr(), offset.data_ptr(), mask.data_ptr(), weight.data_ptr(),
                                 None if bias is None else bias.data_ptr(), out.data_ptr(), n, c, h, w, ho, wo, kh,
                                 kw, padding[0], padding[1], stride[0], stride[1], dilation[0], dilation[1],
                                 deformable_groups, o, threads)
    if rc == -2:
        raise MemoryError(f"{_WHO}: no memory for the deformable convolution's channels-last copy of x {x.shape}")
    if rc != 0:
        raise ValueError(f"{_WHO}: deformable convolution arguments out of range: x {x.shape}, offset "
                         f"{offset.shape}, groups {deformable_groups}")
    return out


def fits(x: "paddle.Tensor") -> bool:
    """Whether the compiled kernel takes ``x`` (n, c, h, w): its sample offsets are 32-bit, so one
    image must hold fewer than 2**31 values (c*h*w; 16K frames with 64 channels would not)."""
    _, c, h, w = (int(d) for d in x.shape)
    return c * h * w < 2 ** 31
