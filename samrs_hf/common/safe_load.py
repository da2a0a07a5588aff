"""The one place where the project reads pickled files: release ``ins/*.pkl`` and ``.pth`` checkpoints.

Unpickling calls whatever the file names, so a ``.pkl`` can run ``os.system`` as easily as it can
build a list, and a 45-byte file can ask for ``list(range(10**8))``. Both loaders here therefore:

* resolve only the exact ``(module, name)`` pairs of :data:`ALLOWED_GLOBALS`, by table lookup:
  no name is followed through attributes, so ``numpy`` / ``dtypes.__builtins__`` finds nothing;
* allow no builtin but ``bytes()`` (protocols 0-2 spell ``b""`` so): dict, list, tuple, str, bytes,
  int, float, bool and None come from pickle opcodes, never from globals;
* map numpy's array / scalar / dtype reconstruction to stand-ins that check their arguments and
  build with public numpy calls (``np.dtype``, ``np.frombuffer``), so every array holds exactly the
  bytes the file spells out (no huge empty shape, no object dtype, no dtype state edited into an
  object dtype);
* refuse, before unpickling, memo indices no pickler writes (the C unpickler sizes its memo table
  by the largest index) and lengths past the end of the file (it allocates them before reading).

Memory use is thus bounded by the file's own size times a small factor (Python object overhead).
A refusal is an :class:`UnsafePickleError` naming the file and what it asked for.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
from pathlib import Path

import numpy as np

from .errors import SamrsError

SAFE_DTYPE_KINDS = "biufcSUV"
"""bool, integers, floats, complex, bytes, str and plain void: fixed-size, no Python objects inside."""
DTYPE_CLASSES = (
    "BoolDType", "Int8DType", "UInt8DType", "Int16DType", "UInt16DType", "Int32DType", "UInt32DType",
    "Int64DType", "UInt64DType", "ByteDType", "UByteDType", "ShortDType", "UShortDType", "IntDType",
    "UIntDType", "LongDType", "ULongDType", "LongLongDType", "ULongLongDType", "Float16DType",
    "Float32DType", "Float64DType", "LongDoubleDType", "Complex64DType", "Complex128DType",
    "CLongDoubleDType", "BytesDType", "StrDType", "VoidDType",
)
"""numpy's DType classes of :data:`SAFE_DTYPE_KINDS`: some numpy releases pickle a dtype through its class."""
MEMO_OPCODES = ("PUT", "BINPUT", "LONG_BINPUT")


class UnsafePickleError(SamrsError, ValueError):
    """A pickled file that asks for code or for memory beyond its own bytes: refused, nothing of it run."""


class CorruptPickleError(SamrsError, ValueError):
    """A missing, truncated or garbled pickled file (not a refusal: nothing in it asked for code)."""


class _Refused(Exception):
    """Raised by the stand-ins; :func:`load_pickle` adds the file name."""


class _NdarrayClass:
    """What ``numpy.ndarray`` resolves to: a marker for ``_reconstruct``, not callable, so a pickle
    cannot call ``ndarray(shape)`` to allocate an array its bytes do not hold."""

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __call__(self, *args, **kwargs):
        raise _Refused("numpy.ndarray(...) (an array is built from its own bytes, never from a shape)")


NDARRAY = _NdarrayClass()


def _safe_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind not in SAFE_DTYPE_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype:
        raise _Refused(f"dtype {dtype!r} (only plain numeric, bytes and str dtypes are allowed)")
    return dtype


class PickledDtype:
    """Stands in for ``numpy.dtype`` (and its DType classes) while unpickling.

    Pickle's BUILD step calls this ``__setstate__``, not numpy's: numpy's would accept a state whose
    flags turn a plain dtype into one holding object pointers.
    """

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str):
            raise _Refused(f"dtype spelled as {type(spec).__name__} (numpy pickles spell it as a string)")
        self.dtype = _safe_dtype(np.dtype(spec))

    def __setstate__(self, state):
        """Only the byte order may differ from a freshly made dtype of the same spelling."""
        fresh = self.dtype.__reduce__()[2]
        if not (isinstance(state, tuple) and len(state) == len(fresh) and state[0] == fresh[0]
                and state[2:] == fresh[2:] and state[1] in ("<", ">", "|", "=")):
            raise _Refused(f"dtype state {state!r} (differs from numpy's {fresh!r} beyond the byte order)")
        if state[1] != fresh[1]:
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype_of(value) -> np.dtype:
    dtype = getattr(value, "dtype", None) if isinstance(value, PickledDtype) else None
    if dtype is None:
        raise _Refused(f"{type(value).__name__} where a numpy dtype belongs")
    return dtype


def _shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise _Refused(f"array shape {shape!r}")
    return shape


def _array(data, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    """An array over ``data`` (bytes from the file): its size must be exactly ``shape`` x itemsize."""
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused(f"array data of type {type(data).__name__}")
    if order not in ("C", "F"):
        raise _Refused(f"array order {order!r}")
    if int(np.prod(shape, dtype=object)) * dtype.itemsize != len(data) or dtype.itemsize == 0:
        raise _Refused(f"array of shape {shape} and dtype {dtype} from {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)


class PickledArray:
    """What ``_reconstruct`` returns: BUILD fills it from the file's bytes (see :func:`_resolve`)."""

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise _Refused("array state is not (version, shape, dtype, is_fortran, data)")
        shape, dtype, fortran, data = state
        order = "F" if fortran else "C"
        array = _array(data, _dtype_of(dtype), _shape(shape), order)
        # A writable copy in native byte order, as numpy's own ndarray.__setstate__ gives.
        self.array = array.astype(array.dtype.newbyteorder("="), order=order)


def _reconstruct(subtype, shape, typecode):
    """numpy's first step of an array: an empty ndarray, whatever shape the file asks for."""
    if subtype is not NDARRAY or int(np.prod(_shape(shape), dtype=object)) != 0:
        raise _Refused(f"_reconstruct({subtype!r}, {shape!r}) (numpy writes an empty ndarray here)")
    return PickledArray()


def _scalar(dtype, data):
    dtype = _dtype_of(dtype)
    return _array(data, dtype, (1,), "C")[0]


def _frombuffer(buf, dtype, shape, order):
    """Protocol 5's array form: a view of the file's bytes."""
    return _array(buf, _dtype_of(dtype), _shape(shape), order)


def _encode(text, encoding):
    """Protocol 2 spells bytes as ``_codecs.encode(str, "latin1")``: one byte per character."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode(<{type(text).__name__}>, {encoding!r}) (only latin1 text)")
    return text.encode("latin1")


def _empty_bytes():
    """Protocols 0-2 spell ``b""`` as ``bytes()``; ``bytes(n)`` would allocate n bytes, so no arguments."""
    return b""


def _allowed_globals() -> dict[tuple[str, str], object]:
    table: dict[tuple[str, str], object] = {("numpy", "ndarray"): NDARRAY, ("numpy", "dtype"): PickledDtype,
                                            ("_codecs", "encode"): _encode, ("builtins", "bytes"): _empty_bytes,
                                            ("__builtin__", "bytes"): _empty_bytes}
    for core in ("numpy.core", "numpy._core"):  # numpy < 2 and numpy >= 2
        table[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        table[(f"{core}.multiarray", "scalar")] = _scalar
        table[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    for name in DTYPE_CLASSES:  # numpy >= 2 names the module; numpy 1.2x spelled them numpy / dtypes.X
        table[("numpy.dtypes", name)] = table[("numpy", f"dtypes.{name}")] = PickledDtype
    return table


ALLOWED_GLOBALS = _allowed_globals()
"""Exact ``(module, name)`` -> the checked stand-in it loads as."""


def _resolve(value, seen: dict):
    """The loaded data with every stand-in replaced by the numpy object it built."""
    if isinstance(value, PickledArray):
        if not hasattr(value, "array"):
            raise _Refused("an array that the file never fills")
        return value.array
    if isinstance(value, PickledDtype):
        return _dtype_of(value)
    if not isinstance(value, (list, dict, tuple, set, frozenset)):
        return value
    if id(value) in seen:
        return seen[id(value)]
    if isinstance(value, list):
        seen[id(value)] = value  # in place: shared and self-referencing lists stay so
        value[:] = [_resolve(v, seen) for v in value]
    elif isinstance(value, dict):
        seen[id(value)] = value
        items = [(_resolve(k, seen), _resolve(v, seen)) for k, v in value.items()]
        value.clear()
        value.update(items)
    else:
        seen[id(value)] = out = type(value)(_resolve(v, seen) for v in value)
        return out
    return value


def _check_opcodes(data: bytes) -> None:
    """Memo indices beyond the opcode count and lengths past the end are never written by a pickler,
    but make the C unpickler allocate (memo table, bytes objects) before it notices."""
    for n, (op, arg, pos) in enumerate(pickletools.genops(data)):
        if op.name in MEMO_OPCODES and arg > n:
            raise _Refused(f"memo index {arg} at byte {pos} (a pickler numbers its memo 0, 1, 2, ...)")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def read_file(path: Path) -> bytes:
    """The file's bytes; a missing file is a :class:`CorruptPickleError` naming it (OSError otherwise)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CorruptPickleError(f"{path}: missing file") from None


def _refusal(path, what: str) -> UnsafePickleError:
    return UnsafePickleError(f"{path}: refused to load: the file asks for {what}; only plain data and numpy "
                             "arrays of their own bytes are allowed")


def load_pickle(path):
    """Unpickle ``path`` under the rules of the module docstring.

    Raises :class:`UnsafePickleError` for a refused file, :class:`CorruptPickleError` for a missing,
    truncated or garbled one, and ``OSError`` (e.g. ``PermissionError``) when it cannot be read.
    """
    path = Path(path)
    data = read_file(path)
    try:
        _check_opcodes(data)
        return _resolve(_Unpickler(io.BytesIO(data)).load(), {})
    except _Refused as exc:
        raise _refusal(path, str(exc)) from None
    except Exception as exc:  # truncated / not a pickle / numpy rejects the values
        raise CorruptPickleError(f"{path}: corrupt pickle ({type(exc).__name__}: {exc})") from None


def torch_safe_globals() -> list[tuple[object, str]]:
    """:data:`ALLOWED_GLOBALS` in ``torch.serialization.safe_globals``' (object, "module.name") form,
    plus :class:`PickledArray` so that torch's BUILD fills it."""
    pairs = [(obj, f"{module}.{name}") for (module, name), obj in ALLOWED_GLOBALS.items()]
    return pairs + [(PickledArray, f"{__name__}.PickledArray")]


_TORCH_GLOBAL = re.compile(r"GLOBAL (\S+)|unrecognized function (.+?)(?: which belongs|$)", re.MULTILINE)
"""How torch's weights-only unpickler names what it refused."""


def load_checkpoint(path):
    """``torch.load(path, map_location="cpu", weights_only=True)`` that also reads the numpy values
    official checkpoints hold (SAMRS's SEP checkpoints store ``loss_pretrain`` as a numpy array),
    through the same checked stand-ins as :func:`load_pickle`.

    A global torch refuses becomes an :class:`UnsafePickleError` naming the file and the global; a
    file torch cannot read at all (truncated download, not a checkpoint) a :class:`CorruptPickleError`
    naming the file, whatever type torch raised.
    """
    import torch

    path = Path(path)
    try:
        with torch.serialization.safe_globals(torch_safe_globals()):
            return _resolve(torch.load(path, map_location="cpu", weights_only=True), {})
    except _Refused as exc:
        raise _refusal(path, str(exc)) from None
    except pickle.UnpicklingError as exc:
        match = _TORCH_GLOBAL.search(str(exc))
        if match is None:
            raise CorruptPickleError(f"{path}: not a PyTorch checkpoint (its pickled data cannot be read)") from None
        raise _refusal(path, match.group(1) or match.group(2)) from None
    except (OSError, RuntimeError, EOFError, KeyError, ValueError) as exc:  # torch's errors for a broken file
        raise CorruptPickleError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})") from None


def load_arrays(path):
    """A ``.npy`` file's array, or a ``.npz`` file's arrays as a dict (read whole, file closed): numpy's
    own format with pickled (object) arrays refused, so nothing in the file is ever called."""
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
