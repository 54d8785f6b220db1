#!/usr/bin/env python3
"""An independent float64 forward pass of a LLaMA checkpoint in numpy (HF modeling_llama's
semantics: RMSNorm, rotate_half RoPE, GQA, SiLU MLP, tied lm_head), for checking a conversion
without PyTorch: prints the mean NLL of the first segment of a token file (first 512 tokens),
to compare with `rotq eval --model DIR --tokens FILE --segments 1`.
On SmolLM2-135M (scripts/fetch-smollm2.sh), WikiText-2's first article: nll 3.005695 here and
in rotq (ppl 20.2002, 511 tokens).
usage: llama_reference.py MODEL_DIR TOKENS.u16     (needs numpy; the cache's venv has it)
"""
d=sys.argv[1]
cfg=json.load(open(d+'/config.json'))
f=open(d+'/model.safetensors','rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); base=8+n
def W(name):
    e=h[name]; a,b=e['data_offsets']; f.seek(base+a); return np.frombuffer(f.read(b-a),dtype='<f4').reshape(e['shape']).astype(np.float64)
toks=np.fromfile(sys.argv[2],dtype='<u2')
starts=np.flatnonzero(toks==1); seg=toks[starts[0]:starts[1]][:512].astype(np.int64)
H=cfg['hidden_size']; nh=cfg['num_attention_heads']; kvh=cfg['num_key_value_heads']; hd=H//nh; eps=cfg['rms_norm_eps']; T=len(seg)
def rms(x,g): return x/np.sqrt((x*x).mean(-1,keepdims=True)+eps)*g
inv=1.0/(cfg['rope_theta']**(np.arange(0,hd,2)/hd)); ang=np.outer(np.arange(T),inv); emb=np.concatenate([ang,ang],-1); cos,sin=np.cos(emb),np.sin(emb)
def rope(x): x1,x2=x[...,:hd//2],x[...,hd//2:]; return x*cos+np.concatenate([-x2,x1],-1)*sin
E=W('model.embed_tokens.weight'); x=E[seg]
if not cfg.get('tie_word_embeddings', True): raise SystemExit('untied lm_head: not supported by this script')
mask=np.triu(np.full((T,T),-np.inf),1)
for l in range(cfg['num_hidden_layers']):
    p=f'model.layers.{l}.'
    a=rms(x,W(p+'input_layernorm.weight'))
    q=(a@W(p+'self_attn.q_proj.weight').T).reshape(T,nh,hd).transpose(1,0,2)
    k=(a@W(p+'self_attn.k_proj.weight').T).reshape(T,kvh,hd).transpose(1,0,2)
    v=(a@W(p+'self_attn.v_proj.weight').T).reshape(T,kvh,hd).transpose(1,0,2)
    q,k=rope(q),rope(k); k=np.repeat(k,nh//kvh,0); v=np.repeat(v,nh//kvh,0)
    s=q@k.transpose(0,2,1)/np.sqrt(hd)+mask; s=np.exp(s-s.max(-1,keepdims=True)); s/=s.sum(-1,keepdims=True)
    o=(s@v).transpose(1,0,2).reshape(T,H); x=x+o@W(p+'self_attn.o_proj.weight').T
    m=rms(x,W(p+'post_attention_layernorm.weight')); g=m@W(p+'mlp.gate_proj.weight').T; u=m@W(p+'mlp.up_proj.weight').T
    x=x+((g/(1+np.exp(-g)))*u)@W(p+'mlp.down_proj.weight').T
x=rms(x,W('model.norm.weight')); logits=x@E.T
lse=np.log(np.exp(logits-logits.max(-1,keepdims=True)).sum(-1))+logits.max(-1)
nll=(lse[:-1]-logits[np.arange(T-1),seg[1:]]).mean()
print('numpy float64 nll %.6f ppl %.4f tokens %d'%(nll,np.exp(nll),T-1))
