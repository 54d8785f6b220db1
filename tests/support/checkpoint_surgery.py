#!/usr/bin/env python3
"""Breaks checkpoints on purpose, for the error-catalogue tests (tests/cli_errors.sh). Standard
library only. Each operation edits one safetensors file (or a checkpoint directory) in place:

  header FILE set TENSOR FIELD JSON     set a header field ("dtype", "shape", "data_offsets")
  header FILE rename TENSOR NEW         rename a tensor (NEW may be an existing name: duplicate)
  header FILE delete TENSOR             drop a tensor from the header (its bytes stay, unused)
  header FILE length N                  overwrite the 8-byte header length with N
  header FILE text TEXT                 replace the header JSON with TEXT (any bytes)
  poke FILE TENSOR INDEX VALUE          store float VALUE (e.g. nan, inf) at element INDEX (F32)
  shard DIR                             split DIR/model.safetensors in two shards plus an index
  synth DIR LAYERS HIDDEN INTERMEDIATE  write a Llama checkpoint with LAYERS decoder layers
"""
import json
import math
import os
import struct
import sys
from array import array

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}


def read(path):
    """(header bytes, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    length = struct.unpack("<Q", blob[:8])[0]
    return blob[8:8 + length], blob[8 + length:]


def write(path, header, data):
    """Writes header (a dict, or raw bytes) padded with spaces to 8 bytes, then data."""
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def edit_header(path, operation, *args):
    raw, data = read(path)
    if operation == "length":
        with open(path, "r+b") as f:
            f.write(struct.pack("<Q", int(args[0])))
        return
    if operation == "text":
        write(path, args[0].encode(), data)
        return
    header = json.loads(raw)
    if operation == "set":
        tensor, field, value = args
        header[tensor][field] = json.loads(value)
        write(path, header, data)
    elif operation == "delete":
        del header[args[0]]
        write(path, header, data)
    elif operation == "rename":
        # Done on the text so that renaming onto an existing name yields a duplicate key.
        tensor, new = args
        old_key = json.dumps(tensor).encode() + b":"
        if old_key not in raw:
            old_key = json.dumps(tensor).encode() + b": "
        write(path, raw.replace(old_key, json.dumps(new).encode() + b":", 1), data)
    else:
        sys.exit("unknown header operation " + operation)


def poke(path, tensor, index, value):
    raw, data = read(path)
    entry = json.loads(raw)[tensor]
    if entry["dtype"] != "F32":
        sys.exit(tensor + " is not F32")
    at = entry["data_offsets"][0] + 4 * int(index)
    data = data[:at] + struct.pack("<f", float(value)) + data[at + 4:]
    write(path, raw, data)


def shard(directory):
    """model.safetensors → model-00001-of-00002 (first half of the tensors) and -00002, plus
    model.safetensors.index.json, as transformers writes them."""
    source = os.path.join(directory, "model.safetensors")
    raw, data = read(source)
    header = json.loads(raw)
    names = sorted(k for k in header if k != "__metadata__")
    halves = [names[:len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for number, half in enumerate(halves, 1):
        file = "model-%05d-of-%05d.safetensors" % (number, len(halves))
        part, part_data = {"__metadata__": {"format": "pt"}}, b""
        for name in half:
            begin, end = header[name]["data_offsets"]
            part[name] = dict(header[name], data_offsets=[len(part_data), len(part_data) + end - begin])
            part_data += data[begin:end]
            weight_map[name] = file
        write(os.path.join(directory, file), part, part_data)
    os.remove(source)
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": len(data)}, "weight_map": weight_map}, f, indent=2)


def synth(directory, layers, hidden, intermediate):
    """A LlamaForCausalLM checkpoint (F32, heads of 64, 2 kv groups, vocab 512) whose weights are
    small pseudo-random values: enough bytes for a rotation that takes a while, made fast by
    repeating one block of values."""
    layers, hidden, intermediate = int(layers), int(hidden), int(intermediate)
    heads, vocab = hidden // 64, 512
    kv = hidden // 2
    state, block = 12345, array("f")
    for _ in range(4096):
        state = (state * 1103515245 + 12345) % 2**31
        block.append((state / 2**31 - 0.5) * 0.1)
    shapes = [("model.embed_tokens.weight", [vocab, hidden]), ("model.norm.weight", [hidden])]
    for i in range(layers):
        p = "model.layers.%d." % i
        shapes += [(p + "input_layernorm.weight", [hidden]), (p + "post_attention_layernorm.weight", [hidden]),
                   (p + "self_attn.q_proj.weight", [hidden, hidden]), (p + "self_attn.k_proj.weight", [kv, hidden]),
                   (p + "self_attn.v_proj.weight", [kv, hidden]), (p + "self_attn.o_proj.weight", [hidden, hidden]),
                   (p + "mlp.gate_proj.weight", [intermediate, hidden]), (p + "mlp.up_proj.weight", [intermediate, hidden]),
                   (p + "mlp.down_proj.weight", [hidden, intermediate])]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes:
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    os.makedirs(directory, exist_ok=True)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for name, shape in shapes:
            count = math.prod(shape)
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                f.write(array("f", [1.0]).tobytes() * count)
                continue
            whole, rest = divmod(count, len(block))
            f.write(block.tobytes() * whole + block[:rest].tobytes())
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": heads // 2, "head_dim": 64, "vocab_size": vocab,
              "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "hidden_act": "silu", "tie_word_embeddings": True, "torch_dtype": "float32"}
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    operations = {"header": edit_header, "poke": poke, "shard": shard, "synth": synth}
    if len(sys.argv) < 3 or sys.argv[1] not in operations:
        sys.exit(__doc__)
    operations[sys.argv[1]](*sys.argv[2:])
