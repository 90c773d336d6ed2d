"""The course's shape, checked: build order (no notebook or module imports a later one), plain numbering, no hidden
imports of the package's own modules inside functions, and the lessons' numbers (stored outputs, figures, cell sizes,
line widths, exercises).

    python .ci/course.py            # prints the numbers; exit 1 when a rule is broken
    python .ci/course.py --json     # the same as JSON

Rules that fail the check: a lettered or non-two-digit notebook name; a notebook that imports a module exported by a
later notebook; a module of the package whose imports point at a later notebook's module; an import of the package's own
modules inside a function body. The lesson numbers (stored outputs, figures, cells over 40 lines, lines over 100
characters, exercises) fail the check once `--strict` is given.
"""
import ast, json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
nbs, lib = root / "nbs", root / "tinygptv"
strict, as_json = "--strict" in sys.argv, "--json" in sys.argv
files = sorted(p for p in nbs.glob("*.ipynb") if not p.name.startswith("_") and p.name != "index.ipynb")
files.append(nbs / "index.ipynb")                  # the front door (tinygptv/__init__.py) comes last
errors, exports, order, info = [], {}, {}, {}

def code_of(nb): return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
def imported_modules(src: str) -> set[str]:
    mods = set(re.findall(r"^\s*(?:from|import)\s+tinygptv\.([a-z_0-9]+)", src, re.M))
    for m in re.finditer(r"^\s*from\s+tinygptv\s+import\s+\(?([^)\n]+)", src, re.M):
        mods |= {"__init__"} | {x.strip().split(" as ")[0] for x in m.group(1).split(",") if x.strip()}
    return mods

for i, p in enumerate(files):
    if p.name != "index.ipynb" and not re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name):
        errors.append(f"{p.name}: notebooks are named NN_name.ipynb (two digits, no letters)")
    nb = json.loads(p.read_text())
    order[p.name] = i
    for s in code_of(nb):
        m = re.search(r"^#\|\s*default_exp\s+(\S+)", s, re.M)
        if m: exports[m.group(1)] = p.name
nums = [int(p.name[:2]) for p in files[:-1]]
if nums != list(range(1, len(nums) + 1)): errors.append(f"notebook numbers are not 01..{len(nums):02d} in sequence: {nums}")

for p in files:
    nb = json.loads(p.read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    srcs = code_of(nb)
    lines = [l for s in srcs for l in s.splitlines()]
    outs = [o for c in cells for o in c.get("outputs", [])]
    figs = sum(1 for o in outs if any(k in o.get("data", {}) for k in ("image/png", "image/svg+xml", "text/html", "text/markdown")))
    figs += sum(1 for c in cells if "".join(c["source"]).startswith("#| output: asis") and c.get("outputs"))  # markdown tables
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown").lower()
    info[p.name] = dict(outputs=len(outs), figures=figs, longest_cell=max((len(s.splitlines()) for s in srcs), default=0),
                        lines=len(lines), over100=sum(len(l) > 100 for l in lines), exercise=bool(re.search(r"^#+\s*exercise", md, re.M)),
                        bytes=p.stat().st_size)
    for mod in sorted(set().union(*map(imported_modules, srcs)) if srcs else ()):
        src_nb = exports.get(mod)
        if src_nb is None: continue
        if order[src_nb] > order[p.name]:
            errors.append(f"{p.name} imports tinygptv.{mod}, which the later {src_nb} builds")

# the package: each module imports only modules built earlier; no imports of its own modules inside functions
mod_order = {m: order[nb] for m, nb in exports.items()}
for f in sorted(lib.glob("*.py")):
    name = f.stem
    if name == "_modidx": continue
    tree = ast.parse(f.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("tinygptv")):
            target = (node.module or "").removeprefix("tinygptv").lstrip(".") or "__init__"
            target = target.split(".")[0]
            if target in mod_order and name in mod_order and mod_order[target] > mod_order[name]:
                errors.append(f"tinygptv/{f.name} imports {target}, built later ({exports[target]})")
    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and (node.level >= 1 or (node.module or "").startswith("tinygptv")):
                errors.append(f"tinygptv/{f.name}:{node.lineno}: {fn.name} imports a tinygptv module inside its body")
            if isinstance(node, ast.Import) and any(a.name.startswith("tinygptv") for a in node.names):
                errors.append(f"tinygptv/{f.name}:{node.lineno}: {fn.name} imports a tinygptv module inside its body")

lessons = [n for n in info if n != "index.ipynb"]
tot_lines, tot_over = sum(info[n]["lines"] for n in info), sum(info[n]["over100"] for n in info)
summary = dict(
    notebooks=len(lessons), without_outputs=[n for n in info if info[n]["outputs"] == 0],
    without_figure=[n for n in info if info[n]["figures"] == 0],
    cells_over_40=[f"{n}:{info[n]['longest_cell']}" for n in info if info[n]["longest_cell"] > 40],
    pct_lines_over_100=round(100 * tot_over / max(tot_lines, 1), 1), with_exercise=sum(info[n]["exercise"] for n in lessons),
    nbs_mb=round(sum(info[n]["bytes"] for n in info) / 1e6, 2), errors=errors)
lesson_rules = [("notebooks without stored outputs", summary["without_outputs"]), ("notebooks without a figure or rendered table",
                summary["without_figure"]), ("code cells over 40 lines", summary["cells_over_40"])]
if as_json: print(json.dumps(dict(summary, per_notebook=info), indent=1))
else:
    print(f"{len(lessons)} lessons + index, {summary['nbs_mb']} MB; forward imports and layering: {len(errors)} problem(s)")
    for e in errors: print("  ERROR", e)
    for what, names in lesson_rules: print(f"{len(names)} {what}" + (": " + ", ".join(names) if names else ""))
    print(f"{summary['pct_lines_over_100']} % of code lines over 100 characters; {summary['with_exercise']} lessons with exercises")
bad_lessons = any(names for _, names in lesson_rules) or summary["pct_lines_over_100"] >= 3 or summary["with_exercise"] < 7
sys.exit(1 if errors or (strict and bad_lessons) else 0)
