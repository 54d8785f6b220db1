"""ctypes binding of librotq.so's public API (include/rotq.h): rotq_version,
rotq_rotate_default_options, rotq_rotate.

Where the library is found, first match wins:
  1. $ROTQ_LIBRARY (the path of librotq.so);
  2. beside this package (rotq/librotq.so or rotq/librotq.so.0);
  3. the build directory of the source tree this package sits in (<repo>/build/librotq.so,
     or $ROTQ_BUILD_DIR/librotq.so);
  4. the lib directories of the prefix this package was installed under (make install);
  5. the dynamic loader's own search (librotq.so.0 in the ld.so cache or LD_LIBRARY_PATH).
"""

import ctypes
import glob
import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# The fields of struct rotq_rotate_options that this package sets, in include/rotq.h's order.
# The struct may grow at its end (fields appended); _Options carries a reserved tail larger than
# any such growth, so the value rotq_rotate_default_options() returns always fits and the appended
# fields keep the library's defaults. tests/cli_python_api.sh compares these offsets with the C
# compiler's offsetof(), so a reordered or retyped field fails the suite instead of corrupting memory.
NOTICE_FN = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
_KNOWN_FIELDS = [
    ("model_dir", ctypes.c_char_p),
    ("output_dir", ctypes.c_char_p),
    ("config", ctypes.c_char_p),
    ("config_text", ctypes.c_char_p),
    ("seed", ctypes.c_uint64),
    ("threads", ctypes.c_int),
    ("online", ctypes.c_int),
    ("online_for", ctypes.c_char_p),
    ("force", ctypes.c_int),
    ("verify", ctypes.c_int),
    ("max_shard_bytes", ctypes.c_size_t),
    ("progress", ctypes.c_int),
    ("quiet", ctypes.c_int),
    ("notice", NOTICE_FN),
    ("notice_context", ctypes.c_void_p),
]
_RESERVED_BYTES = 4096


class Options(ctypes.Structure):
    _fields_ = _KNOWN_FIELDS + [("_reserved", ctypes.c_ubyte * _RESERVED_BYTES)]


class Error(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char * 2048)]


VERIFY_AUTO = -1
VERIFY_OFF = 0
VERIFY_ALL = 1
VERIFY_IN_STREAM = 2


def _candidates():
    env = os.environ.get("ROTQ_LIBRARY")
    if env:
        yield env
        return  # an explicit choice is not second-guessed
    for name in ("librotq.so", "librotq.so.0"):
        yield os.path.join(_HERE, name)
    build = os.environ.get("ROTQ_BUILD_DIR") or os.path.join(_HERE, "..", "..", "build")
    yield os.path.join(build, "librotq.so")
    # Installed as <prefix>/lib/python3/dist-packages/rotq (or .../python3.X/site-packages/rotq).
    prefix = os.path.normpath(os.path.join(_HERE, "..", "..", "..", ".."))
    yield os.path.join(prefix, "lib", "librotq.so.0")
    yield from sorted(glob.glob(os.path.join(prefix, "lib", "*", "librotq.so.0")))
    yield os.path.join(prefix, "lib64", "librotq.so.0")
    yield "librotq.so.0"  # the dynamic loader's search


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise OSError("rotq: librotq.so not found; set ROTQ_LIBRARY to its path. Looked at: " + "; ".join(tried))


_lib = None


def lib():
    """The loaded librotq.so (loaded on first use), with the prototypes set."""
    global _lib
    if _lib is None:
        so = _load()
        so.rotq_version.restype = ctypes.c_char_p
        so.rotq_version.argtypes = []
        so.rotq_rotate_default_options.restype = Options
        so.rotq_rotate_default_options.argtypes = []
        so.rotq_rotate.restype = ctypes.c_int
        so.rotq_rotate.argtypes = [ctypes.POINTER(Options), ctypes.POINTER(Error)]
        _lib = so
    return _lib


def field_offsets():
    """{field: byte offset} of the fields this package sets (checked against C's offsetof by the tests)."""
    return {name: getattr(Options, name).offset for name, _ in _KNOWN_FIELDS}
