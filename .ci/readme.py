"""Render README.md from nbs/index.ipynb (Quarto, which nbdev_readme needs, is not available here), and the course
guide nbs/README.md from .ci/course_guide.md and the notebooks' measured run times (nbs/timing.json).

Markdown cells are copied; code cells are shown as Python blocks followed by their text output. A code cell that starts
with `#| output: asis` contributes only its printed output, as markdown (tables generated from saved JSON); other cells
starting with `#|` (the front door's export cells) are left out.
`python .ci/readme.py` writes README.md; `python .ci/readme.py --check` fails if README.md differs.
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nb = json.loads((root / "nbs" / "index.ipynb").read_text(encoding="utf-8"))
parts = ["<!-- Generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, then run `python .ci/readme.py`. -->"]
for cell in nb["cells"]:
    src = "".join(cell["source"]).strip()
    if cell["cell_type"] == "markdown":
        parts.append(src)
    elif cell["cell_type"] == "code" and src.startswith("#| output: asis"):
        text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if text.strip(): parts.append(text.strip())
    elif cell["cell_type"] == "code" and not src.startswith("#|"):
        parts.append(f"```python\n{src}\n```")
        text = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if text.strip(): parts.append(f"```\n{text.rstrip()}\n```")
readme = "\n\n".join(parts) + "\n"

# the course guide: .ci/course_guide.md with the measured run time of every notebook (nbs/timing.json)
times = json.loads((root / "nbs" / "timing.json").read_text())
rows, ref = ["| notebook | what it builds | runs in |", "|---|---|---|"], []
for nbf in sorted((root / "nbs").glob("[0-9][0-9]_*.ipynb")):
    head = "".join(json.loads(nbf.read_text(encoding="utf-8"))["cells"][0]["source"]).splitlines()
    what = next((l[2:] for l in head if l.startswith("> ")), "")
    row = f"| `{nbf.stem}` | {what.removeprefix('Reference: ')} | {times.get(nbf.stem, float('nan')):.0f} s |"
    (ref if what.startswith("Reference:") else rows).append(row)
if ref: rows += ["| **Reference** | *after the course proper, outside the class plans* | |"] + ref
guide = (root / ".ci" / "course_guide.md").read_text(encoding="utf-8").replace("{{timing_table}}", "\n".join(rows))

# a part's time budget, `{{budget}}` in a row of the one-day plan: reading the sections and exercises the row names
# (prose at 150 words a minute, code at 10 lines a minute, counted), running the part's notebooks (measured,
# nbs/timing.json), and 15 minutes for each exercise the row names
import re
def _cells(stem):
    return json.loads((root / "nbs" / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]
def _section(cells, name):
    "The cells of the section headed `name` (to the next heading of its level or higher), or of an exercise."
    out, level = [], None
    for c in cells:
        src = "".join(c["source"]); head = re.match(r"(#{1,4}) (.*)", src.splitlines()[0]) if src else None
        if head and level is not None and len(head[1]) <= level: break
        if level is None and head and re.sub(r"[`*]", "", head[2].strip()) == name: level = len(head[1])
        elif level is None and c["cell_type"] == "markdown" and f"**{name}" in re.sub(r"`", "", src):
            level = 9                                    # an exercise: its text and its solution
            out.append(c); continue
        if level == 9 and c["cell_type"] == "markdown": break
        if level is not None: out.append(c)
    return out
def budget(row: str) -> str:
    refs = re.findall(r"`(\d\d_[a-z0-9_]+)` § ([^|;`]+?)\s*(?=[|;]|$)", row)
    words = lines = 0
    for stem, name in refs:
        for c in _section(_cells(stem), name):
            src = "".join(c["source"])
            if c["cell_type"] == "markdown": words += len(src.split())
            elif not src.startswith("#| hide"): lines += len(src.splitlines())
    first, last = (int(x) for x in re.search(r"\| (\d\d)–(\d\d) \|", row).groups())
    run = sum(v for k, v in times.items() if k[:2].isdigit() and first <= int(k[:2]) <= last)
    exercises = sum(name.startswith("Exercise") for _, name in refs)
    read = words / 150 + lines / 10
    total = read + run / 60 + 15 * exercises
    return (f"{5 * round(total / 5):.0f} min (reading {read:.0f}, running {run / 60:.0f}, "
            f"{exercises} exercise{'s' * (exercises != 1)} × 15)")
guide = "\n".join(l.replace("{{budget}}", budget(l)) if "{{budget}}" in l else l for l in guide.splitlines()) + "\n"

outputs = {root / "README.md": readme, root / "nbs" / "README.md": guide}
if "--check" in sys.argv:
    stale = [p.relative_to(root).as_posix() for p, text in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if stale: sys.exit(f"{', '.join(stale)} out of sync with nbs/index.ipynb, .ci/course_guide.md, nbs/timing.json: run `python .ci/readme.py`")
    print("README.md and nbs/README.md are in sync")
else:
    for p, text in outputs.items(): p.write_text(text, encoding="utf-8")
