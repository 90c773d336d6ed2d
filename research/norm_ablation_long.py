"""The normalization ablation where the mechanism should bite: long sequences, a high learning rate,
several seeds, and fp16's range.

`nbs/03_phi2_normalization.ipynb` shows the mechanism: without QK-LayerNorm an attention logit grows
like the square of the query/key scale and passes fp16's 65,504, and the attention output grows with
it; with the norms both stay bounded. The 40-step ablation (`norm_ablation.py`) found no divergence
on short samples. This one gives the claim its best chance: every sample is one long multi-turn
conversation about a scene (24 turns: about 450 tokens, near the tiny model's 512-token context),
the learning rate is `--lr-scale` times the tiny run's stage 4, and each variant runs with several
seeds (the seed sets the questions, the data order and dropout; the fresh projection's
initialisation is seeded by the loader and the same in every run).

Every step records the loss, the gradient norm, the largest attention logit |q·k|/√d of the forward
pass and the largest |hidden state| leaving a decoder layer. fp16 training is too slow on a CPU for
runs this long (3 fp16 steps of the full-size batch took 7 minutes), so training runs in fp32 and
fp16's failure is measured where it happens: every `--probe-every` steps and at the end, the model
with its frozen weights in fp16 runs one forward under fp16 autocast on a fixed batch of
training conversations, and its loss is recorded (`inf`/`nan`: the fp16 forward fails). In this
eager attention path an fp16 forward overflows when the *unscaled* product |q·k| passes 65,504, that
is when the logit passes 65,504/√80 ≈ 7,323 (head size 80).

To fit twelve runs (4 variants x 3 seeds) into about half an hour of a 2-core CPU the run is smaller
than the tiny preset's stage 4 in batch (`--batch`, 2 conversations instead of 32 samples) and steps
(`--steps`), never in sequence length or width (the shipped tiny backbones are used as they are).

    python research/norm_ablation_long.py [--variants all_three,no_qk,no_post,none] [--seeds 0,1,2]
        [--steps 32] [--batch 2] [--lr-scale 20] [--turns 24] [--probe-every 8]

One JSON per variant (its seeds' runs, rewritten after each run) in
research/results/norm_ablation_long/; `research/README.md`'s table and `nbs/23_norm_ablation.ipynb`'s
figure are made from them.
"""
from __future__ import annotations
import argparse, json, math, random, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AttentionInterface
from transformers.models.phi.modeling_phi import eager_attention_forward

from tinygptv.datasets import Sample
from tinygptv.mixtures import MixtureEntry, collate
from tinygptv.model import TinyGPTVConfig
from tinygptv.synthetic import SPLIT_SEEDS, draw_scene, make_scene, vqa_pairs
from tinygptv.tiny_backbones import load_tiny_start
from tinygptv.train import StageTrainConfig, TrainingDiverged, train_stage

from tiny_phi import RESULTS, git_commit

OUT = RESULTS / "norm_ablation_long"
FP16_MAX = 65504.0
VARIANTS = {  # name: (label, QK-LayerNorm, post-attention RMSNorm)
    "all_three": ("TinyGPT-V (QK-LayerNorm + post RMSNorm)", True, True),
    "no_qk": ("no QK-LayerNorm", False, True),
    "no_post": ("no post-attention RMSNorm", True, False),
    "none": ("none (stock Phi + LoRA)", False, False),
}
SEEN = {"logit": [], "hidden": []}          # what the forward in progress recorded


def probe_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kw):
    "Phi's eager attention, recording the largest |q·k|·scaling of the call (computed in fp32)."
    s = (query.float() @ key.float().transpose(-2, -1) * scaling).abs().amax().item()
    SEEN["logit"].append(s)
    return eager_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                   dropout=dropout, **kw)


AttentionInterface.register("probe", probe_attention)


def probe_hidden(module, inputs, out):
    "Record the largest |hidden state| a decoder layer hands on."
    h = out[0] if isinstance(out, tuple) else out
    SEEN["hidden"].append(h.detach().float().abs().amax().item())


class LongConversations(torch.utils.data.Dataset):
    "Samples of one scene each: `turns` [vqa] questions and answers in one conversation."
    name = "long_conversations"

    def __init__(self, n: int = 400, turns: int = 24, seed: int = 0):
        self.n, self.turns, self.seed, self.epoch = n, turns, seed, 0

    def __len__(self): return self.n
    def set_epoch(self, e): self.epoch = e

    def __getitem__(self, i):
        rng = random.Random(f"long-{self.seed}-{self.epoch}-{i}")
        sc = make_scene(SPLIT_SEEDS["train"] + i)
        pairs = [rng.choice(vqa_pairs(sc, rng)) for _ in range(self.turns)]
        turns = [("[vqa] " + q, a) for q, a in pairs]
        return Sample("long_conversations", f"long-{i}", turns, draw_scene(sc),
                      {"image_key": f"long-{i}"})


def probe_batch(model, turns: int, n: int = 2) -> dict:
    "A fixed batch of `n` training conversations (the same in every run), collated for stage 4."
    ds = LongConversations(turns=turns, seed=12345)
    return collate([ds[i] for i in range(n)], 4, model.tokenizer, model.image_size,
                   max_len=model.cfg.max_len, max_txt_len=480)


def fp16_forward(model, batch, fwd=None) -> dict:
    """`model` with its frozen weights in fp16, one forward under fp16 autocast: its loss
    (`inf`/`nan` when fp16 overflows) and the largest logit it saw (`fwd`: the forward to call,
    `model`'s own by default). The fp32 weights are restored
    afterwards, bit for bit, so probing does not change the training run."""
    keep = {n: t.data.clone() for n, t in [*model.named_parameters(), *model.named_buffers()]}
    was_training, t0 = model.training, time.time()
    model.cast_frozen(torch.float16).eval()
    SEEN["logit"].clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        loss = (fwd or model)(batch["input_ids"], batch["attention_mask"], labels=batch["labels"],
                     pixel_values=batch["pixel_values"]).loss
    for n, t in [*model.named_parameters(), *model.named_buffers()]: t.data = keep[n]
    model.cfg.frozen_dtype = "float32"
    model.train(was_training)
    return {"fp16_loss": float(loss), "max_logit": max(SEEN["logit"], default=float("nan")),
            "seconds": round(time.time() - t0, 1)}


def build(variant: str, seed: int, steps: int, batch: int, lr_scale: float):
    "The tiny start with `variant`'s norms, probed, and its stage-4 training config."
    _, qk, post = VARIANTS[variant]
    cfg = TinyGPTVConfig.from_preset("tiny")
    cfg.llm = replace(cfg.llm, qk_layernorm=qk, post_layernorm=post)
    model = load_tiny_start(cfg=cfg)
    model.llm.config._attn_implementation = "probe"
    for layer in model.llm.model.layers: layer.register_forward_hook(probe_hidden)
    t = StageTrainConfig.tiny(4)
    t = replace(t, mixture=[MixtureEntry("long_conversations", 1, batch)], batch_size=batch,
                max_txt_len=480, seed=seed, iters_per_epoch=steps,
                warmup_steps=max(1, steps // 10), init_lr=t.init_lr * lr_scale,
                min_lr=t.min_lr * lr_scale, save_every=10**9, log_every=10)
    return model, t


def run(variant: str, seed: int, steps: int, batch: int, lr_scale: float, turns: int,
        probe_every: int) -> dict:
    "One training run: per-step loss, gradient norm, largest logit and hidden state; fp16 probes."
    model, t = build(variant, seed, steps, batch, lr_scale)
    logit, hidden, probes, count, fixed = [], [], [], [0], {}
    orig = model.forward

    def forward(*a, **k):       # every training forward: its largest logit and hidden state
        if not fixed: fixed.update(probe_batch(model, turns))     # at the stage's image size
        if count[0] % probe_every == 0:
            probes.append({"step": count[0], **fp16_forward(model, fixed, orig)})
        SEEN["logit"].clear(); SEEN["hidden"].clear()
        out = orig(*a, **k)
        logit.append(max(SEEN["logit"], default=float("nan")))
        hidden.append(max(SEEN["hidden"], default=float("nan")))
        count[0] += 1
        return out
    model.forward = forward
    t0 = time.time()
    try:
        h = train_stage(model, t, {"long_conversations": LongConversations(turns=turns, seed=seed)},
                        Path(tempfile.mkdtemp()), progress=False)["history"]
        diverged = None
    except TrainingDiverged as e:
        h, diverged = [], f"{e} (forward {count[0]})"
    model.forward = orig
    probes.append({"step": count[0], **fp16_forward(model, fixed)})
    r4 = lambda xs, d=4: [round(x, d) if math.isfinite(x) else str(x) for x in xs]
    return {"seed": seed, "diverged": diverged, "minutes": round((time.time() - t0) / 60, 2),
            "tokens": fixed["attention_mask"].sum(1).tolist(),
            "loss": r4([x["loss"] for x in h]), "grad_norm": r4([x["grad_norm"] for x in h], 3),
            "max_logit": r4(logit[:steps], 2), "max_hidden": r4(hidden[:steps], 2),
            "fp16_probes": [{k: (round(v, 4) if math.isfinite(v) else str(v))
                             for k, v in p.items()} for p in probes]}


def summarise(rec: dict) -> dict:
    "The table's fields over a variant's seeds: [min, max] ranges, counts."
    runs = rec["runs"]
    fin = lambda xs: [x for x in xs if isinstance(x, (int, float))]
    rng = lambda xs, d: [round(min(xs), d), round(max(xs), d)] if xs else None
    last = [sum(fin(r["loss"])[-10:]) / max(1, len(fin(r["loss"])[-10:])) for r in runs]
    f16 = [p["fp16_loss"] for r in runs for p in r["fp16_probes"]]
    return {"seeds": [r["seed"] for r in runs],
            "loss_last10": rng(last, 3),
            **{k: rng([max(fin(r[f])) for r in runs if fin(r[f])], 1) for k, f in
               (("max_logit", "max_logit"), ("max_hidden", "max_hidden"),
                ("max_grad_norm", "grad_norm"))},
            "diverged_runs": f"{sum(bool(r['diverged']) for r in runs)} of {len(runs)}",
            "fp16_failed": f"{sum(not isinstance(x, (int, float)) for x in f16)} of {len(f16)}"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--batch", type=int, default=2, help="conversations per step")
    p.add_argument("--lr-scale", type=float, default=20.0)
    p.add_argument("--turns", type=int, default=24)
    p.add_argument("--probe-every", type=int, default=8, help="steps between fp16 forwards")
    p.add_argument("--out", default=str(OUT))
    a = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cmd = ("python research/norm_ablation_long.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k != "out"))
    for v in a.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    runs = {v: [] for v in a.variants.split(",")}
    for s in map(int, a.seeds.split(",")):      # every variant's seed 0 first, then seed 1, ...
        for v in runs:
            runs[v].append(run(v, s, a.steps, a.batch, a.lr_scale, a.turns, a.probe_every))
            rec = {"row": v, "what": VARIANTS[v][0], "command": cmd, "source": "measured",
                   "date": time.strftime("%Y-%m-%d"), "commit": git_commit(),
                   "provenance": f"measured by `{cmd}` at commit {git_commit()} on a 2-core CPU "
                   "shared with other work (nice 5): tiny stage 4 from the stage-1 start, trained "
                   f"in fp32, {a.turns}-turn conversations, batch {a.batch}, {a.steps} steps, "
                   f"{a.lr_scale:g}x the tiny learning rate; fp16 forwards every "
                   f"{a.probe_every} steps and at the end",
                   "steps": a.steps, "batch": a.batch, "lr_scale": a.lr_scale, "turns": a.turns,
                   "fp16_max": FP16_MAX, "runs": runs[v]}
            rec.update(summarise(rec))
            (out / f"{v}.json").write_text(json.dumps(rec) + "\n")
            r = runs[v][-1]
            print(v, s, f"{r['minutes']} min, diverged {bool(r['diverged'])}, last loss",
                  r["loss"][-1:], "max logit", max(x for x in r["max_logit"] if x == x),
                  "fp16 losses", [q["fp16_loss"] for q in r["fp16_probes"]], flush=True)

if __name__ == "__main__":
    sys.exit(main())
