"""The activation halves of rotq's online rotations as torch forward pre-hooks (the seed's
QuarotKroneckerRotationHookIR on down_proj and QuarotHeadsRotationHookIR on o_proj).

An online export (`rotq rotate --online`, docs/online.md) fuses each online rotation's weight half
into the weights and describes the activation half in config.json's compressed-tensors
`quantization_config.transform_config`: per group, `apply` entries with `targets` (anchored
regexes "re:..." or plain module names), a `location` and `inverse`, and a stored tensor
`<module>.<group>_input.weight` of the first targeted module holding S = √s·T (s = S's order).
This module reads exactly that description and registers, on every targeted module, a pre-hook
computing x ← x·T (`location: input`, `inverse: false`): with `head_dim` b set, T is block-diagonal
I ⊗ (S/√b), applied to each block of b channels. So a model rotated with `online=True`, or any
model loaded from an online export (e.g. by transformers, which does not apply the transforms
itself), computes the original model's function again.

Not applied, on purpose: `weight_*` locations (rotq fused them already) and R3's `q_attn` /
`k_cache` (it cancels in q·kᵀ, so the model's outputs do not depend on it; it only matters for
KV-cache quantization, which needs the engine's attention kernel).
"""

import re

_FUSED = ("weight_input", "weight_output")
_ATTENTION = ("q_attn", "k_cache")


def _as_dict(value):
    if value is None or isinstance(value, dict):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    raise TypeError(f"rotq.apply_online: quantization_config of type {type(value).__name__} is not a dict")


def _transform_config(model, directory):
    if directory is not None:
        import json
        import os
        with open(os.path.join(os.fspath(directory), "config.json")) as f:
            qc = json.load(f).get("quantization_config")
    else:
        cfg = model.config
        qc = cfg.get("quantization_config") if isinstance(cfg, dict) else getattr(cfg, "quantization_config", None)
    qc = _as_dict(qc)
    if not qc or not qc.get("transform_config"):
        raise ValueError("rotq.apply_online: the model's config has no quantization_config.transform_config "
                         "(it is not an online export of rotq)")
    return _as_dict(qc["transform_config"])


def _matches(target, name):
    if target.startswith("re:"):
        return re.match(target[3:], name) is not None
    return name == target


def _stored_matrix(tensors, group):
    pattern = re.compile(rf"\.{re.escape(group)}_input\.weight$")
    found = [(k, v) for k, v in tensors.items() if pattern.search(k)]
    if len(found) != 1:
        raise ValueError(f"rotq.apply_online: transform group '{group}': {len(found)} stored tensors "
                         f"'<module>.{group}_input.weight', expected one (shared by its targets)")
    return found[0]


def _hook(matrix, block):
    """x ← x·T as a pre-hook; T (float64) is used in float64 for a float64 input, else in float32,
    and the result is cast back to x's dtype."""
    import torch

    cast = {torch.float64: matrix}

    def pre_hook(module, args):
        x = args[0]
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        m = cast.get((dt, x.device))
        if m is None:
            m = cast[(dt, x.device)] = matrix.to(device=x.device, dtype=dt)
        y = x.to(dt)
        if block:
            shape = y.shape
            y = (y.reshape(*shape[:-1], shape[-1] // block, block) @ m).reshape(shape)
        else:
            y = y @ m
        return (y.to(x.dtype),) + tuple(args[1:])

    return pre_hook


def apply_online(model, directory=None):
    """Registers the activation halves of the model's online export (see the module's doc) as
    forward pre-hooks. The description and the stored matrices are the model's own (config and
    state_dict: a model rotated by rotq.rotate(model, online=True)), or, with `directory`, those of
    the online export there (config.json and its safetensors: for a model loaded from it by a
    library that drops the stored matrices, as transformers does). Returns the list of hook handles (also kept in model._rotq_online_hooks;
    calling apply_online again first removes the hooks it registered before). Raises ValueError
    when the config has no transform_config, a group has no (or more than one) stored tensor, a
    stored tensor is not square, an input location is inverse, or a group targets no module."""
    import torch

    for handle in getattr(model, "_rotq_online_hooks", []):
        handle.remove()
    config = _transform_config(model, directory)
    if directory is not None:
        from ._model import _read_checkpoint
        tensors = _read_checkpoint(directory)
    else:
        tensors = dict(model.state_dict())
    modules = dict(model.named_modules())
    handles = []
    for group, scheme in (config.get("config_groups") or {}).items():
        online = [a for a in scheme.get("apply", []) if a.get("location") not in _FUSED + _ATTENTION]
        for entry in online:
            if entry.get("location") != "input" or entry.get("inverse"):
                raise ValueError(f"rotq.apply_online: transform group '{group}': location "
                                 f"'{entry.get('location')}' inverse={entry.get('inverse')} is not one rotq writes")
        if not online:
            continue
        name, stored = _stored_matrix(tensors, group)
        if stored.ndim != 2 or stored.shape[0] != stored.shape[1]:
            raise ValueError(f"rotq.apply_online: '{name}' has shape {list(stored.shape)}, not square")
        block = scheme.get("head_dim") or 0
        if block and block != stored.shape[0]:
            raise ValueError(f"rotq.apply_online: '{name}' is {stored.shape[0]}² but group '{group}' has head_dim {block}")
        matrix = stored.detach().to(device="cpu", dtype=torch.float64) / float(stored.shape[0]) ** 0.5
        hit = 0
        for entry in online:
            ignore = entry.get("ignore") or []
            for module_name, module in modules.items():
                if not module_name or not any(_matches(t, module_name) for t in entry.get("targets", [])):
                    continue
                if any(_matches(t, module_name) for t in ignore):
                    continue
                handles.append(module.register_forward_pre_hook(_hook(matrix, block)))
                hit += 1
        if hit == 0:
            raise ValueError(f"rotq.apply_online: transform group '{group}' targets no module of the model")
    model._rotq_online_hooks = handles
    return handles
