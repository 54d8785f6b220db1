"""The NLL of transformers (float64) on the first BOS-delimited segment (its first 512 tokens) of a
uint16 token file, for comparing with `rotq eval --segments 1`:
    .venv-test/bin/python scripts/hf_nll.py cache/smollm2/hf cache/smollm2/wiki.test.u16
"""
import sys, numpy as np, torch, transformers
d = sys.argv[1]; toks = np.fromfile(sys.argv[2], dtype='<u2')
starts = np.where(toks == 1)[0]
seg = toks[starts[0]:starts[1]][:512]
m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64); m.eval()
with torch.no_grad():
    ids = torch.tensor(seg, dtype=torch.long)[None]
    logits = m(input_ids=ids).logits[0]
    lp = torch.log_softmax(logits, -1)
    nll = -lp[:-1].gather(1, ids[0,1:,None]).mean().item()
print(f"transformers float64: nll {nll:.6f} ppl {np.exp(nll):.4f} tokens {len(seg)-1}")
