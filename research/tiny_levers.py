"""What limits the tiny run's stage 4? Each lever tried against the main job's [vqa] / [refer].

Every variant trains stage 4 of the tiny preset (batch 32, per-sample mixture) and scores 100
held-out questions per task of the `test` split with `evaluate_synthetic`. Variants that change
stages 1-3 too run the whole recipe; the others start from a stage-3 model (`--stage3`; without it,
stages 1-3 are trained first into OUT/stage1-3, about two minutes, and reused by the next variants
of the same command).

    python research/tiny_levers.py --variants lora_mlp,sample_loss
    python research/tiny_levers.py --variants object_lm_vqa,heads4 --scale 0.02   # a check: minutes

A full-scale run (`--scale 1`) writes one JSON per variant into research/results/levers/ (`--record`
elsewhere); a scaled-down run is a check, not a result: it writes into OUT only. The study in
research/README.md was measured with earlier backbones and an earlier stage 4; `--backbones-at
COMMIT`, `--stage4-steps` and `--mixture refer30` reproduce those conditions (each row there gives
its command).

Variants (none is part of the recipe; "patch": a function changed for this process only):
  base          the recipe's stage 4 again
  lora_mlp      LoRA on fc1 and fc2 as well as q, k, v, dense (LoraSettings.target_modules), 1-4
  heads4        a tiny Phi with 4 heads instead of 2, pretrained as a text-only LM (600 steps), 1-4
  proj_gelu     a GELU between llama_proj and llama_proj2 (patch: upstream has none), stages 1-4
  sample_loss   each sample's answer tokens averaged, then the samples (patch: train.token_loss); by
                default a batch's loss is the mean over answer tokens, so long answers (grounding:
                40 tokens) outweigh [vqa]'s 2: [vqa] gets 6.5 % of the gradient for 30 % of samples
  vqa_only      stage 4 on [vqa] alone, half the steps: the read-out's ceiling when nothing competes
  steps3x       stage 4 with three times the steps
  unfreeze      the whole tiny Phi trains in stage 4 at lr 1e-3 (patch: not the paper's frozen Phi)
  text_lm       the tiny Phi shipped before: pretrained on the world's text alone (600 steps, the
                image removed), stages 1-4
  context_lm    the tiny Phi pretrained as a text LM (1500 steps), 90 % of its samples reading the
                scene written as text where the image goes ("a red diamond {<42><62><70><90>},
                ... on a gray background"), loss on the answers only; reports its accuracy from
                the written scene as a text model; then stages 1-4
  object_lm     the tiny Phi pretrained (1500 steps) with ONE vector per object where the image goes
                (an encoder trained with it, then dropped), loss on every text token, stages 1, 3, 4
                drawn as for the text LM; reports its accuracy given the true object vectors
                (oracle_vqa, oracle_refer), then stages 1-4
  object_lm_vqa the same, 3000 steps (30 min), 80 % of the samples stage 4 with [vqa] and [refer]
                weighted up: the first round of the shipped tiny Phi's pretraining
  object_lm_ans as object_lm_vqa at 1500 steps, loss on the answers only
  object_lm_r1  object_lm_vqa and one restart (2,000 steps at lr 1e-3): the tiny Phi after round two
  object_lm_r2  object_lm_vqa and two restarts: the shipped tiny Phi's recipe, from scratch (58 min)
"""

from __future__ import annotations
import argparse, json, random, shutil, subprocess, sys, tarfile, io, time
from dataclasses import replace
from pathlib import Path

import torch, torch.nn.functional as F
from safetensors.torch import save_file

import tinygptv.stages as S
import tinygptv.train as T
from tinygptv.scoring import evaluate_synthetic, heldout_loss
from tinygptv.model import TinyGPTV, TinyGPTVConfig
from tinygptv.phi import TinyGPTVPhiForCausalLM
from tinygptv.prompts import render
from tinygptv.synthetic import SPLIT_SEEDS, STAGE_KINDS, make_sample, make_scene, tiny_tokenizer
from tinygptv.tiny_backbones import (OBJECT_KINDS, TINY_LM_RESTARTS, ObjectVectors, load_tiny_start,
                                     object_features, tiny_backbones_dir, train_object_lm)
from tinygptv.tokenizer import IGNORE_INDEX
from tinygptv.weights import save_upstream

from tiny_phi import RESULTS, git_commit, object_lm_accuracy, pretrain_text_lm

EVAL_KINDS = ("vqa", "refer", "identify", "caption_task")   # the tiny run's held-out tasks

# name: (steps, loss on answers only, stage-4 kinds of the pretraining mixture, restarts)
OBJECT_LM = {"object_lm": (1500, False, None, ()), "object_lm_vqa": (3000, False, OBJECT_KINDS, ()),
             "object_lm_ans": (1500, True, OBJECT_KINDS, ()),
             "object_lm_r1": (3000, False, OBJECT_KINDS, TINY_LM_RESTARTS[:1]),
             "object_lm_r2": (3000, False, OBJECT_KINDS, TINY_LM_RESTARTS)}
TEXT_LM = {"text_lm": 600, "heads4": 600, "context_lm": 1500}   # pretraining steps, text-only Phis
WHOLE = {"lora_mlp", "proj_gelu", *TEXT_LM, *OBJECT_LM}
VARIANTS = ("base", "lora_mlp", "heads4", "proj_gelu", "sample_loss", "vqa_only", "steps3x",
            "unfreeze", "text_lm", "context_lm", *OBJECT_LM)
# refer30: the stage-4 mixture before commit 09665c8 (the levers and the development runs used it)
MIXTURES = {"current": list(T.TINY_MIXTURES[4]),
            "refer30": [("vqa", 30), ("refer", 30), ("identify", 10), ("grounding", 6),
                        ("detection", 6), ("caption_task", 5), ("conversation", 8), ("text", 5)]}
CONTEXT_KINDS = ["vqa", "vqa", "refer", "refer", "identify", "grounding", "detection",
                 "caption_task", "conversation"]


def scene_text(sc) -> str:
    "A scene written as text: each object's name and grid box, then the background."
    return (
        ", ".join(f"a {o.name} {sc.grid_box(o)}" for o in sc.objects)
        + f" on a {sc.background} background"
    )


def context_lm_batch(tok, rng, n=32, max_tokens=120, p=0.9):
    """`tiny_phi.text_lm_batch`, but a fraction `p` of the samples are stage-4 samples with the
    scene as text, loss on answers."""
    seqs = []
    for _ in range(n):
        if rng.random() < p:
            s = make_sample(rng.choice(CONTEXT_KINDS), rng.randrange(10**6), rng)
            ids, lab = [tok.eos_token_id], [IGNORE_INDEX]
            for text, is_answer in render(4, s.turns, image=True):
                x = tok(
                    text.replace("<ImageHere>", scene_text(s.meta["scene"])),
                    add_special_tokens=False,
                ).input_ids
                ids += x
                lab += x if is_answer else [IGNORE_INDEX] * len(x)
            seqs.append((ids[:200], lab[:200]))
        else:
            st = rng.choice([1, 3, 4, 4, 4, 4])
            s = make_sample(rng.choice(STAGE_KINDS[st]), rng.randrange(10**6), rng)
            text = "".join(t for t, _ in render(st, s.turns, image=False)).replace(
                "<ImageHere>", ""
            )
            q = [tok.eos_token_id] + tok(text, add_special_tokens=False).input_ids[:max_tokens]
            seqs.append((q, q))
    T_ = max(len(q) for q, _ in seqs)
    ids, lab = torch.zeros(n, T_, dtype=torch.long), torch.full((n, T_), IGNORE_INDEX)
    for i, (q, l) in enumerate(seqs):
        ids[i, : len(q)], lab[i, : len(q)] = torch.tensor(q), torch.tensor(l)
    return ids, lab


def text_context_accuracy(lm, kind: str, n: int = 100) -> float:
    """Exact-match answers of the text model `lm` on held-out `kind` samples whose scene is written
    as text."""
    tok, rng, hits = tiny_tokenizer(), random.Random(5), 0
    for i in range(n):
        s = make_sample(kind, SPLIT_SEEDS["test"] + i, rng)
        prompt = render(4, s.turns, image=True)[0][0].replace(
            "<ImageHere>", scene_text(s.meta["scene"])
        )
        ids = torch.tensor([[tok.eos_token_id] + tok(prompt, add_special_tokens=False).input_ids])
        with torch.no_grad():
            out = lm.generate(
                ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id
            )
        hits += tok.decode(out[0, ids.shape[1] :]).split("###")[0].strip() == s.turns[0][1]
    return hits / n


def pretrain_object_lm(cfg, steps: int, answers_only: bool = False, kinds: dict | None = None,
                       restarts=(), lr: float = 2e-3, seed: int = 0):
    """A stock tiny Phi and an ObjectVectors encoder trained together (the shipped tiny Phi's
    recipe, varied); restarts are seeded as `tiny_backbones.pretrain_tiny_lm` seeds them."""
    torch.manual_seed(seed)
    lm = TinyGPTVPhiForCausalLM(replace(cfg.llm, qk_layernorm=False, post_layernorm=False).to_hf())
    ov = ObjectVectors(object_features(make_scene(0)).shape[1], cfg.llm.hidden_size)
    kw = dict(kinds=kinds, answers_only=answers_only)
    train_object_lm(lm, ov, steps, lr, random.Random(seed), desc="object LM", **kw)
    for i, (n, lr_i) in enumerate(restarts, 1):
        torch.manual_seed(seed + i)
        train_object_lm(lm, ov, n, lr_i, random.Random(seed + i), desc=f"restart {i}", **kw)
    return lm, ov


def sample_loss(logits, labels, n_global, world):
    "Per-sample mean over answer tokens, then the mean over samples (one process)."
    lg, lb = logits[:, :-1].float(), labels[:, 1:].to(logits.device)
    ce = F.cross_entropy(
        lg.reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(lb.shape)
    n = (lb != IGNORE_INDEX).sum(1)
    keep = n > 0
    return (ce.sum(1)[keep] / n[keep]).mean(), ce.sum()


def gelu_project(self, queries):
    return self.llama_proj2(F.gelu(self.llama_proj(queries.to(self.llama_proj.weight.dtype))))


def backbones_at(commit: str, out: Path) -> Path:
    "The tiny backbones as shipped at `commit`, extracted from git into `out` (once)."
    dest = out / f"backbones-{commit}"
    if not (dest / "phi-2" / "config.json").exists():
        tar = subprocess.run(
            ["git", "archive", commit, "tinygptv/assets/tiny-backbones"],
            capture_output=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        if tar.returncode:
            raise SystemExit(f"git archive {commit}: {tar.stderr.decode().strip()}")
        with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as t:
            for m in t.getmembers():
                if m.isfile():
                    p = dest / Path(m.name).relative_to("tinygptv/assets/tiny-backbones")
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(t.extractfile(m).read())
    return dest


def start_model(variant, out: Path, bb: Path, scale: float, extra: dict) -> TinyGPTV:
    "The stage-1 model of a whole-recipe variant; measurements of its backbones go into `extra`."
    cfg = TinyGPTVConfig.from_preset("tiny")
    if variant == "lora_mlp":
        cfg.lora = replace(cfg.lora, target_modules=cfg.lora.target_modules + ("fc1", "fc2"))
    if variant not in (*TEXT_LM, *OBJECT_LM):
        return load_tiny_start(bb, cfg=cfg)
    if variant == "heads4":
        cfg.llm = replace(cfg.llm, num_heads=4)
    ov = None
    if variant in OBJECT_LM:
        steps, answers_only, kinds, restarts = OBJECT_LM[variant]
        restarts = [(max(2, int(n * scale)), lr) for n, lr in restarts]
        lm, ov = pretrain_object_lm(cfg, max(2, int(steps * scale)), answers_only, kinds, restarts)
        extra.update(
            {
                f"oracle_{k}": object_lm_accuracy(lm, ov, k, max(8, int(200 * scale)))
                for k in ("vqa", "refer")
            }
        )
    else:
        steps = max(2, int(TEXT_LM[variant] * scale))
        lm, _ = pretrain_text_lm(
            cfg,
            steps,
            progress=False,
            **({"batch": context_lm_batch} if variant == "context_lm" else {}),
        )
        if variant == "context_lm":  # as a text model, from the written scene
            extra.update(
                {
                    f"text_{k}": text_context_accuracy(lm, k, max(4, int(100 * scale)))
                    for k in ("vqa", "refer")
                }
            )
    new = out / "backbones"
    shutil.copytree(bb, new, dirs_exist_ok=True)
    m = TinyGPTV(cfg)
    m.llm.load_state_dict(lm.state_dict(), strict=False)
    save_upstream(m.half(), "phi2_split", new / "phi-2", tokenizer=tiny_tokenizer())
    (new / "object_vectors.safetensors").unlink(missing_ok=True)
    if ov is not None:
        save_file(ov.state_dict(), new / "object_vectors.safetensors")
    return load_tiny_start(new, cfg=cfg)


def stage3_model(a, bb: Path) -> TinyGPTV:
    """The stage-3 model the stage-4-only variants start from: `--stage3`, or stages 1-3 trained
    once into OUT/stage1-3."""
    folder = Path(a.stage3) if a.stage3 else Path(a.out) / "stage1-3" / "stage3" / "model"
    if not (folder / "config.json").exists():
        if a.stage3:
            raise SystemExit(
                f"{a.stage3} holds no stage-3 model (config.json); leave --stage3 out to train one"
            )
        model = load_tiny_start(bb)
        for s in (1, 2, 3):
            T.train_stage(
                model,
                T.StageTrainConfig.tiny(s, a.scale),
                T.tiny_readers(s),
                folder.parent.parent / f"stage{s}",
                progress=False,
            )
        model.save_pretrained(folder)
    return TinyGPTV.from_pretrained(folder)


def run(variant: str, a, bb: Path) -> dict:
    "Train and score one variant; the patches it needs are undone afterwards."
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    out = Path(a.out) / variant
    saved = T.token_loss, TinyGPTV.project, dict(S.TRAINABLE_GROUPS), list(T.TINY_MIXTURES[4])
    try:
        T.TINY_MIXTURES[4] = MIXTURES[a.mixture]
        if variant == "sample_loss":
            T.token_loss = sample_loss
        if variant == "proj_gelu":
            TinyGPTV.project = gelu_project
        if variant == "unfreeze":
            S.TRAINABLE_GROUPS["lora"] = lambda n: n.startswith("llm.")
        if variant == "vqa_only":
            T.TINY_MIXTURES[4] = [("vqa", 1)]
        t0, extra = time.time(), {}
        if variant in WHOLE:
            model, stages = start_model(variant, out, bb, a.scale, extra), (1, 2, 3, 4)
        else:
            model, stages = stage3_model(a, bb), (4,)
        for s in stages:
            cfg = T.StageTrainConfig.tiny(s, a.scale)
            if s == 4:
                mult = {"steps3x": 3.0, "vqa_only": 0.5}.get(variant, 1.0)
                n = max(2, int((a.stage4_steps or T.TINY_STEPS[4]) * mult * a.scale))
                cfg = replace(cfg, iters_per_epoch=n, warmup_steps=max(1, n // 10))
            if s == 4 and a.stage4_lr:
                cfg = replace(
                    cfg, init_lr=a.stage4_lr, min_lr=a.stage4_lr / 10, warmup_lr=a.stage4_lr / 100
                )
            if variant == "unfreeze" and s == 4:
                cfg = replace(cfg, init_lr=1e-3, min_lr=1e-4, warmup_lr=1e-5)
            T.train_stage(model, cfg, T.tiny_readers(s), out / f"stage{s}", progress=False)
            if s == 1:
                extra["stage1_caption_loss"] = heldout_loss(model, "caption", 1, n=64, split="test")
        ev = evaluate_synthetic(model, n=a.n_eval, kinds=EVAL_KINDS, split="test")
        return {
            "minutes": round((time.time() - t0) / 60, 1),
            "scores": {k: round(v, 3) for k, v in ev["scores"].items()},
            "intervals": {k: [round(x, 3) for x in v] for k, v in ev["intervals"].items()},
            "backbone": {k: round(v, 3) for k, v in extra.items()},
            "stages": list(stages),
        }
    finally:
        T.token_loss, TinyGPTV.project = saved[0], saved[1]
        S.TRAINABLE_GROUPS.clear()
        S.TRAINABLE_GROUPS.update(saved[2])
        T.TINY_MIXTURES[4] = saved[3]


def command(variant: str, a) -> str:
    "The command that reproduces one variant's row."
    flags = [f"--variants {variant}"] + [
        f"--{k.replace('_', '-')} {v}"
        for k, v in (
            ("stage4_steps", a.stage4_steps),
            ("mixture", a.mixture if a.mixture != "current" else None),
            ("stage4_lr", a.stage4_lr),
            ("backbones_at", a.backbones_at),
            ("scale", a.scale if a.scale != 1 else None),
            ("n_eval", a.n_eval if a.n_eval != 100 else None),
        )
        if v
    ]
    return "python research/tiny_levers.py " + " ".join(flags)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default="runs/levers")
    p.add_argument(
        "--stage3", help="a stage-3 model folder for the stage-4-only variants (default: train one)"
    )
    p.add_argument(
        "--backbones-at",
        help="start from the tiny backbones shipped at this git commit (default: today's)",
    )
    p.add_argument(
        "--stage4-steps", type=int, help=f"stage-4 steps (default: the recipe's {T.TINY_STEPS[4]})"
    )
    p.add_argument(
        "--stage4-lr",
        type=float,
        help=f"stage-4 peak learning rate (default: the recipe's {T.TINY_LR[4]:g})",
    )
    p.add_argument(
        "--mixture",
        choices=list(MIXTURES),
        default="current",
        help="stage-4 mixture: today's, or refer30 (the one before commit 09665c8)",
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply every step count (a check: < 1)"
    )
    p.add_argument(
        "--n-eval", type=int, default=100, help="held-out questions per task (test split)"
    )
    p.add_argument(
        "--record",
        help="folder for the result JSONs (default: research/results/levers at --scale 1)",
    )
    a = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    bb = backbones_at(a.backbones_at, Path(a.out)) if a.backbones_at else tiny_backbones_dir()
    record = Path(a.record) if a.record else RESULTS / "levers" if a.scale == 1 else Path(a.out)
    for v in a.variants.split(","):
        res = run(v, a, bb)
        cmd = command(v, a)
        rec = {
            "row": v,
            "command": cmd,
            "source": "measured",
            "date": time.strftime("%Y-%m-%d"),
            "commit": git_commit(),
            "provenance": f"measured by `{cmd}` on {time.strftime('%Y-%m-%d')} at commit "
            f"{git_commit()}, 2-core CPU; stage 4 {a.stage4_steps or T.TINY_STEPS[4]} steps"
            + (f" x {a.scale:g}" if a.scale != 1 else "")
            + f" at lr {a.stage4_lr or T.TINY_LR[4]:g} ({a.mixture} mixture), {a.n_eval} "
            "held-out questions per task (test split)",
            "backbones": a.backbones_at or "shipped",
            **res,
        }
        record.mkdir(parents=True, exist_ok=True)
        (record / f"{v}.json").write_text(json.dumps(rec, indent=1) + "\n")
        print(
            json.dumps({k: rec[k] for k in ("row", "minutes", "scores", "backbone")}),
            f"-> {record / f'{v}.json'}",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
