"""rotq's compressed-tensors export (config.json quantization_config, docs/online.md) read by the
real compressed-tensors library: the whole quantization_config through transformers'
CompressedTensorsConfig and compressed-tensors' ModelCompressor and QuantizationConfig, the
transform_config through its pydantic TransformConfig, every group's targets matched on the
transformers model with its own matcher, every stored transform tensor checked against the size
its get_transform_size gives and against the matrix the library itself would build."""
import json
import os

import pytest
import torch
import transformers

import families
import oracle

transformers.logging.set_verbosity_error()
BY_NAME = {f.name: f for f in families.FAMILIES}
RESULTS = []

CASES = [  # (family, rotq's online form)
    ("mistral", "kronecker"), ("mistral", "vllm"), ("qwen3", "kronecker"), ("qwen3", "vllm"),
    ("phi3", "kronecker"), ("gemma2", "vllm"), ("qwen3_moe", "kronecker"),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("compressed-tensors")


def export(family, form, workdir):
    directory = str(workdir / family.name)
    if not os.path.isdir(directory):
        families.build(family, directory)
    out = f"{directory}-{form}"
    yaml = oracle.write_config(out + ".yaml", family.config, "hadamard")
    if family.online == "no_r4":
        with open(yaml, "a") as f:
            f.write("down_proj_online_layers: []\n")
    args = ["rotate", "--model", directory, "--output", out, "--quiet", "--force", "--config", yaml, "--online"]
    if form == "vllm":
        args += ["--online-for", "vllm"]
    status, stderr = oracle.rotq(*args)
    assert status == 0, stderr
    return out


@pytest.mark.parametrize("name,form", CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_export_read_by_compressed_tensors(name, form, workdir):
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.transform import TransformConfig
    from compressed_tensors.transform.utils.hadamard import deterministic_hadamard_matrix
    from compressed_tensors.transform.utils.matrix import get_transform_size
    from compressed_tensors.utils import match_named_modules
    from transformers.utils.quantization_config import CompressedTensorsConfig

    family = BY_NAME[name]
    out = export(family, form, workdir)
    qc = oracle.quantization_config(out)
    assert qc["quant_method"] == "compressed-tensors"
    QuantizationConfig.model_validate({k: v for k, v in qc.items() if k != "transform_config"})
    compressor = ModelCompressor.from_compression_config(CompressedTensorsConfig.from_dict(qc))
    config = TransformConfig.model_validate(qc["transform_config"])
    if compressor.transform_config is None:
        # transformers 5.23's CompressedTensorsConfig does not carry transform_config to
        # compressed-tensors (transformers#42887 adds it): loading through transformers applies no
        # online transform, which is why oracle.apply_online applies them with the library itself.
        RESULTS.append(dict(family=name, config="(quantization_config)", mode="-", online=form, status="note",
                            note="transformers 5.23 CompressedTensorsConfig drops transform_config"))
    else:
        assert compressor.transform_config == config

    model, _ = oracle.load_online_export(out)
    tensors = oracle.stored_tensors(out)
    transform_tensors = {k for k in tensors if any(f".{g}_" in k for g in config.config_groups)}
    seen = set()
    for group, scheme in config.config_groups.items():
        for args in scheme.apply:
            modules = list(match_named_modules(model, args.targets, args.ignore))
            assert modules, f"{group} {args.location}: targets {args.targets} match no module"
            if not args.is_online():
                continue
            module_name, module = modules[0]
            loc = str(getattr(args.location, "value", args.location))
            key = f"{module_name}.{group}_{loc}.weight"
            if loc == "k_cache":  # k_cache shares q_attn's tensor (docs/online.md)
                key = f"{module_name}.{group}_q_attn.weight"
            if isinstance(module, torch.nn.Linear) or scheme.head_dim is not None:
                size = get_transform_size(module, args.location, scheme.head_dim)
            else:
                size = None
            if key not in tensors:
                # R3 (q_attn/k_cache) has no tensor: vLLM registers no parameter for it, and it
                # cancels in q·kᵀ, so the library's own matrix is as exact.
                assert loc in ("q_attn", "k_cache"), f"{group}: no tensor {key}"
                continue
            assert str(tensors[key].dtype) == scheme.precision if isinstance(scheme.precision, str) \
                else tensors[key].dtype == scheme.precision, f"{key}: {tensors[key].dtype}, precision {scheme.precision}"
            seen.add(key)
            t = tensors[key].to(torch.float64)
            assert t.shape == (size, size), f"{key}: {tuple(t.shape)}, compressed-tensors expects {size}²"
            n = t.shape[0]
            assert torch.allclose(t @ t.T / n, torch.eye(n, dtype=torch.float64), atol=1e-12), f"{key}: S·Sᵀ ≠ n·I"
            if scheme.type in ("hadamard", "random-hadamard"):
                assert torch.equal(t.abs(), torch.ones_like(t)), f"{key}: a Hadamard tensor holds ±1"
            if scheme.type == "hadamard":
                own = deterministic_hadamard_matrix(n, torch.float64)
                assert torch.equal(t, own), f"{key}: not compressed-tensors' own Sylvester matrix"
            RESULTS.append(dict(family=name, config=f"{group} {loc}", mode=scheme.type, online=form,
                                status="checked", note=f"{key} {tuple(t.shape)} head_dim={scheme.head_dim}"))
    assert seen == transform_tensors, f"stored transform tensors nobody uses: {transform_tensors - seen}"


def test_moe_export_loads_with_quantizer(workdir):
    """Known incompatibility (recorded, docs/testing.md): transformers 5.23 + compressed-tensors
    0.20.1 cannot load an MoE checkpoint carrying rotq's quantization_config, although config_groups
    is empty: the compressed-tensors quantizer's dequantize conversion is run on the experts."""
    out = export(BY_NAME["qwen3_moe"], "kronecker", workdir)
    with pytest.raises(RuntimeError, match="automatic conversion of the weights"):
        oracle.load(out)
