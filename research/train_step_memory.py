"""One stage-2 training step of the paper-size TinyGPT-V on CPU, batch 1, random full-size weights.

Builds the paper preset empty (meta device), fills every parameter with random values one tensor at
a time (frozen ViT and Phi-2 weights in bfloat16, trained ones in float32), and runs one real step
of `train_stage` (stage 2: projection, norm weights and LoRA train; bf16 autocast; activation
checkpointing in Phi-2) on one synthetic image-caption pair at 224 px. Reports the time of each
phase and the peak resident memory, against the paper's "24 GB to train" (on a GPU), and writes them
to research/results/memory/train_step.json (the `memory` table of research/README.md).

    python research/train_step_memory.py [--record FILE] [--preset tiny]    # tiny: a check, seconds

About 10 GB of RAM and 10-15 minutes on 2 cores. A benchmark, not a test.
"""

import argparse, json, os, resource, tempfile, time
from dataclasses import replace
from pathlib import Path

import torch
from accelerate.utils import set_module_tensor_to_device

from tinygptv.mixtures import MixtureEntry
from tinygptv.model import TinyGPTVConfig
from tinygptv.stages import get_stage
from tinygptv.synthetic import SyntheticDataset, tiny_tokenizer
from tinygptv.train import StageTrainConfig, train_stage
from tinygptv.weights import empty_model

from tiny_phi import RESULTS, git_commit


def rss_gb():
    "Peak RSS of this process in GiB (ru_maxrss is in KiB on Linux)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--record", default=str(RESULTS / "memory" / "train_step.json"), help="the result JSON"
    )
    ap.add_argument(
        "--preset",
        choices=["paper", "tiny"],
        default="paper",
        help="tiny: a check of the mechanics",
    )
    args = ap.parse_args()
    t0 = time.time()
    cfg = TinyGPTVConfig.from_preset(args.preset, frozen_dtype="bfloat16")
    model = empty_model(cfg, get_stage(2))
    g = torch.Generator().manual_seed(0)
    for name, p in list(model.named_parameters()):
        if (
            "layernorm" in name
            or name.endswith(("norm1.weight", "norm2.weight"))
            or ".LayerNorm." in name
        ):
            v = torch.ones(p.shape) if name.endswith("weight") else torch.zeros(p.shape)
        elif "lora_B" in name:
            v = torch.zeros(p.shape)
        else:
            v = torch.randn(p.shape, generator=g) * 0.02
        set_module_tensor_to_device(model, name, "cpu", value=v.to(p.dtype))
    # Phi-2's tokenizer is not available offline; ids < 1024 index its embedding alike
    model.tokenizer = tiny_tokenizer()
    n = sum(p.numel() for p in model.parameters())
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    print(
        f"built {n:,} parameters with random values in {time.time() - t0:.0f} s; peak RSS "
        f"{rss_gb():.1f} GiB",
        flush=True,
    )

    tcfg = StageTrainConfig(
        stage=2,
        mixture=[MixtureEntry("synth_caption", 1, 1)],
        image_size=224,
        max_txt_len=32,
        iters_per_epoch=1,
        max_epoch=1,
        init_lr=1e-4,
        min_lr=8e-5,
        warmup_lr=1e-6,
        warmup_steps=1,
        mixed_precision="bf16",
        grad_checkpointing=True,
        save_every=10**9,
        log_every=1,
    )
    t1 = time.time()
    h = train_stage(
        model,
        tcfg,
        {"synth_caption": SyntheticDataset("caption", "train", 4)},
        Path(tempfile.mkdtemp()),
        progress=False,
    )["history"]
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        "one stage-2 step at batch 1 (bf16 autocast, activation checkpointing): "
        f"{time.time() - t1:.0f} s, loss {h[0]['loss']:.2f}; {trained:,} trainable parameters; "
        f"peak RSS {rss_gb():.1f} GiB (the paper: 24 GB GPU to train)",
        flush=True,
    )
    cmd = "python research/train_step_memory.py" + (
        " --preset tiny" if args.preset == "tiny" else ""
    )
    rec = {
        "row": "train_step",
        "what": f"one stage-2 training step at {args.preset} size (random weights; frozen ViT and "
                "Phi-2 "
        f"bf16, {trained / 1e6:.1f} M trained parameters fp32, AdamW, batch 1, bf16 autocast, "
        "activation checkpointing)",
        "command": cmd,
        "source": "measured",
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "provenance": f"measured by `{cmd}` at commit "
        f"{git_commit()} on {os.cpu_count()} CPU cores; peak RSS is the process's ru_maxrss",
        "wall_s": round(time.time() - t1),
        "peak_rss": {"value": round(rss_gb(), 1), "unit": "GiB"},
        "detail": f"the weights alone {weights_gib:.1f} GiB; loss {h[0]['loss']:.1f} (random "
                  "weights); "
        "the paper: a 24 GB GPU to train",
    }
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(rec, indent=1) + "\n")
    print(f"-> {args.record}")


if __name__ == "__main__":
    main()
