"""rotq's online export loaded and served the way vLLM does it, by an independent implementation of
vLLM's rules (read from vllm/model_executor/layers/quantization/compressed_tensors/transform/
linear.py and module.py, vllm/model_executor/parameter.py's SharedWeightParameter and the Llama-style
`load_weights`, 2025-26; docs/online.md):

loading
  * q/k/v_proj are one layer `qkv_proj`, gate/up_proj one `gate_up_proj` (packed_modules_mapping);
    a transform's targets are matched (compressed-tensors' is_match: "re:" = re.match, else the exact
    name) against each partition's HF name; only `input`/`output` locations are online.
  * every linear layer with an online transform registers ONE parameter
    `<layer>.<group>_<location>.weight` of size head_dim, or the layer's input size; attention layers
    register none (q_attn/k_cache are not served). A checkpoint tensor no module registers is a
    KeyError (load_weights looks each name up in params_dict).
  * parameters of the same (group, size) share one tensor across layers: one stored copy is enough;
    a transform whose shared tensor is never loaded is garbage (torch.empty).
  * after loading, each shared tensor is divided by √size once, whatever the group's type.
serving
  * type `hadamard`: the stored values are ignored; hadacore = x·H/√b per block of head_dim (b a power
    of two), or over the whole row when head_dim is null;
  * other types: dense: weight = S if inverse else Sᵀ, y = x·weightᵀ (so x·S for inverse false), per
    block of head_dim when set;
  * a layer with an online transform must have no bias (`assert bias is None`).

The served function must equal the original model's (float64 here, to isolate conventions: relative
logit error ≤ 1e-9, argmax 100 %), and each wrong convention (transposed, unscaled, a missing
transform) must fail that comparison: the rules are not vacuous."""
import json
import math
import os
import re

import pytest
import torch
import transformers

import families
import oracle

transformers.logging.set_verbosity_error()
BY_NAME = {f.name: f for f in families.FAMILIES}
PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
CASES = [  # (family, rotq's online form)
    ("mistral", "kronecker"), ("mistral", "vllm"), ("qwen3", "kronecker"), ("qwen3", "vllm"),
    ("qwen2", "kronecker"), ("phi3", "kronecker"), ("phi3", "vllm"), ("gemma2", "vllm"),
    ("qwen3_moe", "kronecker"), ("mistral", "block16"), ("qwen3", "block32"),
]


class VllmLoadError(Exception):
    pass


def _is_match(name, targets, ignore):
    def one(target):
        return re.match(target[3:], name) is not None if target.startswith("re:") else target == name
    return any(one(t) for t in targets) and not any(one(t) for t in ignore)


def _sylvester(n):
    if n & (n - 1):
        raise VllmLoadError(f"hadacore needs a power of two, got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def vllm_layers(model):
    """vLLM's linear layers of a HF model: {layer name: [(partition HF name, module), ...]}."""
    layers = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.endswith("lm_head") or ".experts." in name:
            continue  # lm_head is a VocabParallelEmbedding, experts a FusedMoE: no linear transforms
        prefix, _, leaf = name.rpartition(".")
        fused = next((f for f, parts in PACKED.items() if leaf in parts), leaf)
        layers.setdefault(f"{prefix}.{fused}", []).append((name, module))
    return layers


def load_without_quantization_config(directory):
    """The model's own weights, loaded by transformers (float64) from a copy of directory whose
    config.json lacks quantization_config; returns (model, the checkpoint names it did not load)."""
    import shutil

    copy = directory.rstrip("/") + "-plain"
    if not os.path.isdir(copy):
        shutil.copytree(directory, copy)
        path = os.path.join(copy, "config.json")
        with open(path) as f:
            config = json.load(f)
        config.pop("quantization_config", None)
        with open(path, "w") as f:
            json.dump(config, f)
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        copy, dtype=torch.float64, experts_implementation="eager", output_loading_info=True)
    missing = [k for k in info["missing_keys"] if k != "lm_head.weight" or not model.config.tie_word_embeddings]
    if missing:
        raise VllmLoadError(f"parameters not in the checkpoint: {missing[:3]}")
    return model.eval(), info["unexpected_keys"]


class Served:
    """A transformers model (float64) loaded from a rotq output by vLLM's rules, with hooks that apply
    the online transforms as vLLM's CompressedTensorsLinearTransformMethod does. `wrong` breaks one
    convention on purpose: "transposed", "unscaled" or "missing"."""

    def __init__(self, directory, wrong=None):
        with open(os.path.join(directory, "config.json")) as f:
            transform_config = json.load(f)["quantization_config"]["transform_config"]
        self.model, unexpected = load_without_quantization_config(directory)
        self.wrong = wrong
        self.params = {}    # registered transform parameter name -> data key
        self.shared = {}    # data key (group, size) -> tensor (None until loaded)
        self.hooks = []     # (partition module, group, scheme, args, size)
        self._register(transform_config["config_groups"])
        tensors = oracle.stored_tensors(directory)
        self._load({name: tensors[name] for name in unexpected})

    def _register(self, groups):
        for layer, parts in vllm_layers(self.model).items():
            for part_name, module in parts:
                for group, scheme in groups.items():
                    for args in scheme["apply"]:
                        if args["location"] not in ("input", "output"):
                            continue
                        if not _is_match(part_name, args["targets"], args.get("ignore", [])):
                            continue
                        if args["location"] == "output":
                            raise VllmLoadError(f"{part_name}: rotq exports no output transforms")
                        if module.bias is not None:
                            raise VllmLoadError(f"{part_name}: a linear with an online transform has a bias "
                                                f"(vLLM asserts bias is None)")
                        size = scheme.get("head_dim") or module.in_features
                        key = (group, size)
                        self.shared.setdefault(key, None)
                        self.params[f"{layer}.{group}_{args['location']}.weight"] = key
                        self.hooks.append((module, group, scheme, args, size))

    def _load(self, tensors):
        """tensors: the checkpoint's tensors that are not the model's own weights."""
        for name, tensor in tensors.items():
            mapped = name
            for fused, parts in PACKED.items():
                for part in parts:
                    if f".{part}." in name:
                        mapped = name.replace(f".{part}.", f".{fused}.")
            if mapped not in self.params:
                raise VllmLoadError(f"KeyError: '{name}' (no parameter registered for it)")
            key = self.params[mapped]
            if tuple(tensor.shape) != (key[1], key[1]):
                raise VllmLoadError(f"{name}: shape {tuple(tensor.shape)}, vLLM registers {key[1]}²")
            self.shared[key] = tensor.to(torch.float64)  # loaded in the model's dtype
        for key, tensor in self.shared.items():
            if tensor is not None and self.wrong != "unscaled":
                self.shared[key] = tensor / math.sqrt(tensor.shape[0])
        for module, group, scheme, args, size in self.hooks:
            if self.wrong == "missing" and group == self.hooks[0][1]:
                continue
            if scheme["type"] != "hadamard" and self.shared[(group, size)] is None:
                raise VllmLoadError(f"{group}: its shared {size}² tensor was never loaded")
            module.register_forward_pre_hook(self._hook(group, scheme, args, size))

    def _hook(self, group, scheme, args, size):
        def apply(_module, inputs):
            x = inputs[0]
            blocks = x.unflatten(-1, (-1, size))
            if scheme["type"] == "hadamard":
                out = blocks @ (_sylvester(size) / math.sqrt(size))  # hadacore; symmetric
            else:
                s = self.shared[(group, size)]
                weight = s if args["inverse"] else s.T
                if self.wrong == "transposed":
                    weight = weight.T
                out = blocks @ weight.T
            return (out.flatten(-2, -1),) + tuple(inputs[1:])
        return apply


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("vllm-rules")


def export(family, form, workdir):
    directory = str(workdir / family.name)
    if not os.path.isdir(directory):
        families.build(family, directory)
    out = f"{directory}-{form}"
    if not os.path.isdir(out):
        yaml = oracle.write_config(out + ".yaml", family.config, "hadamard")
        if family.online == "no_r4":
            with open(yaml, "a") as f:
                f.write("down_proj_online_layers: []\n")
        args = ["rotate", "--model", directory, "--output", out, "--quiet", "--config", yaml, "--online"]
        if form == "vllm":
            args += ["--online-for", "vllm"]
        if form.startswith("block"):  # group-sized rotations (R1/R2 and the online ones)
            args += ["--block-size", form[len("block"):]]
        status, stderr = oracle.rotq(*args)
        assert status == 0, stderr
    return directory, out


@pytest.mark.parametrize("name,form", CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_served_by_vllm_rules_equals_original(name, form, workdir):
    original_dir, out = export(BY_NAME[name], form, workdir)
    original = oracle.load(original_dir)
    ids = oracle.tokens(original.config.vocab_size)
    reference = oracle.logits(original, ids)
    served = Served(out)
    rel, agree = oracle.compare(reference, oracle.logits(served.model, ids))
    assert rel <= 1e-9 and agree == 1.0, f"served by vLLM's rules: relative {rel:.3g}, argmax {agree:.0%}"
    for wrong in ("transposed", "unscaled", "missing"):
        try:
            broken = Served(out, wrong)
        except VllmLoadError:
            continue
        rel, _ = oracle.compare(reference, oracle.logits(broken.model, ids))
        if wrong == "transposed" and all(s["type"] == "hadamard" for _, _, s, _, _ in served.hooks):
            continue  # hadacore ignores the stored tensor and is symmetric: nothing to transpose
        if wrong == "unscaled" and (all(s["type"] == "hadamard" for _, _, s, _, _ in served.hooks)
                                    or name.startswith("gemma")):
            continue  # Gemma-2's post-attention norm follows o_proj: a scale on its input cancels there
        assert rel > 1e-3, f"the rules accept a {wrong} transform (relative {rel:.3g})"


def test_bias_is_refused_by_vllm_rules(workdir):
    """Llama with attention_bias/mlp_bias: vLLM cannot serve an online transform on a linear with a
    bias; rotq refuses --online-for vllm there, and its plain export is rejected by the rules."""
    original_dir = str(workdir / "llama")
    if not os.path.isdir(original_dir):
        families.build(BY_NAME["llama"], original_dir)
    status, stderr = oracle.rotq("rotate", "--model", original_dir, "--output", original_dir + "-vllm", "--quiet",
                                 "--online", "--online-for", "vllm")
    assert status != 0 and "bias" in stderr, stderr
    _, out = export(BY_NAME["llama"], "kronecker", workdir)
    with pytest.raises(VllmLoadError, match="bias"):
        Served(out)
