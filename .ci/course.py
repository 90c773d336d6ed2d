"""The course's shape, checked: build order (no notebook or module imports a later one), plain numbering, no hidden
imports of the package's own modules inside functions, and the lessons' numbers (stored outputs, figures, cell sizes,
line widths, exercises).

    python .ci/course.py            # prints the numbers; exit 1 when a rule is broken
    python .ci/course.py --json     # the same as JSON

Rules that fail the check: a lettered or non-two-digit notebook name; a notebook that imports a module exported by a
later notebook; a module of the package whose imports point at a later notebook's module; an import cycle among the
package's modules; an import of the package's own modules inside a function body; a module that changes, when imported,
what another module defines (`@patch` on a class defined elsewhere, an assignment to an attribute of an imported name,
a top-level `setattr`). The lesson numbers (stored outputs, figures, cells over 40 lines, lines over 100
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
graph: dict[str, set[str]] = {}                    # module -> the package's modules it imports
for f in sorted(lib.glob("*.py")):
    name = f.stem
    if name == "_modidx": continue
    tree = ast.parse(f.read_text())
    graph[name] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "tinygptv" for a in node.names) and name != "__init__":
            graph[name].add("__init__")            # `import tinygptv` runs the front door: a cycle
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("tinygptv")):
            target = (node.module or "").removeprefix("tinygptv").lstrip(".") or "__init__"
            target = target.split(".")[0]
            graph[name].add(target)
            if target in mod_order and name in mod_order and mod_order[target] > mod_order[name]:
                errors.append(f"tinygptv/{f.name} imports {target}, built later ({exports[target]})")
    # at import, a module may change only what it defines: no @patch of another module's class,
    # no assignment to an attribute of an imported name (`SomeClass.forward = ...`), no setattr
    defined = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    imported = {a.asname or a.name.split(".")[0] for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    for n in tree.body:
        if isinstance(n, ast.FunctionDef) and any("patch" in ast.unparse(d) for d in n.decorator_list):
            ann = n.args.args[0].annotation if n.args.args else None
            cls = ann.id if isinstance(ann, ast.Name) else ast.unparse(ann) if ann is not None else "?"
            if cls not in defined:
                errors.append(f"tinygptv/{f.name}:{n.lineno}: @patch adds {n.name} to {cls}, a class defined elsewhere")
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            root_ = t
            while isinstance(root_, (ast.Attribute, ast.Subscript)): root_ = root_.value
            if t is not root_ and isinstance(root_, ast.Name) and root_.id in imported:
                errors.append(f"tinygptv/{f.name}:{n.lineno}: assigns {ast.unparse(t)} at import (changes {root_.id}, "
                              "defined elsewhere)")
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) and ast.unparse(n.value.func) == "setattr":
            errors.append(f"tinygptv/{f.name}:{n.lineno}: setattr at import")

    for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and (node.level >= 1 or (node.module or "").startswith("tinygptv")):
                errors.append(f"tinygptv/{f.name}:{node.lineno}: {fn.name} imports a tinygptv module inside its body")
            if isinstance(node, ast.Import) and any(a.name.startswith("tinygptv") for a in node.names):
                errors.append(f"tinygptv/{f.name}:{node.lineno}: {fn.name} imports a tinygptv module inside its body")

def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "One import cycle among the package's modules, as a path, or None."
    state, stack = {}, []
    def visit(m):
        state[m] = 1; stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1: return stack[stack.index(t):] + [t]
            if t not in state and (c := visit(t)): return c
        state[m] = 2; stack.pop()
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c
cycle = _cycle(graph)
if cycle: errors.append("import cycle: " + " -> ".join(cycle))

# ---- the course as a student meets it: sources they can open, cross-references, the guide's plans
def _title(nb) -> tuple[str, str]:
    "A notebook's title and summary (its first cell: `# Title` then `> summary`)."
    head = "".join(nb["cells"][0]["source"]).splitlines()
    return head[0].lstrip("# ").strip(), next((l[2:] for l in head if l.startswith("> ")), "")
nbs_json = {p.name: json.loads(p.read_text()) for p in files}
titles = {n: _title(nb)[0] for n, nb in nbs_json.items() if n != "index.ipynb"}
reference = {n for n, nb in nbs_json.items() if _title(nb)[1].startswith("Reference:")}
headings = {n: {re.sub(r"[`*]", "", l.lstrip("#").strip()) for c in nb["cells"] if c["cell_type"] == "markdown"
                for l in "".join(c["source"]).splitlines() if re.match(r"#{1,4} ", l)} for n, nb in nbs_json.items()}
labels = {n: {re.sub(r"[`*]", "", m.group(1)) for c in nb["cells"] if c["cell_type"] == "markdown"
              for m in re.finditer(r"\*\*(Exercise[^*]*?)\.?\*\*", "".join(c["source"]))} for n, nb in nbs_json.items()}
all_headings = set().union(*headings.values())
INTERNAL = re.compile(r"spec §|\bthe spec\b|\bspecification\b|design[- ]notes|(?<![\w/#-])(?<!TinyGPT-V )(?<!upstream )"
                      r"(?<!upstream's )(?<!MiniGPT-4 )(?<!LLaVA )issues? #?\d+", re.I)
def _texts():
    "(where, text) of every place a student reads: markdown cells, code comments and docstrings, README, the guide."
    for n, nb in nbs_json.items():
        for c in nb["cells"]: yield n, "".join(c["source"])
    for f in sorted(lib.glob("*.py")):
        if f.name != "_modidx.py": yield f"tinygptv/{f.name}", f.read_text()
    for f in (root / "README.md", root / ".ci" / "course_guide.md"): yield f.name, f.read_text()
def _crossref_ok(x: str) -> bool:
    x = x.strip()
    return x in all_headings or any(t == x or t.startswith((x + ",", x + ":", x + " ")) for t in titles.values())
internal_refs, missing_files, bad_xrefs = [], [], []
for where, text in _texts():
    for m in INTERNAL.finditer(text): internal_refs.append(f"{where}: {m.group(0)!r}")
    for m in re.finditer(r"(?<![\w./-])((?:nbs|research|data_samples|tinygptv|\.ci)/[\w./-]*\w)", text):
        if not (root / m.group(1)).exists() and "*" not in m.group(1): missing_files.append(f"{where}: {m.group(1)}")
    if where.endswith((".ipynb", ".md")):
        for m in re.finditer(r"(?<![*\w])\*([A-Z][^*\n]{1,60}?)\*(?![*\w])", text):
            if not _crossref_ok(m.group(1)): bad_xrefs.append(f"{where}: *{m.group(1)}*")
guide = (root / ".ci" / "course_guide.md").read_text()
def _plan(title: str) -> list[str]:
    "The table rows under a `## title` heading of the guide."
    sec = guide.split(f"## {title}", 1)[1].split("\n## ", 1)[0] if f"## {title}" in guide else ""
    return [l for l in sec.splitlines() if l.startswith("|") and not re.match(r"\|\s*-", l)][1:]
bad_slots, parts_without_exercise, slots = [], [], 0
for plan in ("A 90-minute workshop", "A one-day class"):
    rows = _plan(plan)
    if not rows: bad_slots.append(f"course_guide.md: no table under '## {plan}'")
    for row in rows:
        refs = re.findall(r"`(\d\d_[a-z0-9_]+)` § ([^|;`]+?)\s*(?=[|;]|$)", row)
        slots += 1
        if not refs and "questions" not in row: bad_slots.append(f"{plan}: a slot names no `NN_notebook` § section: {row[:80]}")
        for nbname, sec in refs:
            n = nbname + ".ipynb"
            if n not in nbs_json: bad_slots.append(f"{plan}: {nbname} is not a notebook")
            elif sec not in headings[n] and sec not in labels[n]:
                bad_slots.append(f"{plan}: no section '{sec}' in {nbname}")
        if plan == "A one-day class" and not any(s.startswith("Exercise") for _, s in refs):
            parts_without_exercise.append(row.split("|")[1].strip())
long_lessons = [f"{n}:{len(nb['cells'])}" for n, nb in nbs_json.items()
                if n != "index.ipynb" and n not in reference and len(nb["cells"]) > 60]
for what, items in (("a document or issue a student cannot open", internal_refs), ("a file not in the repository",
                    missing_files), ("a cross-reference to no notebook or section", bad_xrefs),
                    ("a guide slot", bad_slots)):
    errors_course = [f"{what}: {x}" for x in items]

lessons = [n for n in info if n != "index.ipynb"]
tot_lines, tot_over = sum(info[n]["lines"] for n in info), sum(info[n]["over100"] for n in info)
summary = dict(
    notebooks=len(lessons), without_outputs=[n for n in info if info[n]["outputs"] == 0],
    without_figure=[n for n in info if info[n]["figures"] == 0],
    cells_over_40=[f"{n}:{info[n]['longest_cell']}" for n in info if info[n]["longest_cell"] > 40],
    pct_lines_over_100=round(100 * tot_over / max(tot_lines, 1), 1), with_exercise=sum(info[n]["exercise"] for n in lessons),
    nbs_mb=round(sum(info[n]["bytes"] for n in info) / 1e6, 2), errors=errors)
lesson_rules = [("notebooks without stored outputs", summary["without_outputs"]), ("notebooks without a figure or rendered table",
                summary["without_figure"]), ("code cells over 40 lines", summary["cells_over_40"]),
                ("references to a document or issue not in the repository", internal_refs),
                ("references to files not in the repository", missing_files),
                ("cross-references matching no notebook title or section", bad_xrefs),
                ("guide slots whose notebook or section does not exist", bad_slots),
                ("lessons in the class plans over 60 cells", long_lessons),
                ("parts of the one-day class without an exercise", parts_without_exercise)]
summary.update({what: names for what, names in lesson_rules[3:]})
if as_json: print(json.dumps(dict(summary, per_notebook=info), indent=1))
else:
    print(f"{len(lessons)} lessons + index, {summary['nbs_mb']} MB; forward imports and layering: {len(errors)} problem(s)")
    for e in errors: print("  ERROR", e)
    for what, names in lesson_rules:
        print(f"{len(names)} {what}" + (": " + "; ".join(names[:12]) + (" ..." if len(names) > 12 else "") if names else ""))
    print(f"{summary['pct_lines_over_100']} % of code lines over 100 characters; {summary['with_exercise']} lessons with exercises; "
          f"{len(reference)} reference notebooks; {slots} guide slots checked")
bad_lessons = any(names for _, names in lesson_rules) or summary["pct_lines_over_100"] >= 3 or summary["with_exercise"] < 7
sys.exit(1 if errors or (strict and bad_lessons) else 0)
