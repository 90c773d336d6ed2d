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
rows = ["| notebook | what it builds | runs in |", "|---|---|---|"]
for nbf in sorted((root / "nbs").glob("[0-9][0-9]_*.ipynb")):
    head = "".join(json.loads(nbf.read_text(encoding="utf-8"))["cells"][0]["source"]).splitlines()
    what = next((l[2:] for l in head if l.startswith("> ")), "")
    rows.append(f"| `{nbf.stem}` | {what} | {times.get(nbf.stem, float('nan')):.0f} s |")
guide = (root / ".ci" / "course_guide.md").read_text(encoding="utf-8").replace("{{timing_table}}", "\n".join(rows))

outputs = {root / "README.md": readme, root / "nbs" / "README.md": guide}
if "--check" in sys.argv:
    stale = [p.relative_to(root).as_posix() for p, text in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if stale: sys.exit(f"{', '.join(stale)} out of sync with nbs/index.ipynb, .ci/course_guide.md, nbs/timing.json: run `python .ci/readme.py`")
    print("README.md and nbs/README.md are in sync")
else:
    for p, text in outputs.items(): p.write_text(text, encoding="utf-8")
