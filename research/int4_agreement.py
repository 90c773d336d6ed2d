"""Why the int4 path's greedy answers differ from full precision's (our target: 95 % equal), and
whether error-compensating rounding (GPTQ) closes the gap.

The trained tiny stage-4 model (the shipped weights) answers the 200 held-out questions of
nbs/27_quantization.ipynb (test split, 50 each of [vqa], [refer], [identify], [caption]) greedily in
full precision and in each variant; a row is the share of answers equal to full precision's. Variants:
one source of error at a time (bf16 only, the vision side int8 only, Phi-2 int4 only), the shipped
path (Phi-2 int4 by round-to-nearest, lm_head int8, the vision side int8), and the same path with
Phi-2's layers rounded by GPTQ (Frantar et al. 2022: each column's rounding error pushed onto the
columns not yet rounded, weighted by the inverse Hessian of the layer's inputs, here 256 questions
with their answers from the train split, 32 per stage-4 kind; layer by layer, each layer calibrated
on the outputs of the layers already rounded), with three calibration sets, with lm_head int8 or
kept. The rest measure how fragile the answers are: Phi-2 in int8 weight-only everywhere (twice
int4's bits), and full precision with Gaussian noise added to every Phi-2 weight at five sizes
(0.002 to 0.08 of each row's standard deviation, two draws each; int4's rounding error is about
0.08, written to results/int4_error.json). About four minutes on 2 CPU cores.

    python research/int4_agreement.py
"""

from __future__ import annotations
import json, statistics, tempfile, time
from pathlib import Path

import torch
from torch import nn

from tinygptv.generate import GenerationSettings, answer_questions
from tinygptv.scoring import box_iou
from tinygptv.phi import TinyGPTVPhiDecoderLayer
from tinygptv.prompts import parse_boxes, render
from tinygptv.qlayers import Int4Linear, Int8WeightLinear, int4_group
from tinygptv.quant import _parent, llm_linear_names, load_quantized
from tinygptv.synthetic import STAGE_KINDS, SyntheticDataset
from tinygptv.tiny_backbones import load_tiny_trained
from tinygptv.tokenizer import build_inputs
from tinygptv.vision import preprocess_images

from tiny_phi import RESULTS, git_commit

OUT = RESULTS / "int4_agreement"
KINDS = ("vqa", "refer", "identify", "caption_task")
CMD = "python research/int4_agreement.py"


def gptq_int4(w: torch.Tensor, h: torch.Tensor, group: int, damp: float = 0.1, block: int = 128):
    """GPTQ for torch's int4 format: 4-bit values [N, K] and scales/zeros [K/group, N, 2], each
    group's range taken from the weights as updated when the group is reached."""
    W, (n, k) = w.detach().float().clone(), w.shape
    H = h.double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead], W[:, dead] = 1, 0
    H += damp * torch.diag(H).mean() * torch.eye(k, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()
    block = max(group, block // group * group)
    Q, sz = torch.zeros(n, k, dtype=torch.int32), torch.zeros(k // group, n, 2)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        W1, Hi, E = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2], torch.zeros(n, i2 - i1)
        for i in range(i2 - i1):
            if (i1 + i) % group == 0:
                lo, hi = W1[:, i:i + group].amin(1), W1[:, i:i + group].amax(1)
                scale = (hi - lo).clamp(min=1e-12) / 15
                sz[(i1 + i) // group] = torch.stack([scale, lo + 8 * scale], -1)
            q = ((W1[:, i] - lo) / scale).round_().clamp_(0, 15)
            Q[:, i1 + i] = q.to(torch.int32)
            E[:, i] = (W1[:, i] - (q * scale + lo)) / Hi[i, i]
            W1[:, i:] -= E[:, i:i + 1] * Hi[i, i:][None, :]
        W[:, i2:] -= E @ Hinv[i1:i2, i2:]
    return Q, sz


class _Stop(Exception):
    pass


@torch.no_grad()
def gptq_llm(model, samples, stage: int = 4, batch: int = 16):
    """Phi-2's decoder-layer linear layers replaced, layer by layer, by GPTQ-rounded `Int4Linear`s
    calibrated on `samples` ((image, question, answer) triples)."""
    layers = [m for m in model.llm.modules() if isinstance(m, TinyGPTVPhiDecoderLayer)]
    caught = []

    def catch(mod, args, kwargs):
        caught.append((list(args), {**kwargs, "past_key_values": None, "use_cache": False}))
        raise _Stop

    hook = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    for i in range(0, len(samples), batch):
        ch = samples[i:i + batch]
        b = build_inputs(model.tokenizer, [render(stage, [(q, a)]) for _, q, a in ch], [1] * len(ch),
                         model.cfg.num_image_tokens, "right", model.cfg.max_len)
        try:
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                  pixel_values=preprocess_images([im for im, _, _ in ch], model.image_size))
        except _Stop:
            pass
    hook.remove()
    for layer in layers:
        lins = {n: m for n, m in layer.named_modules()
                if type(m) is nn.Linear and int4_group(m.in_features, m.out_features)}
        H = {}
        hooks = [m.register_forward_hook(lambda mod, inp, out, n=n: H.__setitem__(
            n, H.get(n, 0) + (lambda x: x.T @ x)(inp[0].reshape(-1, inp[0].shape[-1]).float())))
            for n, m in lins.items()]
        for args, kw in caught:
            layer(*args, **kw)
        for h in hooks:
            h.remove()
        for n, m in lins.items():
            q, sz = gptq_int4(m.weight, H.pop(n), int4_group(m.in_features, m.out_features))
            new = Int4Linear.from_int4(q, sz, m.bias)
            parent = layer.get_submodule(n.rpartition(".")[0]) if "." in n else layer
            setattr(parent, n.rpartition(".")[2], new)
        for c in caught:
            out = layer(*c[0], **c[1])
            if c[0]:
                c[0][0] = out
            else:
                c[1]["hidden_states"] = out
    return model


def calibration(seed: int, per_kind: int = 32):
    "Train-split questions with their answers, `per_kind` of each stage-4 kind with an image."
    out = []
    for k in STAGE_KINDS[4]:
        ds = SyntheticDataset(k, "train", per_kind, seed=seed)
        out += [(s.image, *s.turns[0]) for s in (ds[i] for i in range(per_kind))
                if s.image is not None]
    return out


def gptq_model(folder, seed: int, head: str):
    m = load_quantized(folder, quant="none", vision="int8")          # the file's float32, LoRA merged
    gptq_llm(m, calibration(seed))
    if head == "int8":
        lm = m.llm.lm_head
        m.llm.lm_head = Int8WeightLinear.from_float(lm.weight, lm.bias)
    for part in (m.llm, m.llama_proj, m.llama_proj2):      # what the int4 path runs in: bf16
        part.to(torch.bfloat16)                              # (a kept lm_head too)
    return m


def int8_everywhere(folder):
    "Phi-2's decoder layers and lm_head int8 weight-only (a scale per output), computed in bf16."
    m = load_quantized(folder, quant="none", vision="int8")
    for n in llm_linear_names(m) + ["llm.lm_head"]:
        lin, (parent, child) = m.get_submodule(n), _parent(m, n)
        setattr(parent, child, Int8WeightLinear.from_float(lin.weight, lin.bias))
    for part in (m.llm, m.llama_proj, m.llama_proj2): part.to(torch.bfloat16)
    return m


def int4_error(folder) -> float:
    "RMS of the int4 rounding error of Phi-2's decoder-layer weights, over their standard deviation."
    m, err, var = load_quantized(folder, quant="none"), 0.0, 0.0
    for n in llm_linear_names(m):
        w = m.get_submodule(n).weight.detach()
        g = int4_group(w.shape[1], w.shape[0])
        back = Int4Linear.from_float(w, None, g).dequantize()
        err, var = err + (back - w).pow(2).mean().item(), var + w.var().item()
    return (err / var) ** 0.5


def noisy(folder, rel: float, draws=(0, 1)):
    """Full precision (float32) with Gaussian noise added to every weight of Phi-2's linear layers
    and lm_head, `rel` times each row's standard deviation: one model per draw."""
    out = []
    for seed in draws:
        m, g = load_quantized(folder, quant="none"), torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n in llm_linear_names(m) + ["llm.lm_head"]:
                w = m.get_submodule(n).weight
                w.add_(rel * w.std(1, keepdim=True) * torch.randn(w.shape, generator=g))
        out.append(m)
    return out


def int4_float32(folder):
    """Phi-2 int4 (round-to-nearest) with its products in float32 (torch's int4 kernel takes float32
    too, slowly: a reference), lm_head and the vision side float32: int4's rounding alone."""
    m = load_quantized(folder, quant="int4", dtype=torch.float32, quantize_head=False)

    def mm(self, x2):
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x2.float().contiguous(), self.weight_int4, self.group_size, self.scales_zeros.float())
        return y if self.bias is None else y + self.bias.float()

    for mod in m.modules():
        if isinstance(mod, Int4Linear): mod.mm = mm.__get__(mod)
    return m


NOISE = (0.002, 0.008, 0.02, 0.04, 0.08)


VARIANTS = {  # row: (what, how to load it from the folder)
    "bf16_only": ("no quantization, Phi-2 in bf16",
                  lambda f: load_quantized(f, quant="none", dtype=torch.bfloat16)),
    "vision_int8_only": ("vision int8, Phi-2 in float32",
                         lambda f: load_quantized(f, quant="none", vision="int8")),
    "llm_int4_float32": ("Phi-2 int4 (round-to-nearest) computed in float32, lm_head and vision "
                         "float32", int4_float32),
    "llm_int4_only": ("Phi-2 int4 (round-to-nearest), lm_head int8, vision float32",
                      lambda f: load_quantized(f, quant="int4")),
    "shipped": ("the int4 path: Phi-2 int4 (round-to-nearest), lm_head int8, vision int8",
                lambda f: load_quantized(f, quant="int4", vision="int8")),
    "llm_int8_everywhere": ("Phi-2 int8 weight-only (no int4), lm_head int8, vision int8",
                            int8_everywhere),
    **{f"noise_{r}": (f"no quantization: noise of {r} × each row's std added to Phi-2's weights, "
                      "float32 (two draws)", lambda f, r=r: noisy(f, r)) for r in NOISE},
    **{f"gptq_seed{s}": (f"Phi-2 int4 by GPTQ (calibration set {s}), lm_head int8, vision int8",
                         lambda f, s=s: gptq_model(f, s, "int8")) for s in (0, 1, 2)},
    **{f"gptq_seed{s}_head_kept": (f"Phi-2 int4 by GPTQ (calibration set {s}), lm_head bf16, "
                                   "vision int8", lambda f, s=s: gptq_model(f, s, "kept"))
       for s in (0, 1, 2)},
}


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                    help="these rows only (default: all)")
    rows = ap.parse_args().rows
    torch.manual_seed(0)
    folder = load_tiny_trained(4).save_pretrained(Path(tempfile.mkdtemp()) / "tiny-trained-4")
    samples = [SyntheticDataset(k, "test", 50)[i] for k in KINDS for i in range(50)]
    qs, ims = [s.turns[0][0] for s in samples], [s.image for s in samples]
    g = GenerationSettings(max_new_tokens=24)
    ask = lambda m: answer_questions(m, qs, ims, 4, g, batch_size=100)
    full = ask(load_quantized(folder, quant="none"))
    box = lambda a: (parse_boxes(a) or [(0, 0, 0, 0)])[0]
    OUT.mkdir(parents=True, exist_ok=True)
    for row in rows:
        what, load = VARIANTS[row]
        t0, models = time.time(), load(folder)
        sames, ious = [], []
        for m in models if isinstance(models, list) else [models]:      # noise rows: two draws
            got = ask(m)
            sames.append([a == b for a, b in zip(full, got)])
            ious += [box_iou(box(a), box(b)) for a, b in zip(full[50:100], got[50:100]) if a != b]
        rate = sorted(sum(s) / len(s) for s in sames)
        kinds = {k: sorted(sum(s[i * 50:(i + 1) * 50]) for s in sames) for i, k in enumerate(KINDS)}
        rec = {"row": row, "what": what, "command": CMD, "source": "measured",
               "date": time.strftime("%Y-%m-%d"), "commit": git_commit(),
               "provenance": f"measured by `{CMD}` at commit {git_commit()}, 2-core CPU: the shipped "
                             "tiny stage-4 weights, 200 test-split questions (50 per kind), greedy, "
                             "24 new tokens",
               "equal": rate[0] if len(rate) == 1 else [rate[0], rate[-1]],
               "equal_per_kind": {k: v[0] if len(v) == 1 else "–".join(map(str, sorted({*v})))
                                  for k, v in kinds.items()},
               "refer_iou_median_differing": round(statistics.median(ious), 3) if ious else None,
               "seconds": round(time.time() - t0, 1)}
        (OUT / f"{row}.json").write_text(json.dumps(rec, indent=1) + "\n")
        print(row, rec["equal"], rec["equal_per_kind"], flush=True)
    err = {"row": "int4_error", "command": CMD, "source": "measured", "date": time.strftime("%Y-%m-%d"),
           "commit": git_commit(), "int4_rms_error_over_std": round(int4_error(folder), 4)}
    (OUT.parent / "int4_error.json").write_text(json.dumps(err, indent=1) + "\n")
    print("int4 rounding error / weight std:", err["int4_rms_error_over_std"])


if __name__ == "__main__":
    main()
