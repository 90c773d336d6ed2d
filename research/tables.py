"""Write research/README.md's tables from the JSON results in research/results/ (stdlib only).

    python research/tables.py            # rewrite every table between its markers
    python research/tables.py --check    # exit 1, naming each table that differs from the JSON (CI)

A table sits between `<!-- table:NAME -->` and `<!-- /table -->` in README.md; TABLES below says
which result files give its rows (one file, one row) and which fields its columns show. See "How to
add a result" in README.md.
"""

from __future__ import annotations
import argparse, json, re, sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
README, RESULTS = HERE / "README.md", HERE / "results"
NAME = "research/README.md"        # as messages name it
SOURCES = ("measured", "transcribed")
MARKER = re.compile(r"(<!-- table:([a-z0-9-]+) -->\n)(.*?)(<!-- /table -->)", re.S)


# --- cell formatters: f(value, record) -> markdown text -------------------------------------------


def pct(v, r=None) -> str:
    "0.74 -> '74 %'; [0.68, 0.71] (a range over runs) -> '68–71 %'; 0.685 -> '68.5 %'."
    if v is None:
        return ""
    if isinstance(v, list):
        if len(set(v)) == 1:
            return pct(v[0])
        return "–".join(pct(x).removesuffix(" %") for x in v) + " %"
    s = f"{v * 100:.1f}".removesuffix(".0")
    return f"{s} %"


def txt(v, r=None) -> str:
    return "" if v is None else str(v)


def code(v, r=None) -> str:
    return f"`{v}`" if v else ""


def num(d: int):
    "A number with `d` decimals; a [lo, hi] range as 'lo–hi'."

    def f(v, r=None):
        if v is None:
            return ""
        if isinstance(v, list):
            return "–".join(f(x) for x in v)
        return f"{v:,.{d}f}"

    return f


def stages(v, r=None) -> str:
    return "" if not v else (f"{v[0]}-{v[-1]}" if len(v) > 1 else str(v[0]))


def qty(v, r=None) -> str:
    return "" if v is None else f"{v['value']:g} {v['unit']}"


def source(v, r=None) -> str:
    "Where the row comes from: 'transcribed (commit)' or 'measured (date, commit)'."
    where = ", ".join(x for x in (r.get("date"), r.get("commit")) if x)
    return f"{v} ({where})" if where else v


@dataclass
class Table:
    files: tuple[str, ...]  # globs under results/, in this order
    columns: tuple[tuple, ...]  # (header, field path 'a.b' ('': the row label), formatter)
    order: tuple[str, ...] = ()  # file names (no .json) first in this order; the rest by name
    rows: str | None = None  # a field holding a list: one row per item (for one run's stages)

    def records(self) -> list[dict]:
        recs = []
        for g in self.files:
            for p in sorted(RESULTS.glob(g)):
                recs.append({"row": p.stem, **load(p), "_stem": p.stem})
        rank = {k: i for i, k in enumerate(self.order)}
        return sorted(recs, key=lambda r: rank.get(r["_stem"], len(rank)))  # stable


def load(p: Path) -> dict:
    "A result file, checked for the fields every result has."
    try:
        r = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"research/{p.relative_to(HERE)}: not valid JSON ({e})")
    for k in ("command", "provenance"):
        if not isinstance(r.get(k), str) or not r[k]:
            raise SystemExit(f"research/{p.relative_to(HERE)}: field {k!r} must be a non-empty "
                             "string")
    if r.get("source") not in SOURCES:
        raise SystemExit(f"research/{p.relative_to(HERE)}: field 'source' must be one of {SOURCES}")
    return r


def field(r: dict, path: str):
    for k in path.split("."):
        if not isinstance(r, dict):
            return None
        r = r.get(k)
    return r


CMD, SRC = ("command", "command", code), ("source", "source", source)


def label(header: str) -> tuple:
    return (header, "", txt)  # the row's label


SCORES = (
    ("vqa", "scores.vqa", pct),
    ("refer", "scores.refer", pct),
    ("identify", "scores.identify", pct),
    ("caption", "scores.caption_task", pct),
)
TABLES = {
    "main-job-stages": Table(
        ("main_job/recorded.json",),
        (
            ("stage", "stage", txt),
            ("steps", "steps", txt),
            ("final loss", "final_loss", num(3)),
            ("minutes", "minutes", num(1)),
            ("held-out answer loss", "heldout_loss", num(3)),
            ("held-out kind", "kind", txt),
        ),
        rows="stages",
    ),
    "main-job-runs": Table(
        ("main_job/*.json",),
        (
            label("run"),
            ("tiny Phi", "phi", txt),
            ("stage 4", "stage4", txt),
            *SCORES,
            ("minutes", "minutes", num(1)),
            CMD,
            SRC,
        ),
        order=("recorded", "rerun", "dev_600", "dev_700", "dev_phi_r1", "text_phi"),
    ),
    "phi-rounds": Table(
        ("phi_rounds/*.json", "tiny_phi_ceiling.json"),
        (
            label("tiny Phi"),
            ("minutes", "minutes", num(1)),
            ("[vqa]", "vqa", pct),
            ("how many", "vqa_by_question.how many", pct),
            ("background", "vqa_by_question.background", pct),
            ("shape of a colour", "vqa_by_question.what shape", pct),
            ("colour of a shape", "vqa_by_question.what color", pct),
            ("where is", "vqa_by_question.where", pct),
            ("is there", "vqa_by_question.is there", pct),
            ("[refer]", "refer", pct),
            ("n vqa / refer", "n_label", txt),
            CMD,
            SRC,
        ),
        order=("round1", "round2", "round3", "round4"),
    ),
    "backbones": Table(
        ("backbones/*.json",),
        (
            label("ViT and Q-Former"),
            ("ViT dense-head box Acc@0.5", "vit_box_acc_224", pct),
            ("Q-Former slot box Acc@0.5", "qformer_box_acc_224", pct),
            ("minutes", "minutes", num(0)),
            CMD,
            SRC,
        ),
        order=("shipped", "before"),
    ),
    "levers-text-phi": Table(
        ("levers_text_phi/*.json",),
        (
            label("variant"),
            ("what changes", "what", txt),
            ("stages run", "stages", stages),
            ("stage 4 min", "minutes", num(1)),
            *SCORES,
            CMD,
            SRC,
        ),
        order=(
            "base",
            "lora_mlp",
            "heads4",
            "proj_gelu",
            "sample_loss",
            "vqa_only",
            "steps3x",
            "unfreeze",
            "context_lm",
        ),
    ),
    "text-phi-stage4": Table(
        ("text_phi_stage4/*.json",),
        (label("run"), ("what changes", "what", txt), *SCORES, CMD, SRC),
        order=("unfreeze", "steps1000", "lr4e-3"),
    ),
    "object-lm": Table(
        ("object_lm/*.json",),
        (
            label("variant"),
            ("how the tiny Phi is pretrained", "what", txt),
            ("minutes", "pretrain_minutes", num(1)),
            ("oracle vqa", "backbone.oracle_vqa", pct),
            ("oracle refer", "backbone.oracle_refer", pct),
            *SCORES,
            ("stage 4 min", "minutes", num(1)),
            ("stage-1 caption loss", "backbone.stage1_caption_loss", num(2)),
            CMD,
            SRC,
        ),
        order=("text_only", "object_lm", "object_lm_vqa", "object_lm_vqa_rerun", "object_lm_ans"),
    ),
    "levers": Table(
        ("levers/*.json",),
        (
            label("variant"),
            ("stages run", "stages", stages),
            ("minutes", "minutes", num(1)),
            *SCORES,
            ("oracle vqa", "backbone.oracle_vqa", pct),
            ("oracle refer", "backbone.oracle_refer", pct),
            ("stage-1 caption loss", "backbone.stage1_caption_loss", num(2)),
            CMD,
            SRC,
        ),
    ),
    "norm-ablation": Table(
        ("norm_ablation/*.json",),
        (
            ("variant", "what", txt),
            ("loss, last 20 steps", "loss_last20", num(3)),
            ("max gradient norm", "max_grad_norm", num(1)),
            ("diverged", "diverged", txt),
            CMD,
            SRC,
        ),
        order=("all_three", "no_qk", "no_post", "frozen_input", "none"),
    ),
    "norm-ablation-long": Table(
        ("norm_ablation_long/*.json",),
        (
            ("variant", "what", txt),
            ("seeds", "seeds", lambda v, r: ", ".join(map(str, v or []))),
            ("loss, last 10 steps", "loss_last10", num(3)),
            ("largest attention logit", "max_logit", num(1)),
            ("largest hidden state", "max_hidden", num(1)),
            ("max gradient norm", "max_grad_norm", num(1)),
            ("runs diverged", "diverged_runs", txt),
            ("fp16 forwards failed", "fp16_failed", txt),
            CMD,
            SRC,
        ),
        order=("all_three", "no_qk", "no_post", "none"),
    ),
    "memory": Table(
        ("memory/*.json",),
        (
            ("what", "what", txt),
            ("wall", "wall_s", lambda v, r: "" if v is None else f"{v:,.0f} s"),
            ("peak RSS", "peak_rss", qty),
            ("of which", "detail", txt),
            CMD,
            SRC,
        ),
        order=("convert", "train_step"),
    ),
    "int4-agreement": Table(
        ("int4_agreement/*.json",),
        (
            ("variant", "what", txt),
            ("answers equal to full precision's (of 200)", "equal", pct),
            ("equal per kind, vqa / refer / identify / caption (of 50)", "equal_per_kind",
             lambda v, r: " / ".join(str(x) for x in v.values())),
            ("differing boxes' IoU with full precision's (median)", "refer_iou_median_differing",
             num(2)),
            CMD,
            SRC,
        ),
        order=("bf16_only", "vision_int8_only", "noise_0.002", "noise_0.008", "noise_0.02",
               "noise_0.04", "noise_0.08", "llm_int8_everywhere", "llm_int4_float32", "llm_int4_only", "shipped", "gptq_seed0",
               "gptq_seed1", "gptq_seed2", "gptq_seed0_head_kept", "gptq_seed1_head_kept",
               "gptq_seed2_head_kept"),
    ),
    "decode-floor": Table(
        ("decode_floor/*.json",),
        (
            ("CPU kinds used", "isa", lambda v, r: "AVX2 only" if v == "avx2" else "all (AVX512-BF16)"),
            ("decode tok/s (LeanDecode)", "tok_s", num(2)),
            ("transformers' step tok/s", "transformers_tok_s", num(2)),
            ("int4 products ms/token", "int4_ms", num(1)),
            ("lm_head int8 ms/token", "lm_head_ms", num(1)),
            ("everything else ms/token", "rest_ms", num(1)),
            ("tok/s if only the kernels ran", "kernel_bound_tok_s", num(2)),
            ("copy bandwidth GB/s", "copy_bandwidth_gb_s", num(1)),
            CMD,
            SRC,
        ),
        order=("native", "avx2"),
    ),
}


def render_table(name: str) -> str:
    "The markdown of table `name` from its result files."
    t = TABLES[name]
    heads = [h for h, _, _ in t.columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    recs = t.records()
    if t.rows:
        recs = [{**item, "_file": r} for r in recs for item in r.get(t.rows, [])]
    for r in recs:
        cells = [f(r["row"] if not path else field(r, path), r) for _, path, f in t.columns]
        lines.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    if len(lines) == 2:
        lines.append("| " + " | ".join(["(no result yet)"] + [""] * (len(heads) - 1)) + " |")
    return "\n".join(lines) + "\n"


def update(text: str) -> tuple[str, list[str], list[str]]:
    """(README text with every table regenerated, tables that changed, marker names TABLES does not
    know)."""
    changed, unknown = [], []

    def sub(m):
        name = m[2]
        if name not in TABLES:
            unknown.append(name)
            return m[0]
        new = render_table(name)
        if new != m[3]:
            changed.append(name)
        return m[1] + new + m[4]

    return MARKER.sub(sub, text), changed, unknown


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if a table differs from the JSON",
    )
    a = p.parse_args(argv)
    text = README.read_text()
    new, changed, unknown = update(text)
    missing = [n for n in TABLES if f"<!-- table:{n} -->" not in text]
    for n in unknown:
        print(
            f"{NAME}: marker table:{n} names no table in research/tables.py TABLES",
            file=sys.stderr,
        )
    for n in missing:
        print(f"{NAME}: no <!-- table:{n} --> marker for table {n!r}", file=sys.stderr)
    if a.check:
        for n in changed:
            print(
                f"{NAME}: table {n!r} differs from research/results (run python "
                "research/tables.py)",
                file=sys.stderr,
            )
        return 1 if changed or unknown or missing else 0
    if new != text:
        README.write_text(new)
    print(
        f"{len(TABLES) - len(missing)} tables written"
        + (f"; changed: {', '.join(changed)}" if changed else "")
    )
    return 1 if unknown or missing else 0


if __name__ == "__main__":
    sys.exit(main())
