"""Research code for the tiny Phi: its ceiling given the true objects, and how it was pretrained.

The ceiling's accuracy by question type, the ObjectVectors encoder the shipped Phi was pretrained
with, and the text-only pretraining of the tiny Phi shipped before.

None of this is part of the package: the package pretrains the shipped tiny Phi
(`tinygptv.tiny_backbones`), this file measures it and keeps the variants that were tried and not
shipped.

    python research/tiny_phi.py ceiling [--n 300] [--n-refer 200]
    python research/tiny_phi.py rounds [--n 300]     # the shipped Phi's pretraining again, 75+ min

measures the SHIPPED tiny Phi's ceiling: its fp16 files loaded as a stock transformers
`PhiForCausalLM`, each held-out question answered with the TRUE object vectors written where the
image goes (through the encoder it was pretrained with, `object_vectors.safetensors`). No vision
front end feeding this frozen Phi can do better. Writes research/results/tiny_phi_ceiling.json. A
few minutes on 2 cores.
"""

from __future__ import annotations
import argparse, json, math, random, subprocess, sys, time
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm
from transformers import PhiForCausalLM

from tinygptv.scoring import exact_match, refer_hit, wilson_interval
from tinygptv.model import TinyGPTVConfig
from tinygptv.phi import TinyGPTVPhiForCausalLM
from tinygptv.prompts import cut_answer, render
from tinygptv.synthetic import (
    STAGE_KINDS,
    SyntheticDataset,
    make_sample,
    make_scene,
    tiny_tokenizer,
)
from tinygptv.tiny_backbones import (
    TINY_LM_RESTARTS,
    ObjectVectors,
    object_features,
    object_lm_embeds,
    tiny_backbones_dir,
    train_object_lm,
)
from tinygptv.tokenizer import IGNORE_INDEX, build_inputs

RESULTS = Path(__file__).parent / "results"

QUESTION_TYPES = ("how many", "background", "what color", "what shape", "where", "is there")


def question_type(q: str) -> str:
    "The kind of a `[vqa]` question of the synthetic world: one of `QUESTION_TYPES`, or 'other'."
    return next((w for w in QUESTION_TYPES if w in q.lower()), "other")


def load_object_vectors(path, cfg: TinyGPTVConfig | None = None) -> ObjectVectors:
    """The ObjectVectors encoder the tiny Phi was pretrained with (`save_tiny_backbones(...,
    ov=...)`), in float32."""
    path, cfg = Path(path), cfg or TinyGPTVConfig.from_preset("tiny")
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no ObjectVectors weights (save_tiny_backbones(..., ov=...) writes them)"
        )
    ov = ObjectVectors(object_features(make_scene(0)).shape[1], cfg.llm.hidden_size)
    ov.load_state_dict({k: v.float() for k, v in load_file(path).items()})
    return ov.eval()


@torch.no_grad()
def object_lm_answers(lm, ov: ObjectVectors, samples, batch_size: int = 50) -> list[str]:
    """Greedy stage-4 answers of the text model `lm` to each sample's question, its TRUE objects
    where the image goes."""
    tok, preds = tiny_tokenizer(), []
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        b = build_inputs(
            tok, [render(4, [(s.turns[0][0], None)]) for s in chunk], padding_side="left"
        )
        feats = torch.stack([object_features(s.meta["scene"]) for s in chunk])
        x = object_lm_embeds(lm, ov, b["input_ids"], feats)
        out = lm.generate(
            inputs_embeds=x,
            attention_mask=b["attention_mask"],
            max_new_tokens=16,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
        preds += [cut_answer(t, 4) for t in tok.batch_decode(out, skip_special_tokens=True)]
    return preds


def object_lm_accuracy(
    lm, ov: ObjectVectors, kind: str, n: int = 200, split: str = "test", by_question: bool = False
):
    """Held-out `[vqa]` exact match or `[refer]` Acc@IoU>=0.5 of `lm` given the TRUE object vectors:
    the ceiling of any vision front end feeding this frozen Phi. `by_question`: returns
    (score, {question type: score}) for `[vqa]`.
    """
    if kind not in ("vqa", "refer"):
        raise ValueError(f"kind must be 'vqa' or 'refer', got {kind!r}")
    ss = [SyntheticDataset(kind, split, n)[i] for i in range(n)]
    preds = object_lm_answers(lm, ov, ss)
    if kind == "refer":
        hits = []
        for p, s in zip(preds, ss):
            sc = s.meta["scene"]
            box = next(o.box for o in sc.objects if sc.grid_box(o) == s.turns[0][1])
            hits.append(refer_hit(p, box, sc.size, sc.size))
        return sum(hits) / n
    hits = [exact_match(p, s.turns[0][1]) for p, s in zip(preds, ss)]
    if not by_question:
        return sum(hits) / n
    groups = {}
    for h, s in zip(hits, ss):
        groups.setdefault(question_type(s.turns[0][0]), []).append(h)
    return sum(hits) / n, {k: sum(v) / len(v) for k, v in sorted(groups.items())}


# --- the text-only tiny Phi (shipped before the one pretrained with objects): a research variant


def text_lm_batch(tok, rng: random.Random, n: int = 32, max_tokens: int = 120):
    """`n` samples of stages 1, 3, 4 (1:1:4) in their template with the image removed; (ids, labels
    on every token)."""
    seqs = []
    for _ in range(n):
        st = rng.choice([1, 3, 4, 4, 4, 4])
        s = make_sample(rng.choice(STAGE_KINDS[st]), rng.randrange(10**6), rng)
        txt = "".join(t for t, _ in render(st, s.turns, image=False)).replace("<ImageHere>", "")
        seqs.append([tok.eos_token_id] + tok(txt, add_special_tokens=False).input_ids[:max_tokens])
    T = max(map(len, seqs))
    ids, lab = torch.zeros(n, T, dtype=torch.long), torch.full((n, T), IGNORE_INDEX)
    for i, q in enumerate(seqs):
        ids[i, : len(q)], lab[i, : len(q)] = torch.tensor(q), torch.tensor(q)
    return ids, lab


def cosine_lr(lr: float, step: int, steps: int) -> float:
    "100 warm-up steps, then cosine to lr/10 (the schedule of `tiny_backbones.train_object_lm`)."
    return (
        lr * min(1, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
    )


def pretrain_text_lm(
    cfg: TinyGPTVConfig,
    steps: int = 600,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    batch=text_lm_batch,
):
    """A stock tiny Phi (no added norms) pretrained on the synthetic world's text, image removed:
    the tiny Phi the tiny preset shipped before (600 steps). `batch(tok, rng)` -> (ids, labels)
    makes the samples. Returns (lm, losses).
    """
    torch.manual_seed(seed)
    lm = TinyGPTVPhiForCausalLM(replace(cfg.llm, qk_layernorm=False, post_layernorm=False).to_hf())
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    tok, rng, losses = tiny_tokenizer(), random.Random(seed), []
    lm.train()
    for step in tqdm(
        range(steps), desc="tiny Phi, text only", disable=not progress, mininterval=10
    ):
        for g in opt.param_groups:
            g["lr"] = cosine_lr(lr, step, steps)
        ids, lab = batch(tok, rng)
        loss = lm(ids, labels=lab).loss
        loss.backward()
        nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return lm.eval(), losses


# --- the commands -------------------------------------------------------------------------------


def git_commit() -> str:
    """HEAD's short hash, with '+dirty' when the package (tinygptv/) has uncommitted changes; or
    'unknown'."""
    try:
        git = lambda *a: subprocess.run(
            ["git", *a], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        ).stdout.strip()
        c, dirty = git("rev-parse", "--short", "HEAD"), git(
            "status", "--porcelain", "--", "../tinygptv"
        )
        return c + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ceiling(n: int = 300, n_refer: int = 200, split: str = "test", backbones=None) -> dict:
    """The shipped tiny Phi's held-out `[vqa]` (overall, per question type) and `[refer]` given the
    true objects."""
    bb, t0 = Path(backbones or tiny_backbones_dir()), time.time()
    phi = PhiForCausalLM.from_pretrained(bb / "phi-2", dtype=torch.float32).eval()
    ov = load_object_vectors(bb / "object_vectors.safetensors")
    vqa, by_q = object_lm_accuracy(phi, ov, "vqa", n, split, by_question=True)
    refer = object_lm_accuracy(phi, ov, "refer", n_refer, split)
    ci = lambda p, m: [round(x, 3) for x in wilson_interval(round(p * m), m)]
    return {
        "vqa": round(vqa, 4),
        "refer": round(refer, 4),
        "vqa_by_question": {k: round(v, 4) for k, v in by_q.items()},
        "intervals": {"vqa": ci(vqa, n), "refer": ci(refer, n_refer)},
        "n": {"vqa": n, "refer": n_refer},
        "split": split,
        "minutes": round((time.time() - t0) / 60, 1),
    }


def round_label(i: int, steps: int, lr: float) -> str:
    "'round 2: + 2,000 steps at lr 1e-3': round `i` (0-based) of the tiny Phi's pretraining."
    shipped = len(TINY_LM_RESTARTS)   # the shipped Phi is the last round of pretrain_tiny_lm
    tag = "" if i < shipped else " (shipped)" if i == shipped else " (not shipped)"
    lr_s = f"{lr:.0e}".replace("e-0", "e-")
    return f"round {i + 1}: {'+ ' if i else ''}{steps:,} steps at lr {lr_s}{tag}"


def rounds(n: int = 300, split: str = "test", extra_rounds: int = 1, seed: int = 0,
           scale: float = 1.0, out=RESULTS / "phi_rounds"):
    """The shipped tiny Phi's pretraining from scratch (`tiny_backbones.pretrain_tiny_lm`: 3,000
    steps at lr 2e-3, then restarts of 2,000 at 1e-3, seeded as it seeds them), and `extra_rounds`
    restarts more; the ceiling after each round (`n` [vqa] and `n` [refer] questions) written to
    `out/round{i}.json`. About 30 min for the first round, 14 for each restart, on 2 cores;
    `scale` < 1 shortens every round (a check of the mechanics)."""
    cfg = TinyGPTVConfig.from_preset("tiny")
    torch.manual_seed(seed)
    lm = TinyGPTVPhiForCausalLM(replace(cfg.llm, qk_layernorm=False, post_layernorm=False).to_hf())
    ov = ObjectVectors(object_features(make_scene(0)).shape[1], cfg.llm.hidden_size)
    plan = [(3000, 2e-3)] + list(TINY_LM_RESTARTS) + [TINY_LM_RESTARTS[-1]] * extra_rounds
    cmd = "python research/tiny_phi.py rounds" + (f" --n {n}" if n != 300 else "") + (
        f" --extra-rounds {extra_rounds}" if extra_rounds != 1 else "") + (
        f" --scale {scale}" if scale != 1 else "")
    for i, (steps, lr) in enumerate(plan):
        t0, steps = time.time(), max(2, int(steps * scale))
        if i: torch.manual_seed(seed + i)
        train_object_lm(lm, ov, steps, lr, random.Random(seed + i), desc=f"tiny Phi, round {i + 1}")
        minutes = (time.time() - t0) / 60
        vqa, by_q = object_lm_accuracy(lm, ov, "vqa", n, split, by_question=True)
        rec = {"row": round_label(i, steps, lr), "command": cmd, "source": "measured",
               "date": time.strftime("%Y-%m-%d"), "commit": git_commit(),
               "provenance": f"measured by `{cmd}`; the Phi in float32 as it trains (not the fp16 "
                             f"files), {n} held-out questions per task ({split} split)",
               "minutes": round(minutes, 1), "vqa": round(vqa, 4),
               "refer": round(object_lm_accuracy(lm, ov, "refer", n, split), 4),
               "vqa_by_question": {k: round(v, 4) for k, v in by_q.items()},
               "n": {"vqa": n, "refer": n}, "n_label": f"{n} / {n}", "split": split}
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"round{i + 1}.json").write_text(json.dumps(rec, indent=1) + "\n")
        print(json.dumps({k: rec[k] for k in ("row", "minutes", "vqa", "refer")}), flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser(
        "ceiling", help="the shipped tiny Phi's held-out accuracy given the true object vectors"
    )
    c.add_argument("--n", type=int, default=300, help="[vqa] questions (default 300)")
    c.add_argument("--n-refer", type=int, default=200, help="[refer] questions (default 200)")
    c.add_argument(
        "--split", default="test", choices=["test", "val"], help="development split (never 'final')"
    )
    c.add_argument("--backbones", help="a tiny-backbones folder (default: the shipped one)")
    c.add_argument("--out", default=str(RESULTS / "tiny_phi_ceiling.json"))
    r = sub.add_parser(
        "rounds",
        help="pretrain the shipped tiny Phi's recipe from scratch, the ceiling after each round",
    )
    r.add_argument(
        "--n", type=int, default=300, help="questions per task after each round (default 300)"
    )
    r.add_argument(
        "--extra-rounds", type=int, default=1, help="restarts beyond the shipped two (default 1)"
    )
    r.add_argument("--scale", type=float, default=1.0, help="multiply each round's steps (a check)")
    r.add_argument("--out", help="folder for round{i}.json (default: research/results/phi_rounds "
                   "at --scale 1, else runs/phi_rounds)")
    a = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if a.cmd == "rounds":
        out = a.out or (RESULTS / "phi_rounds" if a.scale == 1 else Path("runs/phi_rounds"))
        return rounds(a.n, extra_rounds=a.extra_rounds, scale=a.scale, out=out)
    res = ceiling(a.n, a.n_refer, a.split, a.backbones)
    cmd = (
        "python research/tiny_phi.py ceiling"
        + (f" --n {a.n}" if a.n != 300 else "")
        + (f" --n-refer {a.n_refer}" if a.n_refer != 200 else "")
    )
    rec = {
        "row": "shipped fp16 files, as a stock PhiForCausalLM",
        "command": cmd,
        "source": "measured",
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "provenance": f"measured by `{cmd}` on {time.strftime('%Y-%m-%d')} at commit "
                      f"{git_commit()}, 2-core CPU; "
        f"the shipped fp16 tiny Phi loaded as a stock PhiForCausalLM (float32), greedy answers, "
        f"{a.n} [vqa] / {a.n_refer} [refer] held-out questions ({a.split} split)",
        **res,
        "n_label": f"{a.n} / {a.n_refer}",
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
    sys.exit(main())
