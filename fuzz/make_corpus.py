#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora under fuzz/corpus/<target>/ (checked in; rerun after changing
this file). Standard library only. Each target gets valid inputs and near-valid ones (one field
wrong), so the fuzzer starts from every error path of the parser.

    python3 fuzz/make_corpus.py
"""
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(header, data=b"", header_bytes=None):
    """A safetensors file: header JSON padded with spaces to 8 bytes, then data."""
    text = header_bytes if header_bytes is not None else json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def laid_out(tensors):
    """Header and data for [(name, dtype, shape)], spans packed in order, small element values."""
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, dtype, shape in tensors:
        count = 1
        for extent in shape:
            count *= extent
        size = count * DTYPE_SIZE[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + size]}
        data += bytes((i * 7 + 60) % 256 for i in range(size))
    return header, data


def bundled_header():
    with open(os.path.join(ROOT, "models", "stories260K", "model.safetensors"), "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        return f.read(size)


def safetensors_corpus():
    target = "fuzz_safetensors_header"
    raw = bundled_header()
    stories = json.loads(raw)
    # The bundled model's tensors (names, dtypes, ranks) with every dimension cut to at most 2.
    small = [(name, entry["dtype"], [min(d, 2) for d in entry["shape"]])
             for name, entry in stories.items() if name != "__metadata__"]
    write(target, "valid_stories260K_small", safetensors(*laid_out(small)))
    mixed = [("f64", "F64", [2]), ("f32", "F32", [1, 3]), ("f16", "F16", [2, 2]), ("bf16", "BF16", [3]),
             ("scalar", "F32", []), ("empty", "F16", [0, 4])]
    header, data = laid_out(mixed)
    write(target, "valid_mixed_dtypes", safetensors(header, data))
    write(target, "valid_empty_header", safetensors({}))
    # The bundled header without its 1 MB of data: every span lies outside the data section.
    write(target, "near_stories260K_header_without_data", safetensors(None, header_bytes=raw))
    one, one_data = laid_out([("w", "F32", [2, 2])])
    write(target, "near_truncated", safetensors(one, one_data)[:-3])
    write(target, "near_header_length_beyond_file", struct.pack("<Q", 1 << 40) + b"{}")
    write(target, "near_header_not_json", safetensors(None, header_bytes=b"{\"w\": {\"dtype\": \"F32\",, }"))
    write(target, "near_duplicate_name",
          safetensors(None, header_bytes=b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                                         b'"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', data=bytes(8)))
    bad = dict(one, w=dict(one["w"], dtype="I8"))
    write(target, "near_unknown_dtype", safetensors(bad, one_data))
    bad = dict(one, w=dict(one["w"], shape=[3, 2]))
    write(target, "near_shape_span_mismatch", safetensors(bad, one_data))
    two, two_data = laid_out([("a", "F32", [2]), ("b", "F32", [2])])
    two["b"]["data_offsets"] = [4, 12]
    write(target, "near_overlapping_spans", safetensors(two, two_data))
    bad = dict(one, w=dict(one["w"], shape=[2, 2, 1, 1, 1, 1, 1, 1, 1]))
    write(target, "near_too_many_dimensions", safetensors(bad, one_data))
    bad = dict(one, w=dict(one["w"], shape=[1 << 31, 1 << 31, 1 << 31]))
    write(target, "near_shape_overflow", safetensors(bad, one_data))
    bad = dict(one, __metadata__={"format": 1})
    write(target, "near_metadata_not_strings", safetensors(bad, one_data))


def index_corpus():
    target = "fuzz_index_json"
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    weights = {"model.embed_tokens.weight": first, "model.norm.weight": first, "lm_head.weight": second}
    def index(weight_map, metadata=None):
        return json.dumps({"metadata": metadata or {"total_size": 32}, "weight_map": weight_map}, indent=2)
    write(target, "valid", index(weights))
    write(target, "valid_no_metadata", json.dumps({"weight_map": weights}))
    write(target, "near_missing_shard", index(dict(weights, **{"lm_head.weight": "model-00003-of-00003.safetensors"})))
    write(target, "near_tensor_not_in_shard", index(dict(weights, **{"model.layers.0.mlp.up_proj.weight": first})))
    write(target, "near_tensor_unlisted", index({k: v for k, v in weights.items() if k != "model.norm.weight"}))
    write(target, "near_wrong_shard", index(dict(weights, **{"lm_head.weight": first})))
    write(target, "near_path_escape", index(dict(weights, **{"lm_head.weight": "../" + second})))
    write(target, "near_shard_not_safetensors", index(dict(weights, **{"lm_head.weight": "config.json"})))
    write(target, "near_weight_map_not_object", json.dumps({"weight_map": list(weights)}))
    write(target, "near_not_json", index(weights)[:-5])


def config_corpus():
    target = "fuzz_config_json"
    with open(os.path.join(ROOT, "models", "stories260K", "config.json")) as f:
        stories = json.load(f)
    write(target, "valid_stories260K", json.dumps(stories, indent=2))
    qwen = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
            "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
            "num_key_value_heads": 2, "vocab_size": 151936, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "tie_word_embeddings": True, "max_position_embeddings": 32768}
    write(target, "valid_qwen2", json.dumps(qwen))
    llama3 = dict(stories, rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    write(target, "valid_llama3_rope_scaling", json.dumps(llama3))
    nested = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
              "text_config": {k: v for k, v in stories.items() if k not in ("architectures", "model_type")}}
    write(target, "valid_text_config", json.dumps(nested))
    v5 = {k: v for k, v in stories.items() if k != "rope_theta"}
    v5["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
    write(target, "valid_rope_parameters", json.dumps(v5))
    write(target, "near_missing_hidden_size", json.dumps({k: v for k, v in stories.items() if k != "hidden_size"}))
    write(target, "near_kv_heads_not_divisor", json.dumps(dict(stories, num_key_value_heads=3)))
    write(target, "near_hidden_size_negative", json.dumps(dict(stories, hidden_size=-64)))
    write(target, "near_hidden_size_fraction", json.dumps(dict(stories, hidden_size=64.5)))
    write(target, "near_tie_not_bool", json.dumps(dict(stories, tie_word_embeddings="yes")))
    write(target, "near_architecture_not_string", json.dumps(dict(stories, architectures=[7])))
    write(target, "near_not_object", "[1, 2, 3]")


def yaml_corpus():
    target = "fuzz_rotation_yaml"
    builtin = os.path.join(ROOT, "config", "builtin")
    for name in sorted(os.listdir(builtin)):
        with open(os.path.join(builtin, name)) as f:
            write(target, "valid_builtin_" + name.rsplit(".", 1)[0], f.read())
    write(target, "valid_all_fields", """\
rotation_matrices:
  r1: {dim: 64, mode: base_hadamard, per_layer: false, block_size: 16}
  r2: {dim: head_dim, mode: orthogonal, per_layer: "model.layers.0|model.layers.[1-3]"}
  r3: {dim: hidden_size, mode: file, file: rotations.safetensors, block_size: -1}
rotation_config:
  "*embed_tokens|*lm_head": [r1, ~]
  "*v_proj": [r1, r2]
  "*o_proj": [r2, r1]
  "*down_proj": [null, r3]
norm_fuse_config:
  decoder_layer_fuse:
    - [input_layernorm, [self_attn.q_proj, self_attn.k_proj, self_attn.v_proj]]
  lm_head_fuse:
    - [model.norm, lm_head]
use_float64: false
online: yes
down_proj_online_layers: [0, 2]
strict: True
""")
    write(target, "valid_anchors", """\
rotation_matrices:
  r1: &spec {dim: 8, mode: hadamard, per_layer: false}
  r2: *spec
rotation_config:
  "*q_proj": &pair [r1, r2]
  "*k_proj": *pair
""")
    write(target, "near_unknown_matrix", "rotation_matrices:\n  r1: {dim: 8}\nrotation_config:\n  \"*q_proj\": [r9, null]\n")
    write(target, "near_bad_block_size", "rotation_matrices:\n  r1: {dim: 8, block_size: 12}\n")
    write(target, "near_bad_mode", "rotation_matrices:\n  r1: {dim: 8, mode: givens}\n")
    write(target, "near_file_without_path", "rotation_matrices:\n  r1: {dim: 8, mode: file}\n")
    write(target, "near_rule_not_pair", "rotation_matrices:\n  r1: {dim: 8}\nrotation_config:\n  \"*\": [r1]\n")
    write(target, "near_unknown_field", "rotation_matrices:\n  r1: {dim: 8}\nquantize: true\n")
    write(target, "near_matrix_twice", "rotation_matrices:\n  r1: {dim: 8}\n  r1: {dim: 16}\n")
    write(target, "near_not_yaml", "rotation_matrices: [\n  r1: {dim: 8\n")
    write(target, "near_negative_layer", "rotation_matrices:\n  r1: {dim: 8}\ndown_proj_online_layers: [0, -1]\n")
    write(target, "near_empty", "")


def gguf(kvs, tensors, version=3, alignment=32, offsets=None):
    """A GGUF file: kvs [(key, type, payload bytes)], tensors [(name, ne, type, data)]."""
    def string(text):
        b = text.encode()
        return struct.pack("<Q", len(b)) + b

    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, vtype, payload in kvs:
        out += string(key) + struct.pack("<I", vtype) + payload
    data = b""
    for i, (name, ne, ttype, raw) in enumerate(tensors):
        data += b"\0" * (-len(data) % alignment)
        offset = len(data) if offsets is None else offsets[i]
        out += string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", ttype, offset)
        data += raw
    out += b"\0" * (-len(out) % alignment)
    return out + data


def gguf_corpus():
    target = "fuzz_gguf"
    u32 = lambda v: struct.pack("<I", v)
    arch = ("general.architecture", 8, struct.pack("<Q", 5) + b"llama")
    align = ("general.alignment", 4, u32(32))
    tokens = ("tokenizer.ggml.tokens", 9, u32(8) + struct.pack("<Q", 2) + struct.pack("<Q", 1) + b"a"
              + struct.pack("<Q", 2) + b"bc")
    eps = ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5))
    block = lambda size: bytes((i * 29 + 3) % 256 for i in range(size))
    half_one = b"\x00\x3c"
    tensors = [
        ("f32", [4], 0, block(16)),
        ("f16", [2, 2], 1, block(8)),
        ("q4_0", [32], 2, half_one + block(16)),
        ("q4_1", [32], 3, half_one + half_one + block(16)),
        ("q8_0", [32, 2], 8, (half_one + block(32)) * 2),
        ("q4_k", [256], 12, half_one + half_one + block(140)),
        ("q6_k", [256], 14, block(208) + half_one),
        ("bf16", [2], 30, b"\x80\x3f\x40\xc0"),
    ]
    write(target, "valid_every_type", gguf([arch, align, tokens, eps], tensors))
    write(target, "valid_v2_metadata_only", gguf([arch, tokens, eps], [], version=2))
    write(target, "valid_q5_k_unsupported", gguf([arch], [("q5_k", [256], 13, block(176))]))
    write(target, "near_truncated", gguf([arch, align], tensors)[:-7])
    write(target, "near_misaligned_offset", gguf([arch], tensors[:2], offsets=[0, 4]))
    write(target, "near_duplicate_tensor", gguf([arch], [tensors[0], tensors[0]]))
    write(target, "near_duplicate_key", gguf([arch, arch], []))
    write(target, "near_partial_block", gguf([arch], [("q8_0", [33], 8, block(34))]))
    write(target, "near_bad_alignment", gguf([("general.alignment", 4, u32(48))], tensors[:1]))
    write(target, "near_unknown_type", gguf([arch], [("x", [4], 99, block(16))]))
    write(target, "near_version_1", gguf([arch], [], version=1))


if __name__ == "__main__":
    safetensors_corpus()
    index_corpus()
    config_corpus()
    yaml_corpus()
    gguf_corpus()
