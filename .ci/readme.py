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

# a part's time budget, `{{budget:NN-MM}}`: reading (prose at 150 words a minute, code at 10 lines a minute, counted),
# running every cell (measured, nbs/timing.json) and 10 minutes per exercise (the exercises are counted)
import re
def budget(first: int, last: int) -> str:
    words = lines = run = exercises = 0
    for nbf in sorted((root / "nbs").glob("[0-9][0-9]_*.ipynb")):
        if not first <= int(nbf.name[:2]) <= last: continue
        cells = json.loads(nbf.read_text(encoding="utf-8"))["cells"]
        md = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        words += len(md.split()); exercises += len(re.findall(r"\*\*Exercise", md))
        lines += sum(len("".join(c["source"]).splitlines()) for c in cells if c["cell_type"] == "code"
                     and not "".join(c["source"]).startswith("#| hide"))
        run += times.get(nbf.stem, 0)
    read = words / 150 + lines / 10
    total = read + run / 60 + 10 * exercises
    return (f"{5 * round(total / 5):.0f} min (reading {read:.0f}, running {run / 60:.0f}, "
            f"{exercises} exercise{'s' * (exercises != 1)} × 10)")
guide = re.sub(r"\{\{budget:(\d+)-(\d+)\}\}", lambda m: budget(int(m[1]), int(m[2])), guide)

outputs = {root / "README.md": readme, root / "nbs" / "README.md": guide}
if "--check" in sys.argv:
    stale = [p.relative_to(root).as_posix() for p, text in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if stale: sys.exit(f"{', '.join(stale)} out of sync with nbs/index.ipynb, .ci/course_guide.md, nbs/timing.json: run `python .ci/readme.py`")
    print("README.md and nbs/README.md are in sync")
else:
    for p, text in outputs.items(): p.write_text(text, encoding="utf-8")
