"""Execute notebooks in place so they are committed with their outputs (figures visible on GitHub and in JupyterLab),
running exactly the cells the tests run (cells marked `#| notest` or `#| eval: false` are skipped and keep no outputs),
and record how long each takes to run here in `nbs/timing.json`.

    .venv/bin/python .ci/execute.py                 # every notebook, one after another, each in a fresh process
    .venv/bin/python .ci/execute.py 18_stage1_warmup 21_stage4_multitask

Figures are stored as PNG at 72 dpi to keep the notebooks small; run `nbdev_clean` afterwards (the hook and CI check it).
"""
import fcntl, json, os, sys, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["IN_TEST"] = "1"
from execnb.shell import CaptureShell
from nbdev.process import NBProcessor
from nbdev.frontmatter import FrontmatterProc
from fastcore.xtras import working_directory

root = Path(__file__).resolve().parent.parent
nbs = root / "nbs"
SETUP = ("import matplotlib; matplotlib.rcParams.update({'figure.dpi': 72, 'savefig.dpi': 72})\n"
         "%config InlineBackend.figure_formats = ['png']")

def skip(cell):
    if cell.cell_type != "code" or "nbdev_export" + "(" in cell.source: return True
    d = getattr(cell, "directives_", {}) or {}
    return d.get("eval:", [""])[0].lower() == "false" or "notest" in d

def execute(path: Path) -> float:
    nb = NBProcessor(path, procs=FrontmatterProc, process=True).nb
    for c in nb.cells:               # a cell that prints nothing must not keep a previous run's outputs
        if c.cell_type == "code": c.outputs = []
    shell = CaptureShell(path, mpl_format="png")      # execnb defaults to retina (twice the pixels)
    t = time.time()
    with working_directory(path.parent):
        shell.run_cell(SETUP)
        shell.run_all(nb, exc_stop=True, preproc=skip)
    raw = json.loads(path.read_text())
    for c_raw, c in zip(raw["cells"], nb.cells):
        if c_raw["cell_type"] != "code": continue
        outs = [] if skip(c) else [dict(o) for o in c.get("outputs", [])]
        widget = "application/vnd.jupyter.widget-view+json"          # a live widget has no state to store: drop it
        empty = lambda o: o.get("output_type") in ("execute_result", "display_data") and not o.get("data")
        c_raw["outputs"] = [o for o in outs if widget not in o.get("data", {}) and not empty(o)]
        c_raw["execution_count"] = None
    path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n")
    return time.time() - t

if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in nbs.glob("*.ipynb"))
    if len(names) > 1:        # each in a fresh process: its time includes the imports, as a learner's run does
        import subprocess
        for n in names: subprocess.run([sys.executable, __file__, n], check=True)
        sys.exit(0)
    tfile = nbs / "timing.json"
    for n in names:
        p = nbs / (n if n.endswith(".ipynb") else n + ".ipynb")
        s = execute(p)
        print(f"{p.name}: {s:.0f} s", flush=True)
        with open(root / ".ci" / ".timing.lock", "w") as lock:          # several people may execute at once
            fcntl.flock(lock, fcntl.LOCK_EX)
            timing = json.loads(tfile.read_text()) if tfile.exists() else {}
            timing[p.stem] = round(s, 1)
            tfile.write_text(json.dumps(dict(sorted(timing.items())), indent=1) + "\n")
