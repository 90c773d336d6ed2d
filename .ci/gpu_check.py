"""The GPU check (issue "Ready for the first GPU"): the library's paths on a CUDA GPU, a line each.

    .ci/gpu-check                 # on a CUDA machine: the paper-size checks (<= 8 min on one GPU)
    .ci/gpu-check --cpu-smoke     # anywhere: every check at tiny size on the CPU (<= 90 s)
    .ci/gpu-check --only train,chat --steps 1     # a subset (train, finetune, chat, match)

Checks (each a function of `device`, `preset` and a step count, so the CPU smoke runs them all):
  train-stageN   one `prepare_run` + `train_step` run of stage N (1-4) with the paper's batch size,
                 image size and text length (random paper-size weights, synthetic inputs padded to
                 max_txt_len); peak GPU memory against the paper's "24 GB to train".
  finetune       `tinygptv.finetune.finetune` of a random paper-size model folder on a small data
                 file of our own (before/after scoring included); peak GPU memory against 24 GB.
  finetune-bnb-nf4   the same over an NF4 frozen base (`base_quant="bnb-nf4"`, QLoRA-style).
  chat-<quant>   `Chat.load(folder, device, quant, vision)` and one question about a 448-px
                 image, 16 new tokens: decode tokens/s and peak GPU memory against the paper's
                 "8 GB to run".
  tiny-match     the tiny run's first 50 steps of stage 1 (`StageTrainConfig.tiny(1)`, the shipped
                 tiny backbones, `tiny_readers`) on the CPU and on the device from the same seed:
                 the mean of the last 10 losses within 2 % (relative), the largest deviation shown.

Memory is `torch.cuda.max_memory_allocated` (reset before each check) on a GPU, the process's peak
RSS (VmHWM, reset through /proc/self/clear_refs) on the CPU. At tiny size the paper's targets do not
apply: a line passes when its numbers are sane (finite losses, memory measured, tokens decoded).
Each line: name | measured | target | seconds | PASS, FAIL or SKIP; then a summary line. Exit code 1
when a check failed. The random paper-size model folder is written once under runs/gpu-check/.
"""

import argparse, gc, json, math, os, shutil, sys, tempfile, time, traceback, warnings
T_START = time.time()                    # the budget counts the imports too
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "gpu-check"
TRAIN_TARGET_GIB = 24.0   # the paper: trains on a 24 GB GPU (an RTX 3090's 24 GiB)
RUN_TARGET_GIB = 8.0      # the paper: runs in 8 GB of GPU memory
MATCH_TOL = 0.02          # tiny-match: |mean of the last 10 losses, device - CPU| / CPU's
BUDGET_S = {"gpu": 480, "smoke": 90}
QUESTION = "[vqa] what color is the background?"


@dataclass
class Result:
    name: str
    measured: str
    target: str
    status: str           # PASS, FAIL, SKIP
    seconds: float = 0.0

    def line(self) -> str:
        return (f"{self.name:<18} | {self.measured} | target: {self.target} | "
                f"{self.seconds:.0f} s | {self.status}")


# ---------------------------------------------------------------------------------------------
# memory, devices, precision

def _is_cuda(device) -> bool: return torch.device(device).type == "cuda"


def _vmhwm_gib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1]) / 2**20
    return float("nan")


class PeakMemory:
    """Peak memory while the block runs: `max_memory_allocated` on a GPU (reset on entry), the
    process's peak RSS on the CPU (Linux's VmHWM, reset on entry through /proc/self/clear_refs)."""
    def __init__(self, device): self.cuda = _is_cuda(device)
    def __enter__(self):
        if self.cuda:
            gc.collect(); torch.cuda.synchronize(); torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f: f.write("5")
                self.reset = True
            except OSError: self.reset = False     # then the process's peak since it started
        return self
    def __exit__(self, *exc): return False
    def gib(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(); return torch.cuda.max_memory_allocated() / 2**30
        return _vmhwm_gib()
    def reserved_gib(self) -> float:
        return torch.cuda.max_memory_reserved() / 2**30 if self.cuda else float("nan")
    def label(self) -> str:
        if self.cuda: return "GPU max_memory_allocated"
        return "process peak RSS" + ("" if self.reset else " (since the start: no clear_refs)")


def _sync(device):
    if _is_cuda(device): torch.cuda.synchronize()


def _free(device):
    "Memory back to the GPU's pool (a collection takes a second in this big process: GPU only)."
    if _is_cuda(device): gc.collect(); torch.cuda.synchronize(); torch.cuda.empty_cache()


def precision(device) -> tuple[str, str]:
    "(mixed_precision, frozen dtype): bf16 where the GPU has it, else fp16; float32 on the CPU."
    if _is_cuda(device):
        return ("bf16", "bfloat16") if torch.cuda.is_bf16_supported() else ("fp16", "float16")
    return "no", "float32"


@contextmanager
def fresh_accelerate(device):
    """accelerate's process-wide state cleared, so that the next `Accelerator` (made by the library:
    `make_accelerator`) takes this check's mixed precision and device; `device` cpu on a GPU machine
    through ACCELERATE_USE_CPU."""
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True); GradientState._reset_state()
    old = os.environ.pop("ACCELERATE_USE_CPU", None)
    if not _is_cuda(device) and torch.cuda.is_available(): os.environ["ACCELERATE_USE_CPU"] = "true"
    try: yield
    finally:
        os.environ.pop("ACCELERATE_USE_CPU", None)
        if old is not None: os.environ["ACCELERATE_USE_CPU"] = old


def accelerator_for(cfg, device):
    "The library's accelerator for `cfg` (`make_accelerator`), on `device`."
    from tinygptv.train import make_accelerator
    with fresh_accelerate(device): acc = make_accelerator(cfg)
    if acc.device.type != torch.device(device).type:
        raise RuntimeError(f"accelerate chose {acc.device}, not {device}")
    return acc


# ---------------------------------------------------------------------------------------------
# models and data

def _init_value(name: str, shape, g, device, dtype) -> torch.Tensor:
    "`random_model_folder`'s rule: norms ones (weights) and zeros (biases), the rest N(0, 0.02)."
    if "norm" in name.lower() or ".LayerNorm." in name or "ln_vision" in name:
        v = torch.ones(shape, device=device) if name.endswith("weight") else \
            torch.zeros(shape, device=device)
    else: v = torch.randn(shape, generator=g, device=device) * 0.02
    return v.to(dtype)


def random_model(preset: str, device, frozen_dtype: str, stage: int = 1, seed: int = 0):
    """A TinyGPT-V of `preset`'s sizes configured for `stage`, with random weights made on `device`
    one tensor at a time (as `research/train_step_memory.py` and `bench.random_model_folder` do,
    there on the CPU)."""
    from accelerate.utils import set_module_tensor_to_device
    from tinygptv.model import TinyGPTVConfig
    from tinygptv.stages import get_stage
    from tinygptv.synthetic import tiny_tokenizer
    from tinygptv.weights import empty_model
    cfg = TinyGPTVConfig.from_preset(preset, frozen_dtype=frozen_dtype)
    model = empty_model(cfg, get_stage(stage, native_size=cfg.vision.img_size))
    g = torch.Generator(device=device).manual_seed(seed)
    for name, p in list(model.named_parameters()):
        set_module_tensor_to_device(model, name, device,
                                    value=_init_value(name, p.shape, g, device, p.dtype))
    model.tokenizer = tiny_tokenizer()     # Phi-2's is not available offline; its ids index alike
    return model


def model_folder(preset: str, dtype: str, device="cpu") -> tuple[Path, float]:
    """A stage-4 model folder of `preset`'s sizes with random weights, frozen parts in `dtype`: on a
    GPU `random_model` on it, saved (`save_pretrained`; a minute faster than drawing 3.9 billion
    numbers on the CPU), else `bench.random_model_folder`. Built once under runs/gpu-check/ (paper
    size) or in a temporary folder (tiny). (folder, seconds it took to build, 0 when cached)."""
    from tinygptv.bench import random_model_folder
    from tinygptv.model import package_version
    base = CACHE if preset == "paper" else Path(_tmp())
    out = base / f"random-{preset}-stage4-{dtype}-{package_version()}"
    t = time.time()
    if (out / "model.safetensors").exists(): return out, 0.0
    shutil.rmtree(out, ignore_errors=True)
    if _is_cuda(device):
        model = random_model(preset, device, dtype, stage=4)
        model.save_pretrained(out)
        del model; _free(device)
    else: random_model_folder(out, preset=preset, stage=4, dtype=dtype)
    return out, time.time() - t


_TMP = []
def _tmp() -> str:
    if not _TMP: _TMP.append(tempfile.mkdtemp(prefix="gpu-check-"))
    return _TMP[0]


class PaperShaped(torch.utils.data.Dataset):
    """Synthetic samples of `kind` whose answer is repeated until it fills `n_tokens` text tokens
    (the stage's max_txt_len): inputs of the paper's longest shape for a stage."""
    def __init__(self, kind: str, tokenizer, n_tokens: int, n: int = 4096):
        from tinygptv.synthetic import SyntheticDataset
        self.base, self.tok, self.n_tokens = SyntheticDataset(kind, "train", n), tokenizer, n_tokens
        self.name, self.epoch = f"paper_{kind}", 0
    def __len__(self): return len(self.base)
    def set_epoch(self, e): self.epoch = e; self.base.set_epoch(e)
    def __getitem__(self, i):
        s = self.base[i]
        q, a = s.turns[0]
        k = max(1, len(self.tok(" " + a, add_special_tokens=False).input_ids))
        return replace(s, turns=[(q, " ".join([a] * (self.n_tokens // k + 2)))])


STAGE_KIND = {1: "caption", 2: "caption", 3: "detail", 4: "vqa"}


def paper_stage_config(stage: int, model, device, max_batch: int | None = None):
    """The paper's stage `stage` (`StageTrainConfig.paper`): its batch size (the largest of the
    stage's mixture, per GPU; at most `max_batch`), image size and max_txt_len, in this device's
    precision; at tiny size the tiny model's image size and a text length within its context."""
    from tinygptv.mixtures import MixtureEntry, STAGE_MIXTURES
    from tinygptv.stages import get_stage
    from tinygptv.train import StageTrainConfig
    mp, _ = precision(device)
    cfg = StageTrainConfig.paper(stage)
    batch = min(max(e.batch_size for e in STAGE_MIXTURES[stage]), max_batch or 10**9)
    kw = dict(mixed_precision=mp, save_every=10**9, log_every=1,
              mixture=[MixtureEntry(f"paper_{STAGE_KIND[stage]}", 1, batch)])
    if model.cfg.vision.img_size != 224:       # tiny: its native size, its context
        kw.update(image_size=get_stage(stage, native_size=model.cfg.vision.img_size).image_size,
                  max_txt_len=min(cfg.max_txt_len, model.cfg.max_len - model.cfg.num_image_tokens
                                  - 64))
    return replace(cfg, **kw)


def run_steps(model, cfg, readers, device, steps: int, out: Path) -> tuple[list, list]:
    "`steps` steps of the library's loop (`prepare_run`, `train_step`): (history, s per step)."
    from tinygptv.train import prepare_run, train_step
    acc = accelerator_for(cfg, device)
    run = prepare_run(model, cfg, readers, out, acc)
    run.ddp_model.train()
    hist, secs = [], []
    try:
        for step in range(steps):
            t = time.perf_counter()
            rec, _ = train_step(run, step)
            _sync(device); secs.append(time.perf_counter() - t); hist.append(rec)
    finally:
        if _is_cuda(device): acc.free_memory()      # its references; a collection, GPU only
        del run, acc
        _free(device)
    return hist, secs


def _finite(xs) -> bool: return bool(xs) and all(math.isfinite(x) for x in xs)


def _mem_verdict(peak: float, target: float, applies: bool, finite: bool) -> tuple[str, str]:
    "(target text, status)."
    if applies:
        ok = finite and peak <= target
        return f"peak <= {target:g} GiB", "PASS" if ok else "FAIL"
    ok = finite and peak > 0 and math.isfinite(peak)
    return (f"sane numbers (finite, memory measured); the paper's {target:g} GiB applies at paper "
            "size on a GPU"), "PASS" if ok else "FAIL"


def _applies(device, preset) -> bool: return preset == "paper" and _is_cuda(device)


def _mem_text(mem: PeakMemory, peak: float) -> str:
    extra = f", {mem.reserved_gib():.2f} reserved" if mem.cuda else ""
    return f"peak {peak:.2f} GiB ({mem.label()}{extra})"


# ---------------------------------------------------------------------------------------------
# check 1: a training step of each stage

def check_train(device, preset: str = "paper", steps: int = 2, stage: int = 1,
                max_batch: int | None = None) -> Result:
    """One stage's training at the paper's batch (at most `max_batch`), image size and text length;
    peak memory."""
    t0 = time.time()
    mp, frozen = precision(device)
    model = random_model(preset, device, frozen)
    built = time.time() - t0
    cfg = paper_stage_config(stage, model, device, max_batch)
    readers = {f"paper_{STAGE_KIND[stage]}":
               PaperShaped(STAGE_KIND[stage], model.tokenizer, cfg.max_txt_len)}
    with PeakMemory(device) as mem:          # from the model in memory on: weights included
        try:
            hist, secs = run_steps(model, cfg, readers, device, steps, Path(_tmp()) / f"s{stage}")
        finally:
            del model; _free(device)
        peak = mem.gib()
    losses = [h["loss"] for h in hist]
    target, status = _mem_verdict(peak, TRAIN_TARGET_GIB, _applies(device, preset), _finite(losses))
    rate = (f"{secs[-1]:.2f} s/step (first {secs[0]:.2f} s)" if len(secs) > 1
            else f"{secs[0]:.2f} s/step")
    measured = (f"{preset}, {device}, {mp if mp != 'no' else 'fp32'} (frozen {frozen}), batch "
                f"{cfg.mixture[0].batch_size}, {cfg.image_size} px, text <= {cfg.max_txt_len} tok, "
                f"grad ckpt {'on' if cfg.grad_checkpointing else 'off'}; loss "
                + " ".join(f"{x:.3f}" for x in losses) + f"; {rate}; {_mem_text(mem, peak)}; "
                f"model built in {built:.0f} s")
    return Result(f"train-stage{stage}", measured, target, status, time.time() - t0)


# ---------------------------------------------------------------------------------------------
# check 1b: fine-tuning

def finetune_data(folder: Path, size: int, n_images: int = 8) -> Path:
    """A small data file of our own (`finetune`'s JSON lines): question/answer, caption and
    phrase/box records on `n_images` synthetic `size`-px images."""
    from tinygptv.synthetic import caption, draw_scene, make_scene
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n_images):
        sc = make_scene(1000 + i, size=size)
        draw_scene(sc).save(folder / f"img{i}.png")
        o = sc.objects[0]; x, y, w, h = o.box
        recs += [{"image": f"img{i}.png", "question": "what color is the background?",
                  "answer": sc.background},
                 {"image": f"img{i}.png", "caption": caption(sc)},
                 {"image": f"img{i}.png", "phrase": o.name, "box": [x, y, x + w, y + h]}]
    path = folder / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def check_finetune(device, preset: str = "paper", steps: int = 2, batch_size: int = 16,
                   n_images: int = 8, base_quant: str = "none") -> Result:
    """`tinygptv.finetune.finetune` (`FinetuneSettings`' batch size unless `batch_size`) of a random
    stage-4 model folder on `n_images` images' records, a quarter of the images held out and scored
    before and after, Phi-2's frozen linears as `base_quant` while training; peak memory."""
    t0, name = time.time(), "finetune" + ("" if base_quant == "none" else f"-{base_quant}")
    try:
        from tinygptv.finetune import FinetuneSettings, finetune
    except ImportError as e:
        return Result(name, f"tinygptv.finetune not importable ({e})",
                      f"peak <= {TRAIN_TARGET_GIB:g} GiB", "SKIP", time.time() - t0)
    if _is_cuda(device) != torch.cuda.is_available():
        return Result(name, f"finetune trains on the accelerator make_accelerator picks, "
                      f"not {device}", "-", "SKIP", time.time() - t0)
    mp, frozen = precision(device)
    folder, build_s = model_folder(preset, "float16" if _is_cuda(device) else "float32", device)
    work = Path(_tmp()) / "finetune"
    shutil.rmtree(work, ignore_errors=True)
    data = finetune_data(work / "data", 448 if preset == "paper" else 224, n_images)
    s = FinetuneSettings(steps=steps, batch_size=batch_size, holdout=0.25, max_eval=4,
                         save_every=10**6, base_quant=base_quant,
                         frozen_dtype=frozen if _is_cuda(device) else None)
    with PeakMemory(device) as mem:
        try:
            with fresh_accelerate(device):
                rep = finetune(str(folder), data, work / "out", s, progress=False)
        finally: _free(device)
        peak = mem.gib()
    model = rep.pop("model"); del model; _free(device)
    losses = [rep["loss"]["first"], rep["loss"]["last"]]
    target, status = _mem_verdict(peak, TRAIN_TARGET_GIB, _applies(device, preset), _finite(losses))
    mins = rep["minutes"]
    scoring = 60 * (mins["before"] + mins["after"])
    measured = (f"{preset}, {rep['device']}, {rep['mixed_precision']} (frozen "
                f"{frozen if _is_cuda(device) else 'float32'}, base {base_quant}), "
                f"batch {rep['batch_size']}, "
                f"{rep['image_size']} px, {rep['steps']} step(s) on {rep['records']['train']} "
                f"records; "
                f"loss {losses[0]:.3f} -> {losses[1]:.3f}; train {60 * mins['train']:.1f} s, "
                f"scoring {scoring:.1f} s; {_mem_text(mem, peak)}"
                + (f"; folder built in {build_s:.0f} s" if build_s else ""))
    shutil.rmtree(work, ignore_errors=True)
    return Result(name, measured, target, status, time.time() - t0)


# ---------------------------------------------------------------------------------------------
# check 2: chat

class TokenClock:
    "The time after each forward of Phi-2 (the prefill, then one per new token)."
    def __init__(self, llm, device):
        base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
        self.times, self.device = [], device
        self.hook = base.register_forward_hook(self._tick)
    def _tick(self, mod, args, out):
        _sync(self.device); self.times.append(time.perf_counter())
    def remove(self): self.hook.remove()
    def decode_tok_s(self) -> float:
        t = self.times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else float("nan")


def check_chat(device, preset: str = "paper", steps: int = 16, quant: str = "none") -> Result:
    """`Chat.load` of a random stage-4 folder with `quant` (Phi-2 and the vision side), one question
    about a 448-px image, `steps` new tokens: decode tokens/s and peak memory."""
    from tinygptv.chat import Chat
    from tinygptv.synthetic import draw_scene, make_scene
    t0 = time.time()
    folder, build_s = model_folder(preset, "float16" if _is_cuda(device) else "float32", device)
    image = draw_scene(make_scene(0, size=448))
    with PeakMemory(device) as mem:
        t = time.time()
        chat = Chat.load(folder, device=device, quant=quant, vision=quant)
        _sync(device); load_s = time.time() - t
        clock = TokenClock(chat.model.llm, device)
        t = time.perf_counter()
        try: answer = chat.ask(QUESTION, image, max_new_tokens=steps, stop=False)
        finally: clock.remove()
        ask_s = time.perf_counter() - t
        dtype = str(chat.model.llm.get_input_embeddings().weight.dtype).removeprefix("torch.")
        del chat; _free(device)
        peak = mem.gib()
    n, tok_s = len(clock.times), clock.decode_tok_s()
    applies = _applies(device, preset)
    ok = n == steps and math.isfinite(tok_s) and tok_s > 0 and peak > 0
    if applies: ok = ok and peak <= RUN_TARGET_GIB
    target = (f"peak <= {RUN_TARGET_GIB:g} GiB, {steps} tokens decoded" if applies else
              f"{steps} tokens decoded, memory measured; the paper's {RUN_TARGET_GIB:g} GiB applies"
              " at paper size on a GPU")
    first = clock.times[0] - t if clock.times else float("nan")
    measured = (f"{preset}, {device}, quant={quant} vision={quant} (Phi-2 embeddings {dtype}); "
                f"load {load_s:.1f} s; first token {first:.2f} s; {n} tokens, decode "
                f"{tok_s:.1f} tok/s; answer {ask_s:.1f} s ({len(answer)} chars); "
                f"{_mem_text(mem, peak)}"
                + (f"; folder built in {build_s:.0f} s" if build_s else ""))
    return Result(f"chat-{quant}", measured, target, "PASS" if ok else "FAIL", time.time() - t0)


# ---------------------------------------------------------------------------------------------
# check 3: the tiny run on the device against the CPU

def check_tiny_match(device, preset: str = "tiny", steps: int = 50, reference: str = "cpu",
                     tol: float = MATCH_TOL, batch_size: int | None = None) -> Result:
    """Stage 1 of the tiny run (`StageTrainConfig.tiny(1)`, `load_tiny_start`, `tiny_readers`),
    `steps` steps on `reference` and on `device` from the same seed (batches of the preset's 32,
    or `batch_size`): the mean of the last 10 losses within `tol` (relative); the curves' largest
    deviation."""
    if preset != "tiny":
        raise ValueError("the tiny run is the tiny preset's: preset must be 'tiny'")
    from tinygptv.tiny_backbones import load_tiny_start
    from tinygptv.train import StageTrainConfig, tiny_readers
    t0 = time.time()
    cfg = StageTrainConfig.tiny(1, **({"batch_size": batch_size} if batch_size else {}))
    curves, secs = {}, {}
    for k, dev in (("ref", reference), ("dev", device)):
        model = load_tiny_start()
        hist, s = run_steps(model, cfg, tiny_readers(1), dev, steps, Path(_tmp()) / f"tiny-{k}")
        curves[k], secs[k] = [h["loss"] for h in hist], sum(s)
        del model; _free(dev)
    a, b = curves["ref"], curves["dev"]
    k = min(10, steps)
    ma, mb = sum(a[-k:]) / k, sum(b[-k:]) / k
    rel = abs(mb - ma) / max(abs(ma), 1e-12)
    dmax = max(abs(x - y) for x, y in zip(a, b))
    imax = max(range(len(a)), key=lambda i: abs(a[i] - b[i]))
    ok = _finite(a) and _finite(b) and len(a) == len(b) == steps and rel <= tol
    measured = (f"stage 1 of the tiny run, {steps} steps of batch {cfg.batch_size}, {reference} vs "
                f"{device}: loss "
                f"{a[0]:.3f} -> {ma:.4f} vs {b[0]:.3f} -> {mb:.4f} (mean of the last {k}), "
                f"|delta| {rel:.2%}; largest step deviation {dmax:.4f} at step {imax} "
                f"({dmax / max(abs(a[imax]), 1e-12):.2%}); {secs['ref']:.1f} s vs "
                f"{secs['dev']:.1f} s")
    return Result("tiny-match", measured, f"|delta| of the mean of the last {k} <= {tol:.0%}",
                  "PASS" if ok else "FAIL", time.time() - t0)


# ---------------------------------------------------------------------------------------------

def plan(smoke: bool, steps: int | None, only: set) -> list[tuple[str, callable]]:
    "(name, thunk) for each check of the run: paper size on the GPU, or tiny size on the CPU."
    dev, preset = ("cpu", "tiny") if smoke else ("cuda", "paper")
    # the smoke: one step per stage (the paper's batch sizes), fine-tuning on 4 images, chat
    # unquantized, 5 steps of the tiny run against themselves
    train_steps = steps or (1 if smoke else 2)
    match_steps = steps or (5 if smoke else 50)
    ft = dict(n_images=4) if smoke else {}
    quants = ["none"] if smoke else ["none", "bnb-int8", "bnb-nf4"]
    checks = [(f"train-stage{s}", "train", lambda s=s: check_train(dev, preset, train_steps, s))
              for s in (1, 2, 3, 4)]
    checks += [("finetune" + ("" if b == "none" else f"-{b}"), "finetune",
                lambda b=b: check_finetune(dev, preset, train_steps, base_quant=b, **ft))
               for b in ("none", "bnb-nf4")]
    checks += [(f"chat-{q}", "chat", lambda q=q: check_chat(dev, preset, 16, quant=q))
               for q in quants]
    checks.append(("tiny-match", "match", lambda: check_tiny_match(dev, "tiny", match_steps)))
    known = {n for n, _, _ in checks} | {g for _, g, _ in checks}
    if only - known:
        raise SystemExit(f"--only: unknown {', '.join(sorted(only - known))}; known: "
                         f"{', '.join(sorted(known))}")
    return [(n, f) for n, g, f in checks if not only or g in only or n in only]


def describe_device() -> str:
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 "
                f"{'yes' if torch.cuda.is_bf16_supported() else 'no'}; torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}")
    return (f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads; torch "
            f"{torch.__version__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="every check at tiny size on the CPU, few steps (<= 90 s)")
    ap.add_argument("--only", default="", help="comma-separated: train, finetune, chat, match, or "
                    "check names (train-stage4, chat-bnb-nf4, ...)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per check")
    args = ap.parse_args(argv)
    if not args.cpu_smoke and not torch.cuda.is_available():
        build = (f"built for CUDA {torch.version.cuda}" if torch.version.cuda
                 else "a CPU-only build")
        print(f"gpu-check: no CUDA GPU found (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, {build}): nothing to check here. The same checks at tiny "
              "size on the CPU: .ci/gpu-check --cpu-smoke")
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    import logging
    logging.disable(logging.WARNING)                   # one line per check; errors say why
    budget = BUDGET_S["smoke" if args.cpu_smoke else "gpu"]
    if args.cpu_smoke: torch.set_num_threads(1)   # on a shared CPU, 2 threads wait 4x longer
    checks = plan(args.cpu_smoke, args.steps, set(filter(None, args.only.split(","))))
    t = time.time()
    import tinygptv.chat, tinygptv.train, tinygptv.tiny_backbones  # noqa: F401  (timed apart)
    mode = "CPU smoke, tiny size" if args.cpu_smoke else "paper size"
    print(f"gpu-check ({mode}) on {describe_device()}; tinygptv {tinygptv.__version__} imported in "
          f"{time.time() - t:.0f} s", flush=True)
    t0, results = T_START, []
    for name, fn in checks:
        t = time.time()
        if not args.cpu_smoke and t - t0 > budget:       # the GPU run stays within its budget
            r = Result(name, f"not run: {t - t0:.0f} s spent of the {budget} s budget", "-", "SKIP")
            results.append(r); print(r.line(), flush=True); continue
        try: r = fn()
        except Exception as e:
            oom = isinstance(e, torch.cuda.OutOfMemoryError)
            msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
            r = Result(name, ("out of memory: " if oom else f"{type(e).__name__}: ") + msg, "-",
                       "FAIL", time.time() - t)
            traceback.print_exc(file=sys.stderr)
        _free("cuda" if torch.cuda.is_available() else "cpu")   # the failure's frames are gone
        results.append(r)
        print(r.line(), flush=True)
    total = time.time() - t0
    n = {s: sum(r.status == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    over = f"; over the {budget} s budget" if total > budget else ""
    print(f"gpu-check: {len(results)} checks, {n['PASS']} PASS, {n['FAIL']} FAIL, {n['SKIP']} SKIP "
          f"in {total:.0f} s (budget {budget} s{over})", flush=True)
    for d in _TMP: shutil.rmtree(d, ignore_errors=True)
    return 1 if n["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
