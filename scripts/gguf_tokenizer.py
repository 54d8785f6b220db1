#!/usr/bin/env python3
"""Builds a HF tokenizer (tokenizer.json, tokenizer_config.json, special_tokens_map.json) from
the vocabulary stored in a GGUF file (tokenizer.ggml.model "gpt2": byte-level BPE), and
tokenizes text files into uint16 token files for rotq eval/report.

usage: gguf_tokenizer.py build GGUF OUT_DIR
       gguf_tokenizer.py encode TOKENIZER_DIR --format wikitext|stories IN.txt OUT.u16
       gguf_tokenizer.py retokenize TOKENIZER_DIR TOK512_BIN IN.u16 OUT.u16
       gguf_tokenizer.py decode TOKENIZER_DIR ID...

Needs the `gguf` and `tokenizers` packages (scripts/fetch-smollm2.sh installs them in a venv).
The pre-tokenizer follows llama.cpp's: "smollm" splits every digit, then GPT-2's regex;
"gpt2"/"default" only GPT-2's regex. Any other tokenizer.ggml.pre is refused.

Token files: little-endian uint16 ids, each segment starting with BOS, as rotq eval reads them.
  wikitext: the file is split at its " = Title = " article headings; each article is a segment.
  stories:  segments are separated by blank lines (paragraphs, not stories: TinyStories' text
            file has no story boundaries).
  retokenize: the segments of a token file of another (llama2.c) vocabulary, decoded with its
            tok512.bin and encoded anew: the same stories, one segment each (the tokens of
            data/tinystories_val.tok512.u16 → the same 984 stories in SmolLM2's tokens).
"""
import json
import os
import re
import sys

import numpy as np


def build(gguf_path, out_dir):
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    r = gguf.GGUFReader(gguf_path)

    def field(name):
        f = r.fields.get(name)
        return None if f is None else f.contents()

    model = field("tokenizer.ggml.model")
    if model != "gpt2":
        sys.exit(f"{gguf_path}: tokenizer.ggml.model is {model!r}; only 'gpt2' (byte-level BPE) is supported")
    pre = field("tokenizer.ggml.pre") or "default"
    if pre not in ("smollm", "gpt2", "default"):
        sys.exit(f"{gguf_path}: tokenizer.ggml.pre {pre!r} is not supported (smollm, gpt2, default)")
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in field("tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        sys.exit(f"{gguf_path}: tokenizer.ggml.tokens has duplicates")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    # token_type 3 = control (special) tokens: matched whole, never split.
    from tokenizers import AddedToken

    special = [tokens[i] for i, t in enumerate(types) if t == 3]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special])
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))

    def token(key):
        i = field(key)
        return None if i is None else tokens[int(i)]

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "pad_token": token("tokenizer.ggml.padding_token_id"),
        "add_bos_token": bool(field("tokenizer.ggml.add_bos_token")),
        "model_max_length": 8192,
        "clean_up_tokenization_spaces": False,
    }
    template = field("tokenizer.chat_template")
    if template:
        config["chat_template"] = template
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump({k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if config[k]}, f, indent=2)
    print(f"tokenizer: {len(tokens)} tokens, {len(merges)} merges, pre-tokenizer {pre}, {len(special)} special")


def load(tok_dir):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    with open(os.path.join(tok_dir, "tokenizer_config.json")) as f:
        config = json.load(f)
    return tok, tok.token_to_id(config["bos_token"])


def segments(text, fmt):
    if fmt == "stories":
        for s in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
            s = s.strip()
            if s:
                yield s
        return
    # WikiText: top-level headings " = Title = " start an article (not " = = Section = = ").
    lines = text.replace("\r\n", "\n").split("\n")
    article = []
    for line in lines:
        if re.match(r"^ = [^=].* = $", line) and article:
            yield "\n".join(article)
            article = []
        article.append(line)
    if article:
        yield "\n".join(article)


def encode(tok_dir, fmt, src, dst):
    tok, bos = load(tok_dir)
    with open(src, encoding="utf-8") as f:
        text = f.read()
    ids = []
    count = 0
    for seg in segments(text, fmt):
        ids.append(bos)
        ids.extend(tok.encode(seg, add_special_tokens=False).ids)
        count += 1
    a = np.asarray(ids, dtype="<u2")
    if a.max() >= 65536:
        sys.exit("token id does not fit uint16")
    a.tofile(dst)
    print(f"{dst}: {count} segments, {len(a)} tokens")


def llama2c_vocab(path):
    """llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32
    length, bytes (pieces with spaces, byte tokens as <0xHH>)."""
    import struct

    pieces = []
    with open(path, "rb") as f:
        f.read(4)
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            _, n = struct.unpack("<fi", head)
            piece = f.read(n)
            m = re.fullmatch(rb"<0x([0-9A-Fa-f]{2})>", piece)
            pieces.append(bytes([int(m.group(1), 16)]) if m else piece)
    return pieces


def retokenize(tok_dir, vocab_bin, src, dst):
    tok, bos = load(tok_dir)
    pieces = llama2c_vocab(vocab_bin)
    old = np.fromfile(src, dtype="<u2")
    starts = list(np.flatnonzero(old == 1)) + [len(old)]
    ids = []
    for a, b in zip(starts[:-1], starts[1:]):
        text = b"".join(pieces[t] for t in old[a + 1 : b] if t > 2).decode("utf-8", errors="replace")
        if text.startswith(" "):
            text = text[1:]  # SentencePiece's dummy prefix
        ids.append(bos)
        ids.extend(tok.encode(text, add_special_tokens=False).ids)
    a = np.asarray(ids, dtype="<u2")
    a.tofile(dst)
    print(f"{dst}: {len(starts) - 1} segments, {len(a)} tokens")


def decode(tok_dir, ids):
    tok, _ = load(tok_dir)
    print(tok.decode([int(i) for i in ids], skip_special_tokens=False))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 7 and sys.argv[1] == "encode" and sys.argv[3] == "--format":
        encode(sys.argv[2], sys.argv[4], sys.argv[5], sys.argv[6])
    elif len(sys.argv) == 6 and sys.argv[1] == "retokenize":
        retokenize(*sys.argv[2:])
    elif len(sys.argv) >= 3 and sys.argv[1] == "decode":
        decode(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
