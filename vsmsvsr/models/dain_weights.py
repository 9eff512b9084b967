"""DAIN weights: the official static inference program (``DAIN_weight.tar``) as a state dict.

PaddleGAN publishes DAIN only as an exported static program: a ``tar`` holding one folder with
``model`` (a legacy ``ProgramDesc``, protobuf) and ``params`` (every persistable variable,
written by ``save_combine``). There is no dygraph checkpoint, and the program's parameters carry
generated names (``conv2d_17.w_0``) rather than layer paths, so they are mapped by *position*.

Mapping strategy
----------------
1. The program is parsed without running it: a legacy ``ProgramDesc`` (the official file; Paddle 2
   exports) with Paddle's own protobuf schema (``framework_pb2``), a PIR program (JSON, what
   ``paddle.jit.save`` writes under Paddle 3, e.g. :func:`export_static`) with ``json``. The
   parameter file is decoded directly (format below). No static-graph mode, executor or scope
   is involved: nothing global is switched, so reading is thread-safe, and no operator of the
   2020 program has to exist or be translatable in the installed Paddle. (Paddle 3.3's
   ``load_inference_model`` would translate the legacy program to PIR first.)
2. Program order: walking the ops of the main block in order, each persistable dense tensor
   (legacy) or ``builtin.parameter`` value (PIR) is recorded the first time an op reads it (a
   legacy op's input slots in name order). For a conv that is its filter (``conv2d`` /
   ``conv2d_transpose``), then its bias (the following ``elementwise_add``, or ``reshape`` +
   ``add``); weights shared by several calls (PWC-Net runs on both frame orders) count once.
   Persistables read by no op cannot affect the output and are ignored.
3. Native order: the same rule applied to :class:`~vsmsvsr.models.dain.DAIN`, recorded by running
   it once in dygraph mode with forward pre-hooks (each layer's own parameters, weight before
   bias, on the layer's first call). The tests check that this equals the order obtained by
   exporting the native network with :func:`export_static` and walking *its* program with step 2.
4. The two lists are zipped: the counts must be equal and every pair must have the same shape,
   otherwise :class:`~vsmsvsr.weights.WeightsError` names the first mismatch.

``params`` format (``save_combine``, one record per persistable variable, variables sorted by
name): ``uint32`` version (0); ``uint64`` LoD level count, then per level ``uint64`` byte size and
the offsets; ``uint32`` tensor version (0); ``int32`` size of a ``VarType.TensorDesc`` protobuf,
the protobuf (data type, dims); the raw little-endian data. Each record is checked against the
variable's shape and dtype in the program, and the file must end exactly after the last one.

Accepted inputs of :func:`read_weights`: the official tar, its extracted folder (or the folder
holding that folder), an :func:`export_static` folder or tar, and a native ``.pdparams`` state
dict (read with the safe loader). A tar is read in memory; nothing from it is written to disk.

:func:`program_info` reports a program's feeds, fetches and baked-in time offsets (see
:mod:`vsmsvsr.models.dain` for what the official program expects).
"""
from __future__ import annotations

import os
import struct
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from vsmsvsr.weights import WeightsError, load_state_dict

if TYPE_CHECKING:  # pragma: no cover
    import paddle

__all__ = ["read_weights", "convert_program", "program_info", "ProgramInfo", "export_static", "forget",
           "native_parameter_order", "program_parameter_order"]

_WHO = "vsmsvsr.models.dain_weights"

# framework.proto VarType.Type values
_DENSE_TENSOR = 7
_NOT_SAVED = {9, 10, 15, 17}  # FEED_MINIBATCH, FETCH_LIST, READER, RAW: never in a params file
_DTYPES = {0: np.bool_, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.float16, 5: np.float32,
           6: np.float64, 20: np.uint8, 21: np.int8}
_MAX_PROGRAM_BYTES = 256 << 20
_MAX_PARAMS_BYTES = 4 << 30


def _framework_pb2() -> Any:
    try:
        from paddle.base.proto import framework_pb2  # Paddle >= 2.6
    except ImportError:  # pragma: no cover - Paddle 2.5 and older
        from paddle.fluid.proto import framework_pb2
    return framework_pb2


# --------------------------------------------------------------------------------------------
# finding the two files


def _pick(names: Sequence[str], label: str) -> tuple[str, str]:
    """The program and parameter file among ``names`` (paths relative to ``label``).

    PaddleGAN's predictor takes the file whose name contains ``model`` and the one containing
    ``param``. Here exact names (``model``/``params``), then Paddle's suffixes
    (``*.pdmodel``/``*.pdiparams``), then those words are tried in turn; the first rule that
    finds exactly one file wins, several files for a rule are refused.
    """
    def base(n: str) -> str:
        return n.replace("\\", "/").rsplit("/", 1)[-1]

    def choose(exact: tuple[str, ...], suffix: str, word: str, what: str) -> str:
        for rule in (lambda b: b in exact, lambda b: b.endswith(suffix), lambda b: word in b):
            found = [n for n in names if rule(base(n)) and not base(n).endswith(".info")]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise WeightsError(f"{_WHO}: {label}: several candidate {what} files: {', '.join(sorted(found))}")
        raise WeightsError(
            f"{_WHO}: {label}: no {what} file (expected PaddleGAN's DAIN_weight layout: a folder with "
            f"'model' and 'params'); found: {', '.join(sorted(names)) or 'nothing'}"
        )

    model = choose(("model", "__model__", "model.json"), ".pdmodel", "model", "program")
    params = choose(("params", "__params__"), ".pdiparams", "param", "parameter")
    if model == params:
        raise WeightsError(f"{_WHO}: {label}: cannot tell the program file from the parameter file ({model})")
    return model, params


def _read_limited(stream: Any, limit: int, what: str) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise WeightsError(f"{_WHO}: {what} is larger than {limit >> 20} MiB; not a DAIN weight file")
    return data


def _from_tar(path: Path) -> tuple[bytes, bytes, str]:
    label = str(path)
    try:
        with tarfile.open(path) as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile() and m.name.count("/") <= 2}
            model, params = _pick(list(members), label)
            # read in memory: nothing from the archive is written to disk
            with tar.extractfile(members[model]) as f:  # type: ignore[union-attr]
                program = _read_limited(f, _MAX_PROGRAM_BYTES, f"{label}:{model}")
            with tar.extractfile(members[params]) as f:  # type: ignore[union-attr]
                values = _read_limited(f, _MAX_PARAMS_BYTES, f"{label}:{params}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise WeightsError(f"{_WHO}: cannot read {label} as a tar archive ({type(exc).__name__}: {exc})") from None
    return program, values, f"{label}:{model}"


def _from_folder(path: Path) -> tuple[bytes, bytes, str]:
    # the extracted DAIN_weight folder itself, or the folder it was extracted into
    names = [p.name for p in path.iterdir() if p.is_file()]
    if not any("model" in n for n in names):
        names = [f"{p.parent.name}/{p.name}" for p in path.glob("*/*") if p.is_file()]
    model, params = _pick(names, str(path))
    try:
        with open(path / model, "rb") as f:
            program = _read_limited(f, _MAX_PROGRAM_BYTES, str(path / model))
        with open(path / params, "rb") as f:
            values = _read_limited(f, _MAX_PARAMS_BYTES, str(path / params))
    except OSError as exc:
        raise WeightsError(f"{_WHO}: cannot read {path}: {exc}") from None
    return program, values, str(path / model)


# --------------------------------------------------------------------------------------------
# parsing: both program formats become a _Program

Signature = tuple[str, tuple[int, ...], str]  # (variable name, shape, dtype name)


@dataclass
class _Program:
    """What this module needs from a static program, whatever its format."""

    variables: dict[str, tuple[tuple[int, ...], np.dtype]]  # persistables of the params file
    uses: list[str]  # persistables in the order ops first read them
    feeds: list[Signature]
    fetches: list[Signature]
    time_offsets: list[float]
    op_types: dict[str, int]


def _parse_program(data: bytes, label: str) -> _Program:
    """A legacy ``ProgramDesc`` (protobuf, the official file) or a PIR program (JSON, Paddle >= 3)."""
    if data.lstrip()[:1] == b"{":
        return _parse_pir(data, label)
    return _parse_legacy(data, label)


def _not_a_program(label: str, why: str) -> WeightsError:
    return WeightsError(f"{_WHO}: {label} is not a Paddle static program ({why})")


# legacy ProgramDesc ---------------------------------------------------------------------------


def _tensor_desc(var: Any) -> Any:
    # the field is called dense_tensor in Paddle 3 and lod_tensor before; same field number
    vtype = var.type
    for field in ("dense_tensor", "lod_tensor"):
        if field in vtype.DESCRIPTOR.fields_by_name and vtype.HasField(field):
            return getattr(vtype, field).tensor
    return None


def _parse_legacy(data: bytes, label: str) -> _Program:
    pb = _framework_pb2()
    desc = pb.ProgramDesc()
    try:
        desc.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and, rarely, others
        raise _not_a_program(label, f"{type(exc).__name__}: {exc}") from None
    if not desc.blocks or not desc.blocks[0].ops:
        raise _not_a_program(label, "no operators")
    block = desc.blocks[0]

    variables: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    signatures: dict[str, Signature] = {}
    for var in block.vars:
        tensor = _tensor_desc(var)
        if tensor is not None:
            dtype = _DTYPES.get(tensor.data_type)
            signatures[var.name] = (var.name, tuple(int(d) for d in tensor.dims),
                                    np.dtype(dtype).name if dtype else f"type {tensor.data_type}")
        if not var.persistable or var.type.type in _NOT_SAVED:
            continue
        if var.type.type != _DENSE_TENSOR or tensor is None:
            raise WeightsError(f"{_WHO}: {label}: persistable variable {var.name} is not a dense tensor "
                               f"(type {var.type.type}); not a DAIN program")
        if tensor.data_type not in _DTYPES:
            raise WeightsError(f"{_WHO}: {label}: variable {var.name} has unsupported data type {tensor.data_type}")
        variables[var.name] = (tuple(int(d) for d in tensor.dims), np.dtype(_DTYPES[tensor.data_type]))

    def attr(op: Any, name: str) -> Any:
        for a in op.attrs:
            if a.name == name:
                return a
        return None

    def args(op: Any, slot: str) -> list[str]:
        return [n for s in op.inputs if s.parameter == slot for n in s.arguments]

    uses: list[str] = []
    seen: set[str] = set()
    feeds, fetches = [], []
    op_types: dict[str, int] = {}
    scale_of: dict[str, tuple[str, float, float]] = {}  # output -> (input, scale, bias)
    for op in block.ops:
        op_types[op.type] = op_types.get(op.type, 0) + 1
        # an op's input slots in name order (protobuf keeps them so already)
        for slot in sorted(op.inputs, key=lambda s: s.parameter):
            for name in slot.arguments:
                if name in variables and name not in seen:
                    seen.add(name)
                    uses.append(name)
        col = attr(op, "col")
        if op.type == "feed":
            feeds.append((col.i if col else 0, op.outputs[0].arguments[0]))
        elif op.type == "fetch":
            fetches.append((col.i if col else 0, args(op, "X")[0]))
        elif op.type == "scale" and args(op, "X") and not args(op, "ScaleTensor"):
            scale, bias = attr(op, "scale"), attr(op, "bias")
            scale_of[op.outputs[0].arguments[0]] = (args(op, "X")[0], scale.f if scale else 1.0,
                                                   bias.f if bias else 0.0)

    def signature(name: str) -> Signature:
        return signatures.get(name, (name, (), "?"))

    return _Program(
        variables=variables, uses=uses,
        feeds=[signature(n) for _, n in sorted(feeds)], fetches=[signature(n) for _, n in sorted(fetches)],
        time_offsets=_time_offsets(scale_of), op_types=op_types,
    )


def _time_offsets(scale_of: Mapping[Any, tuple[Any, float, float]]) -> list[float]:
    """The time offsets a DAIN program applies to its first flow.

    For each offset, DAIN scales the 1/4-resolution flow by 20 (div_flow), then by the offset:
    the factors of the scale ops fed by the ``* 20`` scales of the first flow (``scale_of``:
    output -> (input, scale, bias), in op order).
    """
    by_20 = [(out, src) for out, (src, scale, bias) in scale_of.items() if scale == 20.0 and bias == 0.0]
    if not by_20:
        return []
    first_flow = by_20[0][1]
    scaled = {out for out, src in by_20 if src == first_flow}
    return [float(scale) for src, scale, bias in scale_of.values() if src in scaled and bias == 0.0]


# PIR (JSON) -------------------------------------------------------------------------------------

_PIR_DTYPES = {"t_bool": np.bool_, "t_i8": np.int8, "t_ui8": np.uint8, "t_i16": np.int16, "t_i32": np.int32,
               "t_i64": np.int64, "t_f16": np.float16, "t_f32": np.float32, "t_f64": np.float64}


def _parse_pir(data: bytes, label: str) -> _Program:
    """A program serialised by Paddle >= 3 (``paddle.jit.save`` under PIR): ops with value ids.

    Parameters are ``builtin.parameter`` ops (``"#": "p"``) whose result is read by later ops.
    """
    import json

    try:
        doc = json.loads(data)
        if doc["base_code"]["magic"] != "pir":
            raise KeyError("magic")
        top_ops = doc["program"]["regions"][0]["blocks"][0]["ops"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise _not_a_program(label, f"unreadable PIR JSON: {type(exc).__name__}: {exc}") from None

    def walk(ops: list) -> Any:
        for op in ops:
            yield op
            for region in op.get("regions", []) or []:
                for block in region.get("blocks", []) or []:
                    yield from walk(block.get("ops", []) or [])

    def values(field: Any) -> list[dict]:
        if isinstance(field, dict):
            return [field]
        return [v for v in field or [] if isinstance(v, dict)]

    def tensor_type(value: dict) -> tuple[tuple[int, ...], Any] | None:
        tt = value.get("TT") or {}
        if tt.get("#", "").split(".")[-1] != "t_dtensor":
            return None
        dtype_tag, dims = tt["D"][0]["#"].split(".")[-1], tt["D"][1]
        return tuple(int(d) for d in dims), _PIR_DTYPES.get(dtype_tag)

    def attrs(op: dict) -> dict[str, Any]:
        out = {}
        for a in op.get("A", []) or []:
            if isinstance(a, dict) and "N" in a:
                out[a["N"]] = (a.get("AT") or {}).get("D")
        return out

    try:
        value_type: dict[int, tuple[tuple[int, ...], Any]] = {}
        parameter_of: dict[int, str] = {}
        variables: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        constant: dict[int, float] = {}
        uses: list[str] = []
        feeds, fetches = [], []
        op_types: dict[str, int] = {}
        scale_of: dict[int, tuple[int, float, float]] = {}
        for op in walk(top_ops):
            kind = op["#"]
            op_types[kind] = op_types.get(kind, 0) + 1
            outs = values(op.get("O"))
            for value in outs:
                t = tensor_type(value)
                if t is not None:
                    value_type[value["%"]] = t
            ins = [v.get("%") for v in values(op.get("I"))]
            if kind == "p":  # builtin.parameter: A = [..., name]
                name = [a for a in op["A"] if isinstance(a, str)][-1]
                shape, dtype = value_type[outs[0]["%"]]
                if dtype is None:
                    raise WeightsError(f"{_WHO}: {label}: parameter {name} has an unsupported data type")
                parameter_of[outs[0]["%"]] = name
                variables[name] = (shape, np.dtype(dtype))
                continue
            for vid in ins:
                name = parameter_of.pop(vid, None)  # popped: the first use only
                if name is not None:
                    uses.append(name)
            a = attrs(op)
            if kind.endswith(".full") and outs and isinstance(a.get("value"), (int, float)):
                constant[outs[0]["%"]] = float(a["value"])
            elif kind.endswith(".data"):
                shape, dtype = value_type.get(outs[0]["%"], ((), None))
                feeds.append((len(feeds), (a.get("name"), shape, np.dtype(dtype).name if dtype else "?")))
            elif kind.endswith(".fetch"):
                shape, dtype = value_type.get(ins[0], ((), None))
                dtype_name = np.dtype(dtype).name if dtype else "?"
                fetches.append((a.get("col", len(fetches)), (a.get("name"), shape, dtype_name)))
            elif kind.endswith(".scale") and len(ins) == 2 and ins[1] in constant:
                scale_of[outs[0]["%"]] = (ins[0], constant[ins[1]], float(a.get("bias") or 0.0))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise _not_a_program(label, f"unexpected PIR JSON layout: {type(exc).__name__}: {exc}") from None
    if not op_types:
        raise _not_a_program(label, "no operators")
    return _Program(
        variables=variables, uses=uses,
        feeds=[s for _, s in sorted(feeds)], fetches=[s for _, s in sorted(fetches, key=lambda f: f[0])],
        time_offsets=_time_offsets(scale_of), op_types=op_types,
    )


# params file ----------------------------------------------------------------------------------


def _read_combined(data: bytes, variables: Mapping[str, tuple[tuple[int, ...], np.dtype]],
                   label: str) -> dict[str, np.ndarray]:
    """Decode a ``save_combine`` file holding ``variables`` in name order (see module docstring)."""
    pb = _framework_pb2()
    view = memoryview(data)
    pos = 0

    def take(n: int, what: str) -> memoryview:
        nonlocal pos
        if pos + n > len(view):
            raise WeightsError(f"{_WHO}: {label}: parameter file truncated while reading {what} "
                               f"(offset {pos}, {len(view)} bytes)")
        chunk = view[pos:pos + n]
        pos += n
        return chunk

    values: dict[str, np.ndarray] = {}
    for name in sorted(variables):
        shape, dtype = variables[name]
        (version,) = struct.unpack("<I", take(4, name))
        (lod_levels,) = struct.unpack("<Q", take(8, name))
        if version != 0 or lod_levels > 16:
            raise WeightsError(f"{_WHO}: {label}: parameter file is not a Paddle save_combine file "
                               f"(bad record header for {name})")
        for _ in range(lod_levels):
            (size,) = struct.unpack("<Q", take(8, name))
            take(size, name)
        (tensor_version,) = struct.unpack("<I", take(4, name))
        (desc_size,) = struct.unpack("<i", take(4, name))
        if tensor_version != 0 or not 0 <= desc_size < 4096:
            raise WeightsError(f"{_WHO}: {label}: bad tensor header for {name} in the parameter file")
        desc = pb.VarType.TensorDesc()
        try:
            desc.ParseFromString(bytes(take(desc_size, name)))
        except Exception:  # noqa: BLE001
            raise WeightsError(f"{_WHO}: {label}: bad tensor description for {name} in the parameter file") from None
        file_shape = tuple(int(d) for d in desc.dims)
        file_dtype = _DTYPES.get(desc.data_type)
        if file_shape != shape or file_dtype is None or np.dtype(file_dtype) != dtype:
            raise WeightsError(
                f"{_WHO}: {label}: parameter file and program disagree on {name}: file {file_shape} "
                f"{np.dtype(file_dtype).name if file_dtype else desc.data_type}, program {shape} {dtype.name}"
            )
        count = int(np.prod(shape, dtype=np.int64))
        raw = take(count * dtype.itemsize, name)
        values[name] = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape).astype(dtype, copy=True)
    if pos != len(view):
        raise WeightsError(f"{_WHO}: {label}: parameter file has {len(view) - pos} bytes after the "
                           f"{len(variables)} variables of the program; it belongs to another program")
    return values


def program_parameter_order(program_bytes: bytes, label: str = "program") -> list[tuple[str, tuple[int, ...]]]:
    """``(variable name, shape)`` of a static program's parameters in first-use order."""
    program = _parse_program(program_bytes, label)
    return [(name, program.variables[name][0]) for name in program.uses]


# --------------------------------------------------------------------------------------------
# the native side

_native_lock = threading.Lock()
_native_order: tuple[tuple[str, tuple[int, ...]], ...] | None = None


def native_parameter_order() -> tuple[tuple[str, tuple[int, ...]], ...]:
    """``(state_dict key, shape)`` of :class:`DAIN`'s parameters in the order its forward uses them.

    Recorded once per process: a 64x64 forward with pre-hooks on every layer that owns parameters.
    """
    global _native_order
    with _native_lock:
        if _native_order is None:
            _native_order = _record_native_order()
        return _native_order


def _record_native_order() -> tuple[tuple[str, tuple[int, ...]], ...]:
    import contextlib

    import paddle

    from vsmsvsr.models.dain import DAIN, SIZE_MULTIPLE

    guard = contextlib.nullcontext() if paddle.in_dynamic_mode() else paddle.base.dygraph.guard()
    with guard, paddle.no_grad():
        model = DAIN()
        model.eval()
        order: list[tuple[str, tuple[int, ...]]] = []
        called: set[str] = set()
        handles = []

        def hook_for(prefix: str, layer: paddle.nn.Layer):
            own = [(f"{prefix}.{name}", tuple(p.shape)) for name, p in layer.named_parameters(include_sublayers=False)]

            def hook(*_: Any) -> None:
                if prefix not in called:
                    called.add(prefix)
                    order.extend(own)
            return hook

        for prefix, layer in model.named_sublayers():
            if any(True for _ in layer.named_parameters(include_sublayers=False)):
                handles.append(layer.register_forward_pre_hook(hook_for(prefix, layer)))
        try:
            frame = paddle.zeros([1, 3, SIZE_MULTIPLE, SIZE_MULTIPLE], dtype="float32")
            model(frame, frame, 0.5)
        finally:
            for handle in handles:
                handle.remove()
        keys = {k for k, _ in order}
        unused = [k for k in model.state_dict() if k not in keys]
        if unused:  # pragma: no cover - guards the architecture, not user input
            raise RuntimeError(f"{_WHO}: DAIN parameters not used by its forward: {unused}")
    return tuple(order)


# --------------------------------------------------------------------------------------------
# public API


def convert_program(program_bytes: bytes, params_bytes: bytes, label: str = "program") -> dict[str, np.ndarray]:
    """The DAIN state dict (native keys, float32 arrays) from a static program and its params file.

    Raises :class:`WeightsError` when either file cannot be decoded or the program's parameters
    do not match :class:`DAIN`'s in count and shapes (position by position, naming the first
    mismatch).
    """
    program = _parse_program(program_bytes, label)
    values = _read_combined(params_bytes, program.variables, label)
    used = program.uses
    native = native_parameter_order()
    for i, ((key, shape), name) in enumerate(zip(native, used)):
        if tuple(values[name].shape) != shape:
            raise WeightsError(
                f"{_WHO}: {label} does not fit DAIN: parameter #{i} in order of use is {name} "
                f"{tuple(values[name].shape)}, DAIN expects {key} {shape}"
            )
    if len(used) != len(native):
        if len(used) > len(native):
            extra = f"first extra: {used[len(native)]} {tuple(values[used[len(native)]].shape)}"
        else:
            extra = f"first missing: {native[len(used)][0]} {native[len(used)][1]}"
        raise WeightsError(
            f"{_WHO}: {label} does not fit DAIN: the program uses {len(used)} parameters, "
            f"DAIN has {len(native)} ({extra})"
        )
    return {key: np.ascontiguousarray(values[name], dtype=np.float32) for (key, _), name in zip(native, used)}


def _stamp(path: Path) -> tuple:
    """What identifies the content at ``path`` for :func:`_load_files`'s memo (size and mtime of
    the file, or of every file in the folder)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


_last_load: list = []  # [(stamp, files)]: the last program read, see _load_files


def _load_files(path: Path) -> tuple[bytes, bytes, str] | None:
    """Program bytes, params bytes and a label; ``None`` if ``path`` is neither a folder nor a tar.

    The last result is kept (until :func:`forget` or another path): loading one ``Interpolate``
    reads the weights, the program and its time offsets from the same file, which then happens
    once rather than three times.
    """
    stamp = (str(path.resolve()), _stamp(path))
    if _last_load and _last_load[0][0] == stamp:
        return _last_load[0][1]
    files = _read_files(path)
    _last_load[:] = [(stamp, files)]
    return files


def forget() -> None:
    """Drop the program kept by :func:`_load_files` (its bytes: about the size of the file)."""
    _last_load.clear()


def _read_files(path: Path) -> tuple[bytes, bytes, str] | None:
    if path.is_dir():
        return _from_folder(path)
    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError as exc:
        raise WeightsError(f"{_WHO}: cannot read {path}: {exc}") from None
    return _from_tar(path) if is_tar else None


def official_program(path: str | os.PathLike[str]) -> tuple[bytes, bytes, bool] | None:
    """``(program bytes, params bytes, is_pir)`` of the static program at ``path`` (the official tar
    or its folder), for running it as it is through Paddle Inference; ``None`` for any other file
    (a ``.pdparams``). ``is_pir``: the program is Paddle 3's JSON (else a legacy ``ProgramDesc``)."""
    files = _load_files(Path(path))
    if files is None:
        return None
    program, params, _ = files
    return program, params, program.lstrip()[:1] == b"{"


def read_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """DAIN weights at ``path`` as a state dict with :class:`DAIN`'s keys.

    ``path`` may be the official ``DAIN_weight.tar``, the folder extracted from it (or the one
    above it), or a ``.pdparams`` state dict saved from this package's :class:`DAIN` (returned as
    read by :func:`vsmsvsr.weights.load_state_dict`; ``load_model`` checks its keys).
    Raises :class:`WeightsError` for a missing or unreadable file and for a program that does
    not fit the network.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{_WHO}.read_weights: path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{_WHO}.read_weights: no such file or folder: {path}")
    files = _load_files(path)
    if files is None:
        return load_state_dict(path)
    return convert_program(*files)


@dataclass(frozen=True)
class ProgramInfo:
    """What a DAIN static program expects and returns (for running it through Paddle Inference).

    Attributes:
        feeds: ``(name, shape, dtype)`` of each feed, in feed order (``-1`` = free size).
        fetches: ``(name, shape, dtype)`` of each fetch target, in fetch order.
        time_offsets: the time offsets the program applies to its first flow (the scale ops that
            follow a ``* 20`` scale, in op order); the fetch's first axis has one frame per offset.
            Empty if the pattern is not found.
        op_types: operator types with their counts.
    """

    feeds: tuple[tuple[str, tuple[int, ...], str], ...]
    fetches: tuple[tuple[str, tuple[int, ...], str], ...]
    time_offsets: tuple[float, ...]
    op_types: Mapping[str, int]


def program_info(path: str | os.PathLike[str]) -> ProgramInfo:
    """Feeds, fetches and baked-in time offsets of the static program at ``path`` (tar or folder)."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{_WHO}.program_info: no such file or folder: {path}")
    files = _load_files(path)
    if files is None:
        raise WeightsError(f"{_WHO}.program_info: {path} is neither a tar archive nor a folder")
    program_bytes, _, label = files
    program = _parse_program(program_bytes, label)
    return ProgramInfo(
        feeds=tuple(program.feeds),
        fetches=tuple(program.fetches),
        time_offsets=tuple(program.time_offsets),
        op_types=dict(program.op_types),
    )


def export_static(model: "paddle.nn.Layer", folder: str | os.PathLike[str], h: int, w: int,
                  times: Sequence[float] = (0.5,), batch: int = 1) -> Path:
    """Export ``model`` (a :class:`DAIN`) with ``paddle.jit.save``, in the official file layout.

    Writes the program and ``folder/params`` the way ``DAIN_weight.tar`` holds them (names that
    PaddleGAN's predictor finds): ``folder/model.json`` (PIR, Paddle 3; Paddle Inference needs the
    suffix) or ``folder/model`` (legacy ``ProgramDesc``, Paddle 2). Fixed input size: feed
    ``image`` float32 ``(2, batch, 3, h, w)`` (frame 0, frame 1), one fetch
    ``(len(times), batch, 3, h, w)``, the rectified frames at ``times`` (like PaddleGAN's program
    with its ``time_step`` list). ``model`` is switched to eval mode. Returns ``folder``.
    """
    import tempfile

    import paddle

    from vsmsvsr.models.dain import DAIN, _check_times

    if not isinstance(model, DAIN):
        raise TypeError(f"{_WHO}.export_static: model must be a DAIN, got {type(model).__name__}")
    times = _check_times(times)

    class _Program(paddle.nn.Layer):
        def __init__(self, dain: DAIN) -> None:
            super().__init__()
            self.dain = dain

        def forward(self, image: paddle.Tensor) -> paddle.Tensor:
            return paddle.stack(self.dain.interpolate(image[0], image[1], times), axis=0)

    wrapper = _Program(model)
    wrapper.eval()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = paddle.static.InputSpec([2, batch, 3, h, w], "float32", "image")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        prefix = os.path.join(tmp, "dain")
        paddle.jit.save(wrapper, prefix, input_spec=[spec])
        # Paddle 3 writes a PIR program (dain.json), Paddle 2 a legacy one (dain.pdmodel); Paddle
        # Inference tells them apart by the suffix, PaddleGAN's predictor only needs "model" in it
        if os.path.exists(prefix + ".json"):
            os.replace(prefix + ".json", folder / "model.json")
        else:
            os.replace(prefix + ".pdmodel", folder / "model")
        os.replace(prefix + ".pdiparams", folder / "params")
    return folder
