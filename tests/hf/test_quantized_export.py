"""`rotq quantize`'s compressed-tensors checkpoints, decoded three ways and compared bit for bit with
the dequantized checkpoint rotq writes beside them (--fake-quant-output):

1. an independent decoder written here from the format's definition, as vLLM's loader reads it
   (compressed-tensors 0.20.1): pack-quantized int4 values stored unsigned (code + 8), value i of a
   row at bits 4·i of the little-endian int32 words; zero points packed the same way along the
   output dimension; int-quantized int8 and float-quantized E4M3 stored as is; dequantized as
   (q − z)·scale in the scale's dtype, the scale [out, groups] in the model's dtype;
2. compressed-tensors' own per-format compressors (decompress of a module's state dict);
3. transformers loading the quantized checkpoint (compressed-tensors decompresses it on load) and
   computing the same logits as the dequantized checkpoint.

Which modules are quantized is checked against the transformers model itself: every nn.Linear is
either quantized or named in quantization_config.ignore (lm_head, MoE routers)."""
import json
import os

import pytest
import torch
import transformers

import families
import oracle

transformers.logging.set_verbosity_error()
BY_NAME = {f.name: f for f in families.FAMILIES}

# (family, dtype, scheme args): every scheme on a dense model in float64 (the scale is then exact:
# rotq's eval/quantize.h rounding, bit for bit) and bfloat16 (the scale rounded to bf16 as stored);
# the MoE, fused-qkv and hybrid families once each.
CASES = [
    ("llama", "float64", ["--scheme", "W4A16", "--group-size", "16"]),
    ("llama", "bfloat16", ["--scheme", "W4A16", "--group-size", "16"]),
    ("llama", "bfloat16", ["--scheme", "W4A16", "--group-size", "32", "--asymmetric"]),
    ("llama", "float64", ["--scheme", "W4A16", "--group-size", "16", "--asymmetric"]),
    ("llama", "bfloat16", ["--scheme", "W8A8"]),
    ("llama", "float32", ["--scheme", "W8A8"]),
    ("llama", "bfloat16", ["--scheme", "FP8"]),
    ("llama", "float16", ["--scheme", "FP8"]),
    ("qwen3_moe", "bfloat16", ["--scheme", "W4A16", "--group-size", "16"]),
    ("mixtral", "bfloat16", ["--scheme", "W8A8"]),
    ("qwen2_moe", "bfloat16", ["--scheme", "W4A16", "--group-size", "16", "--asymmetric"]),
    ("phi3", "bfloat16", ["--scheme", "W4A16", "--group-size", "4"]),
    ("nemotron_h", "bfloat16", ["--scheme", "FP8"]),
    ("nemotron_h_moe", "bfloat16", ["--scheme", "W4A16", "--group-size", "8"]),
    ("opt", "bfloat16", ["--scheme", "W8A8"]),
    ("gemma2", "bfloat16", ["--scheme", "W4A16", "--group-size", "16"]),
    ("qwen2", "bfloat16", ["--scheme", "FP8"]),
    ("llama", "bfloat16", ["--scheme", "NVFP4A16"]),
    ("llama", "float32", ["--scheme", "NVFP4A16"]),
    ("qwen3_moe", "bfloat16", ["--scheme", "NVFP4A16"]),
    ("llama", "bfloat16", ["--scheme", "MXFP4A16"]),
    ("llama", "float32", ["--scheme", "MXFP4A16"]),
    ("qwen3_moe", "bfloat16", ["--scheme", "MXFP4A16"]),
    ("llama", "bfloat16", ["--scheme", "FP8_BLOCK"]),
    ("llama", "float64", ["--scheme", "FP8_BLOCK"]),
    ("mixtral", "bfloat16", ["--scheme", "FP8_BLOCK"]),
    # MLA (q_b_proj and kv_b_proj read a latent: kept and ignored), fused [experts, in, out] experts
    # (kept and ignored by a pattern; their routers too), gated DeltaNet + gated attention
    ("deepseek_v3", "bfloat16", ["--scheme", "W4A16", "--group-size", "16"]),
    ("deepseek_v3_q_proj", "bfloat16", ["--scheme", "W8A8"]),
    ("gpt_oss", "bfloat16", ["--scheme", "W4A16", "--group-size", "16"]),
    ("llama4", "bfloat16", ["--scheme", "FP8"]),
    ("qwen3_next", "bfloat16", ["--scheme", "W4A16", "--group-size", "16"]),
    # GPTQ (--method gptq, calibration tokens drawn below): its codes and scales, decoded by each
    # decoder, must equal its own --fake-quant-output just as RTN's do
    ("llama", "bfloat16", ["--scheme", "W4A16", "--group-size", "16", "--method", "gptq", "--calib", "@calib"]),
    ("llama", "float64", ["--scheme", "W4A16", "--group-size", "16", "--method", "gptq", "--calib", "@calib"]),
    ("llama", "bfloat16", ["--scheme", "W4A16", "--group-size", "32", "--asymmetric", "--method", "gptq",
                           "--calib", "@calib"]),
    ("qwen2", "bfloat16", ["--scheme", "W8A8", "--method", "gptq", "--calib", "@calib"]),
    ("qwen3", "float32", ["--scheme", "W4A16", "--group-size", "16", "--method", "gptq", "--calib", "@calib"]),
    ("mistral", "bfloat16", ["--scheme", "W4A16", "--group-size", "16", "--asymmetric", "--method", "gptq",
                             "--calib", "@calib"]),
]
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("quantized-export")


def source(name, dtype, workdir):
    """The family's random model saved in dtype (built once per family and dtype)."""
    directory = str(workdir / f"{name}-{dtype}")
    if not os.path.isdir(directory):
        model = families.build(BY_NAME[name], directory)
        if dtype != "float64":
            model.to(DTYPES[dtype]).save_pretrained(directory)
    return directory


def case_id(case):
    name, dtype, args = case
    return "-".join([name, dtype] + [a.lstrip("-") for a in args if a not in ("--scheme", "--calib", "@calib")])


def calibration_file(workdir, vocab=256, segments=6, length=40):
    """GPTQ's calibration tokens: uint16 ids below the families' vocab, each segment from BOS (1)."""
    path = workdir / "calib.u16"
    if not path.exists():
        g = torch.Generator().manual_seed(5)
        ids = torch.randint(2, vocab, (segments, length), generator=g)
        ids[:, 0] = 1
        path.write_bytes(ids.to(torch.int32).numpy().astype("<u2").tobytes())
    return str(path)


def quantize(case, workdir):
    name, dtype, args = case
    args = [calibration_file(workdir) if a == "@calib" else a for a in args]
    model = source(name, dtype, workdir)
    out = str(workdir / case_id(case))
    status, stderr = oracle.rotq("quantize", "--model", model, "--output", out, "--fake-quant-output", out + "-fake",
                                 "--quiet", "--force", *args)
    assert status == 0, stderr
    return model, out, out + "-fake"


# ---- the independent decoder ----

def unpack_bits(words, bits, count):
    """The count b-bit unsigned values densely packed in each row of int32 words: value i at bit
    b·i of the row's little-endian bit string (possibly crossing a word boundary)."""
    w = words.to(torch.int64) & 0xFFFFFFFF  # the words as unsigned
    i = torch.arange(count)
    start = i * bits
    word, offset = start // 32, start % 32
    value = w[:, word] >> offset
    spill = offset + bits > 32
    if spill.any():
        nxt = torch.clamp(word + 1, max=w.shape[1] - 1)
        value = torch.where(spill, value | (w[:, nxt] << (32 - offset)), value)
    return value & ((1 << bits) - 1)


def e4m3_decode(raw):
    """OCP FP8 E4M3 bytes (torch uint8) → float64: sign, 4 exponent bits (bias 7), 3 mantissa bits,
    subnormals at exponent 0, 0x7F/0xFF NaN."""
    r = raw.to(torch.int64)
    sign = torch.where(r & 0x80 != 0, -1.0, 1.0).to(torch.float64)
    exponent, mantissa = (r >> 3) & 0xF, (r & 7).to(torch.float64)
    normal = (1 + mantissa / 8) * torch.pow(2.0, (exponent - 7).to(torch.float64))
    sub = mantissa / 8 * 2.0 ** -6
    value = sign * torch.where(exponent == 0, sub, normal)
    return torch.where((r & 0x7F) == 0x7F, torch.nan, value)


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float32)


def decode_nvfp4(tensors, module, dtype):
    """nvfp4-pack-quantized: two E2M1 nibbles a byte (element 2i low, 2i+1 high; bit 3 the sign,
    bits 0-2 an index into E2M1), E4M3 scales per 16 input columns, and a float32 global scale
    stored as its reciprocal: w = q · (scale / global), quotient and product in float32, rounded
    to bfloat16 (compressed-tensors 0.20.1 decompresses into bfloat16 whatever the model's dtype)."""
    packed = tensors[f"{module}.weight_packed"]
    scale, global_scale = tensors[f"{module}.weight_scale"], tensors[f"{module}.weight_global_scale"]
    assert packed.dtype == torch.uint8 and scale.dtype == torch.float8_e4m3fn
    assert global_scale.dtype == torch.float32 and global_scale.shape == (1,)
    rows, cols = packed.shape[0], packed.shape[1] * 2
    assert scale.shape == (rows, cols // 16)
    nibbles = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(rows, cols).to(torch.int64)
    q = E2M1[nibbles & 7] * torch.where(nibbles & 8 != 0, -1.0, 1.0)
    effective = e4m3_decode(scale.view(torch.uint8)).to(torch.float32) / global_scale
    per_column = torch.arange(cols) // 16
    return (q * effective[:, per_column]).to(torch.bfloat16).to(dtype)


def decode_mxfp4(tensors, module, dtype):
    """mxfp4-pack-quantized: NVFP4's nibbles, E8M0 scales (uint8, 2^(s − 127)) per 32 input
    columns, no global scale: w = q · 2^(s − 127) (exact in any float dtype here)."""
    packed, scale = tensors[f"{module}.weight_packed"], tensors[f"{module}.weight_scale"]
    assert packed.dtype == torch.uint8 and scale.dtype == torch.uint8
    rows, cols = packed.shape[0], packed.shape[1] * 2
    assert scale.shape == (rows, cols // 32)
    nibbles = torch.stack((packed & 0xF, packed >> 4), dim=-1).reshape(rows, cols).to(torch.int64)
    q = E2M1[nibbles & 7].to(torch.float64) * torch.where(nibbles & 8 != 0, -1.0, 1.0).to(torch.float64)
    power = torch.pow(2.0, scale.to(torch.float64) - 127)
    return (q * power[:, torch.arange(cols) // 32]).to(dtype)


def decode(tensors, module, weights, dtype):
    """Module's dequantized weight from its stored tensors, by the format's definition."""
    if f"{module}.weight_global_scale" in tensors:
        return decode_nvfp4(tensors, module, dtype)
    if f"{module}.weight_packed" in tensors and tensors[f"{module}.weight_packed"].dtype == torch.uint8:
        return decode_mxfp4(tensors, module, dtype)
    scale = tensors[f"{module}.weight_scale"]
    assert scale.dtype == dtype, f"{module}: weight_scale is {scale.dtype}, not the model's {dtype}"
    if weights["type"] == "float":
        raw = tensors[f"{module}.weight"]
        assert raw.dtype == torch.float8_e4m3fn
        q = e4m3_decode(raw.view(torch.uint8))
        if weights["strategy"] == "block":  # one scale per 128×128 block, partial at the edges
            rows, cols = q.shape
            block_rows, block_cols = weights["block_structure"]
            assert scale.shape == ((rows + block_rows - 1) // block_rows, (cols + block_cols - 1) // block_cols)
            scale = scale[torch.arange(rows) // block_rows][:, torch.arange(cols) // block_cols]
            return (q.to(dtype) * scale).to(dtype)
        assert scale.shape == (q.shape[0], 1)
        return (q.to(dtype) * scale).to(dtype)
    if f"{module}.weight_packed" not in tensors:  # int-quantized
        q = tensors[f"{module}.weight"]
        assert q.dtype == torch.int8 and scale.shape == (q.shape[0], 1)
        return q.to(dtype) * scale
    bits, group = weights["num_bits"], weights["group_size"]
    rows, cols = tensors[f"{module}.weight_shape"].tolist()
    packed = tensors[f"{module}.weight_packed"]
    assert packed.dtype == torch.int32 and packed.shape == (rows, (cols * bits + 31) // 32)
    offset = 1 << (bits - 1)
    q = unpack_bits(packed, bits, cols) - offset
    assert scale.shape == (rows, cols // group)
    z = torch.zeros_like(scale, dtype=torch.int64)
    if not weights["symmetric"]:
        zp = tensors[f"{module}.weight_zero_point"]
        assert zp.dtype == torch.int32 and zp.shape == ((rows * bits + 31) // 32, cols // group)
        z = unpack_bits(zp.t(), bits, rows).t() - offset  # packed along the output dimension
    per_column = torch.arange(cols) // group
    return (q - z[:, per_column]).to(dtype) * scale[:, per_column]


def quantized_modules(tensors):
    return sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")})


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_decoders_equal_rotq_fake_quantization(case, workdir):
    name, dtype_name, _ = case
    dtype = DTYPES[dtype_name]
    model_dir, out, fake = quantize(case, workdir)
    qc = oracle.quantization_config(out)
    assert qc["quant_method"] == "compressed-tensors" and qc["quantization_status"] == "compressed"
    assert qc["version"] == "0.20.1" and "lm_head" in qc["ignore"]
    (group,) = qc["config_groups"].values()
    assert group["targets"] == ["Linear"] and group["format"] == qc["format"]
    weights = group["weights"]

    tensors, fakes, originals = (oracle.stored_tensors(d) for d in (out, fake, model_dir))
    modules = quantized_modules(tensors)
    assert modules, "nothing was quantized"
    for module in modules:
        mine = decode(tensors, module, weights, dtype)
        expected = fakes[f"{module}.weight"]
        assert expected.dtype == dtype
        assert torch.equal(mine, expected), f"{module}: the decoded weight differs from rotq's fake quantization"
        assert not torch.equal(expected, originals[f"{module}.weight"]), f"{module}: not quantized at all"
    # Everything else is copied unchanged, and the fake checkpoint differs from the input only there.
    for key, value in originals.items():
        module = key.rsplit(".", 1)[0]
        if module in modules and key.endswith(".weight"):
            continue
        assert torch.equal(tensors[key], value), key
        assert torch.equal(fakes[key], value), key

    # Every nn.Linear of the transformers model is quantized or ignored; the only other modules
    # quantized are MoE experts (transformers 5 fuses them into one 3-D parameter, vLLM loads them
    # per expert, as the checkpoint stores them).
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, experts_implementation="eager")
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    stored = {k.rsplit(".", 1)[0] for k in originals}
    if not linears & stored - {"lm_head"}:
        return  # Nemotron-H: the checkpoint's names (backbone.*) are not the modules' (model.*)
    linears &= stored  # a tied lm_head has no tensor of its own
    assert linears - set(qc["ignore"]) <= set(modules)
    # Fused [experts, in, out] experts (gpt-oss, Llama-4) stay in full precision: vLLM loads them as
    # a FusedMoE layer and asks compressed-tensors for each expert's projection by name
    # ("<experts>.<e>.gate_proj"), which an ignore entry must match (compressed-tensors' rule: exact,
    # or "re:" + re.match).
    import re

    def ignored(layer):
        return any(layer == e or (e.startswith("re:") and re.match(e[3:], layer)) for e in qc["ignore"])

    fused = {k.rsplit(".", 1)[0] for k, v in originals.items() if v.dim() == 3 and ".experts." in k}
    for experts in fused:
        assert all(ignored(f"{experts}.{e}.{p}") for e in (0, 1) for p in ("gate_proj", "up_proj", "down_proj")), \
            f"{experts}: stored unquantized but vLLM would look for its experts' packed weights"
    assert all(".experts." in m for m in set(modules) - linears), sorted(set(modules) - linears)
    assert not [m for m in modules if ignored(m)], "a quantized module is also ignored"
    if "moe" in name or name == "mixtral":
        assert len(qc["ignore"]) > 1, "the MoE routers must be ignored"
    # vLLM builds the routers without a quantization method: they must stay plain weights
    routers = {m for m in linears if m.rsplit(".", 1)[-1] in ("gate", "router", "shared_expert_gate")}
    assert routers <= set(qc["ignore"]), sorted(routers - set(qc["ignore"]))


def test_nvfp4_fused_linears_share_their_global_scale(workdir):
    """vLLM fuses q/k/v (and each expert's gate/up) into one linear with one global scale (the
    max of the parts'): rotq gives them the same one, from their joint max |W|."""
    case = ("qwen3_moe", "bfloat16", ["--scheme", "NVFP4A16"])
    model_dir, out, _ = quantize(case, workdir)
    tensors, originals = oracle.stored_tensors(out), oracle.stored_tensors(model_dir)

    def global_scale(module):
        return tensors[f"{module}.weight_global_scale"].item()

    for layer in range(2):
        base = f"model.layers.{layer}"
        groups = [[f"{base}.self_attn.{p}_proj" for p in "qkv"], [f"{base}.self_attn.o_proj"]]
        groups += [[f"{base}.mlp.experts.{e}.gate_proj", f"{base}.mlp.experts.{e}.up_proj"] for e in range(4)]
        for group in groups:
            amax = max(originals[f"{m}.weight"].float().abs().max().item() for m in group)
            expected = torch.tensor(448 * 6 / amax, dtype=torch.float32).item()
            assert {global_scale(m) for m in group} == {expected}, group
        assert global_scale(f"{base}.self_attn.q_proj") != global_scale(f"{base}.self_attn.o_proj")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_compressed_tensors_decompresses_to_rotq_fake_quantization(case, workdir):
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationScheme

    name, dtype_name, _ = case
    _, out, fake = quantize(case, workdir)
    qc = oracle.quantization_config(out)
    (group,) = qc["config_groups"].values()
    scheme = QuantizationScheme.model_validate(group)
    compressor = BaseCompressor.get_value_from_registry(qc["format"])
    tensors, fakes = oracle.stored_tensors(out), oracle.stored_tensors(fake)
    for module in quantized_modules(tensors):
        local = {k[len(module) + 1:]: v for k, v in tensors.items() if k.startswith(module + ".weight")}
        weight = compressor.decompress(local, scheme)["weight"]
        expected = fakes[f"{module}.weight"]
        if qc["format"] in ("nvfp4-pack-quantized", "mxfp4-pack-quantized"):  # decompressed into bfloat16
            assert weight.dtype == torch.bfloat16
            weight = weight.to(expected.dtype)
        assert torch.equal(weight, expected), f"{module}: compressed-tensors decodes it differently"


# transformers 5.23 dequantizes packed MoE experts without their weight_global_scale (its
# CompressedTensorsDequantize builds each expert's module from weight_packed/scale/shape only), so
# NVFP4 experts are checked by compressed-tensors' own decompression above, not here.
LOGIT_CASES = [c for c in CASES if (c[0] == "llama" or (c[0] == "qwen3_moe" and "NVFP4A16" not in c[2]))
               and c[1] in ("float64", "bfloat16")]


@pytest.mark.parametrize("case", LOGIT_CASES, ids=[case_id(c) for c in LOGIT_CASES])
def test_transformers_loads_it_as_the_fake_quantized_model(case, workdir):
    """transformers dequantizing the checkpoint on load (CompressedTensorsConfig(dequantize=True))
    gives the dequantized checkpoint's weights and logits exactly. Its other path, which keeps the
    compressed layout, runs W8A8/FP8 with their activation quantization (so other logits) and
    cannot take asymmetric pack-quantized weights: compressed-tensors 0.20.1 lays the module out on
    the meta device with an unpacked zero point [out, groups], not the packed [out/8, groups] its
    own compressor writes and vLLM reads; it is checked for symmetric W4A16 only."""
    from transformers.utils.quantization_config import CompressedTensorsConfig

    name, dtype_name, args = case
    dtype = DTYPES[dtype_name]
    _, out, fake = quantize(case, workdir)
    kwargs = dict(dtype=dtype, experts_implementation="eager")
    reference = transformers.AutoModelForCausalLM.from_pretrained(fake, **kwargs).eval()
    loads = [dict(quantization_config=CompressedTensorsConfig(dequantize=True))]
    if "W4A16" in args and "--asymmetric" not in args:
        loads.append({})
    ids = oracle.tokens(reference.config.vocab_size)
    with torch.no_grad():
        b = reference(input_ids=ids, use_cache=False).logits
        for load in loads:
            quantized = transformers.AutoModelForCausalLM.from_pretrained(out, **kwargs, **load).eval()
            a = quantized(input_ids=ids, use_cache=False).logits
            assert torch.equal(a, b), f"{load}: max |Δlogit| {(a - b).abs().max().item()}"


@pytest.mark.parametrize("scheme", [["--scheme", "W4A16", "--group-size", "16"], ["--scheme", "W8A8"]],
                         ids=["W4A16", "W8A8"])
def test_online_rotated_then_quantized(scheme, workdir):
    """rotate --online, then quantize: the quantized checkpoint keeps the online rotations'
    transform_config and tensors; loaded by transformers (dequantized) with the activation halves
    applied by compressed-tensors, it computes the fake-quantized rotated model's logits exactly."""
    from transformers.utils.quantization_config import CompressedTensorsConfig

    model_dir = source("llama", "float64", workdir)
    rotated = str(workdir / f"llama-online-{scheme[1]}")
    status, stderr = oracle.rotq("rotate", "--model", model_dir, "--output", rotated, "--online", "--quiet", "--force")
    assert status == 0, stderr
    out, fake = rotated + "-q", rotated + "-fake"
    status, stderr = oracle.rotq("quantize", "--model", rotated, "--output", out, "--fake-quant-output", fake,
                                 "--quiet", "--force", *scheme)
    assert status == 0, stderr
    qc, rotated_qc = oracle.quantization_config(out), oracle.quantization_config(rotated)
    assert qc["transform_config"] == rotated_qc["transform_config"] and qc["config_groups"]
    kwargs = dict(dtype=torch.float64)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(
        out, quantization_config=CompressedTensorsConfig(dequantize=True), **kwargs).eval()
    reference, _ = oracle.load_online_export(fake)
    assert oracle.apply_online(quantized, out) and oracle.apply_online(reference, fake)
    ids = oracle.tokens(reference.config.vocab_size)
    a, b = oracle.logits(quantized, ids), oracle.logits(reference, ids)
    assert torch.equal(a, b), f"max |Δlogit| {(a - b).abs().max().item()}"


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float32"])
def test_mxfp4_scales_are_compressed_tensors_own(dtype_name, workdir):
    """MXFP4A16's E8M0 scales are what compressed-tensors 0.20.1 computes from each group's amax
    (generate_mx_scales: round_to_power_2, then ⌊log2⌋ − 2, biased by 127), and the codes are its
    cast_to_fp4 of w / scale, clamped to ±6."""
    from compressed_tensors.quantization.quant_args import FP4_E2M1_DATA
    from compressed_tensors.quantization.utils.mxfp_utils import generate_mx_scales

    case = ("llama", dtype_name, ["--scheme", "MXFP4A16"])
    model_dir, out, _ = quantize(case, workdir)
    tensors, originals = oracle.stored_tensors(out), oracle.stored_tensors(model_dir)
    for module in quantized_modules(tensors):
        w = originals[f"{module}.weight"]
        rows, cols = w.shape
        amax = w.reshape(rows, cols // 32, 32).abs().amax(dim=-1)
        expected = generate_mx_scales(amax, 4).to(torch.uint8)
        assert torch.equal(tensors[f"{module}.weight_scale"], expected), f"{module}: scales"
        power = torch.pow(2.0, expected.to(torch.float64) - 127)[:, torch.arange(cols) // 32]
        q = FP4_E2M1_DATA.cast_to_fp4(torch.clamp(w.to(torch.float64) / power, -6, 6).to(torch.float32))
        assert torch.equal(decode_mxfp4(tensors, module, torch.float64), q.to(torch.float64) * power), f"{module}: codes"


@pytest.mark.parametrize("name", ["llama", "qwen3_moe"])
def test_one_pass_nvfp4_is_the_rotated_model_quantized(name, workdir):
    """rotq rotate --quantize NVFP4A16 (one read, one write; each fused group's rotated rows held
    until the group is complete): every fused group's global scale (q/k/v, gate/up, each expert's
    gate/up; grouped here by module name) is 448·6 / max |W| over the rotated members, read from a
    plain `rotq rotate` output; compressed-tensors decompresses every weight to the two-command
    path's (rotate, then quantize) dequantized checkpoint, and within NVFP4's error of the rotated
    weight."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationScheme

    model = source(name, "bfloat16", workdir)
    rotated, one = str(workdir / f"{name}-rotated"), str(workdir / f"{name}-one-pass-nvfp4")
    two, fake = rotated + "-nvfp4", rotated + "-nvfp4-fake"
    for args in (["rotate", "--model", model, "--output", rotated],
                 ["rotate", "--model", model, "--output", one, "--quantize", "NVFP4A16"],
                 ["quantize", "--model", rotated, "--output", two, "--fake-quant-output", fake,
                  "--scheme", "NVFP4A16"]):
        status, stderr = oracle.rotq(*args, "--quiet", "--force")
        assert status == 0, stderr
    qc = oracle.quantization_config(one)
    assert qc["format"] == "nvfp4-pack-quantized"
    (group,) = qc["config_groups"].values()
    scheme = QuantizationScheme.model_validate(group)
    compressor = BaseCompressor.get_value_from_registry(qc["format"])
    tensors, weights, fakes = oracle.stored_tensors(one), oracle.stored_tensors(rotated), oracle.stored_tensors(fake)
    modules = quantized_modules(tensors)
    assert modules
    for module in modules:
        local = {k[len(module) + 1:]: v for k, v in tensors.items() if k.startswith(module + ".weight")}
        decoded = compressor.decompress(local, scheme)["weight"]
        expected = fakes[f"{module}.weight"]
        assert torch.equal(decoded.to(expected.dtype), expected), f"{module}: not the two-command path's weight"
        w = weights[f"{module}.weight"].double()
        assert ((decoded.double() - w).norm() / w.norm()).item() < 0.2, f"{module}: not the rotated weight"
    fused = {}
    for module in modules:
        parent, leaf = module.rsplit(".", 1)
        kind = "qkv" if leaf in ("q_proj", "k_proj", "v_proj") else "gate_up" if leaf in ("gate_proj", "up_proj") else leaf
        fused.setdefault((parent, kind), []).append(module)
    assert max(len(members) for members in fused.values()) == 3  # q/k/v share one
    for members in fused.values():
        amax = max(weights[f"{m}.weight"].double().abs().max().item() for m in members)
        expected = torch.tensor(448 * 6 / amax, dtype=torch.float32).item()
        assert {tensors[f"{m}.weight_global_scale"].item() for m in members} == {expected}, members
