"""Render README.md from nbs/index.ipynb (Quarto, which nbdev_readme needs, is not available here).

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
if "--check" in sys.argv:
    if (root / "README.md").read_text(encoding="utf-8") != readme:
        sys.exit("README.md is out of sync with nbs/index.ipynb: run `python .ci/readme.py`")
    print("README.md is in sync with nbs/index.ipynb")
else:
    (root / "README.md").write_text(readme, encoding="utf-8")
