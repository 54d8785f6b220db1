"""rotq's Python API: the C library (librotq.so) through ctypes, no compiled extension.

    import rotq
    rotq.rotate("models/stories260K", output="out/stories260K-rotated")   # a checkpoint directory
    rotq.rotate(model)                     # a loaded HF model: its tensors rotated in place
    model.save_pretrained("out/rotated")   # writes the rotated model

Both go through the same C code as `rotq rotate`, and give the same bytes.
"""

import json
import os

from . import _lib
from ._online import apply_online  # noqa: F401
from ._lib import VERIFY_ALL, VERIFY_AUTO, VERIFY_IN_STREAM, VERIFY_OFF  # noqa: F401

__all__ = ["rotate", "apply_online", "version", "RotqError", "VERIFY_AUTO", "VERIFY_OFF", "VERIFY_ALL", "VERIFY_IN_STREAM"]


class RotqError(RuntimeError):
    """A failed rotation; the message is the library's (it names the file/tensor/field at fault)."""


def version():
    """librotq's version string, e.g. "0.1.0"."""
    return _lib.lib().rotq_version().decode()


def _fspath(p):
    return os.fsencode(os.fspath(p))


def rotate_dir(model_dir, output, config_path_or_dict="transformer_universal", online=False, seed=0, *,
               online_for=None, force=False, verify=VERIFY_AUTO, threads=0, max_shard_bytes=0,
               quiet=False, progress=False, notice=None):
    """Rotates the checkpoint directory model_dir into output (exactly `rotq rotate`); returns output.

    config_path_or_dict: a built-in config name (`rotq config list`), a YAML file's path, a dict
    (the config itself, handed to the library as JSON text), or None for the architecture's own.
    notice: called with each notice the library has for the user (default: the "rotq" logger).
    """
    so = _lib.lib()
    opts = so.rotq_rotate_default_options()
    keep = []  # the bytes objects whose buffers opts points into, alive until rotq_rotate returns
    def s(v):
        keep.append(v)
        return v
    opts.model_dir = s(_fspath(model_dir))
    opts.output_dir = s(_fspath(output))
    if isinstance(config_path_or_dict, dict):
        opts.config_text = s(json.dumps(config_path_or_dict).encode())
    elif config_path_or_dict is not None:
        opts.config = s(_fspath(config_path_or_dict))
    opts.seed = int(seed)
    opts.threads = int(threads)
    opts.online = 1 if online else 0
    if online_for is not None:
        opts.online_for = s(online_for.encode())
    opts.force = 1 if force else 0
    opts.verify = int(verify)
    opts.max_shard_bytes = int(max_shard_bytes)
    opts.quiet = 1 if quiet else 0
    opts.progress = 1 if progress else 0
    if notice is None:
        import logging
        log = logging.getLogger("rotq")
        notice = log.warning
    callback = _lib.NOTICE_FN(lambda message, _ctx: notice(message.decode(errors="replace")))
    opts.notice = callback
    err = _lib.Error()
    rc = so.rotq_rotate(opts, err)
    if rc != 0:
        raise RotqError(err.message.decode(errors="replace"))
    return os.fspath(output)


def rotate(model_or_dir, config_path_or_dict="transformer_universal", output=None, online=False, seed=0, **kwargs):
    """Rotates a model, as the seed's mtq.rotate(model, config_path_or_dict=...) does.

    model_or_dir:
      a checkpoint directory (str or os.PathLike): rotated into `output` (required; must not exist
        unless force=True), exactly as `rotq rotate --model DIR --output OUTPUT`; returns output.
      a loaded model object with `.config` and `.state_dict()` of torch tensors (HF's interface):
        its tensors are rotated in place through the same C code, so `model.save_pretrained(...)`
        writes the rotated model; returns the model. With `output`, the rotated checkpoint
        (rotation.json included) is also kept there. See rotq/_model.py for what it costs.
    config_path_or_dict: a built-in config name, a YAML path, a dict, or None (the architecture's own).
    online: also apply the online rotations (R4, R_heads, R3; docs/online.md). A checkpoint
      directory gets the export (the runtime applies the activation halves); a model object also
      gets the activation halves as forward pre-hooks (rotq.apply_online), so its outputs stay
      the original's. seed: the seed of every random matrix.
    Keyword options: online_for ("vllm"), force, verify (VERIFY_*), threads, max_shard_bytes,
    quiet, progress, notice (as rotate_dir).
    Raises RotqError with the library's message when the rotation fails.
    """
    if isinstance(model_or_dir, (str, bytes, os.PathLike)):
        if output is None:
            raise ValueError("rotq.rotate: rotating a checkpoint directory needs output= (the directory to write)")
        return rotate_dir(model_or_dir, output, config_path_or_dict, online, seed, **kwargs)
    from . import _model
    return _model.rotate_model(model_or_dir, config_path_or_dict, output, online, seed, **kwargs)
