"""The normalization ablation's comparison (nbs/23_norm_ablation.ipynb runs a short check of it).

The tiny preset's stage 4 from the stage-1 start (the shipped tiny backbones through the
converters), frozen weights in fp16, 5x the tiny run's learning rate, 40 steps, with and without
each of TinyGPT-V's three changes: QK-LayerNorm, the post-attention RMSNorm, trainable input/final
LayerNorm weights. One JSON per variant in research/results/norm_ablation/. About half an hour on 2
CPU cores (fp16 matrix products are slow on a CPU).

    python research/norm_ablation.py [--variants all_three,no_qk] [--steps 40]
"""

from __future__ import annotations
import argparse, json, statistics, sys, tempfile, time
from dataclasses import replace
from pathlib import Path

import torch

from tinygptv.model import TinyGPTVConfig
from tinygptv.tiny_backbones import load_tiny_start
from tinygptv.train import StageTrainConfig, TrainingDiverged, tiny_readers, train_stage

from tiny_phi import RESULTS, git_commit

# file name: (label, QK-LayerNorm, post-attention RMSNorm, trainable input/final LayerNorm weights)
VARIANTS = {
    "all_three": ("TinyGPT-V (all three)", True, True, True),
    "no_qk": ("no QK-LayerNorm", False, True, True),
    "no_post": ("no post-attention RMSNorm", True, False, True),
    "frozen_input": ("input norms frozen", True, True, False),
    "none": ("none (stock Phi + LoRA)", False, False, False),
}


def run_variant(name: str, steps: int = 40, lr_scale: float = 5.0, n_scenes: int = 600) -> dict:
    """Stage 4 of the tiny preset in fp16 with variant `name`'s norms: its loss history, or where it
    diverged."""
    _, qk, post, train_in = VARIANTS[name]
    cfg = TinyGPTVConfig.from_preset("tiny", frozen_dtype="float16")
    cfg.llm = replace(cfg.llm, qk_layernorm=qk, post_layernorm=post)
    model = load_tiny_start(cfg=cfg)
    t = StageTrainConfig.tiny(4)
    t = replace(
        t,
        iters_per_epoch=steps,
        warmup_steps=max(1, steps // 10),
        init_lr=t.init_lr * lr_scale,
        min_lr=t.min_lr * lr_scale,
        save_every=10**9,
        train_input_norms=train_in,
    )
    try:
        h = train_stage(
            model, t, tiny_readers(4, n_scenes), Path(tempfile.mkdtemp()), progress=False
        )["history"]
        return {"history": h, "diverged": None}
    except TrainingDiverged as e:
        return {"history": [], "diverged": str(e)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}"
    )
    p.add_argument("--steps", type=int, default=40)
    p.add_argument(
        "--record", default=str(RESULTS / "norm_ablation"), help="folder for the result JSONs"
    )
    a = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    for v in a.variants.split(","):
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
        t0, r = time.time(), run_variant(v, a.steps)
        h = r["history"]
        cmd = f"python research/norm_ablation.py --variants {v}" + (
            f" --steps {a.steps}" if a.steps != 40 else ""
        )
        rec = {
            "row": v,
            "what": VARIANTS[v][0],
            "command": cmd,
            "source": "measured",
            "date": time.strftime("%Y-%m-%d"),
            "commit": git_commit(),
            "provenance": f"measured by `{cmd}` at commit {git_commit()}, 2-core CPU: {a.steps} "
                          "steps of tiny "
            "stage 4, fp16 frozen weights, 5x the tiny learning rate",
            "steps": a.steps,
            "minutes": round((time.time() - t0) / 60, 1),
            "diverged": r["diverged"] or "no",
            "loss_last20": round(statistics.mean(x["loss"] for x in h[-20:]), 3) if h else None,
            "max_grad_norm": round(max(x["grad_norm"] for x in h), 1) if h else None,
            "loss": [round(x["loss"], 4) for x in h],
            "grad_norm": [round(x["grad_norm"], 3) for x in h],
        }
        Path(a.record).mkdir(parents=True, exist_ok=True)
        (Path(a.record) / f"{v}.json").write_text(json.dumps(rec, indent=1) + "\n")
        print(
            v,
            {k: rec[k] for k in ("loss_last20", "max_grad_norm", "diverged", "minutes")},
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
