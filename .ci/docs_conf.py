"""Sphinx's configuration for the course's site. `.ci/docs.py` copies it, as conf.py, beside the sources it
generates (with site.json: the project's name, version and repository from settings.ini); edit it here."""
import inspect, json, re
from pathlib import Path

_site = json.loads((Path(__file__).parent / "site.json").read_text())
project, author, copyright = _site["project"], _site["author"], _site["copyright"]
release = version = _site["version"]
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.githubpages"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

html_theme = "sphinx_book_theme"
html_title = "tinygptv"
html_baseurl = _site["baseurl"]
html_theme_options = {
    "repository_url": _site["git_url"], "repository_branch": _site["branch"],
    "use_repository_button": True, "use_download_button": True, "home_page_in_toc": True,
    "show_toc_level": 2, "navigation_with_keys": False,
}

# The notebooks as stored: nothing runs, stored outputs are shown as they are.
nb_execution_mode = "off"
nb_output_stderr = "show"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "html_image"]     # html_image: <img src=...> is an image (checked)
myst_heading_anchors = 3

# The docstrings are prose with `backticks`: code, linked where it names a documented object.
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_inherit_docstrings = False                  # an override without a docstring is not shown
# A broken reference to the package's own objects fails the build; other libraries' names are not linked.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!tinygptv\b).*")]

_EM = r"(?<![\w*])\*(?=\S)[^*]+?(?<=\S)\*(?![\w*])"        # *emphasis*, as in the notebooks' prose


def _plain(s: str) -> str:
    "Prose outside backticks: escape what reStructuredText would read as markup (|x|, name_, a * b)."
    s = s.replace("\\", "\\\\").replace("|", "\\|")
    s = re.sub(r"(?<=\w)_(?=\W|$)", r"\\_", s)
    parts = re.split(f"({_EM})", s)
    return "".join(p if i % 2 else p.replace("*", "\\*") for i, p in enumerate(parts))


def _text(line: str) -> str:
    "A docstring: `name` becomes a reference (plain code when nothing is documented by that name), "
    "`anything else` literal code, the rest escaped."
    out, pos = [], 0
    for m in re.finditer(r"(`+)((?:(?!\n\s*\n).)+?)\1", line, re.S):
        out.append(_plain(line[pos:m.start()]))
        code = re.sub(r"\s*\n\s*", " ", m[2].strip())
        if re.fullmatch(r"[A-Za-z_][\w.]*", code) and not code.endswith("."): span = f":py:obj:`{code}`"
        else: span = "``" + code.replace("``", "` `") + "``"
        before = line[m.start() - 1] if m.start() else " "
        after = line[m.end()] if m.end() < len(line) else " "
        out.append(("\\ " if re.match(r"[\w\"')\]]", before) else "") + span
                   + ("\\ " if re.match(r"[\w(\[\"]", after) else ""))
        pos = m.end()
    out.append(_plain(line[pos:]))
    return "".join(out)


def prose(app, what, name, obj, options, lines):
    "Docstrings are prose with `backticks`, not reStructuredText."
    if what in ("data", "attribute") and lines and \
            "\n".join(lines).strip() == inspect.cleandoc(type(obj).__doc__ or "").strip():
        lines[:] = []                                # a constant: not its type's docstring (a Logger's, a dict's)
    lines[:] = _text("\n".join(lines)).split("\n") if lines else lines


def setup(app):
    app.connect("autodoc-process-docstring", prose)
