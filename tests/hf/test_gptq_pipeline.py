"""`rotq quantize --method gptq` against an independent GPTQ pipeline written here on transformers:
the calibration inputs of every linear are captured with forward pre-hooks on the transformers
model itself, running the whole model on each calibration segment (no layer streaming, no rotq
forward pass), in GPTQ's sequential order — q/k/v, o, gate/up, down of layer 0, then of layer 1, ...
— each group's Hessian H = Σ xᵀx taken with everything before it already replaced by its quantized
values; GPTQ is the paper's column-by-column algorithm in torch (H damped by 0.01·mean diag, the
upper Cholesky factor of H⁻¹; each group's scale, and asymmetric zero point, from the group's
current weights when its first column is reached: amax/7, or [min(w,0), max(w,0)]/15 with zero
round(−lo/scale); codes round-half-even and clamped; each column's error that of the decoded
value). The checkpoint rotq writes, decoded by the format's definition (test_quantized_export's
decoder), must give the same weights.

float64 models (no dtype rounding enters the Hessians), where the two differ only in the order of
floating-point operations (transformers' and rotq's forward passes, torch's and LAPACK's
factorisations, rotq's lazy batches): the scales of the later groups, computed from updated
weights, then differ in their last bits (so the decoded float64 values are compared through their
codes: (q − z) = decoded / scale), and a weight within a few ulps of a rounding boundary may take
the neighbouring code. transformers computes LlamaRMSNorm in float32 even in a float64 model, so
the Hessians differ at about 1e-8 relative. So: every scale within 1e-6 relative of the
reference's, at least 99% of each module's codes equal and none differing by more than one."""
import os

import pytest
import torch
import transformers

import families
import oracle
from test_quantized_export import calibration_file, decode, quantized_modules

BY_NAME = {f.name: f for f in families.FAMILIES}
GROUPS = (("q_proj", "k_proj", "v_proj"), ("o_proj",), ("gate_proj", "up_proj"), ("down_proj",))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("gptq-pipeline")


def reference_gptq(w, h, group, bits, symmetric, damp=0.01):
    w, h = w.clone(), h.clone()
    rows, cols = w.shape
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=torch.float64)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    offset = 1 << (bits - 1)
    codes = torch.zeros(rows, cols, dtype=torch.float64)
    scales = torch.zeros(rows, cols // group, dtype=torch.float64)
    for i in range(cols):
        if i % group == 0:
            g = w[:, i:i + group]
            lo, hi = g.min(1).values.clamp(max=0), g.max(1).values.clamp(min=0)
            if symmetric:
                scale, zero = torch.maximum(hi, -lo) / (offset - 1), torch.zeros(rows, dtype=torch.float64)
            else:
                scale = (hi - lo) / ((1 << bits) - 1)
                zero = torch.round(-lo / scale).clamp(0, (1 << bits) - 1)
        if symmetric:
            q = torch.round(w[:, i] / scale).clamp(-offset, offset - 1)
        else:
            q = (torch.round(w[:, i] / scale) + zero).clamp(0, (1 << bits) - 1)
        decoded = scale * (q - zero)
        err = (w[:, i] - decoded) / u[i, i]
        w[:, i + 1:] -= err[:, None] * u[i, i + 1:][None, :]
        w[:, i] = decoded
        codes[:, i], scales[:, i // group] = q - zero, scale
    return w, codes, scales


def segments(path):
    ids = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.int16).to(torch.int64) & 0xFFFF
    starts = [i for i in range(len(ids)) if ids[i] == 1] + [len(ids)]
    return [ids[a:b] for a, b in zip(starts, starts[1:])]


def hessian(model, module, calibration):
    h = None

    def hook(_, args):
        nonlocal h
        x = args[0].reshape(-1, args[0].shape[-1]).to(torch.float64)
        h = x.T @ x if h is None else h + x.T @ x

    handle = module.register_forward_pre_hook(hook)
    with torch.no_grad():
        for ids in calibration:
            model(ids[None, :])
    handle.remove()
    return h


CASES = [("llama", ["--scheme", "W4A16", "--group-size", "16"]),
         ("llama", ["--scheme", "W4A16", "--group-size", "32", "--asymmetric"]),
         ("qwen3", ["--scheme", "W4A16", "--group-size", "16"]),
         ("qwen2", ["--scheme", "W8A8"])]


@pytest.mark.parametrize("case", CASES, ids=["-".join([c[0]] + [a.lstrip("-") for a in c[1]]) for c in CASES])
def test_rotq_gptq_equals_a_transformers_gptq_pipeline(case, workdir):
    name, args = case
    model_dir = str(workdir / name)
    if not os.path.isdir(model_dir):
        families.build(BY_NAME[name], model_dir)  # float64
    calib = calibration_file(workdir)
    out = str(workdir / ("-".join([name] + [a.lstrip("-") for a in args])))
    status, stderr = oracle.rotq("quantize", "--model", model_dir, "--output", out, "--method", "gptq", "--calib",
                                 calib, "--calib-n", "100", "--quiet", "--force", *args)
    assert status == 0, stderr
    qc = oracle.quantization_config(out)
    (group,) = qc["config_groups"].values()
    weights = group["weights"]
    tensors = oracle.stored_tensors(out)

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64,
                                                              attn_implementation="eager")
    model.eval()
    calibration = segments(calib)
    bits, symmetric = weights["num_bits"], weights["symmetric"]
    expected = {}
    for index, layer in enumerate(model.model.layers):
        for members in GROUPS:
            parent = layer.self_attn if members[0] in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp
            modules = [getattr(parent, m) for m in members]
            h = hessian(model, modules[0], calibration)
            for member, module in zip(members, modules):
                w = module.weight.data
                quantized, codes, scales = reference_gptq(w, h, weights["group_size"] or w.shape[1], bits, symmetric)
                module.weight.data = quantized
                prefix = "self_attn" if parent is layer.self_attn else "mlp"
                expected[f"model.layers.{index}.{prefix}.{member}"] = (codes, scales)

    assert sorted(expected) == quantized_modules(tensors)
    for module, (codes, scales) in expected.items():
        mine = decode(tensors, module, weights, torch.float64)
        scale = tensors[f"{module}.weight_scale"]
        assert scale.shape == scales.shape
        assert bool(((scale - scales).abs() <= 1e-6 * scales.abs()).all()), f"{module}: the scales differ"
        my_codes = mine / scale[:, torch.arange(mine.shape[1]) // (weights["group_size"] or mine.shape[1])]
        assert bool(((my_codes - torch.round(my_codes)).abs() < 1e-9).all())
        my_codes = torch.round(my_codes)
        same = (my_codes == codes).double().mean().item()
        print(f"{module}: {same:.6f} of the codes equal, scales within {((scale - scales).abs() / scales.abs()).max().item():.2e}")
        assert same >= 0.99, f"{module}: only {same:.4f} of the codes equal the reference GPTQ's"
        assert bool(((my_codes - codes).abs() <= 1).all()), f"{module}: a code differs by more than 1"
