"""Where a paper-size int4 token's time goes on this CPU (against our decode targets for the int4
path: 12 tokens/s, 6 with torch and oneDNN limited to AVX2).

The int4 path from a pre-quantized folder (Phi-2 int4 by torch's `_weight_int4pack_mm_for_cpu`,
`lm_head` int8 by `_weight_int8pack_mm`, `LeanDecode` steps), paper sizes, random weights, one
question after 32 image queries, 16 greedy tokens a round. Each round decodes with:

- `all`: the path as shipped;
- `no_int4`: every int4 product replaced by a ready-made output of its shape (no arithmetic);
- `no_kernels`: the int4 products and `lm_head` both replaced so;
- `transformers`: the shipped kernels, transformers' step instead of `LeanDecode`.

Rounds alternate the variants (5 rounds each, a shared machine's drift spread over all) and each
figure is the median milliseconds per token over a variant's 80 tokens. So the int4 products cost
`all - no_int4`, `lm_head` `no_int4 - no_kernels`, and `no_kernels` is everything else (norms,
attention, rotation, the cache, the embedding, Python); the rate the kernels allow if nothing else
ran is 1000 / (int4 + lm_head). Each CPU kind (`native`, `avx2`) runs in its own process. About
five minutes once the folders exist; they are made as `tinygptv bench` makes them (a random
paper-size folder, 5.6 GB in bf16, then a pre-quantized copy per CPU kind), under `--out`.

    python research/decode_floor.py
"""

from __future__ import annotations
import argparse, json, statistics, sys, time
from pathlib import Path

from tiny_phi import RESULTS as ALL_RESULTS, git_commit

RESULTS = ALL_RESULTS / "decode_floor"
CMD = "python research/decode_floor.py"
VARIANTS = ("all", "no_int4", "no_kernels", "transformers")


def measure(folder: str, rounds: int = 5, n_new: int = 16) -> dict:
    "In this process: median ms/token of each variant (see the module's text)."
    import torch
    from tinygptv.bench import _prefill_decode, copy_bandwidth
    from tinygptv.generate import lean_decode
    from tinygptv.hardware import cpu_features
    from tinygptv.prequant import load_prequantized
    from tinygptv.qlayers import Int4Linear, Int8WeightLinear
    m = load_prequantized(folder)
    q = torch.randn(1, m.cfg.num_image_tokens, m.llama_proj.in_features,
                    dtype=m.llama_proj.weight.dtype)
    ready = {}

    def canned(self, x):                                     # a product's output, no arithmetic
        key = (x.shape[:-1], self.out_features)
        if key not in ready: ready[key] = torch.zeros(*key[0], key[1], dtype=torch.bfloat16)
        return ready[key]

    real4, real8 = Int4Linear.mm, Int8WeightLinear.forward
    setups = {"all": (real4, real8, True), "no_int4": (canned, real8, True),
              "no_kernels": (canned, canned, True), "transformers": (real4, real8, False)}
    per = {v: [] for v in VARIANTS}
    _prefill_decode(m, q, 4)                                 # warm
    for _ in range(rounds):
        for v in VARIANTS:
            Int4Linear.mm, Int8WeightLinear.forward, lean = setups[v]
            lean_decode(m.llm, lean)
            per[v] += _prefill_decode(m, q, n_new)[2]
    Int4Linear.mm, Int8WeightLinear.forward = real4, real8
    ms = {v: round(1000 * statistics.median(t), 2) for v, t in per.items()}
    return {"cpu": cpu_features(), "ms_per_token": ms, "tokens_per_variant": rounds * n_new,
            "copy_bandwidth_gb_s": round(copy_bandwidth(), 1)}


def row(folder: Path, isa: str) -> dict:
    from tinygptv.bench import _run_child, prequantized_folder
    pre, _ = prequantized_folder(folder, "int4", "int8", isa)
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import decode_floor as d; print('RESULT' + json.dumps(d.measure({str(pre)!r})))")
    r = _run_child(code, isa, f"decode floor ({isa})")
    ms = r["ms_per_token"]
    int4, head, rest = ms["all"] - ms["no_int4"], ms["no_int4"] - ms["no_kernels"], ms["no_kernels"]
    commit = git_commit()
    return {"row": isa, "command": CMD, "source": "measured", "date": time.strftime("%Y-%m-%d"),
            "commit": commit,
            "provenance": f"measured by `{CMD}` at commit {commit} on this 2-core CPU "
                          f"({r['cpu']['cpu']}, kernels {r['cpu']['aten']}): paper sizes, random "
                          "weights, pre-quantized int4/int8 folder",
            "isa": isa, **r, "tok_s": round(1000 / ms["all"], 2),
            "transformers_tok_s": round(1000 / ms["transformers"], 2),
            "int4_ms": round(int4, 1), "lm_head_ms": round(head, 1), "rest_ms": round(rest, 1),
            "kernel_bound_tok_s": round(1000 / (int4 + head), 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_runs", help="where the model folders are (or go)")
    ap.add_argument("--isa", nargs="+", default=["native", "avx2"])
    a = ap.parse_args()
    from tinygptv.bench import random_model_folder
    folder = random_model_folder(Path(a.out) / "paper-random")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for isa in a.isa:
        r = row(folder, isa)
        (RESULTS / f"{isa}.json").write_text(json.dumps(r, indent=1) + "\n")
        print(isa, r["ms_per_token"], f"kernels alone {r['kernel_bound_tok_s']} tok/s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
