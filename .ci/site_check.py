"""The site check (issue 32): the course's web site (`_site/`, built by `.ci/docs.py`) in headless Chromium.

Part of the browser check (`.ci/browser_check.py` calls `check_site` with its browser; `.ci/browser --site-only`
runs this part alone); `.venv/bin/python .ci/site_check.py` runs it on its own too. It builds `_site/` first when
there is none (or it is older than the notebooks, the READMEs or the package), serves it on 127.0.0.1 (a free port,
from a thread of this process), and checks:

1. the landing page (the course guide) lists every numbered lesson of nbs/ (counted now) in its navigation, in
   order, and shows every `## ` section of nbs/README.md (the class plans among them);
2. a lesson page (the first with stored figures, `01_vision_encoder` today) shows its stored figures as images that
   loaded (naturalWidth > 0), its "Exported here" list with links to the API, and its exercise solutions collapsed;
3. the search (Sphinx's, in JavaScript) finds `QK-LayerNorm` on at least one lesson page;
4. the API reference documents `Chat` and `TinyGPTV` (reached from the front door's list), docstrings included.

Saves `site.png` (a lesson page with its figure) to the output folder and prints the site's counts.
"""
import functools, http.server, json, re, subprocess, sys, threading, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
SITE = root / "_site"
SEARCH_TERM = "QK-LayerNorm"
API_NAMES = ("Chat", "TinyGPTV")


def docs():
    "The build script as a module (.ci/docs.py): the same discovery of the lessons and the same counts."
    sys.path.insert(0, str(root / ".ci"))
    try: import docs as d
    finally: sys.path.pop(0)
    return d


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def serve_site():
    "An HTTP server for _site/ on 127.0.0.1 (a free port), in a thread; call .shutdown() to stop it."
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(SITE)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


SOURCES = ("nbs/*.ipynb", "nbs/README.md", "README.md", "research/README.md", "tinygptv/*.py", ".ci/docs*.py")


def ensure_built(out: Path, say) -> bool:
    "Build _site/ (.ci/docs.py) when it is missing or older than what it is built from."
    index = SITE / "index.html"
    newer = [p for g in SOURCES for p in root.glob(g)
             if index.exists() and p.stat().st_mtime > index.stat().st_mtime]
    if index.exists() and not newer: return True
    say(f"site: {'no _site/' if not index.exists() else f'_site/ is older than {newer[0].relative_to(root)}'}; "
        f"building it (.ci/docs.py)")
    log = out / "site-build.log"
    with log.open("w") as f:
        rc = subprocess.run([sys.executable, str(root / ".ci" / "docs.py")], cwd=root, stdout=f,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if rc: print("".join(log.read_text().splitlines(True)[-20:]), end="")
    return rc == 0 and (SITE / "index.html").exists()


def stored_images(path: Path) -> int:
    "Image outputs the page must show: those of the code cells the site keeps (not `#| hide`, not the export)."
    nb, n = json.loads(path.read_text()), 0
    for c in nb["cells"]:
        s = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        if c["cell_type"] != "code" or "nbdev_export(" in s or re.search(r"^#\|\s*hide\b", s, re.M): continue
        n += sum(any(k.startswith("image/") for k in o.get("data", {})) for o in c.get("outputs", []))
    return n


def hidden_cells(path: Path) -> int:
    nb = json.loads(path.read_text())
    return sum(bool(c.get("metadata", {}).get("jupyter", {}).get("source_hidden")) for c in nb["cells"])


LOADED = """async els => Promise.all(els.map(async e => {
  e.loading = 'eager'; try { await e.decode(); } catch (err) {}
  return [e.naturalWidth, e.naturalHeight, e.getAttribute('src').slice(0, 60)]; }))"""


def check_site(browser, out: Path, check, fail, say) -> dict:
    "Run the site checks in `browser` (Playwright); report through check/fail/say. Returns the counts."
    d = docs()
    if not ensure_built(out, say):
        fail(f"site: .ci/docs.py could not build _site/ (see {out / 'site-build.log'})"); return {}
    c = d.counts(SITE)
    say(f"site: pages {c['pages']}, images {c['images']}, API entries {c['api_entries']} "
        f"({c['modules']} modules)")
    lessons = d.lessons()
    srv = serve_site()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = ctx.new_page()
        # 1. the landing page: every lesson in the navigation, in order; the guide's sections
        page.goto(f"{base}/index.html", wait_until="load")
        hrefs = page.eval_on_selector_all("nav.bd-docs-nav a, .bd-sidebar-primary nav a",
                                          "els => els.map(e => e.getAttribute('href'))")
        linked = list(dict.fromkeys(m[1] for h in hrefs if (m := re.match(r"^(?:\./)?(\d\d_\w+)\.html$", h or ""))))
        want = [l.stem for l in lessons]
        check(linked == want, f"site: the landing page's navigation links all {len(want)} lessons in order",
              f"site: the landing page's navigation links {len(linked)} lessons, nbs/ has {len(want)}: "
              f"missing {sorted(set(want) - set(linked))}, extra {sorted(set(linked) - set(want))}"
              + ("" if set(linked) != set(want) else " (order differs)"))
        sections = re.findall(r"^## (.+)$", (root / "nbs" / "README.md").read_text(), re.M)
        shown = [t.strip().rstrip("#").strip() for t in page.eval_on_selector_all(
            "article h2", "els => els.map(e => e.textContent)")]
        missing = [s for s in sections if not any(s.replace("`", "") in t for t in shown)]
        check(sections and not missing, f"site: the landing page shows the guide's {len(sections)} sections "
              f"({'; '.join(sections[:2])}; ...)", f"site: the landing page lacks the guide's sections {missing}")
        # 2. a lesson page: its stored figures loaded, the "Exported here" list, solutions collapsed
        lesson = next((l for l in lessons if stored_images(l.path)), None)
        if lesson is None: fail("site: no lesson has a stored figure")
        else:
            n_img = stored_images(lesson.path)
            page.goto(f"{base}/{lesson.stem}.html", wait_until="load")
            imgs = page.locator("article .cell_output img")
            sizes = imgs.evaluate_all(LOADED) if imgs.count() else []
            ok = [s for s in sizes if s[0] > 0 and s[1] > 0]
            check(len(ok) >= n_img and len(ok) == len(sizes),
                  f"site: {lesson.stem}: {len(ok)} figures loaded (naturalWidth > 0; {n_img} stored)",
                  f"site: {lesson.stem}: {len(ok)} of {len(sizes)} output images loaded; the notebook stores "
                  f"{n_img} (not loaded: {[s[2] for s in sizes if not s[0]][:3]})")
            if lesson.exports:
                links = page.locator(".admonition:has(.admonition-title:text-is('Exported here')) a[href*='api/']")
                check(links.count() > 0, f"site: {lesson.stem}: 'Exported here' links {links.count()} API entries",
                      f"site: {lesson.stem}: no 'Exported here' list linking to the API")
            n_hidden = hidden_cells(lesson.path)
            if n_hidden:
                det = page.locator("article details.hide")
                shut = det.evaluate_all("els => els.filter(e => !e.open).length") if det.count() else 0
                check(det.count() >= n_hidden and shut == det.count(),
                      f"site: {lesson.stem}: {det.count()} solutions shown collapsed",
                      f"site: {lesson.stem}: {shut} collapsed of {det.count()} toggles; {n_hidden} hidden cells")
            if ok:
                imgs.nth(0).scroll_into_view_if_needed()
                page.evaluate("window.scrollBy(0, 180)")
            shot(page, out / "site.png", say)
        # 3. the search finds a lesson
        page.goto(f"{base}/search.html?q={SEARCH_TERM}", wait_until="load")
        try:
            page.wait_for_selector("#search-results .search-summary, #search-results ul.search li", timeout=30_000)
            page.wait_for_function("() => !document.querySelector('#search-progress') || "
                                   "!document.querySelector('#search-progress').textContent.trim()",
                                   timeout=30_000)
        except Exception: pass
        res = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(e => e.getAttribute('href'))")
        hits = sorted({m[1] for h in res if (m := re.match(r"^(?:\./)?(\d\d_\w+)\.html", h or ""))})
        has = [l.stem for l in lessons if SEARCH_TERM in l.path.read_text()]     # the lessons that say it
        check(bool(set(hits) & set(has)),
              f"site: searching {SEARCH_TERM!r} finds {len(hits)} lesson pages, among them "
              f"{', '.join(sorted(set(hits) & set(has))[:3])}",
              f"site: searching {SEARCH_TERM!r} found {len(res)} results, {len(hits)} lesson pages "
              f"({', '.join(hits[:4])}), none of the {len(has)} lessons that contain it ({', '.join(has[:3])})")
        # 4. the API reference: the front door's Chat and TinyGPTV, documented
        page.goto(f"{base}/api/index.html", wait_until="load")
        for name in API_NAMES:
            href = page.locator(f"article a[href$='.{name}']").first
            if not href.count():
                fail(f"site: the API reference's front door does not list {name}"); continue
            url = href.get_attribute("href")
            api = ctx.new_page(); api.goto(f"{base}/api/{url}", wait_until="load")
            anchor = url.partition("#")[2]
            entry = api.locator(f"dt[id='{anchor}']")
            doc = api.locator(f"dt[id='{anchor}'] + dd").inner_text() if entry.count() else ""
            check(entry.count() == 1 and len(doc.strip()) > 20,
                  f"site: the API reference documents {anchor} ({len(doc.strip())} characters)",
                  f"site: the API reference has no documented entry {anchor or name} (from {url})")
            api.close()
    except Exception as e:
        fail(f"site: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}")
    finally:
        ctx.close(); srv.shutdown(); srv.server_close()
    return c


def shot(page, path: Path, say):
    "A screenshot 840 px wide (twice the README's 420), a 128-colour palette PNG."
    import io
    from PIL import Image
    img = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    img = img.resize((840, round(img.height * 840 / img.width)), Image.LANCZOS)
    img.quantize(128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    where = path.relative_to(root) if path.is_relative_to(root) else path
    say(f"screenshot {where} ({path.stat().st_size // 1024} KB)")


def main() -> int:
    "The site check alone, in its own Chromium."
    import argparse
    from playwright.sync_api import sync_playwright
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(root / ".ci" / "out"))
    out = Path(ap.parse_args().out); out.mkdir(parents=True, exist_ok=True)
    t0, failures = time.time(), []
    say = lambda m: print(f"[{time.time() - t0:5.0f} s] {m}", flush=True)
    def fail(m): failures.append(m); say(f"FAIL: {m}")
    def check(ok, good, bad):
        if ok: say(f"ok: {good}")
        else: fail(bad)
        return ok
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        check_site(browser, out, check, fail, say)
        browser.close()
    print("site check passed" if not failures else f"site check FAILED: {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
