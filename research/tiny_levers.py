"""What limits the tiny run's stage-4 accuracy? Each lever tried against the main job's [vqa] / [refer].

The levers were measured with the text-only tiny Phi shipped before (base run 71 % / 48 % on the current ViT and
Q-Former; the table in research/README.md). The tiny Phi shipped now is `object_lm_vqa`'s, continued by two
restarts (backbones.pretrain_tiny_lm), and gives the base run 92-93 % / 57-60 %. Variants that keep the shipped
Phi now start from it; `heads4` and `context_lm` pretrain a text-only Phi, and the `object_lm` variants the first
round of the shipped one's pretraining (or a variation of it), from scratch.

Every variant trains stage 4 of the tiny preset (the recipe's steps, batch 32, per-sample mixture) and scores 100 held-out
questions per task with `evaluate_synthetic`. Variants that change stages 1-3 too (`lora_mlp`, `heads4`,
`proj_gelu`) run the whole recipe; the others start from a stage-3 model (`--stage3`, by default the main job's
`runs/tiny/stage3/model`, so run `tinygptv train --preset tiny --out runs/tiny` first).

    python research/tiny_levers.py --variants lora_mlp,sample_loss --out bench_runs/levers

Variants (none is part of the recipe; the ones marked "patch" change a function for this process only):
  base         the recipe's stage 4 again (seeded: the main job's numbers)
  lora_mlp     LoRA on fc1 and fc2 as well as q, k, v, dense (config: LoraSettings.target_modules), stages 1-4
  heads4       a tiny Phi with 4 heads instead of 2, pretrained again as a text LM (3 min), stages 1-4
  proj_gelu    a GELU between llama_proj and llama_proj2 (patch: upstream has none), stages 1-4
  sample_loss  each sample's answer tokens averaged, then the samples (patch: token_loss); by default a mixed
               batch's loss is the mean over answer tokens, so long answers (grounding: 40 tokens) outweigh
               [vqa]'s 2 tokens: [vqa] gets 6.5 % of the gradient for 30 % of the samples
  vqa_only     stage 4 on [vqa] alone, 300 steps: the ceiling of the read-out when nothing competes
  steps3x      stage 4 with an 1800-step schedule
  unfreeze     the whole tiny Phi trains in stage 4 at lr 1e-3 (patch: not the paper's frozen backbone)
  context_lm   the tiny Phi pretrained again (1500 steps, 13 min) with 90 % of its samples reading the scene written
               as text where the image goes ("a red diamond {<42><62><70><90>}, ... on a gray background"), loss on
               the answers only (patch: backbones._lm_batch), so that, like Phi-2, it can answer from its context;
               then stages 1-4
  object_lm    the tiny Phi pretrained again (1500 steps, 12 min) together with a small encoder that turns each
               object's colour, shape and box into ONE vector, written where the image goes (object k at image
               position k, the background and count at position 3, as the Q-Former's slots), loss on every text
               token; the encoder is thrown away. Reports the text model's held-out [vqa]/[refer] given the true
               object vectors (oracle_vqa, oracle_refer: the ceiling of the frozen Phi), then stages 1-4
  object_lm_vqa  the same, 3000 steps (30 min), 80 % of the samples stage 4 with [vqa] and [refer] weighted up
  object_lm_ans  the same as object_lm_vqa at 1500 steps, loss on the answers only

About 7-12 minutes per variant on 2 cores (context_lm: 21). A benchmark, not a test: `--scale 0.02` checks the mechanics in a minute.
"""
import argparse, json, random, shutil, time
from dataclasses import replace
from pathlib import Path

import torch, torch.nn.functional as F

import tinygptv.backbones as B
import tinygptv.recipe as R
import tinygptv.stages as S
import tinygptv.train as T
from tinygptv.backbones import (OBJECT_KINDS, ObjectVectors, object_features, object_lm_accuracy, pretrain_tiny_lm, tiny_backbones_dir,
                                train_object_lm)
from tinygptv.benchmarks import evaluate_synthetic
from tinygptv.model import IGNORE_INDEX, TinyGPTV, TinyGPTVConfig
from tinygptv.phi import TinyGPTVPhiForCausalLM
from tinygptv.prompts import render
from tinygptv.synthetic import SPLIT_SEEDS, STAGE_KINDS, make_sample, make_scene, tiny_tokenizer
from tinygptv.weights import save_upstream

OBJECT_LM = {"object_lm": (1500, False, None), "object_lm_vqa": (3000, False, OBJECT_KINDS), "object_lm_ans": (1500, True, OBJECT_KINDS)}
WHOLE = {"lora_mlp", "heads4", "proj_gelu", "context_lm", *OBJECT_LM}
VARIANTS = ("base", "lora_mlp", "heads4", "proj_gelu", "sample_loss", "vqa_only", "steps3x", "unfreeze", "context_lm", *OBJECT_LM)
CONTEXT_KINDS = ["vqa", "vqa", "refer", "refer", "identify", "grounding", "detection", "caption_task", "conversation"]


def scene_text(sc) -> str:
    "A scene written as text: each object's name and grid box, then the background."
    return ", ".join(f"a {o.name} {sc.grid_box(o)}" for o in sc.objects) + f" on a {sc.background} background"


def context_lm_batch(tok, rng, n=32, max_tokens=120, p=0.9):
    "`backbones._lm_batch`, but a fraction `p` of the samples are stage-4 samples with the scene as text, loss on answers."
    seqs = []
    for _ in range(n):
        if rng.random() < p:
            s = make_sample(rng.choice(CONTEXT_KINDS), rng.randrange(10**6), rng)
            ids, lab = [tok.eos_token_id], [IGNORE_INDEX]
            for text, is_answer in render(4, s.turns, image=True):
                x = tok(text.replace("<ImageHere>", scene_text(s.meta["scene"])), add_special_tokens=False).input_ids
                ids += x; lab += x if is_answer else [IGNORE_INDEX] * len(x)
            seqs.append((ids[:200], lab[:200]))
        else:
            st = rng.choice([1, 3, 4, 4, 4, 4]); s = make_sample(rng.choice(STAGE_KINDS[st]), rng.randrange(10**6), rng)
            text = "".join(t for t, _ in render(st, s.turns, image=False)).replace("<ImageHere>", "")
            q = [tok.eos_token_id] + tok(text, add_special_tokens=False).input_ids[:max_tokens]; seqs.append((q, q))
    T_ = max(len(q) for q, _ in seqs)
    ids, lab = torch.zeros(n, T_, dtype=torch.long), torch.full((n, T_), IGNORE_INDEX)
    for i, (q, l) in enumerate(seqs): ids[i, :len(q)], lab[i, :len(q)] = torch.tensor(q), torch.tensor(l)
    return ids, lab


def text_context_accuracy(lm, kind: str, n: int = 100) -> float:
    "Exact-match answers of the text model `lm` on held-out `kind` samples whose scene is written as text."
    tok, rng, hits = tiny_tokenizer(), random.Random(5), 0
    for i in range(n):
        s = make_sample(kind, SPLIT_SEEDS["test"] + i, rng)
        prompt = render(4, s.turns, image=True)[0][0].replace("<ImageHere>", scene_text(s.meta["scene"]))
        ids = torch.tensor([[tok.eos_token_id] + tok(prompt, add_special_tokens=False).input_ids])
        with torch.no_grad(): out = lm.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
        hits += tok.decode(out[0, ids.shape[1]:]).split("###")[0].strip() == s.turns[0][1]
    return hits / n


def pretrain_object_lm(cfg, steps: int, answers_only: bool = False, kinds: dict | None = None, lr: float = 2e-3, seed: int = 0):
    "A stock tiny Phi and an ObjectVectors encoder trained together, as the shipped tiny Phi's first phase (`kinds`: its mixture)."
    torch.manual_seed(seed)
    lm = TinyGPTVPhiForCausalLM(replace(cfg.llm, qk_layernorm=False, post_layernorm=False).to_hf())
    ov = ObjectVectors(object_features(make_scene(0)).shape[1], cfg.llm.hidden_size)
    train_object_lm(lm, ov, steps, lr, random.Random(seed), kinds=kinds, answers_only=answers_only, progress=True, desc="object LM")
    return lm, ov


def sample_loss(logits, labels, n_global, world):
    "Per-sample mean over answer tokens, then the mean over samples (one process)."
    lg, lb = logits[:, :-1].float(), labels[:, 1:].to(logits.device)
    ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none").view(lb.shape)
    n = (lb != IGNORE_INDEX).sum(1); keep = n > 0
    return (ce.sum(1)[keep] / n[keep]).mean(), ce.sum()


def gelu_project(self, queries):
    return self.llama_proj2(F.gelu(self.llama_proj(queries.to(self.llama_proj.weight.dtype))))


def start_model(variant, out: Path, scale: float, extra: dict):
    "The stage-1 model and tiny config of a whole-recipe variant; measurements of the backbones go into `extra`."
    cfg, bb = TinyGPTVConfig.from_preset("tiny"), tiny_backbones_dir()
    if variant == "lora_mlp": cfg.lora = replace(cfg.lora, target_modules=cfg.lora.target_modules + ("fc1", "fc2"))
    if variant in ("heads4", "context_lm", *OBJECT_LM):
        if variant == "heads4": cfg.llm = replace(cfg.llm, num_heads=4)
        if variant in OBJECT_LM:
            steps, answers_only, kinds = OBJECT_LM[variant]
            lm, ov = pretrain_object_lm(cfg, max(2, int(steps * scale)), answers_only, kinds)
            extra.update({f"oracle_{k}": object_lm_accuracy(lm, ov, k, max(8, int(200 * scale))) for k in ("vqa", "refer")})
        else: lm, _, _ = pretrain_tiny_lm(cfg, steps=max(2, int((1500 if variant == "context_lm" else 600) * scale)), progress=False, objects=False)
        if variant == "context_lm":   # as a text model, from the written scene (68 % / 41 % at full scale; the shipped tiny Phi: 13 % / 0 %)
            extra.update({f"text_{k}": text_context_accuracy(lm, k, max(4, int(100 * scale))) for k in ("vqa", "refer")})
        bb = out / "backbones"; shutil.copytree(tiny_backbones_dir(), bb, dirs_exist_ok=True)
        m = TinyGPTV(cfg); m.llm.load_state_dict(lm.state_dict(), strict=False)
        save_upstream(m.half(), "phi2_split", bb / "phi-2", tokenizer=tiny_tokenizer())
    return R.load_tiny_start(bb, cfg=cfg)


def run(variant: str, out: Path, stage3: Path, scale: float, n_eval: int) -> dict:
    if variant not in VARIANTS: raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    saved = T.token_loss, TinyGPTV.project, dict(S.TRAINABLE_GROUPS), dict(R.TINY_MIXTURES), B._lm_batch
    try:
        if variant == "sample_loss": T.token_loss = sample_loss
        if variant == "proj_gelu": TinyGPTV.project = gelu_project
        if variant == "unfreeze": S.TRAINABLE_GROUPS["lora"] = lambda n: n.startswith("llm.")
        if variant == "vqa_only": R.TINY_MIXTURES[4] = [("vqa", 1)]
        if variant == "context_lm": B._lm_batch = context_lm_batch
        t0, extra = time.time(), {}
        if variant in WHOLE: model, stages = start_model(variant, out, scale, extra), (1, 2, 3, 4)
        else:
            if not (stage3 / "config.json").exists():
                raise SystemExit(f"{stage3} holds no stage-3 model: run `tinygptv train --preset tiny --out runs/tiny` or pass --stage3")
            model, stages = TinyGPTV.from_pretrained(stage3), (4,)
        for s in stages:
            k = {"steps3x": 3.0, "vqa_only": 0.5}.get(variant, 1.0) if s == 4 else 1.0
            cfg = R.tiny_stage_config(s, scale * k)
            if variant == "unfreeze": cfg = replace(cfg, init_lr=1e-3, min_lr=1e-4, warmup_lr=1e-5)
            T.train_stage(model, cfg, R.tiny_readers(s), out / f"stage{s}", progress=False)
        scores = evaluate_synthetic(model, n=n_eval, kinds=R.EVAL_KINDS)["scores"]
        return {"variant": variant, "minutes": round((time.time() - t0) / 60, 1), **{k: round(v, 3) for k, v in {**scores, **extra}.items()}}
    finally:
        T.token_loss, TinyGPTV.project, B._lm_batch = saved[0], saved[1], saved[4]
        S.TRAINABLE_GROUPS.clear(); S.TRAINABLE_GROUPS.update(saved[2]); R.TINY_MIXTURES.clear(); R.TINY_MIXTURES.update(saved[3])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS)); p.add_argument("--out", default="bench_runs/levers")
    p.add_argument("--stage3", default="runs/tiny/stage3/model"); p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--n-eval", type=int, default=100)
    a = p.parse_args()
    rows = []
    for v in a.variants.split(","):
        rows.append(run(v, Path(a.out) / v, Path(a.stage3), a.scale, a.n_eval)); print(json.dumps(rows[-1]), flush=True)
    print("\n| variant | minutes | " + " | ".join(R.EVAL_KINDS) + " |\n|---|---|" + "---|" * len(R.EVAL_KINDS))
    for r in rows: print(f"| {r['variant']} | {r['minutes']} | " + " | ".join(f"{r[k]:.0%}" for k in R.EVAL_KINDS) + " |")
    Path(a.out).mkdir(parents=True, exist_ok=True); (Path(a.out) / "levers.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
