"""Helpers of the transformers oracle suite: run rotq, load checkpoints in transformers, apply the
online rotations' activation halves with compressed-tensors, compare logits."""
import json
import os
import re
import subprocess

import torch
import transformers
from safetensors import safe_open

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("ROTQ_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
ROTQ = os.environ.get("ROTQ_BIN") or os.path.join(SOURCE_DIR, "build", "rotq")
MODES = ("hadamard", "base_hadamard", "orthogonal")
TOLERANCE = 1e-9  # relative: max|Δlogit| / max|logit of the original|


def rotq(*args):
    """Runs the rotq binary; returns (exit status, stderr)."""
    r = subprocess.run([ROTQ, *args], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stderr.strip()


def builtin_configs():
    out = subprocess.run([ROTQ, "config", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def write_config(path, builtin, mode):
    """The built-in config with every `mode: hadamard` replaced by mode (as tests/support/arch_support.c)."""
    yaml = subprocess.run([ROTQ, "config", "show", builtin], capture_output=True, text=True, check=True).stdout
    with open(path, "w") as f:
        f.write(yaml.replace("mode: hadamard", f"mode: {mode}"))
    return path


def tokens(vocab, batch=3, length=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


def load_online_export(directory):
    """Loads a checkpoint with rotq's compressed-tensors quantization_config. transformers 5.23 with
    compressed-tensors 0.20.1 fails on MoE checkpoints (Mixtral, Qwen-MoE) although config_groups is
    empty: its CompressedTensorsDequantize conversion is run on the per-expert tensors ('We encountered
    some issues during automatic conversion of the weights'). Only then, the checkpoint is loaded from
    a copy whose config.json lacks quantization_config (the transforms are applied by apply_online from
    the original). Returns (model, note)."""
    try:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            directory, dtype=torch.float64, experts_implementation="eager", output_loading_info=True)
        # Llama-4's fused experts: with the quantization_config, transformers expects them per expert
        # (experts.{e}.down_proj.weight), reports them missing and initializes them at random.
        if not info["missing_keys"]:
            return model.eval(), ""
    except RuntimeError as e:
        if "automatic conversion of the weights" not in str(e):
            raise
    import shutil

    copy = directory.rstrip("/") + "-no-quantization-config"
    shutil.copytree(directory, copy, dirs_exist_ok=True)
    path = os.path.join(copy, "config.json")
    with open(path) as f:
        config = json.load(f)
    del config["quantization_config"]
    with open(path, "w") as f:
        json.dump(config, f)
    model = load(copy)
    shutil.rmtree(copy)
    return model, ("transformers+compressed-tensors refused to load it or left weights missing (MoE conversion); "
                   "loaded without quantization_config")


def load(directory):
    # experts_implementation="eager": the default grouped_mm kernel of MoE experts takes no float64.
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float64,
                                                              experts_implementation="eager")
    return model.eval()


class float64_everywhere:
    """transformers computes some steps in float32 whatever the model's dtype: RMSNorm casts its
    input with .to(torch.float32), MoE routers take softmax(..., dtype=torch.float), the Mamba-2
    scan calls .float(), Nemotron-H's MoE router .type(torch.float32). Those float32 islands round x and x·R1 differently (~1e-7), which would
    hide a 1e-9 comparison. Inside this context a float64 tensor asked to become float32 stays
    float64 (Tensor.to, Tensor.float, softmax's dtype): transformers' own code runs, in float64
    throughout. Other conversions (int positions to float32 for RoPE) are untouched."""

    def __enter__(self):
        self.saved = (torch.Tensor.to, torch.Tensor.float, torch.nn.functional.softmax, torch.softmax,
                      torch.Tensor.softmax, torch.Tensor.type)
        to, flt, fsoftmax, tsoftmax, msoftmax, typ = self.saved

        def keep(t, dtype):
            return t.dtype == torch.float64 and dtype == torch.float32

        def patched_to(t, *args, **kwargs):
            if args and isinstance(args[0], torch.dtype) and keep(t, args[0]):
                args = (torch.float64, *args[1:])
            if keep(t, kwargs.get("dtype")):
                kwargs["dtype"] = torch.float64
            return to(t, *args, **kwargs)

        def patched_type(t, *args, **kwargs):  # Nemotron-H's MoE router: .type(torch.float32)
            if args and isinstance(args[0], torch.dtype) and keep(t, args[0]):
                return t
            return typ(t, *args, **kwargs)

        def patched_float(t, *args, **kwargs):
            return t if t.dtype == torch.float64 else flt(t, *args, **kwargs)

        def softmax_of(original):
            def patched(t, *args, **kwargs):
                if keep(t, kwargs.get("dtype")):
                    kwargs["dtype"] = None
                return original(t, *args, **kwargs)
            return patched

        torch.Tensor.to, torch.Tensor.float, torch.Tensor.type = patched_to, patched_float, patched_type
        torch.nn.functional.softmax = softmax_of(fsoftmax)
        torch.softmax = softmax_of(tsoftmax)
        torch.Tensor.softmax = softmax_of(msoftmax)
        return self

    def __exit__(self, *exc):
        (torch.Tensor.to, torch.Tensor.float, torch.nn.functional.softmax, torch.softmax,
         torch.Tensor.softmax, torch.Tensor.type) = self.saved
        return False


@torch.no_grad()
def logits(model, ids):
    with float64_everywhere():
        out = model(input_ids=ids, use_cache=False).logits
    return out.to(torch.float64)


def compare(reference, other):
    """(relative error max|Δ|/max|ref|, fraction of positions whose argmax agrees)."""
    rel = ((other - reference).abs().max() / reference.abs().max()).item()
    agree = (other.argmax(-1) == reference.argmax(-1)).double().mean().item()
    return rel, agree


def quantization_config(directory):
    with open(os.path.join(directory, "config.json")) as f:
        return json.load(f).get("quantization_config")


def stored_tensors(directory):
    """Every tensor of the checkpoint's safetensors files, by name (tiny checkpoints only)."""
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(directory, name), "pt") as f:
                for key in f.keys():
                    out[key] = f.get_tensor(key)
    return out


def apply_online(model, directory):
    """Applies the activation halves that config.json's transform_config exports, through the real
    compressed-tensors library: its TransformConfig validation, its transform factories and hooks
    (forward pre-hooks on the linears' inputs, its attention/KV-cache hooks for q_attn/k_cache).
    The weight_* locations are left out (rotq fused them already). Each transform's matrix is then
    set to the tensor the checkpoint stores for its group (<module>.<group>_<location>.weight of the
    first targeted module, shared), scaled as docs/online.md states: random-hadamard/hadamard
    transforms divide by √size themselves; a random-matrix tensor holds √size·T (vLLM's rule) and is
    divided here. Precision is raised to float64 for the comparison (the export says float32, for
    serving). Returns the list of transform modules set."""
    from compressed_tensors.transform import TransformConfig, apply_transform_config

    config = TransformConfig.model_validate(quantization_config(directory)["transform_config"])
    tensors = stored_tensors(directory)
    online_groups = {}
    for name, scheme in config.config_groups.items():
        apply = [a for a in scheme.apply if a.is_online()]
        if apply:
            online_groups[name] = scheme.model_copy(update={"apply": apply, "precision": torch.float64})
    if model.config._attn_implementation == "eager":
        # compressed-tensors' attention hook calls ALL_ATTENTION_FUNCTIONS[original implementation],
        # which in transformers 5 has no "eager" entry (eager is each modeling file's own function):
        # KeyError 'eager' for Gemma-2, which runs eager attention (soft-capping). Register it.
        import sys

        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        # The registry is global: the function looks up the calling attention module's own (gpt-oss's
        # needs module.sinks, which no other family's attention has).
        def eager(module, *args, **kwargs):
            return sys.modules[type(module).__module__].eager_attention_forward(module, *args, **kwargs)

        ALL_ATTENTION_FUNCTIONS.register("eager", eager)
    from compressed_tensors.modeling.kvcache import QuantizedKVCache

    if not hasattr(QuantizedKVCache, "get_seq_length"):
        # The k_cache hook (R3) passes this wrapper as past_key_values even when the model runs
        # without a cache; Llama-4's temperature tuning asks it for get_seq_length, which it lacks
        # (and cannot delegate to a cache that is not there): without one, no tokens were seen.
        def get_seq_length(self, layer_idx=0):
            cache = self.past_key_values() if self.past_key_values is not None else None
            return cache.get_seq_length(layer_idx) if cache is not None else 0

        QuantizedKVCache.get_seq_length = get_seq_length
    apply_transform_config(model, TransformConfig(config_groups=online_groups))
    done = []
    for module_name, module in model.named_modules():
        group = next((g for g in online_groups if re.search(rf"\.{re.escape(g)}_(input|q_attn|k_cache)$", module_name)),
                     None)
        if group is None:
            continue
        scheme = online_groups[group]
        stored = [v for k, v in tensors.items() if re.search(rf"\.{re.escape(group)}_(input|q_attn|k_cache)\.weight$", k)]
        if len(stored) > 1:
            raise AssertionError(f"group {group}: {len(stored)} stored tensors, expected one shared")
        weight = module.weight
        if stored:
            value = stored[0].to(torch.float64)
            if tuple(value.shape) != tuple(weight.shape):
                raise AssertionError(f"{module_name}: stored {tuple(value.shape)}, compressed-tensors expects "
                                     f"{tuple(weight.shape)}")
            if scheme.type == "random-matrix":
                value = value / value.shape[0] ** 0.5
        elif scheme.type == "hadamard" or module_name.endswith(f"{group}_q_attn") or module_name.endswith(
                f"{group}_k_cache"):
            # compressed-tensors' own matrix: its deterministic Hadamard, or for R3 (q_attn/k_cache:
            # no tensor is stored, no engine has a parameter for it) its own random one, which is as
            # exact as rotq's because R3 cancels in q·kᵀ
            value = None
        else:
            raise AssertionError(f"group {group} ({scheme.type}) has no stored tensor")
        if value is not None:
            with torch.no_grad():
                weight.data = value.to(weight.device)
        done.append(module_name)
    return done
