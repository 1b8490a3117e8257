"""PyTorch twins of oxgen's benchmark models, for `oxgen bench train|decode|ddim --peer`.

Each twin is the same network as oxgen's (shapes, initialisation scale, optimizer, batch,
loss), written the way a PyTorch user would write it (eager mode, no torch.compile), and timed
the same way: `--warmup` untimed steps, then `--iters` timed ones. It prints one JSON object.

    python3 benches/peers/twins.py train --model gpt-small --iters 20
    python3 benches/peers/twins.py train --model unet-digits --iters 20
    python3 benches/peers/twins.py decode --batch 16 --new-tokens 256
    python3 benches/peers/twins.py ddim --batch 100 --steps 50

The oxgen side of each model is in crates/oxgen-bench/src/train.rs (`Model::spec`); keep them in
step. Needs only `torch` (CPU wheels are enough); threads default to every core, as oxgen's.
"""
import argparse, json, math, os, resource, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# GPT: oxgen_models::ar::Gpt (nanoGPT layout): token + learned position embeddings (N(0, 0.02)),
# pre-LayerNorm blocks (eps 1e-5), qkv / proj / fc (4w) / out Linear with bias (PyTorch's and
# burn's default init: U(±1/√fan_in)), exact GELU, final LayerNorm, head tied to the embedding.

GPT = {
    "gpt-small": dict(vocab=65, context=128, layers=4, heads=4, width=128, batch=32, lr=1e-3,
                      weight_decay=0.1, clip=1.0),
    # nanoGPT's shakespeare_char shape (oxgen's GptConfig default): the decode benchmark's model.
    "gpt-char": dict(vocab=65, context=256, layers=6, heads=6, width=384, batch=64, lr=1e-3,
                     weight_decay=0.1, clip=1.0),
}


class Block(nn.Module):
    def __init__(self, w, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(w)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.ln2 = nn.LayerNorm(w)
        self.fc = nn.Linear(w, 4 * w)
        self.out = nn.Linear(4 * w, w)

    def forward(self, x, cache=None):
        b, t, w = x.shape
        d = w // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(w, dim=2)
        q, k, v = (z.view(b, t, self.heads, d).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            # A preallocated cache [b, h, context, d] and its length, as a PyTorch user's
            # static cache (transformers' StaticCache) keeps it.
            ck, cv, n = cache
            ck[:, :, n:n + t] = k
            cv[:, :, n:n + t] = v
            k, v = ck[:, :, :n + t], cv[:, :, :n + t]
        # Causal, bottom-right aligned (t new queries see every cached key).
        if t == 1:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, w))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Gpt(nn.Module):
    def __init__(self, vocab, context, layers, heads, width, **_):
        super().__init__()
        self.context = context
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(context, width)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)

    def forward(self, tokens, caches=None, start=0):
        b, t = tokens.shape
        pos = torch.arange(start, start + t)
        x = self.wte(tokens) + self.wpe(pos)[None]
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else (*caches[i], start))
        return self.ln_f(x) @ self.wte.weight.T


def gpt_train(spec, corpus_len=1_000_000):
    model = Gpt(**spec)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"],
                            eps=1e-5)  # burn's AdamW epsilon
    corpus = torch.randint(0, spec["vocab"], (corpus_len,))
    b, t = spec["batch"], spec["context"]

    def step():
        # A batch of random windows, built each step as oxgen does.
        starts = torch.randint(0, corpus_len - t - 1, (b,))
        seq = torch.stack([corpus[s:s + t + 1] for s in starts.tolist()])
        logits = model(seq[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), spec["clip"])
        opt.step()
        return loss

    return step, b * t, "tokens"


# ---------------------------------------------------------------------------------------------
# The digits UNet: oxgen_models::diffusion::unet::UNet at its defaults (channels 32, groups 8,
# 4 heads), 1 × 8 × 8 images, 10 classes + the null class, cosine schedule with T = 1000,
# ε-prediction MSE, label dropout 0.1, AdamW (lr 2e-3, wd 1e-4, eps 1e-8), clip 1, EMA 0.995,
# batch 64: oxgen's `train diffusion --data digits8` defaults.

def conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


class Res(nn.Module):
    def __init__(self, cin, cout, emb, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = conv(cin, cout, 3)
        self.cond = nn.Linear(emb, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = conv(cout, cout, 3)
        self.skip = conv(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.cond(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attn(nn.Module):
    def __init__(self, c, groups, heads):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x):
        b, c, h, w = x.shape
        l, nh, d = h * w, self.heads, c // self.heads
        t = self.norm(x).reshape(b, c, l).transpose(1, 2)
        q, k, v = self.qkv(t).reshape(b, l, 3, nh, d).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        o = self.proj(o.transpose(1, 2).reshape(b, l, c))
        return x + o.transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    def __init__(self, channels=32, groups=8, heads=4, in_ch=1, classes=10):
        super().__init__()
        c, g, emb = channels, groups, 4 * channels
        self.freq = max(emb, 32)
        self.time1, self.time2 = nn.Linear(self.freq, emb), nn.Linear(emb, emb)
        self.classes = nn.Embedding(classes + 1, emb)  # N(0, 1), as burn's
        self.conv_in = conv(in_ch, c, 3)
        self.res0 = Res(c, c, emb, g)
        self.down = conv(c, c, 3, 2)
        self.res1 = Res(c, 2 * c, emb, g)
        self.attn1 = Attn(2 * c, g, heads)
        self.mid1 = Res(2 * c, 2 * c, emb, g)
        self.mid_attn = Attn(2 * c, g, heads)
        self.mid2 = Res(2 * c, 2 * c, emb, g)
        self.up1 = Res(4 * c, 2 * c, emb, g)
        self.up_conv = conv(2 * c, 2 * c, 3)
        self.up0 = Res(3 * c, c, emb, g)
        self.norm_out = nn.GroupNorm(g, c)
        self.conv_out = conv(c, in_ch, 3)

    def forward(self, x, t, labels):
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half) / half)
        args = t[:, None] * freqs[None]
        e = torch.cat([args.sin(), args.cos()], 1)
        e = F.silu(self.time2(F.silu(self.time1(e))) + self.classes(labels))
        h0 = self.res0(self.conv_in(x), e)
        h1 = self.attn1(self.res1(self.down(h0), e))
        m = self.mid2(self.mid_attn(self.mid1(h1, e)), e)
        u = self.up1(torch.cat([m, h1], 1), e)
        u = self.up_conv(F.interpolate(u, scale_factor=2, mode="nearest"))
        u = self.up0(torch.cat([u, h0], 1), e)
        return self.conv_out(F.silu(self.norm_out(u)))


def cosine_alphas_cumprod(T=1000, s=0.008):
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    betas = [min(1 - f(t + 1) / f(t), 0.999) for t in range(T)]
    out, acc = [], 1.0
    for b in betas:
        acc *= 1 - b
        out.append(acc)
    return torch.tensor(out, dtype=torch.float32)


def unet_train(batch=64, rows=1437):
    model = UNet()
    ema = UNet()
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4, eps=1e-8)
    ab = cosine_alphas_cumprod()
    data = torch.rand(rows, 1, 8, 8) * 2 - 1
    labels = torch.randint(0, 10, (rows,))

    def step():
        idx = torch.randint(0, rows, (batch,))
        x0, y = data[idx], labels[idx]
        t = torch.randint(0, 1000, (batch,))
        eps = torch.randn_like(x0)
        a = ab[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        y = torch.where(torch.rand(batch) < 0.1, torch.full_like(y, 10), y)
        loss = F.mse_loss(model(xt, t.float(), y), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - 0.995)
        return loss

    return step, batch, "samples"


# ---------------------------------------------------------------------------------------------

def timed(step, warmup, iters):
    for _ in range(warmup):
        step()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def report(kind, model, seconds, cpu, iters, units, unit, extra=None):
    out = {
        "peer": f"pytorch {torch.__version__}",
        "kind": kind,
        "model": model,
        "threads": torch.get_num_threads(),
        "iters": iters,
        "ms_per_iter": 1e3 * seconds / iters,
        f"{unit}_per_s": units * iters / seconds,
        "cpu_per_wall": cpu / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    out.update(extra or {})
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["train", "decode", "ddim"])
    p.add_argument("--model", default="gpt-small")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    if a.what == "train":
        if a.model in GPT:
            step, units, unit = gpt_train(GPT[a.model])
        elif a.model == "unet-digits":
            step, units, unit = unet_train()
        else:
            sys.exit(f"unknown model {a.model}; expected {', '.join(GPT)} or unet-digits")
        seconds, cpu = timed(step, a.warmup, a.iters)
        report("train", a.model, seconds, cpu, a.iters, units, unit)
    elif a.what == "decode":
        spec = GPT[a.model if a.model in GPT else "gpt-char"]
        model = Gpt(**spec).eval()
        b, n, h = a.batch, a.new_tokens, spec["heads"]
        d = spec["width"] // h

        @torch.inference_mode()
        def decode():
            # Greedy from one prompt token, with a preallocated cache. Once the text outgrows the
            # window, the window jumps to keep the last ctx // 2 tokens, which are re-encoded into
            # the cache (learned positions), as oxgen's default decoding does
            # (`oxgen_models::ar::window_start`).
            ctx = spec["context"]
            keep = max(ctx // 2, 1)
            jump = ctx + 1 - keep
            caches = [(torch.empty(b, h, ctx, d), torch.empty(b, h, ctx, d)) for _ in model.blocks]
            text = torch.zeros(b, 1, dtype=torch.long)
            start, cached = 0, 0
            for _ in range(n):
                length = text.shape[1]
                s = 0 if length <= ctx else jump * ((length - ctx - 1) // jump + 1)
                if s > start:
                    start, cached = s, s
                logits = model(text[:, cached:], caches, cached - start)
                cached = length
                nxt = logits[:, -1].argmax(-1, keepdim=True)
                text = torch.cat([text, nxt], 1)
            return text

        seconds, cpu = timed(decode, 1, a.iters)
        report("decode", a.model if a.model in GPT else "gpt-char", seconds, cpu, a.iters, b * n,
               "tokens", {"batch": b, "new_tokens": n})
    else:
        model = UNet().eval()
        ab = cosine_alphas_cumprod()
        b = a.batch
        ts = [int(i * 1000 / a.steps) for i in range(a.steps)][::-1]

        @torch.inference_mode()
        def ddim():
            # DDIM (η = 0), classifier-free guidance 2.0 in one 2b batch, x̂₀ clipped to [−1, 1].
            x = torch.randn(b, 1, 8, 8)
            y = torch.cat([torch.arange(b) % 10, torch.full((b,), 10)])
            for i, t in enumerate(ts):
                out = model(torch.cat([x, x]), torch.full((2 * b,), float(t)), y)
                c, u = out[:b], out[b:]
                eps = u + 2.0 * (c - u)
                a_t = ab[t]
                a_prev = ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
                x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
                eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
                x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
            return x

        seconds, cpu = timed(ddim, 1, a.iters)
        report("ddim", "unet-digits", seconds, cpu, a.iters, b, "samples",
               {"batch": b, "steps": a.steps})


if __name__ == "__main__":
    main()
