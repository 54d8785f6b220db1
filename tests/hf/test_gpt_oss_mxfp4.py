"""gpt-oss's release form as the source: the experts' gate_up_proj / down_proj stored MXFP4
(`*_blocks` U8 [E, out, in/32, 16] and `*_scales` U8 (E8M0) [E, out, in/32], quantization_config
quant_method "mxfp4"), i.e. per output row, the transpose of transformers' bf16 layout [E, in, out].
A random GptOssForCausalLM is quantized here; its dequantized twin (the exact values, as transformers'
own _convert_moe_packed_tensors dequantizes and transposes them, in float64) is the original. rotq
rotates the MXFP4 checkpoint (--dtype f64: the experts written dequantized, transposed to [E, in, out]);
transformers' logits of the rotated checkpoint equal the dequantized original's (relative ≤ 1e-9),
and rotq's forward pass on the MXFP4 checkpoint matches transformers' NLL on the dequantized one."""
import json
import os
import shutil
import struct

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers.integrations.mxfp4 import FP4_VALUES, _convert_moe_packed_tensors

import families
import oracle

transformers.logging.set_verbosity_error()
FAMILY = next(f for f in families.FAMILIES if f.name == "gpt_oss")


def quantize_mxfp4(w):
    """w [E, in, out] (transformers' layout) → (blocks [E, out, in/32, 16], scales [E, out, in/32]),
    round to nearest E2M1 code with a per-block power-of-two scale (largest |x| ≤ 6·2^s)."""
    t = w.transpose(1, 2).contiguous()  # [E, out, in]: the MXFP4 checkpoints' rows
    E, rows, cols = t.shape
    g = t.reshape(E, rows, cols // 32, 32)
    peak = g.abs().amax(-1).clamp_min(1e-30)
    exp = torch.ceil(torch.log2(peak / 6.0)).to(torch.int32)
    scaled = g / torch.ldexp(torch.ones_like(peak), exp)[..., None]
    lut = torch.tensor(FP4_VALUES, dtype=torch.float64)  # codes 0..15: sign bit 3
    codes = (scaled[..., None] - lut).abs().argmin(-1).to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), (exp + 127).to(torch.uint8).contiguous()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(mxfp4 directory, dequantized float64 directory)."""
    root = tmp_path_factory.mktemp("gpt-oss-mxfp4")
    plain, mxfp4, deq = str(root / "plain"), str(root / "mxfp4"), str(root / "dequantized")
    families.build(FAMILY, plain)
    tensors = load_file(os.path.join(plain, "model.safetensors"))
    quantized, dequantized = {}, {}
    for name, t in tensors.items():
        if name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
            blocks, scales = quantize_mxfp4(t)
            quantized[name + "_blocks"], quantized[name + "_scales"] = blocks, scales
            dequantized[name] = _convert_moe_packed_tensors(blocks, scales, dtype=torch.float64)
            assert dequantized[name].shape == t.shape
        else:
            quantized[name] = dequantized[name] = t
    for directory, values in ((mxfp4, quantized), (deq, dequantized)):
        shutil.copytree(plain, directory)
        save_file(values, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(mxfp4, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    with open(os.path.join(mxfp4, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return mxfp4, deq


@pytest.mark.parametrize("mode", oracle.MODES)
def test_mxfp4_source_rotates_exactly(checkpoints, mode, tmp_path):
    mxfp4, deq = checkpoints
    out = str(tmp_path / f"rotated-{mode}")
    yaml = oracle.write_config(str(tmp_path / f"gpt_oss-{mode}.yaml"), "gpt_oss", mode)
    status, stderr = oracle.rotq("rotate", "--model", mxfp4, "--output", out, "--config", yaml, "--dtype", "f64",
                                 "--quiet")
    assert status == 0, stderr  # with rotq's own in-stream and whole-model checks
    with open(os.path.join(out, "config.json")) as f:
        assert "quantization_config" not in json.load(f), "the MXFP4 quantization_config was kept"
    names = load_file(os.path.join(out, "model.safetensors"))
    assert names["model.layers.0.mlp.experts.gate_up_proj"].shape == (4, 64, 64)  # [E, hidden, 2·inter]
    assert names["model.layers.0.mlp.experts.down_proj"].shape == (4, 32, 64)  # [E, inter, hidden]
    ids = oracle.tokens(256)
    reference = oracle.logits(oracle.load(deq), ids)
    rel, argmax = oracle.compare(reference, oracle.logits(oracle.load(out), ids))
    assert rel <= oracle.TOLERANCE and argmax == 1.0, f"relative {rel:.3e}, argmax {argmax}"


def test_rotq_forward_reads_mxfp4_experts(checkpoints, tmp_path):
    """rotq eval on the MXFP4 checkpoint (its experts read per output row and transposed) against
    transformers on the dequantized one."""
    mxfp4, deq = checkpoints
    ids = [1] + [t for t in oracle.tokens(256, batch=1, length=40)[0].tolist()[1:] if t != 1]
    path = str(tmp_path / "segment.u16")
    with open(path, "wb") as f:
        f.write(struct.pack(f"<{len(ids)}H", *ids))
    out = oracle.subprocess.run([oracle.ROTQ, "eval", "--model", mxfp4, "--tokens", path, "--ctx", str(len(ids))],
                                capture_output=True, text=True, check=True).stdout.split()
    rotq_nll = float(out[out.index("nll") + 1])
    log_p = torch.log_softmax(oracle.logits(oracle.load(deq), torch.tensor([ids]))[0], -1)
    hf_nll = -log_p[:-1].gather(1, torch.tensor(ids[1:])[:, None]).mean().item()
    assert abs(rotq_nll - hf_nll) / abs(hf_nll) <= 1e-6, f"rotq {rotq_nll} vs transformers {hf_nll}"
