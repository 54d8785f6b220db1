"""rotq.rotate(model): a loaded model's tensors rotated in place through librotq.

Design: the model's state_dict is written as a safetensors checkpoint (with its config.json) to a
temporary directory, on tmpfs (/dev/shm) when it has room, rotq_rotate() -- the very entry point
of `rotq rotate` -- rotates it into a second directory, and the rotated tensors are copied back
into the model's own tensors in place (memory-mapped, one tensor at a time). The rotation is
therefore byte for byte `rotq rotate`'s, verification included.

Cost, honestly: besides the model itself, the input copy and the rotated output both lie in the
temporary directory (on tmpfs: RAM) while rotq_rotate runs, so about 3x the model at the peak
(more with tied embeddings: the output holds the untied lm_head), plus rotq's own working memory;
measured on a 733 MiB bf16 model (Llama-3.2-1B's shape, 2 layers, tied): /dev/shm peaked at
1967 MiB. The temporary directories are removed before returning (also on failure).
An in-memory C entry point (tensors passed by pointer) would avoid the copies; it is not built.

Tied weights: tensors sharing storage (lm_head.weight tied to embed_tokens.weight) are written
once, as HF's save_pretrained does; rotq unties them (the rotated lm_head carries the fused final
norm, the embedding does not), so the model gets a separate lm_head parameter and its config
takes rotq's config.json changes (tie_word_embeddings false; with online, the quantization_config).

Online rotations: their weight halves are in the rotated tensors; their activation halves are
registered on the model as forward pre-hooks (rotq/_online.py, apply_online), so the model keeps
computing the original's function. save_pretrained writes the export (the hooks are not saved: an
engine applies the transforms from config.json, or rotq.apply_online(model, directory) does).
"""

import json
import os
import shutil
import struct
import tempfile

_DTYPES = None  # torch dtype -> (safetensors name, numpy dtype of the raw bytes)


def _dtypes():
    global _DTYPES
    if _DTYPES is None:
        import numpy as np
        import torch
        _DTYPES = {
            torch.float64: ("F64", np.float64),
            torch.float32: ("F32", np.float32),
            torch.float16: ("F16", np.float16),
            torch.bfloat16: ("BF16", np.int16),  # raw bits: numpy has no bfloat16
            torch.int64: ("I64", np.int64),
            torch.int32: ("I32", np.int32),
            torch.int16: ("I16", np.int16),
            torch.int8: ("I8", np.int8),
            torch.uint8: ("U8", np.uint8),
            torch.bool: ("BOOL", np.bool_),
        }
    return _DTYPES


def _config_dict(model):
    cfg = model.config
    if isinstance(cfg, dict):
        d = dict(cfg)
    elif hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
    else:
        d = {k: v for k, v in vars(cfg).items() if not k.startswith("_")}
    if not d.get("architectures"):
        d["architectures"] = [type(model).__name__]  # as save_pretrained records it
    return d


def _raw(t):
    """The tensor's bytes as a numpy array (CPU, contiguous, the same bits)."""
    import torch
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy()


def _unique_tensors(state):
    """[(name, tensor)] with each storage once (the first name), and {alias: first name}."""
    seen, unique, aliases = {}, [], {}
    for name, t in state.items():
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        unique.append((name, t))
    return unique, aliases


def _write_checkpoint(dir_, config, tensors):
    dtypes = _dtypes()
    header, offset = {}, 0
    for name, t in tensors:
        if t.dtype not in dtypes:
            raise TypeError(f"rotq.rotate: tensor '{name}' has dtype {t.dtype}, which safetensors/rotq do not take")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": dtypes[t.dtype][0], "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(dir_, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, t in tensors:
            f.write(memoryview(_raw(t)).cast("B"))
    with open(os.path.join(dir_, "config.json"), "w") as f:
        json.dump(config, f, indent=2, default=str)


def _read_checkpoint(dir_):
    """{name: torch tensor} of every safetensors file in dir_, memory-mapped (read-only)."""
    import numpy as np
    import torch
    names = {v[0]: (k, v[1]) for k, v in _dtypes().items()}
    out = {}
    for fname in sorted(os.listdir(dir_)):
        if not fname.endswith(".safetensors"):
            continue
        path = os.path.join(dir_, fname)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        for name, h in header.items():
            if name == "__metadata__":
                continue
            dtype, np_dtype = names[h["dtype"]]
            b, e = h["data_offsets"]
            arr = mm[8 + n + b:8 + n + e].view(np_dtype)
            t = _readonly(arr)
            if dtype == torch.bfloat16:
                t = t.view(torch.bfloat16)
            out[name] = t.reshape(h["shape"])
    return out


def _readonly(arr):
    """A torch view of a read-only array (torch warns on non-writable arrays; nothing writes to it)."""
    import warnings
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def _owner(model, name):
    """(module, attribute) holding the tensor named `name` in the state_dict. Modules missing on the
    path (an online export's stored matrix, e.g. 'model.layers.0.mlp.down_proj.R4_input.weight')
    are added as empty holder modules, so state_dict() and save_pretrained() carry the tensor; they
    take no part in forward (the runtime applies the online rotation, docs/online.md)."""
    import torch
    *path, leaf = name.split(".")
    module = model
    for part in path:
        child = getattr(module, part, None)
        if child is None:
            child = torch.nn.Module()
            module.add_module(part, child)
        elif not isinstance(child, torch.nn.Module):
            raise TypeError(f"rotq.rotate: rotq's output has tensor '{name}', but the model's '{part}' is no module")
        module = child
    return module, leaf


def _replace(model, name, value):
    """Gives `name` a storage of its own holding value (untying a shared weight), or registers it."""
    import torch
    module, leaf = _owner(model, name)
    old = getattr(module, leaf, None)
    device = old.device if isinstance(old, torch.Tensor) else "cpu"
    fresh = value.to(device=device, copy=True)
    if isinstance(old, torch.nn.Parameter):
        setattr(module, leaf, torch.nn.Parameter(fresh, requires_grad=old.requires_grad))
    elif leaf in getattr(module, "_buffers", {}) or old is None:
        module.register_buffer(leaf, fresh)
    else:
        raise TypeError(f"rotq.rotate: '{name}' is neither a parameter nor a buffer of the model")


def _update_config(model, before, after):
    cfg = model.config
    for key, value in after.items():
        if key in before and before[key] == value:
            continue
        if isinstance(cfg, dict):
            cfg[key] = value
        else:
            setattr(cfg, key, value)


def _scratch_root(need_bytes):
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        if os.access(shm, os.W_OK) and st.f_bavail * st.f_frsize > need_bytes * 1.1:
            return shm
    except OSError:
        pass
    return None  # tempfile's default (TMPDIR, /tmp)


def rotate_model(model, config_path_or_dict, output, online, seed, **kwargs):
    import torch
    from . import rotate_dir

    state = model.state_dict()
    unique, aliases = _unique_tensors(state)
    config = _config_dict(model)
    nbytes = sum(t.numel() * t.element_size() for _, t in unique)
    work = tempfile.mkdtemp(prefix="rotq-", dir=_scratch_root(2 * nbytes if output is None else nbytes))
    try:
        src = os.path.join(work, "model")
        os.mkdir(src)
        _write_checkpoint(src, config, unique)
        dst = os.fspath(output) if output is not None else os.path.join(work, "rotated")
        rotate_dir(src, dst, config_path_or_dict, online, seed, **kwargs)
        shutil.rmtree(src)  # the input copy is no longer needed: free its memory before copying back
        rotated = _read_checkpoint(dst)
        with open(os.path.join(dst, "config.json")) as f:
            rotated_config = json.load(f)
        missing = [n for n in state if n not in rotated]
        if missing:
            raise KeyError(f"rotq.rotate: rotq's output lacks the model's tensor(s) {missing[:5]}")
        for name, value in rotated.items():  # every check before the first write: no half-rotated model
            t = state.get(name)
            if t is not None and (t.dtype != value.dtype or tuple(t.shape) != tuple(value.shape)):
                raise TypeError(f"rotq.rotate: tensor '{name}': rotq wrote {value.dtype} {list(value.shape)}, "
                                f"the model has {t.dtype} {list(t.shape)}")
        with torch.no_grad():
            for name, value in rotated.items():
                if name in aliases or name not in state:
                    _replace(model, name, value)  # untied (or new: an online export's stored matrix)
                else:
                    state[name].copy_(value)
        _update_config(model, config, rotated_config)
        del rotated
        if online:  # the activation halves, as forward pre-hooks on down_proj / o_proj (rotq/_online.py)
            from ._online import apply_online
            apply_online(model)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return model
