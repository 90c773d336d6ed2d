"""The VQA accuracy that the official evaluators themselves give, on every case of `vqa_cases.py`:
GT-Vision-Lab/VQA master's `VQAEval.evaluate()` and the copy upstream TinyGPT-V ships (with the
raw generation cleaned as upstream's `eval_vqa.py` cleans it for OK-VQA). Written to
nbs/fixtures/vqa_reference.json, which the tests of `tinygptv.scoring` (nbs/13_scoring.ipynb)
compare `vqa_accuracy` with, case by case.

    git clone https://github.com/GT-Vision-Lab/VQA && git -C VQA checkout a013f0043c1e2cdc995922dfe257f7149aa9af06
    git clone https://github.com/DLYuanGod/TinyGPT-V && git -C TinyGPT-V checkout 83f6189b062ccfb41aeb839559eb392bdbbaf0e6
    .venv/bin/python research/vqa_reference.py --master VQA --upstream TinyGPT-V

Nothing of the evaluators is copied into this repository: they are read from those checkouts and run
as they are, with one mechanical change made in memory to master's Python 2 files (`print x` written
`print(x)`, tabs expanded) so that Python 3 can run them. Takes a second.
"""
from __future__ import annotations
import argparse, contextlib, io, json, os, re, sys, tempfile, types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from vqa_cases import make_cases                                    # noqa: E402

OUT = HERE.parent / "nbs" / "fixtures" / "vqa_reference.json"
MASTER = "a013f0043c1e2cdc995922dfe257f7149aa9af06"
UPSTREAM = "83f6189b062ccfb41aeb839559eb392bdbbaf0e6"
EVAL, HELPER = "PythonEvaluationTools/vqaEvaluation/vqaEval.py", "PythonHelperTools/vqaTools/vqa.py"
UPSTREAM_ROOT = "minigpt4/common/vqa_tools/VQA"
HEAD = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "data_subtype": "val2014",
        "license": {}}


def load(path: Path, name: str) -> types.ModuleType:
    "A module from `path`, Python 2 print statements made calls and tabs expanded (in memory)."
    src = path.read_text(encoding="utf-8").expandtabs(4)
    src = re.sub(r"^(\s*)print (?!\()(.+)$", r"\1print(\2)", src, flags=re.M)
    mod = types.ModuleType(name)
    exec(compile(src, str(path), "exec"), mod.__dict__)
    return mod


def qid(i: int) -> int: return (i + 1) * 1000 + 7


def run(root: Path, cases, preds) -> dict[int, float]:
    "One evaluator's per-question accuracy (0-1, unrounded, as `evaluate` computes it) by case id."
    vqa_mod, eval_mod = load(root / HELPER, "vqa"), load(root / EVAL, "vqaEval")
    ann = [{"question_id": qid(c.id), "image_id": c.id + 1, "question_type": "what is",
            "answer_type": "other", "multiple_choice_answer": c.answers[0],
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                        for k, a in enumerate(c.answers)]} for c in cases]
    ques = [{"question_id": qid(c.id), "image_id": c.id + 1, "question": "?"} for c in cases]
    res = [{"question_id": qid(c.id), "answer": p} for c, p in zip(cases, preds)]
    raw = {}
    with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):
        files = {"ann.json": {**HEAD, "annotations": ann}, "ques.json": {**HEAD, "questions": ques},
                 "res.json": res}
        for n, obj in files.items(): Path(d, n).write_text(json.dumps(obj))
        vqa = vqa_mod.VQA(os.path.join(d, "ann.json"), os.path.join(d, "ques.json"))
        ev = eval_mod.VQAEval(vqa, vqa.loadRes(os.path.join(d, "res.json"),
                                               os.path.join(d, "ques.json")), n=2)
        keep = ev.setEvalQA                      # the unrounded value, on its way in
        ev.setEvalQA = lambda q, acc: (raw.__setitem__(q, acc), keep(q, acc))
        ev.evaluate()
    return {c.id: raw[qid(c.id)] for c in cases}


def okvqa_answer(generation: str) -> str:
    "DLYuanGod/TinyGPT-V eval_vqa.py lines 63-65 (what it hands the evaluator for OK-VQA)."
    answer = generation.lower().replace("<unk>", "").strip()
    answer = answer.split("###")[0]
    return answer.split("Assistant:")[-1].strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--master", type=Path, required=True, help=f"GT-Vision-Lab/VQA at {MASTER[:7]}")
    ap.add_argument("--upstream", type=Path, required=True, help=f"TinyGPT-V at {UPSTREAM[:7]}")
    a = ap.parse_args(argv)
    cases = make_cases()
    preds, gens = [c.pred for c in cases], [c.pred + c.tail for c in cases]
    master = run(a.master, cases, preds)
    upstream = run(a.upstream / UPSTREAM_ROOT, cases, preds)
    pipeline = run(a.upstream / UPSTREAM_ROOT, cases, [okvqa_answer(g) for g in gens])
    rows = [{"pred": c.pred, "generation": g, "answers": c.answers, "tag": c.tag,
             "master": master[c.id], "upstream": upstream[c.id], "upstream_okvqa": pipeline[c.id]}
            for c, g in zip(cases, gens)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"sources": {"master": f"GT-Vision-Lab/VQA@{MASTER} {EVAL}",
                                           "upstream": f"DLYuanGod/TinyGPT-V@{UPSTREAM} "
                                                       f"{UPSTREAM_ROOT}/{EVAL}, eval_vqa.py"},
                               "cases": rows}, indent=0, ensure_ascii=False) + "\n")
    differ = sum(r["master"] != r["upstream"] for r in rows)
    print(f"{len(rows)} cases -> {OUT.relative_to(HERE.parent)}; master and upstream's copy differ "
          f"on {differ}")


if __name__ == "__main__":
    main()
