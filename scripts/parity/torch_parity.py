"""Replays a `picoformer train --trace` run in PyTorch and compares the two, step by step.

The trace holds the run's starting weights (init.safetensors in the run directory) and, for every
step, the batch's token ids, the learning rate and picoformer's loss. This script builds the same
model from torch.nn.Transformer (pre- or post-LN, embeddings scaled by sqrt(d), sinusoidal positions),
loads the same starting weights, and trains it on the same batches with torch.optim.AdamW,
clip_grad_norm_ and CrossEntropyLoss(label_smoothing), at the same learning rates. With dropout 0
both trainers compute the same function, so their losses may differ only by float rounding.
It prints the loss of both at chosen steps, the largest relative difference over the first N steps,
and, with --dev, both trainers' dev exact match after every epoch. The last line is JSON.

    python3 scripts/parity/torch_parity.py --run DIR --trace FILE [--dev dev.tsv] [--loss-steps 200]

Needs torch and safetensors (pip install torch safetensors).
"""
import argparse, json, math, os, sys, time

import torch
import torch.nn as nn
from safetensors.torch import load_file

ap = argparse.ArgumentParser()
ap.add_argument('--run', required=True, help='checkpoint directory of the traced run (config.json, init.safetensors, log.csv)')
ap.add_argument('--trace', required=True, help='the file given to picoformer train --trace')
ap.add_argument('--dev', help='dev TSV: compare dev exact match after every epoch')
ap.add_argument('--loss-steps', type=int, default=200, help='compare losses over the first N steps')
ap.add_argument('--threads', type=int, default=os.cpu_count())
a = ap.parse_args()
torch.set_num_threads(a.threads)

cfg = json.load(open(os.path.join(a.run, 'config.json')))
m, h = cfg['model'], cfg['train']
D = m['d_model']
if h['dropout'] != 0:
    sys.exit('torch_parity: the traced run used dropout %g; replay needs --dropout 0 (dropout masks differ)' % h['dropout'])
in_vocab, out_vocab = cfg['input_vocab'], cfg['output_vocab']
PAD, START, END = 0, 1, 2


def positions(n, d):
    """picoformer's encoding: out[2i] = sin(pos * exp(-2i ln(10000) / d)), out[2i+1] = cos(..)."""
    pe = torch.zeros(n, d)
    pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(-torch.arange(0, d, 2, dtype=torch.float32) * math.log(10000.0) / d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


class Seq2Seq(nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.src_emb = nn.Embedding(len(in_vocab), D)
        self.tgt_emb = nn.Embedding(len(out_vocab), D)
        self.tf = nn.Transformer(D, m['heads'], m['encoder_layers'], m['decoder_layers'], m['d_ff'], 0.0,
                                 batch_first=True, norm_first=m['norm'] == 'pre', layer_norm_eps=m['layer_norm_eps'])
        self.out = nn.Linear(D, len(out_vocab))
        self.register_buffer('pe', positions(max(m['max_input_len'], m['max_output_len']) + 2, D))
        self.load(weights)

    def load(self, w):
        """Copies picoformer's tensors (PyTorch-style names, separate q/k/v) into nn.Transformer's."""
        sd = {'src_emb.weight': w['src_emb.weight'], 'tgt_emb.weight': w['tgt_emb.weight'],
              'out.bias': w['out_proj.bias']}
        tied = 'out_proj.weight' not in w
        if tied:
            self.out.weight = self.tgt_emb.weight
        else:
            sd['out.weight'] = w['out_proj.weight']
        for stack in ('encoder', 'decoder'):
            if stack + '.norm.weight' in w:
                sd[f'tf.{stack}.norm.weight'] = w[stack + '.norm.weight']
                sd[f'tf.{stack}.norm.bias'] = w[stack + '.norm.bias']
            else:  # post-LN: the paper's model has no final LayerNorm
                getattr(self.tf, stack).norm = nn.Identity()
        for name in w:
            parts = name.split('.')
            if parts[1] != 'layers':
                continue
            stack, l, sub = parts[0], parts[2], parts[3]
            prefix = f'tf.{stack}.layers.{l}.'
            if sub in ('self_attn', 'cross_attn'):
                torch_sub = 'self_attn' if sub == 'self_attn' else 'multihead_attn'
                base = f'{stack}.layers.{l}.{sub}.'
                for p in ('weight', 'bias'):
                    sd[prefix + f'{torch_sub}.in_proj_{p}'] = torch.cat([w[base + f'{q}_proj.{p}'] for q in 'qkv'])
                    sd[prefix + f'{torch_sub}.out_proj.{p}'] = w[base + f'out_proj.{p}']
            else:
                sd[prefix + '.'.join(parts[3:])] = w[name]
        missing, unexpected = self.load_state_dict(sd, strict=False)
        missing = [k for k in missing if k != 'pe' and not (tied and k == 'out.weight')]
        if missing or unexpected:
            sys.exit(f'torch_parity: weights do not match the model: missing {missing}, unexpected {unexpected}')

    def encode(self, x):
        return self.tf.encoder(self.src_emb(x) * math.sqrt(D) + self.pe[: x.size(1)], src_key_padding_mask=(x == PAD))

    def decode(self, mem, x, y):
        t = y.size(1)
        causal = torch.triu(torch.full((t, t), float('-inf')), 1)
        hid = self.tf.decoder(self.tgt_emb(y) * math.sqrt(D) + self.pe[:t], mem, tgt_mask=causal,
                              tgt_key_padding_mask=(y == PAD), memory_key_padding_mask=(x == PAD))
        return self.out(hid)


def batch(src, tgt):
    """The trainer's batch: inputs PAD-padded, decoder inputs [START, y..], targets [y.., END]."""
    n = len(src)
    x = torch.zeros(n, max(1, max(len(s) for s in src)), dtype=torch.long)
    yin = torch.zeros(n, max(len(t) for t in tgt) + 1, dtype=torch.long)
    yout = torch.zeros_like(yin)
    for r, (s, t) in enumerate(zip(src, tgt)):
        x[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        yin[r, : len(t) + 1] = torch.tensor([START] + t, dtype=torch.long)
        yout[r, : len(t) + 1] = torch.tensor(t + [END], dtype=torch.long)
    return x, yin, yout


def dev_set(path):
    """Distinct dev inputs with all their references, split as the run splits them."""
    refs = {}
    for line in open(path, encoding='utf-8'):
        line = line.rstrip('\n')
        if '\t' not in line:
            continue
        i, o = line.split('\t', 1)
        toks = o.split() if cfg['output_tokens'] == 'space' else list(o)
        refs.setdefault(i, []).append(toks)
    return refs


@torch.no_grad()
def exact_match(model, refs, bs=512):
    model.eval()
    ids = {c: k for k, c in enumerate(in_vocab)}
    words, right = list(refs), 0
    for k in range(0, len(words), bs):
        chunk = words[k : k + bs]
        x, _, _ = batch([[ids.get(c, PAD) for c in w] for w in chunk], [[] for _ in chunk])
        mem = model.encode(x)
        y = torch.full((len(chunk), 1), START)
        done = torch.zeros(len(chunk), dtype=torch.bool)
        for _ in range(m['max_output_len'] + 1):
            nxt = model.decode(mem, x, y)[:, -1].argmax(-1)
            nxt[done] = PAD
            y = torch.cat([y, nxt[:, None]], 1)
            done |= nxt == END
            if done.all():
                break
        for w, row in zip(chunk, y[:, 1:].tolist()):
            pred = []
            for t in row:
                if t in (END, PAD):
                    break
                pred.append(out_vocab[t])
            right += pred in refs[w]
    model.train()
    return right / max(1, len(words))


def picoformer_dev_em():
    """Dev exact match picoformer logged at each evaluation, by step."""
    out = {}
    path = os.path.join(a.run, 'log.csv')
    for row in list(open(path))[1:]:
        f = row.strip().split(',')
        if len(f) >= 6 and f[5]:
            out[int(f[0])] = float(f[5])
    return out


model = Seq2Seq(load_file(os.path.join(a.run, 'init.safetensors')))
opt = torch.optim.AdamW(model.parameters(), lr=h['lr'], betas=tuple(h['betas']), eps=h['adam_eps'],
                        weight_decay=h['weight_decay'])
loss_fn = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=h['label_smoothing'])
refs = dev_set(a.dev) if a.dev else None
pf_em = picoformer_dev_em() if a.dev else {}

rows, epochs, worst, t0 = [], [], (0.0, 0), time.time()
records = [json.loads(l) for l in open(a.trace)]
for k, r in enumerate(records):
    x, yin, yout = batch(r['src'], r['tgt'])
    for g in opt.param_groups:
        g['lr'] = r['lr']
    logits = model.decode(model.encode(x), x, yin)
    loss = loss_fn(logits.reshape(-1, logits.size(-1)), yout.reshape(-1))
    opt.zero_grad()
    loss.backward()
    if h['clip'] > 0:
        nn.utils.clip_grad_norm_(model.parameters(), h['clip'])
    opt.step()
    pt, pf = loss.item(), r['loss']
    rows.append((r['step'], pf, pt))
    if r['step'] <= a.loss_steps:
        rel = abs(pf - pt) / abs(pt)
        worst = max(worst, (rel, r['step']))
    last_of_epoch = k + 1 == len(records) or records[k + 1]['epoch'] != r['epoch']
    if refs is not None and last_of_epoch:
        em = exact_match(model, refs)
        epochs.append((r['epoch'], r['step'], pf_em.get(r['step']), em))
        print(f"epoch {r['epoch']:3} step {r['step']:6}  dev exact match: picoformer "
              f"{100 * pf_em.get(r['step'], float('nan')):6.2f}%  PyTorch {100 * em:6.2f}%", flush=True)

print(f"{'step':>6} {'picoformer':>11} {'PyTorch':>11} {'rel. diff':>10}")
for s, pf, pt in rows:
    if s in (1, 2, 5, 10, 20, 50, 100, 150, 200, 500, 1000) or s == rows[-1][0] or s == a.loss_steps:
        print(f'{s:6} {pf:11.6f} {pt:11.6f} {abs(pf - pt) / abs(pt):10.2e}')
n = min(a.loss_steps, len(rows))
pf_at, pt_at = rows[n - 1][1], rows[n - 1][2]
print(f'largest relative loss difference over the first {n} steps: {worst[0]:.2e} (step {worst[1]})')
res = {'steps_compared': n, 'picoformer_loss_at_step': pf_at, 'pytorch_loss_at_step': pt_at,
       'max_relative_loss_difference': worst[0], 'max_relative_loss_difference_step': worst[1],
       'epochs': [{'epoch': e, 'step': s, 'picoformer_dev_exact_match': p, 'pytorch_dev_exact_match': q}
                  for e, s, p, q in epochs],
       'replay_seconds': round(time.time() - t0, 1)}
print(json.dumps(res))
