"""Peak memory of `tinygptv convert` at full size, on random weights in the real files' layouts.

Writes paper-size upstream files (fused-QKV Phi-2 `pytorch_model.bin` in fp16 with a tokenizer,
LAVIS `eva_vit_g.pth` in fp16 with its 40 blocks, BLIP-2 in fp32 with BERT's text parts, a stage-3
checkpoint in fp32) into a work folder, then runs `tinygptv convert --stage 3` in a child process
and reports its wall time and peak resident memory (ru_maxrss, which counts memory-mapped file pages
once they are read), and writes them to research/results/memory/convert.json (the `memory` table of
research/README.md).

    python research/convert_memory.py [--workdir /tmp/tinygptv-bench] [--keep] [--record FILE]
    python research/convert_memory.py --preset tiny --record /tmp/convert.json    # a check, seconds

About 17 GB of disk and 11 GB of RAM; a few minutes on 2 cores. A benchmark, not a test.
"""

import argparse, json, math, os, resource, shutil, subprocess, sys, time
from pathlib import Path

import torch

from tinygptv.model import TinyGPTVConfig
from tinygptv.tokenizer import train_bpe_tokenizer
from tinygptv.weights import phi2_config, upstream_manifest

from tiny_phi import RESULTS, git_commit


def write_random(manifest: dict, dtype, path: Path, wrap: bool):
    g = torch.Generator().manual_seed(0)
    sd = {
        k: (
            torch.arange(512).unsqueeze(0)
            if k.endswith("position_ids")
            else (torch.randn(s, generator=g) * 0.02).to(dtype)
        )
        for k, s in manifest.items()
    }
    torch.save({"model": sd} if wrap else sd, path)
    return sum(math.prod(s) for s in manifest.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="/tmp/tinygptv-bench")
    ap.add_argument(
        "--keep", action="store_true", help="keep the generated files and the output folder"
    )
    ap.add_argument(
        "--record", default=str(RESULTS / "memory" / "convert.json"), help="the result JSON"
    )
    ap.add_argument(
        "--preset",
        choices=["paper", "tiny"],
        default="paper",
        help="tiny: a check of the mechanics",
    )
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = TinyGPTVConfig.from_preset(args.preset)
    t0 = time.time()
    phi = work / "phi-2"
    phi.mkdir(exist_ok=True)
    n_phi = write_random(
        upstream_manifest("phi2_fused", cfg), torch.float16, phi / "pytorch_model.bin", wrap=False
    )
    (phi / "config.json").write_text(json.dumps(phi2_config(cfg.llm)))
    train_bpe_tokenizer(["a tokenizer for the benchmark only"] * 4, vocab_size=300).save_pretrained(
        phi
    )
    write_random(upstream_manifest("eva", cfg), torch.float16, work / "eva_vit_g.pth", wrap=False)
    write_random(
        upstream_manifest("blip2", cfg),
        torch.float32,
        work / "blip2_pretrained_flant5xxl.pth",
        wrap=True,
    )
    write_random(
        upstream_manifest("stage", cfg), torch.float32, work / "TinyGPT-V_for_Stage3.pth", wrap=True
    )
    sizes = {
        p.name: p.stat().st_size
        for p in [
            phi / "pytorch_model.bin",
            work / "eva_vit_g.pth",
            work / "blip2_pretrained_flant5xxl.pth",
            work / "TinyGPT-V_for_Stage3.pth",
        ]
    }
    print(
        f"wrote {args.preset}-size files in {time.time() - t0:.0f} s:",
        {k: f"{v / 1e9:.2f} GB" for k, v in sizes.items()},
    )

    out = work / "converted"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from tinygptv.cli import main; sys.exit(main())",
        "convert",
        "--phi2",
        str(phi),
        "--eva",
        str(work / "eva_vit_g.pth"),
        "--blip2",
        str(work / "blip2_pretrained_flant5xxl.pth"),
        "--ckpt",
        str(work / "TinyGPT-V_for_Stage3.pth"),
        "--stage",
        "3",
        "--out",
        str(out),
        "--dtype",
        "float16",
        "--preset",
        args.preset,
    ]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_anon = peak_file = 0
    while (
        proc.poll() is None
    ):  # sample the child's memory: anonymous (really held) vs file-backed (mmap'd sources)
        try:
            st = dict(
                l.split(":", 1)
                for l in open(f"/proc/{proc.pid}/status").read().splitlines()
                if ":" in l
            )
            anon, filed = (int(st[k].split()[0]) * 1024 for k in ("RssAnon", "RssFile"))
            peak_anon, peak_file = max(peak_anon, anon), max(peak_file, filed)
        except (FileNotFoundError, KeyError, ProcessLookupError):
            pass
        time.sleep(0.1)
    out_, err = proc.communicate()
    wall = time.time() - t0
    if proc.returncode:
        sys.exit(f"convert failed:\n{err[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    phi_fp16 = n_phi * 2
    print(
        f"tinygptv convert ({args.preset} preset, stage 3, fp16): {wall:.0f} s; "
        f"peak RSS {peak / 1e9:.2f} GB, of which at most {peak_anon / 1e9:.2f} GB anonymous "
        f"(allocated) and {peak_file / 1e9:.2f} GB file-backed (memory-mapped source pages, "
        f"reclaimable); Phi-2 in fp16 is {phi_fp16 / 1e9:.2f} GB; model.safetensors "
        f"{(out / 'model.safetensors').stat().st_size / 1e9:.2f} GB"
    )
    out_gb = (out / "model.safetensors").stat().st_size / 1e9
    src = {k: round(v / 1e9, 2) for k, v in sizes.items()}
    cmd = "python research/convert_memory.py" + (" --preset tiny" if args.preset == "tiny" else "")
    rec = {
        "row": "convert",
        "what": f"tinygptv convert at {args.preset} size (random weights in the real layouts: "
                "fused Phi-2 "
        f"{src['pytorch_model.bin']} GB fp16, EVA {src['eva_vit_g.pth']} GB, BLIP-2 "
        f"{src['blip2_pretrained_flant5xxl.pth']} GB, a stage-3 checkpoint), stage 3, fp16",
        "command": cmd,
        "source": "measured",
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "provenance": f"measured by `{cmd}` at commit "
        f"{git_commit()} on {os.cpu_count()} CPU cores; peak RSS is the child's ru_maxrss",
        "wall_s": round(wall),
        "peak_rss": {"value": round(peak / 1e9, 2), "unit": "GB"},
        "detail": f"at most {peak_anon / 1e9:.2f} GB allocated, {peak_file / 1e9:.2f} GB "
                  "memory-mapped source pages "
        f"(clean, reclaimable); model.safetensors {out_gb:.1f} GB",
        "source_files_gb": src,
    }
    Path(args.record).parent.mkdir(parents=True, exist_ok=True)
    Path(args.record).write_text(json.dumps(rec, indent=1) + "\n")
    print(f"-> {args.record}")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
