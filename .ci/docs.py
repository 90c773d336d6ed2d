"""The course's web site (issue 32): the stored notebooks as pages, with the course guide, the README's measured
tables, the research records and the package's API, built with Sphinx + MyST-NB + sphinx-book-theme.

    .venv/bin/python .ci/docs.py                    # builds _site/ (warnings are errors)
    .venv/bin/python .ci/docs.py --serve [--port N]  # builds it, then serves it on http://127.0.0.1:8000
    .venv/bin/python .ci/docs.py --serve --no-build  # serves the _site/ already built
    .venv/bin/python .ci/docs.py --sources           # writes the generated sources only (_build/site/src)

Nothing is executed (`nb_execution_mode = "off"`): the pages show the outputs stored in the notebooks. Everything is
discovered at build time: the lessons are `nbs/[0-9][0-9]_*.ipynb` in name order (title: the first markdown cell's
`# ` heading; summary: the `> ` line under it; a summary starting `Reference:` puts the notebook in the toctree's
"Reference" section); the landing page is the course guide `nbs/README.md`; then `research/README.md`, the README
("About / measured") and the API reference, one page per module of `tinygptv/`, each documenting every name in the
module's `__all__` (autodoc), the front door's names (`tinygptv.__all__`) marked. Each lesson page gains an
"Exported here" list linking to the API entries of the modules the notebook exports (`#| default_exp M`).

The notebooks are copied, never edited: in the copies, cells marked `#| hide` (and the `nbdev_export()` call) are
left out, `#|` lines are stripped, a `#| output: asis` cell becomes its output as markdown, hidden cells
(`jupyter.source_hidden`: the exercise solutions) are collapsed under a "Show the solution" toggle, links between
repository files become links between pages (a link to another repository file goes to GitHub), and images are
copied beside the pages. Generated sources and caches go to `_build/site/` (git-ignored); the site to `_site/`,
replaced only when the build succeeds (removed when it fails). The last lines count the pages, images and API
entries.
"""
import argparse, functools, http.server, importlib, inspect, json, os, pkgutil, posixpath, re, shutil, sys, time
from configparser import ConfigParser
from dataclasses import dataclass, field
from pathlib import Path

root = Path(__file__).resolve().parent.parent
BUILD = root / "_build" / "site"                 # generated sources, doctrees, the html before it is moved
SRC, SITE = BUILD / "src", root / "_site"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"}
TRIVIAL = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset)


# ---- what there is: the lessons, the pages, the repository's links
@dataclass
class Lesson:
    path: Path                                   # nbs/NN_name.ipynb
    title: str
    summary: str
    reference: bool                              # the summary starts with "Reference:"
    exports: list = field(default_factory=list)  # modules, from `#| default_exp M` / `#| export M`

    @property
    def stem(self): return self.path.stem


def src_text(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def lessons() -> list[Lesson]:
    "The numbered notebooks in name order, with their title, summary and the modules they export."
    out = []
    for p in sorted((root / "nbs").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(p.read_text())
        md = next((src_text(c) for c in nb["cells"] if c["cell_type"] == "markdown"), "")
        title = next((l[2:].strip() for l in md.splitlines() if l.startswith("# ")), p.stem)
        summary = next((l[1:].strip() for l in md.splitlines() if l.startswith(">")), "")
        exports = []
        for c in nb["cells"]:
            if c["cell_type"] != "code": continue
            for kind, arg in re.findall(r"^#\|\s*(default_exp|exports?)[ \t]+([\w.]+)", src_text(c), re.M):
                if arg not in exports: exports.append(arg)
        out.append(Lesson(p, title, summary, summary.startswith("Reference:"), exports))
    return out


def settings() -> dict:
    cp = ConfigParser(); cp.read(root / "settings.ini")
    return dict(cp["DEFAULT"])


class Pages:
    "Repository paths <-> the site's source documents (all at the top of SRC except the API's)."
    def __init__(self, lessons: list[Lesson], git_url: str, branch: str):
        self.lessons, self.git_url, self.branch = lessons, git_url.rstrip("/"), branch
        self.doc = {"nbs/README.md": "index.md", "README.md": "about.md", "nbs/index.ipynb": "about.md",
                    "research/README.md": "research.md"}
        self.doc.update({f"nbs/{l.path.name}": l.path.name for l in lessons})
        self.by_title = {l.title: f"nbs/{l.path.name}" for l in lessons}
        self.assets: set[str] = set()             # repository files (images) copied beside the pages

    def rewrite_target(self, target: str, repo_src: str, doc: str) -> str:
        "A link or image target in `repo_src` (a repository path), for the page `doc` (a path in SRC)."
        if re.match(r"^([a-z][a-z0-9+.-]*:|#|/|mailto:)", target, re.I): return target
        path, _, anchor = target.partition("#")
        repo = posixpath.normpath(posixpath.join(posixpath.dirname(repo_src), path))
        rel = lambda p: posixpath.relpath(p, posixpath.dirname(doc) or ".")
        anchor = "#" + anchor if anchor else ""
        if repo.startswith("../"): return target                       # outside the repository: as it is
        if repo in self.doc: return rel(self.doc[repo]) + anchor
        f = root / repo
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            self.assets.add(repo); return rel(repo) + anchor            # copied to SRC/<repo path>
        if f.exists():
            kind = "tree" if f.is_dir() else "blob"
            return f"{self.git_url}/{kind}/{self.branch}/{repo}{anchor}"
        return rel(repo) + anchor           # missing: left pointing nowhere, so that the build fails on it

    # -- markdown: links between pages, lesson names in backticks and lesson titles in italics linked
    def markdown(self, text: str, repo_src: str, doc: str) -> str:
        parts = re.split(r"^((?:```|~~~).*?^(?:```|~~~)[ \t]*$)", text, flags=re.M | re.S)  # fences as they are
        return "".join(p if i % 2 else self._prose(p, repo_src, doc) for i, p in enumerate(parts))

    def _prose(self, text: str, repo_src: str, doc: str) -> str:
        here = posixpath.dirname(repo_src) or "."
        stems = {l.stem: f"nbs/{l.path.name}" for l in self.lessons}

        def stem_link(m):                               # `01_vision_encoder`, `nbs/22_x.ipynb`
            repo = stems.get(m[2])
            if repo is None or repo == repo_src: return m[0]
            return f"[{m[1]}]({posixpath.relpath(repo, here)})"
        text = re.sub(r"(?<![\[\w])(`(?:nbs/)?(\d\d_\w+)(?:\.ipynb)?`)(?!\]\()", stem_link, text)
        spans: list[str] = []                           # code spans out of the way of the rest

        def mask(m): spans.append(m[0]); return f"\x00{len(spans) - 1}\x00"
        text = re.sub(r"``[^`].*?``|`[^`\n]+`", mask, text)

        def title_link(m):                              # *Weights* -> the lesson titled "Weights"
            repo = self.by_title.get(m[1])
            if repo is None or repo == repo_src: return m[0]
            return f"[*{m[1]}*]({posixpath.relpath(repo, here)})"
        text = re.sub(r"(?<![*\w\[])\*([^*\n]+)\*(?![*\w\]])", title_link, text)
        text = re.sub(r"(\]\()([^)\s]+)", lambda m: m[1] + self.rewrite_target(m[2], repo_src, doc), text)
        text = re.sub(r"(<img\b[^>]*?\bsrc=)([\"'])([^\"']+)\2",
                      lambda m: f"{m[1]}{m[2]}{self.rewrite_target(m[3], repo_src, doc)}{m[2]}", text)
        text = re.sub(r"^(\s{0,3}\[[^\]]+\]:\s*)(\S+)",
                      lambda m: m[1] + self.rewrite_target(m[2], repo_src, doc), text, flags=re.M)
        return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m[1])], text)


# ---- the notebooks' copies
def directives(src: str) -> tuple[dict, str]:
    "The cell's leading `#|` directives ({name: value}) and its source without them."
    lines, flags = src.splitlines(), {}
    i = 0
    while i < len(lines) and (re.match(r"^\s*#\|", lines[i]) or not lines[i].strip()):
        m = re.match(r"^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$", lines[i])
        if m: flags[m[1].lower()] = m[2]
        i += 1
    return flags, "\n".join(lines[i:])


def is_false(v: str) -> bool: return v.strip().lower() in ("false", "no", "0")


def output_markdown(cell) -> str:
    "A `#| output: asis` cell's outputs as markdown: what it printed and any text/markdown it displayed."
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream" and o.get("name") == "stdout": out.append(src_text({"source": o["text"]}))
        elif "text/markdown" in o.get("data", {}): out.append(src_text({"source": o["data"]["text/markdown"]}))
    return "".join(out)


def md_cell(text: str, n: int) -> dict:
    return {"cell_type": "markdown", "id": f"site{n:04d}", "metadata": {}, "source": text}


def heading_levels(cells: list) -> None:
    "Headings that skip a level (MyST warns on H1 -> H3) raised in the copy, siblings kept siblings."
    stack: list[tuple[int, int]] = []                  # (level in the notebook, level on the page)

    def fix(m):
        level = len(m[1])
        while stack and stack[-1][0] >= level: stack.pop()
        new = stack[-1][1] + 1 if stack else 1
        stack.append((level, new))
        return "#" * new + m[2]
    for c in cells:
        if c["cell_type"] != "markdown": continue
        parts = re.split(r"^((?:```|~~~).*?^(?:```|~~~)[ \t]*$)", c["source"], flags=re.M | re.S)
        parts[::2] = [re.sub(r"^(#{1,6})(\s.*)$", fix, p, flags=re.M) for p in parts[::2]]
        c["source"] = "".join(parts)


def lesson_copy(lesson: Lesson, pages: Pages, api: "Api") -> dict:
    nb = json.loads(lesson.path.read_text())
    repo_src, doc, cells, last_md = f"nbs/{lesson.path.name}", lesson.path.name, [], ""
    for c in nb["cells"]:
        s, meta = src_text(c), dict(c.get("metadata", {}))
        if c["cell_type"] == "markdown":
            last_md = s
            cells.append({**c, "source": pages.markdown(s, repo_src, doc)}); continue
        if c["cell_type"] != "code": continue
        flags, body = directives(s)
        if "hide" in flags or "nbdev_export(" in s or is_false(flags.get("include", "true")): continue
        if flags.get("output") == "asis":
            cells.append(md_cell(pages.markdown(output_markdown(c), repo_src, doc), len(cells))); continue
        tags = list(meta.get("tags", []))
        if is_false(flags.get("echo", "true")): tags.append("remove-input")
        if is_false(flags.get("output", "true")): tags.append("remove-output")
        hidden = meta.pop("jupyter", {}) or {}
        if hidden.get("source_hidden"):               # an exercise's solution: collapsed, not removed
            tags.append("hide-cell")
            what = "solution" if re.search(r"exercise", last_md, re.I) else "hidden cell"
            meta["mystnb"] = {"code_prompt_show": f"Show the {what}", "code_prompt_hide": f"Hide the {what}"}
        elif hidden.get("outputs_hidden"): tags.append("hide-output")
        if tags: meta["tags"] = tags
        if not body.strip() and not c.get("outputs"): continue
        cells.append({**c, "metadata": meta, "source": body})
    first = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"), -1)
    exported = api.exported_here(lesson)
    if exported: cells.insert(first + 1, md_cell(exported, len(cells)))
    heading_levels(cells)
    nb["cells"] = cells
    nb.setdefault("metadata", {}).setdefault("kernelspec", {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"})
    return nb


# ---- the API reference: every module's __all__, grouped by module, the front door marked
class Api:
    def __init__(self, lessons: list[Lesson]):
        os.environ.setdefault("MPLBACKEND", "Agg")
        sys.path.insert(0, str(root))
        self.pkg = importlib.import_module("tinygptv")
        self.front = list(getattr(self.pkg, "__all__", []))
        found = sorted(m.name for m in pkgutil.iter_modules(self.pkg.__path__) if not m.name.startswith("_"))
        self.lesson_of = {}                                  # module -> the lesson exporting it
        for l in lessons:
            for m in l.exports: self.lesson_of.setdefault(f"tinygptv.{m}", l)
        in_course = [m for l in lessons for m in l.exports if m in found]
        order = list(dict.fromkeys(in_course + found))
        self.modules = {}                                    # "tinygptv.vision" -> [names], course order
        for m in order:
            mod = importlib.import_module(f"tinygptv.{m}")
            if getattr(mod, "__all__", None): self.modules[mod.__name__] = list(mod.__all__)
        self.home = {}                                       # front-door name -> its module's page
        for n in self.front:
            obj = getattr(self.pkg, n)
            m = getattr(obj, "__module__", None)
            if m not in self.modules or n not in self.modules[m]:
                m = next((k for k, v in self.modules.items() if n in v), None)
            if m is None: raise SystemExit(f"docs: tinygptv.{n} is in tinygptv.__all__ but in no module's __all__")
            self.home[n] = m

    @property
    def n_names(self): return sum(len(v) for v in self.modules.values())

    def exported_here(self, lesson: Lesson) -> str:
        rows = []
        for m in (f"tinygptv.{x}" for x in lesson.exports):
            names = self.modules.get(m)
            if not names: continue
            refs = [f"{{py:obj}}`~{m}.{n}`" + (" (front door)" if self.home.get(n) == m else "") for n in names]
            rows.append(f"- {{doc}}`{m} <api/{m}>`: " + ", ".join(refs))
        if not rows: return ""
        return ":::{admonition} Exported here\n:class: tip\n\n" + "\n".join(rows) + "\n:::\n"

    def index(self, pages: Pages) -> str:
        lines = ["API reference", "=" * 13, "",
                 "Every name in the ``__all__`` of every module of ``tinygptv``, grouped by module in course order, "
                 "from the docstrings. The front door (``tinygptv.__all__``, importable as ``from tinygptv import "
                 "...``) is marked *front door*.", "", ".. py:module:: tinygptv", "", "Front door", "-" * 10, ""]
        by_mod: dict[str, list[str]] = {}
        for n, m in self.home.items(): by_mod.setdefault(m, []).append(n)
        for m in self.modules:
            if m in by_mod:
                lines.append(f"- :doc:`{m}`: " + ", ".join(f":py:obj:`~{m}.{n}`" for n in by_mod[m]))
        lines += ["", "Modules", "-" * 7, "", ".. list-table::", "   :header-rows: 1", "",
                  "   * - module", "     - names", "     - lesson"]
        for m, names in self.modules.items():
            l = self.lesson_of.get(m)
            lesson = f":doc:`{l.stem} <../{l.stem}>`" if l else "(none)"
            lines += [f"   * - :doc:`{m}`", f"     - {len(names)}", f"     - {lesson}"]
        lines += ["", ".. toctree::", "   :hidden:", ""] + [f"   {m}" for m in self.modules]
        return "\n".join(lines) + "\n"

    def module_page(self, m: str) -> str:
        mod, l = importlib.import_module(m), self.lesson_of.get(m)
        lines = [f"``{m}``", "=" * (len(m) + 4), "", f".. automodule:: {m}", ""]
        if l: lines += [f"Exported by the lesson :doc:`{l.title} <../{l.stem}>` ({l.stem}).", ""]
        seen = {}                                             # id -> the entry already documenting it
        for mm, names in self.modules.items():
            if mm == m: break
            for n in names:
                o = getattr(importlib.import_module(mm), n)
                if not isinstance(o, TRIVIAL): seen.setdefault(id(o), (mm, n))
        for n in self.modules[m]:
            obj, full = getattr(mod, n), f"{m}.{n}"
            front = ["", f"   *Front door:* ``from tinygptv import {n}``"] if self.home.get(n) == m else []
            if inspect.isclass(obj):
                lines += [f".. autoclass:: {full}", "   :members:"] + front
            elif inspect.isroutine(obj):
                lines += [f".. autofunction:: {full}"] + front
            elif not isinstance(obj, TRIVIAL) and id(obj) in seen:
                mm, nn = seen[id(obj)]
                lines += [f".. py:data:: {full}", "", f"   The same object as :py:data:`{mm}.{nn}`."]
            else:
                lines += [f".. autodata:: {full}"]
                if len(repr(obj)) > 120: lines.append("   :no-value:")
                lines += front
            if not isinstance(obj, TRIVIAL): seen.setdefault(id(obj), (m, n))
            lines.append("")
        return "\n".join(lines) + "\n"


# ---- writing the sources, building, counting
def write(path: Path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)


def generate() -> dict:
    "Write the site's sources to SRC (replacing what was there). Returns what was written, for the counts."
    cfg, ls = settings(), lessons()
    if not ls: raise SystemExit("docs: no notebooks nbs/[0-9][0-9]_*.ipynb")
    pages, api = Pages(ls, cfg.get("git_url", ""), cfg.get("branch", "main")), Api(ls)
    shutil.rmtree(SRC, ignore_errors=True); SRC.mkdir(parents=True)
    for l in ls: write(SRC / l.path.name, json.dumps(lesson_copy(l, pages, api), indent=1))
    course = [l for l in ls if not l.reference]
    reference = [l for l in ls if l.reference]
    toc = lambda caption, entries: (["", "```{toctree}", f":caption: {caption}", ":maxdepth: 1", ":hidden:", ""]
                                    + entries + ["```"])
    entry = lambda l: f"{l.stem[:2]} · {l.title} <{l.stem}>"
    index = pages.markdown((root / "nbs" / "README.md").read_text(), "nbs/README.md", "index.md").rstrip()
    index += "\n" + "\n".join(toc("Course", [entry(l) for l in course]))
    if reference: index += "\n" + "\n".join(toc("Reference", [entry(l) for l in reference]))
    more = ["research"] if (root / "research" / "README.md").exists() else []
    index += "\n" + "\n".join(toc("More", more + ["About / measured <about>", "API reference <api/index>"])) + "\n"
    write(SRC / "index.md", index)
    if more:
        write(SRC / "research.md",
              pages.markdown((root / "research" / "README.md").read_text(), "research/README.md", "research.md"))
    write(SRC / "about.md", pages.markdown((root / "README.md").read_text(), "README.md", "about.md"))
    write(SRC / "api" / "index.rst", api.index(pages))
    for m in api.modules: write(SRC / "api" / f"{m}.rst", api.module_page(m))
    for a in sorted(pages.assets): write(SRC / a, (root / a).read_bytes())
    shutil.copyfile(root / ".ci" / "docs_conf.py", SRC / "conf.py")
    write(SRC / "site.json", json.dumps(dict(
        project=cfg.get("lib_name", "tinygptv"), author=cfg.get("author", ""), version=cfg.get("version", ""),
        copyright=cfg.get("copyright", "").replace("%(author)s", cfg.get("author", "")),
        baseurl=cfg.get("doc_host", "").rstrip("/") + cfg.get("doc_baseurl", "") + "/",
        git_url=cfg.get("git_url", ""), branch=cfg.get("branch", "main")), indent=1))
    return dict(lessons=len(course), reference=len(reference), modules=len(api.modules), names=api.n_names,
                front=len(api.front))


def counts(site: Path) -> dict:
    "Pages, images, API entries in the built site."
    from sphinx.util.inventory import InventoryFile
    special = {"genindex.html", "search.html", "py-modindex.html"}
    html = [p for p in site.rglob("*.html") if not any(x.startswith("_") for x in p.relative_to(site).parts)
            and p.name not in special]
    images = [p for p in site.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and "_static" not in p.parts]
    with open(site / "objects.inv", "rb") as f:
        inv = InventoryFile.load(f, "", posixpath.join)
    inv = getattr(inv, "data", inv)
    py = {k: [n for n in v if n.startswith("tinygptv.")] for k, v in inv.items() if k.startswith("py:")}
    entries = sum(len(v) for k, v in py.items() if k != "py:module")
    return dict(pages=len(html), images=len(images), api_entries=entries, modules=len(py.get("py:module", [])))


def build(jobs: str = "1") -> int:
    t = time.time()
    os.environ.update(MPLBACKEND="Agg", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")   # autodoc imports the package
    print("docs: writing the sources to", SRC.relative_to(root), flush=True)
    try: info = generate()
    except Exception as e:                          # the package does not import, a notebook does not parse, ...
        import traceback; traceback.print_exc()
        shutil.rmtree(SITE, ignore_errors=True)
        print(f"docs FAILED: could not write the sources: {type(e).__name__}: {e}. {SITE.name}/ removed.")
        return 1
    print(f"docs: {info['lessons']} lessons, {info['reference']} reference notebooks, {info['modules']} modules "
          f"({info['names']} names, {info['front']} in the front door); building with Sphinx", flush=True)
    html, doctrees = BUILD / "html", BUILD / "doctrees"
    shutil.rmtree(html, ignore_errors=True); shutil.rmtree(doctrees, ignore_errors=True)   # -W needs every page read
    from sphinx.cmd.build import build_main       # in this process: the package is imported once
    rc = build_main(["-b", "html", "-W", "--keep-going", "-q", "-j", jobs, "-d", str(doctrees), str(SRC), str(html)])
    shutil.rmtree(SITE, ignore_errors=True)
    if rc != 0:
        print(f"docs FAILED: sphinx-build exited {rc} (warnings are errors; see above). {SITE.name}/ removed.\n"
              f"  The files named are copies in {SRC.relative_to(root)}/: index.md is nbs/README.md, about.md "
              f"README.md, research.md research/README.md, NN_name.ipynb nbs/NN_name.ipynb, api/*.rst the modules' "
              f"docstrings (tinygptv/*.py); fix the originals.")
        return rc or 1
    html.rename(SITE)
    c = counts(SITE)
    print(f"docs: built {SITE.relative_to(root)}/ in {time.time() - t:.0f} s")
    print(f"pages: {c['pages']}, images: {c['images']}, API entries: {c['api_entries']} "
          f"({info['names']} names in {c['modules']} modules, {info['front']} in the front door)")
    return 0


def serve(port: int):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as httpd:
        print(f"docs: serving {SITE.relative_to(root)}/ on http://127.0.0.1:{httpd.server_address[1]}/ "
              f"(Ctrl-C stops)", flush=True)
        try: httpd.serve_forever()
        except KeyboardInterrupt: pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve", action="store_true", help="serve _site/ on 127.0.0.1 after building it")
    ap.add_argument("--no-build", action="store_true", help="with --serve: serve the _site/ already built")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--sources", action="store_true", help="write the generated sources only")
    ap.add_argument("-j", "--jobs", default="1", help="sphinx-build's -j (default: 1; auto: one per core)")
    args = ap.parse_args()
    if args.sources: generate(); print("docs: sources in", SRC); return 0
    if not (args.serve and args.no_build):
        rc = build(args.jobs)
        if rc: return rc
    if args.serve:
        if not (SITE / "index.html").exists(): print("docs: no _site/index.html; build it first"); return 1
        serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
