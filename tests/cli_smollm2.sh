#!/usr/bin/env bash
# Opt-in (ROTQ_SMOLLM2=1, after scripts/fetch-smollm2.sh; skipped otherwise, exit 77): the real
# SmolLM2-135M-Instruct from cache/smollm2/. Its GGUF converts again to the same checkpoint, the
# converted model answers a chat prompt with the expected tokens, and rotation keeps its function:
# R1R2 (and R1R2 + online) logits equal the original's to 1e-6 relative, perplexity unchanged.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_smollm2

CACHE=${ROTQ_CACHE:-$ROOT/cache}/smollm2
if [ "${ROTQ_SMOLLM2:-0}" != 1 ] || [ ! -f "$CACHE/hf/model.safetensors" ] || [ ! -f "$CACHE/wiki.test.u16" ]; then
  echo "SKIP: set ROTQ_SMOLLM2=1 after scripts/fetch-smollm2.sh (cache: $CACHE)"
  exit 77
fi
HF=$CACHE/hf
WIKI=$CACHE/wiki.test.u16

expect 0 'converted' -- "$ROTQ" convert --gguf "$CACHE/SmolLM2-135M-Instruct.Q4_1.gguf" --output "$SCRATCH/hf"
cmp -s "$HF/model.safetensors" "$SCRATCH/hf/model.safetensors" || fail "a second conversion differs from the cache"
expect 0 'hidden_size +576' -- "$ROTQ" info --model "$HF"
grep -Eq 'layers +30' <<<"$OUTPUT" && grep -Eq 'kv_heads +3' <<<"$OUTPUT" && grep -Eq 'tie_word_embeddings +true' <<<"$OUTPUT" ||
  fail "unexpected shape: $OUTPUT"

# "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n" →
# "The capital of France is Paris.<|im_end|>"
PROMPT=1,4093,198,1780,314,260,3575,282,4649,47,2,198,1,520,9531,198
expect 0 "^${PROMPT//,/ } 504 3575 282 4649 314 7042 30 2\$" -- "$ROTQ" generate --model "$HF" --prompt-tokens "$PROMPT" --max-new 12

expect 0 'verify: max .* argmax 16/16' -- "$ROTQ" rotate --model "$HF" --output "$SCRATCH/r1r2" --seed 0 --verify
expect 0 'argmax agree' -- "$ROTQ" compare --a "$HF" --b "$SCRATCH/r1r2" --tokens "$WIKI" --n 128 --tolerance 1e-6
expect 0 'ppl' -- "$ROTQ" eval --model "$HF" --tokens "$WIKI" --segments 2
PPL=$(grep -Eo 'ppl [0-9.]+' <<<"$OUTPUT")
expect 0 "$PPL" -- "$ROTQ" eval --model "$SCRATCH/r1r2" --tokens "$WIKI" --segments 2
expect 0 'verify: max .* argmax 16/16' -- "$ROTQ" rotate --model "$HF" --output "$SCRATCH/online" --seed 0 --online --verify
expect 0 "$PPL" -- "$ROTQ" eval --model "$SCRATCH/online" --tokens "$WIKI" --segments 2
finish
