"""The rotq Python package (python/rotq) against the rotq CLI: run by tests/cli_python_api.sh.

  (a) rotq.rotate(dir) writes what `rotq rotate` writes (every file byte for byte; rotation.json
      apart from its timings), with a config given by name and as a dict;
  (b) a torch model shaped like LlamaForCausalLM (a stand-in below, or transformers' own with
      --hf), built from models/stories260K's weights with tied embeddings, rotated in place by
      rotq.rotate(model), then saved as safetensors: every tensor byte-equal to `rotq rotate`'s
      output of the same weights, the lm_head untied, config.tie_word_embeddings false;
  (c) the rotated model's logits (float64 forward) equal the original's: relative 1e-9 for
      float64 weights, 1e-5 for float32 ones (the rounding of the stored rotated weights).
  The struct layout of rotq_rotate_options in python/rotq/_lib.py is checked against the C
  compiler's offsetof, and failures surface as rotq.RotqError with the library's message.

Usage: test_rotq_api.py WORKDIR [--hf]   (env: ROTQ_BIN, ROTQ_SOURCE_DIR, ROTQ_LIBRARY)
"""

import copy
import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import torch
from torch import nn

import rotq
from rotq import _lib

SRC = os.environ["ROTQ_SOURCE_DIR"]
BIN = os.environ["ROTQ_BIN"]
STORIES = os.path.join(SRC, "models", "stories260K")
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


# ---------------------------------------------------------------- safetensors, independent of rotq
ST_DTYPES = {"F64": (torch.float64, np.float64), "F32": (torch.float32, np.float32),
             "F16": (torch.float16, np.float16), "BF16": (torch.bfloat16, np.int16)}


def read_safetensors_dir(d):
    """{name: (dtype name, shape, raw bytes)} of every *.safetensors file of d."""
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            blob = open(os.path.join(d, f), "rb").read()
            (n,) = struct.unpack("<Q", blob[:8])
            header = json.loads(blob[8:8 + n])
            for name, h in header.items():
                if name != "__metadata__":
                    b, e = h["data_offsets"]
                    out[name] = (h["dtype"], tuple(h["shape"]), blob[8 + n + b:8 + n + e])
    return out


def to_tensor(entry):
    dtype, shape, raw = entry
    tdtype, npdtype = ST_DTYPES[dtype]
    t = torch.from_numpy(np.frombuffer(raw, dtype=npdtype).copy())
    return (t.view(tdtype) if tdtype == torch.bfloat16 else t).reshape(shape)


def write_safetensors(path, tensors):
    names = {v[0]: k for k, v in ST_DTYPES.items()}
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# ---------------------------------------------------------------- the LlamaForCausalLM stand-in
class Config:
    def __init__(self, d):
        self.__dict__.update(d)

    def to_dict(self):
        return dict(self.__dict__)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope(x, theta):
    t, d = x.shape[-2], x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = torch.outer(torch.arange(t, dtype=torch.float64), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1).to(x.dtype), torch.cat([ang.sin()] * 2, -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.q_proj = nn.Linear(c.hidden_size, c.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, c.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(c.num_attention_heads * hd, c.hidden_size, bias=False)

    def forward(self, x):
        c, (t, _) = self.c, x.shape
        hd, nh, nkv = c.head_dim, c.num_attention_heads, c.num_key_value_heads
        q = rope(self.q_proj(x).view(t, nh, hd).transpose(0, 1), c.rope_theta)
        k = rope(self.k_proj(x).view(t, nkv, hd).transpose(0, 1), c.rope_theta)
        v = self.v_proj(x).view(t, nkv, hd).transpose(0, 1)
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
        s = q @ k.transpose(-1, -2) / math.sqrt(hd)
        s = s + torch.triu(torch.full((t, t), float("-inf"), dtype=x.dtype), 1)
        return self.o_proj((s.softmax(-1) @ v).transpose(0, 1).reshape(t, nh * hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn, self.mlp = Attention(c), MLP(c)
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """HF's interface as rotq.rotate uses it: .config, .state_dict(), save_pretrained()."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids):
        x = self.model.embed_tokens(input_ids)
        for layer in self.model.layers:
            x = layer(x)
        return self.lm_head(self.model.norm(x))

    def save_pretrained(self, d):
        os.makedirs(d, exist_ok=True)
        state = self.state_dict()
        if self.config.tie_word_embeddings:
            state.pop("lm_head.weight")  # as HF saves a tied model
        write_safetensors(os.path.join(d, "model.safetensors"), state)
        cfg = self.config.to_dict()
        cfg["architectures"] = [type(self).__name__]
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)


def load_stories(dtype, hf):
    """stories260K's weights (tied embeddings) in a LlamaForCausalLM-shaped module of dtype."""
    cfg = json.load(open(os.path.join(STORIES, "config.json")))
    weights = {k: to_tensor(v).to(dtype) for k, v in read_safetensors_dir(STORIES).items()}
    if hf:
        import transformers
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).to(dtype)
    else:
        model = LlamaForCausalLM(Config(cfg)).to(dtype)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    check(set(missing) <= {"lm_head.weight"} and not unexpected, f"stories260K loads ({missing}, {unexpected})")
    check(model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "embeddings tied before")
    return model.eval()


def logits(model, hf):
    ids = torch.tensor([1, 403, 86, 49, 20, 339, 73, 301, 121, 2, 17, 500, 7, 88, 260, 33])
    with torch.no_grad():
        m = copy.deepcopy(model).double()
        if not hf:
            return m(ids)
        # transformers' float32 islands (RMSNorm's upcast) would round at ~1e-7: the oracle's
        # float64_everywhere (tests/hf/oracle.py) keeps its own code in float64 throughout.
        sys.path.insert(0, os.path.join(SRC, "tests", "hf"))
        from oracle import float64_everywhere
        with float64_everywhere():
            return m(ids[None]).logits[0]


# ---------------------------------------------------------------- the tests
def rotq_cli(*args):
    subprocess.run([BIN, "rotate", "--quiet", *args], check=True)


def same_outputs(a, b, what):
    fa, fb = sorted(os.listdir(a)), sorted(os.listdir(b))
    check(fa == fb, f"{what}: the same files ({fa} vs {fb})")
    for f in set(fa) & set(fb):
        x, y = open(os.path.join(a, f), "rb").read(), open(os.path.join(b, f), "rb").read()
        if f == "rotation.json":
            def strip(o):  # timings and the config's name may differ
                if isinstance(o, dict):
                    return {k: strip(v) for k, v in o.items() if k not in ("seconds", "config_name")}
                return [strip(v) for v in o] if isinstance(o, list) else o
            check(strip(json.loads(x)) == strip(json.loads(y)), f"{what}: rotation.json equal (timings aside)")
        else:
            check(x == y, f"{what}: {f} byte-equal")


def test_struct_layout(work):
    prog = os.path.join(work, "offsets.c")
    fields = list(_lib.field_offsets())
    with open(prog, "w") as f:
        f.write('#include <stdio.h>\n#include <stddef.h>\n#include "rotq.h"\nint main(void){\n')
        for name in fields:
            f.write(f'printf("{name} %zu\\n", offsetof(rotq_rotate_options, {name}));\n')
        f.write('printf("sizeof %zu\\n", sizeof(rotq_rotate_options));return 0;}\n')
    exe = os.path.join(work, "offsets")
    subprocess.run(["cc", "-std=c11", "-I", os.path.join(SRC, "include"), prog, "-o", exe], check=True)
    c = dict(line.split() for line in subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split("\n") if line)
    py = _lib.field_offsets()
    check(all(int(c[n]) == py[n] for n in fields), f"rotq_rotate_options offsets match C's offsetof ({c})")
    check(int(c["sizeof"]) <= _lib.ctypes.sizeof(_lib.Options), "rotq_rotate_options fits the Python struct")


def test_directory(work):
    out_cli, out_py = os.path.join(work, "dir_cli"), os.path.join(work, "dir_py")
    rotq_cli("--model", STORIES, "--output", out_cli, "--config", "transformer_universal", "--seed", "7", "--online")
    check(rotq.rotate(STORIES, output=out_py, online=True, seed=7, quiet=True) == out_py, "rotate(dir) returns output")
    same_outputs(out_py, out_cli, "rotate(dir) vs rotq rotate --online --seed 7")

    # A config as a dict: the same bytes as the same config in a file (JSON is YAML's flow syntax).
    cfg = {"rotation_matrices": {"r1": {"dim": "hidden_size", "mode": "orthogonal", "per_layer": False},
                                 "r2": {"dim": "head_dim", "mode": "hadamard", "per_layer": True}},
           "rotation_config": {"*embed_tokens": ["r1", None], "*lm_head": ["r1", None],
                               "*q_proj|*k_proj": ["r1", None], "*v_proj": ["r1", "r2"], "*o_proj": ["r2", "r1"],
                               "*up_proj|*gate_proj": ["r1", None], "*down_proj": [None, "r1"]},
           "norm_fuse_config": {"decoder_layer_fuse": [["input_layernorm", ["self_attn.q_proj", "self_attn.k_proj",
                                                                            "self_attn.v_proj"]],
                                                       ["post_attention_layernorm", ["mlp.up_proj", "mlp.gate_proj"]]],
                                "lm_head_fuse": [["model.norm", "lm_head"]]}}
    yml = os.path.join(work, "cfg.yaml")
    json.dump(cfg, open(yml, "w"))
    rotq_cli("--model", STORIES, "--output", out_cli + "_dict", "--config", yml)
    rotq.rotate(STORIES, cfg, output=out_py + "_dict", quiet=True)
    same_outputs(out_py + "_dict", out_cli + "_dict", "rotate(dir, dict) vs rotq rotate --config FILE")
    rotq.rotate(STORIES, yml, output=out_py + "_yaml", quiet=True)
    same_outputs(out_py + "_yaml", out_cli + "_dict", "rotate(dir, YAML path) vs rotq rotate --config FILE")

    # Errors: the library's message, naming what is at fault.
    try:
        rotq.rotate(os.path.join(work, "no-such-model"), output=os.path.join(work, "x"), quiet=True)
        check(False, "a missing model directory raises RotqError")
    except rotq.RotqError as e:
        check("no-such-model" in str(e), f"RotqError names the missing directory: {e}")
    try:
        rotq.rotate(STORIES, output=out_py, quiet=True)
        check(False, "an existing output raises RotqError")
    except rotq.RotqError as e:
        check(out_py in str(e), f"RotqError names the existing output: {e}")
    try:
        rotq.rotate(STORIES)
        check(False, "rotate(dir) without output raises ValueError")
    except ValueError:
        check(True, "rotate(dir) without output raises ValueError")


def test_model(work, dtype, hf, online):
    tag = f"{'hf' if hf else 'stand-in'} {str(dtype)[6:]}{' online' if online else ''}"
    model = load_stories(dtype, hf)
    orig_dir, cli_dir, py_dir = (os.path.join(work, f"{tag.replace(' ', '_')}_{s}") for s in ("orig", "cli", "py"))
    model.save_pretrained(orig_dir)
    args = ["--online"] if online else []
    rotq_cli("--model", orig_dir, "--output", cli_dir, "--config", "transformer_universal", "--seed", "3", *args)
    before = logits(model, hf)

    kept = os.path.join(work, f"{tag.replace(' ', '_')}_kept")
    check(rotq.rotate(model, "transformer_universal", output=kept, online=online, seed=3, quiet=True) is model,
          f"{tag}: rotate(model) returns the model")
    check(read_safetensors_dir(kept) == read_safetensors_dir(cli_dir) and os.path.exists(f"{kept}/rotation.json"),
          f"{tag}: rotate(model, output=DIR) keeps the rotated checkpoint there (tensors equal rotq rotate's)")
    check(model.config.tie_word_embeddings is False, f"{tag}: config.tie_word_embeddings false")
    check(model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
          and not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight), f"{tag}: lm_head untied")
    model.save_pretrained(py_dir)

    got, want = read_safetensors_dir(py_dir), read_safetensors_dir(cli_dir)
    check(sorted(got) == sorted(want), f"{tag}: the same tensor names ({len(got)} vs {len(want)})")
    bad = [n for n in want if n in got and got[n] != want[n]]
    check(not bad and len(want) > 40, f"{tag}: every tensor byte-equal to rotq rotate's ({len(want)} tensors; differ: {bad[:4]})")
    after = logits(model, hf)
    rel = ((after - before).abs().max() / before.abs().max()).item()
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    check(rel <= tol and torch.equal(after.argmax(-1), before.argmax(-1)),
          f"{tag}: logits equal the original's (relative {rel:.2e} <= {tol:g}, argmax equal)")
    if online:
        test_online_hooks(model, hf, before, tol, cli_dir, tag)
        return
    # A rotation that was not applied, or applied twice, is caught: the check can fail.
    rotq.rotate(model, "transformer_universal", seed=4, quiet=True)
    bad_rel = ((logits(model, hf) - before).abs().max() / before.abs().max()).item()
    check(bad_rel <= tol, f"{tag}: rotating the rotated model again keeps the logits ({bad_rel:.2e})")


def test_online_hooks(model, hf, before, tol, export_dir, tag):
    """rotate(model, online=True) registered the activation halves (R4 on every down_proj, R_heads on
    every o_proj): the logits above matched with them. Without them the model computes another
    function (the check can fail); rotq.apply_online(model, DIR) on a model holding only the
    export's ordinary tensors (as transformers loads it: the stored matrices dropped) restores it."""
    hooks = model._rotq_online_hooks
    layers = model.config.num_hidden_layers
    check(len(hooks) == 2 * layers, f"{tag}: {len(hooks)} online hooks, one per down_proj and o_proj ({2 * layers})")
    for h in hooks:
        h.remove()
    bare = logits(model, hf)
    rel = ((bare - before).abs().max() / before.abs().max()).item()
    check(rel > 1e-3, f"{tag}: without the online hooks the logits differ (relative {rel:.2e})")
    fresh = load_stories(model.lm_head.weight.dtype, hf)
    fresh.lm_head.weight = nn.Parameter(fresh.lm_head.weight.detach().clone())  # the export is untied
    exported = {k: to_tensor(v) for k, v in read_safetensors_dir(export_dir).items()}
    missing, unexpected = fresh.load_state_dict({k: v for k, v in exported.items() if "_input." not in k}, strict=False)
    check(not missing and not unexpected, f"{tag}: the export's tensors load ({missing[:3]}, {unexpected[:3]})")
    with open(os.path.join(export_dir, "config.json")) as f:
        fresh.config.tie_word_embeddings = json.load(f)["tie_word_embeddings"]
    check(len(rotq.apply_online(fresh, export_dir)) == 2 * layers, f"{tag}: apply_online(model, DIR) hooks")
    got = logits(fresh, hf)
    rel = ((got - before).abs().max() / before.abs().max()).item()
    check(rel <= tol and torch.equal(got.argmax(-1), before.argmax(-1)),
          f"{tag}: the export loaded bare + rotq.apply_online(model, DIR): logits equal the original's ({rel:.2e})")
    try:
        rotq.apply_online(load_stories(model.lm_head.weight.dtype, hf))
        check(False, f"{tag}: apply_online on a model that is no online export raises")
    except ValueError as e:
        check("transform_config" in str(e), f"{tag}: apply_online on a model that is no export: {e}")


def test_online_vllm_form(hf):
    """The vLLM form (R4 = I ⊗ H_b of type hadamard with head_dim b: a block-diagonal transform)
    through the same hooks: logits kept."""
    model = load_stories(torch.float64, hf)
    before = logits(model, hf)
    rotq.rotate(model, "transformer_universal", online=True, online_for="vllm", seed=5, quiet=True)
    groups = model.config.quantization_config["transform_config"]["config_groups"]
    check(groups["R4"].get("head_dim") == 4, f"vllm form: R4 is block-diagonal (head_dim {groups['R4'].get('head_dim')})")
    rel = ((logits(model, hf) - before).abs().max() / before.abs().max()).item()
    check(rel <= 1e-9, f"{'hf' if hf else 'stand-in'} float64 online vllm form: logits equal the original's ({rel:.2e})")


def main():
    work = sys.argv[1]
    hf = "--hf" in sys.argv
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    print(f"rotq {rotq.version()}, torch {torch.__version__}, numpy {np.__version__}")
    if not hf:
        test_struct_layout(work)
        test_directory(work)
    for dtype in (torch.float32, torch.float64):
        test_model(work, dtype, hf, online=False)
    test_model(work, torch.float32, hf, online=True)
    test_model(work, torch.float64, hf, online=True)
    test_online_vllm_form(hf)
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("all passed")


if __name__ == "__main__":
    main()
