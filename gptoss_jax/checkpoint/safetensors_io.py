"""safetensors, read by byte range and written as a stream.

Reading: the header is parsed and checked against the file size once; a tensor region (any box of a tensor) is read
with preadv straight into a fresh numpy buffer, in the fewest contiguous runs. Nothing is memory-mapped, so host
memory holds only what is being placed on devices, and every byte read is counted (per-host loading is measured).
Writing: header first (shapes are known up front), then tensors one at a time, so a writer never holds the model.
"""
from __future__ import annotations

import json
import math
import os
import stat
import struct
import threading
from typing import Iterable, Sequence

import ml_dtypes
import numpy as np

from gptoss_jax.errors import CheckpointError
DTYPES: dict[str, np.dtype] = {
    "BF16": np.dtype(ml_dtypes.bfloat16), "F16": np.dtype(np.float16), "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8), "I16": np.dtype(np.int16),
    "I32": np.dtype(np.int32), "I64": np.dtype(np.int64), "BOOL": np.dtype(np.bool_),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024



class ByteCounter:
    """Bytes read from checkpoint files (thread safe); tests and per-host loading assert on it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.total = 0
        self.by_file: dict[str, int] = {}
        self.by_tensor: dict[str, int] = {}

    def add(self, path: str, n: int, tensor: str | None = None) -> None:
        with self._lock:
            self.total += n
            self.by_file[path] = self.by_file.get(path, 0) + n
            if tensor is not None:
                self.by_tensor[tensor] = self.by_tensor.get(tensor, 0) + n


class TensorInfo:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, dtype: np.dtype, shape: tuple[int, ...], begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def open_regular(path: str, what: str = "a safetensors file") -> int:
    """A read-only descriptor of `path`, which must be a regular file (or a link to one). A FIFO, device, socket or
    folder is refused without blocking: O_NONBLOCK keeps the open of a FIFO with no writer from hanging."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot open ({e.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise CheckpointError(f"{path}: is {file_kind(mode)}, not a regular file; expected {what}")
    os.set_blocking(fd, True)
    return fd


def file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def parse_header(path: str, header, data_start: int, size: int) -> tuple[dict, dict[str, "TensorInfo"]]:
    """Check a decoded header against the safetensors format; returns (metadata, tensors).

    data_start: where the data section begins (8 + header length); size: the file's bytes. Every entry must be an
    object {dtype, shape, data_offsets}; each tensor's bytes lie inside the data section, match shape x dtype, and
    overlap no other tensor's. Each failure names the file, the tensor, what was found and what was expected."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is a JSON {_json_type(header)}, expected an object mapping tensor "
                              "names to {dtype, shape, data_offsets}; not a safetensors file?")
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: header __metadata__ is a JSON {_json_type(metadata)}, expected an object "
                              "of strings")
    tensors: dict[str, TensorInfo] = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(h, dict):
            raise CheckpointError(f"{where}: header entry is a JSON {_json_type(h)} ({_short(h)}), expected an "
                                  "object {dtype, shape, data_offsets}")
        dtype, shape, offsets = h.get("dtype"), h.get("shape"), h.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise CheckpointError(f"{where}: dtype {_short(dtype)} is not known; expected one of {sorted(DTYPES)}")
        if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
            raise CheckpointError(f"{where}: shape {_short(shape)} is not a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
            raise CheckpointError(f"{where}: data_offsets {_short(offsets)} is not two non-negative integers "
                                  "[begin, end]")
        begin, end = offsets
        need = math.prod(shape) * DTYPES[dtype].itemsize
        if end < begin or end - begin != need:
            raise CheckpointError(f"{where}: {dtype}{list(shape)} needs {need} bytes but its data_offsets "
                                  f"[{begin}, {end}] span {end - begin}")
        if data_start + end > size:
            raise CheckpointError(f"{path}: truncated: tensor {name!r} needs bytes up to {data_start + end} "
                                  f"but the file has {size}")
        tensors[name] = TensorInfo(name, DTYPES[dtype], tuple(shape), begin, end)
    spans = sorted((t.begin, t.end, t.name) for t in tensors.values() if t.end > t.begin)
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise CheckpointError(f"{path}: tensors {n0!r} (bytes [{b0}, {e0})) and {n1!r} (bytes [{b1}, {e1})) "
                                  "overlap; expected disjoint data_offsets")
    return metadata, tensors


def _json_type(x) -> str:
    for kind, name in ((dict, "object"), (list, "array"), (str, "string"), (bool, "boolean"), (int, "number"),
                       (float, "number")):
        if isinstance(x, kind):
            return name
    return "null"


def _short(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


class SafetensorsFile:
    """One .safetensors file: validated header, region reads by preadv."""

    def __init__(self, path: str, counter: ByteCounter | None = None):
        self.path = path
        self.counter = counter
        self._fd = open_regular(path)
        try:
            self._read_header()
        except BaseException:
            self.close()
            raise

    def _read_header(self) -> None:
        path = self.path
        size = os.fstat(self._fd).st_size
        if size < 8:
            raise CheckpointError(f"{path}: {size} bytes is too short for a safetensors file (truncated?)")
        (n,) = struct.unpack("<Q", os.pread(self._fd, 8, 0))
        if n > MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{path}: header length {n} does not fit in a file of {size} bytes "
                                  f"(truncated, or not a safetensors file)")
        try:
            header = json.loads(os.pread(self._fd, n, 8))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: header is not valid JSON ({e}); not a safetensors file?") from None
        except RecursionError:
            raise CheckpointError(f"{path}: header is JSON nested too deeply to be a safetensors header") from None
        self.data_start = 8 + n
        self.metadata, self.tensors = parse_header(path, header, self.data_start, size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def read(self, name: str, index: Sequence[slice] | None = None, view_shape: Sequence[int] | None = None,
             row_offset: int = 0) -> np.ndarray:
        """Read a box of tensor `name`.

        The tensor may be seen as `view_shape` (a reshape of rows [row_offset, ...) of its first axis, as when q, k
        and v are rows of one fused qkv weight); `index` is a tuple of unit-step slices into that view.
        """
        info = self.tensors[name]
        shape = tuple(view_shape) if view_shape is not None else info.shape
        item = info.dtype.itemsize
        row_elems = math.prod(info.shape[1:]) if info.shape else 1
        base = self.data_start + info.begin + row_offset * row_elems * item
        if index is None:
            index = tuple(slice(0, d) for d in shape)
        starts = [s.start or 0 for s in index]
        stops = [d if s.stop is None else s.stop for s, d in zip(index, shape)]
        out_shape = tuple(b - a for a, b in zip(starts, stops))
        out = np.empty(out_shape, info.dtype)
        if out.size == 0:
            return out
        strides = [math.prod(shape[i + 1:]) for i in range(len(shape))]
        # axes after `inner` are read whole, so each run is contiguous in the file
        inner = len(shape) - 1
        while inner > 0 and starts[inner] == 0 and stops[inner] == shape[inner]:
            inner -= 1
        run = (stops[inner] - starts[inner]) * strides[inner]
        flat = out.reshape(-1).view(np.uint8)
        outer = [range(starts[i], stops[i]) for i in range(inner)]
        pos = 0
        for idx in (np.ndindex(*[len(r) for r in outer]) if outer else [()]):
            elem = sum((starts[i] + idx[i]) * strides[i] for i in range(inner)) + starts[inner] * strides[inner]
            nbytes = run * item
            got = os.preadv(self._fd, [flat[pos:pos + nbytes]], base + elem * item)
            if got != nbytes:
                raise CheckpointError(f"{self.path}: short read of tensor {name!r} ({got} of {nbytes} bytes): "
                                      f"file truncated or changed while loading")
            pos += nbytes
        if self.counter is not None:
            self.counter.add(self.path, out.nbytes, name)
        return out


def write_safetensors(path: str, tensors: Iterable[tuple[str, tuple[int, ...], np.dtype]], produce,
                      metadata: dict[str, str] | None = None) -> None:
    """Stream a safetensors file: `tensors` lists (name, shape, dtype) in file order, `produce(name)` returns each
    array when its turn comes. Only one tensor is in memory at a time."""
    entries = list(tensors)
    header: dict = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, shape, dtype in entries:
        dtype = np.dtype(dtype)
        n = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype in entries:
            arr = np.ascontiguousarray(produce(name))
            if arr.shape != tuple(shape) or arr.dtype != np.dtype(dtype):
                raise ValueError(f"writer produced {name} as {arr.dtype}{list(arr.shape)}, "
                                 f"declared {np.dtype(dtype)}{list(shape)}")
            f.write(arr.reshape(-1).view(np.uint8).data)
    os.replace(tmp, path)
