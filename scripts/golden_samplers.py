"""Golden numbers for the sampler tests in crates/oxgen-models/src/samplers.

Written independently of the Rust code, following the papers' formulas as diffusers writes them
(pred_original_sample first, then the scheduler's update). Plain f64 Python, no dependencies.
Run: python3 scripts/golden_samplers.py
"""
import math

T = 1000
betas = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]
ab = []
p = 1.0
for b in betas:
    p *= 1 - b
    ab.append(p)

X = [0.5, -1.0, 1.5, 0.25]
OUT = [0.1, -0.3, 0.8, -0.5]
Z = [0.3, -0.7, 1.1, 0.05]


def trailing(n):
    return [max(round(T - i * T / n) - 1, 0) for i in range(n)]


def x0_of(x, o, a, pred):
    if pred == "eps":
        return (x - math.sqrt(1 - a) * o) / math.sqrt(a)
    return math.sqrt(a) * x - math.sqrt(1 - a) * o  # v


def nxt(ts, t):
    i = ts.index(t)
    return ts[i + 1] if i + 1 < len(ts) else None


def abar(t):
    return 1.0 if t is None else ab[t]


def ddpm(t, ts, pred):
    a, ap = ab[t], abar(nxt(ts, t))
    beta = 1 - a / ap
    out = []
    for x, o, z in zip(X, OUT, Z):
        x0 = x0_of(x, o, a, pred)
        mean = (math.sqrt(ap) * beta / (1 - a)) * x0 + (math.sqrt(1 - beta) * (1 - ap) / (1 - a)) * x
        var = (1 - ap) / (1 - a) * beta
        out.append(mean + math.sqrt(var) * z)
    return out


def ddim(t, ts, pred, eta):
    a, ap = ab[t], abar(nxt(ts, t))
    var = (1 - ap) / (1 - a) * (1 - a / ap)
    std = eta * math.sqrt(var)
    out = []
    for x, o, z in zip(X, OUT, Z):
        x0 = x0_of(x, o, a, pred)
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        direction = math.sqrt(1 - ap - std**2) * eps
        out.append(math.sqrt(ap) * x0 + direction + std * z)
    return out


def euler_a(t, ts):
    a, an = ab[t], abar(nxt(ts, t))
    s, sn = math.sqrt((1 - a) / a), math.sqrt((1 - an) / an)
    up = min(sn, math.sqrt(sn**2 * (s**2 - sn**2) / s**2))
    down = math.sqrt(sn**2 - up**2)
    out = []
    for x, o, z in zip(X, OUT, Z):
        xk = x / math.sqrt(a)  # k-diffusion space
        x0 = x0_of(x, o, a, "eps")
        d = (xk - x0) / s
        xk = xk + d * (down - s) + up * z
        out.append(xk * math.sqrt(an))
    return out


def lam(a):
    return math.log(math.sqrt(a) / math.sqrt(1 - a))


def dpmpp2m(ts):
    t0, t1, t2 = ts[0], ts[1], ts[2]
    a0, a1, a2 = ab[t0], ab[t1], ab[t2]
    h0 = lam(a1) - lam(a0)
    x0s = [x0_of(x, o, a0, "eps") for x, o in zip(X, OUT)]
    x1 = [math.sqrt(1 - a1) / math.sqrt(1 - a0) * x - math.sqrt(a1) * (math.exp(-h0) - 1) * d for x, d in zip(X, x0s)]
    h1 = lam(a2) - lam(a1)
    r = h0 / h1
    x0b = [x0_of(x, o, a1, "eps") for x, o in zip(x1, Z)]
    D = [(1 + 1 / (2 * r)) * c - (1 / (2 * r)) * p for c, p in zip(x0b, x0s)]
    x2 = [math.sqrt(1 - a2) / math.sqrt(1 - a1) * x - math.sqrt(a2) * (math.exp(-h1) - 1) * d for x, d in zip(x1, D)]
    return x1, x2


def show(name, v):
    print(f"    const {name}: [f64; 4] = [{', '.join(repr(round(x, 12)) for x in v)}];")


show("GOLDEN_EPS_T500", ddpm(500, list(range(T - 1, -1, -1)), "eps"))
show("GOLDEN_V_T999_N10", ddpm(999, trailing(10), "v"))
show("GOLDEN_ETA0_T599_N50", ddim(599, trailing(50), "eps", 0.0))
show("GOLDEN_ETA1_V_T599_N50", ddim(599, trailing(50), "v", 1.0))
show("GOLDEN_T749_N20", euler_a(749, trailing(20)))
x1, x2 = dpmpp2m(trailing(10))
show("GOLDEN_STEP1_N10", x1)
show("GOLDEN_STEP2_N10", x2)
print("trailing(50) has 599:", 599 in trailing(50), "trailing(20) has 749:", 749 in trailing(20))
