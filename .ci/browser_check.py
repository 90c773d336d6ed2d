"""The browser check (issue 22): the course in a real JupyterLab, and the demo page, in headless
Chromium.

    .venv/bin/python .ci/browser_check.py [--break-widget] [--update-images] [--out .ci/out]

1. Starts `jupyter lab --no-browser` on 127.0.0.1 with a token, over copies of the notebooks
   (nothing in nbs/ is saved over). In the copies it opens, the cells `nbdev_test` skips
   (`#| notest`, `#| eval: false`, the `nbdev_export()` call) are left out and hidden exercise
   solutions are shown.
2. In Chromium (Debian's, driven by Playwright): opens `32_demo`, runs all cells through
   JupyterLab's Run menu (`runmenu:run-all`), waits for the widget, asks a `[vqa]` question about a
   held-out scene, then a `[refer]` one (a new task: the widget must say it is a new chat), and
   checks each shown answer against `Chat.ask` for the same model, image and question (computed
   here) and against the scene's truth, and that the image shown is the one with the answer's box
   drawn, 320 px wide; no cell may show an error or stderr output (library noise).
3. Opens `01_vision_encoder` and a stage notebook, runs them the same way, and checks that every
   code cell ran, none shows an error, and their figures are images that loaded in the page.
4. Starts the demo page (`tinygptv demo --model tiny`: Voila), asks it a `[refer]` question, checks
   the answer and the box drawn as in 2.
5. The site (issue 32; `.ci/site_check.py`): serves `_site/` (built by `.ci/docs.py` first when it is missing
   or older than the notebooks) on 127.0.0.1 and checks that the landing page's navigation lists every
   numbered lesson, a lesson page's stored figures load, the search finds a lesson, the API reference
   documents `Chat` and `TinyGPTV`; prints the site's counts (pages, images, API entries).
6. Saves screenshots under --out, stops the servers and leaves no process behind.

`--break-widget` replaces the ask button's handler with one that raises (in the copy of the demo
notebook only): the check must then fail and name what did not appear. `--update-images` copies the
screenshots the README shows to nbs/images/ (only when the check passed). `--site-only` runs part 5
alone (with `--update-images`: copies site.png only). Exit code 0 when every check passed.

"""
import argparse, io, json, os, re, secrets, shutil, signal, socket, subprocess, sys, tempfile, time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import site_check                                                   # part 5: the site

root = Path(__file__).resolve().parent.parent
NOTEBOOKS = ("32_demo", "01_vision_encoder", "18_stage1_warmup")    # the demo, the eye, a stage
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-sync", "--disable-background-networking", "--disable-component-update"]
BREAK_CELL = ('from tinygptv.demo import ChatDemo\n'
              'def _broken_ask(self):\n'
              '    raise RuntimeError("broken on purpose: .ci/browser --break-widget")\n'
              'ChatDemo.ask = _broken_ask')
t0 = time.time()
S = SimpleNamespace(nbs=None, refs={}, notebooks=NOTEBOOKS)      # the workspace, the answers
failures: list[str] = []

def say(msg): print(f"[{time.time() - t0:5.0f} s] {msg}", flush=True)
def fail(msg): failures.append(msg); say(f"FAIL: {msg}")
def check(ok, msg_ok, msg_fail):
    if ok: say(f"ok: {msg_ok}")
    else: fail(msg_fail)
    return ok

# ---- the workspace: copies of the notebooks, beside links to the rest of the repository
def skipped(cell) -> bool:
    "Cells nbdev_test does not run: `#| notest`, `#| eval: false`, and the `nbdev_export()` call."
    s = "".join(cell["source"])
    flags = re.findall(r"^#\|\s*(.*)$", s, re.M)
    return cell["cell_type"] == "code" and ("nbdev_export(" in s or any(
        f.strip() == "notest" or re.fullmatch(r"eval:\s*false", f.strip(), re.I) for f in flags))

def workspace(tmp: Path, break_widget: bool) -> Path:
    "tmp/nbs holds copies of the notebooks; tmp/<name> links to the repository's other entries."
    nbs = tmp / "nbs"; nbs.mkdir()
    for p in root.iterdir():
        if p.name not in ("nbs", ".git", ".ci"): (tmp / p.name).symlink_to(p)
    for p in (root / "nbs").iterdir():                 # the file browser shows the whole course
        if p.suffix != ".ipynb": (nbs / p.name).symlink_to(p)
        elif p.stem not in S.notebooks: shutil.copyfile(p, nbs / p.name)
    for name in S.notebooks:
        nb = json.loads((root / "nbs" / f"{name}.ipynb").read_text())
        nb["cells"] = [c for c in nb["cells"] if not skipped(c)]
        for c in nb["cells"]: c["metadata"].pop("jupyter", None)   # solutions shown: prompts count
        if break_widget and name == "32_demo":              # before the cell that shows the widget
            last = max(i for i, c in enumerate(nb["cells"])
                       if "ChatDemo(Chat(" in "".join(c["source"]))
            nb["cells"].insert(last, {"cell_type": "code", "execution_count": None, "metadata": {},
                                      "id": "b0b0b0b0", "outputs": [], "source": BREAK_CELL})
        (nbs / f"{name}.ipynb").write_text(json.dumps(nb))
    return nbs

# ---- servers: started in their own session, stopped with their children, by process id
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def start(cmd, log: Path, env) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, cwd=root)

def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90) -> bool:
    "Wait until `url` answers (for a bare http://host:port/: until the port accepts connections)."
    end, host_port = time.time() + timeout, re.fullmatch(r"http://([\d.]+):(\d+)/", url)
    while time.time() < end:
        if proc.poll() is not None: return False
        try:
            if host_port: socket.create_connection((host_port[1], int(host_port[2])), 2).close()
            else: urllib.request.urlopen(url, timeout=2)
            return True
        except Exception: time.sleep(0.5)
    return False

def stop(proc: subprocess.Popen, name: str):
    "SIGTERM the server (it shuts its kernels down), then SIGKILL what is left of its process tree."
    if proc is None: return
    try: tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess: tree = [proc.pid]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)
    end = time.time() + 10                             # kernels exit once the server shut them down
    while time.time() < end and any(alive(p) for p in tree): time.sleep(0.25)
    left = [p for p in tree if alive(p)]
    for pid in left:
        try: psutil.Process(pid).kill()
        except psutil.NoSuchProcess: pass
    say(f"stopped {name} (pid {proc.pid}" + (f"; killed {len(left)} left over)" if left else ")"))

def alive(pid: int) -> bool:
    try: return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess: return False

# ---- what the demo must show, computed here with the library
def references() -> dict:
    "Scenes 1 and 2 of the demo: each task's question, `Chat.ask`'s answer, the truth, the PNG."
    from tinygptv.demo import DEMO_SCENES, _png, demo_chat, sample_images, scene_questions
    from tinygptv.prompts import draw_answer
    chat, ims, out = demo_chat("tiny"), sample_images(), {}
    for k, seed in enumerate(DEMO_SCENES[:2]):
        name = f"scene {k + 1}"
        for task, (q, truth) in scene_questions(seed).items():
            chat.reset()
            ans = chat.ask(f"{task} {q}", ims[name])
            png = _png(draw_answer(ims[name], ans))
            out[name, task] = dict(question=q, answer=ans, truth=truth, png=png)
    return out

def right(task: str, answer: str, truth: str) -> bool:
    "Exact match for `[vqa]`; a box with IoU >= 0.5 against the object's for `[refer]`."
    from tinygptv.scoring import box_iou
    from tinygptv.prompts import parse_boxes
    if task == "[vqa]": return answer == truth
    got = parse_boxes(answer)
    return bool(got) and box_iou(got[0], parse_boxes(truth)[0]) >= 0.5

# ---- screenshots, small: a 128-colour palette PNG
def shot(page, path: Path, crop: str | None = None):
    "A screenshot of the page (or of its top left, down to the bottom right of `crop`'s controls)."
    from PIL import Image
    clip = None
    if crop and page.locator(crop).count():
        right, bottom = page.locator(crop).last.evaluate(
            "e => [...e.querySelectorAll('img, textarea, input, select, button')].concat([e])"
            ".reduce(([r, b], x) => { const q = x.getBoundingClientRect(); "
            "return [x === e ? r : Math.max(r, q.right), Math.max(b, q.bottom)]; }, [0, 0])")
        clip = {"x": 0, "y": 0, "width": min(1280, right + 24), "height": bottom + 16}
    img = Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")
    img.quantize(128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    say(f"screenshot {path.relative_to(root) if path.is_relative_to(root) else path} "
        f"({path.stat().st_size // 1024} KB)")

# ---- JupyterLab
CELL_STATE = """() => {
  const all = sel => [...document.querySelectorAll(sel)].map(e => e.textContent);
  return {prompts: all('.jp-Notebook .jp-CodeCell .jp-InputPrompt').map(t => t.trim()),
          stderr: all('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')};
}"""

def kernel_idle(base: str, token: str, name: str) -> bool:
    "The server has a session for the notebook whose kernel is idle."
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
        return any(x["path"].endswith(f"{name}.ipynb") and x["kernel"]["execution_state"] == "idle"
                   for x in json.load(r))

def open_notebook(ctx, base: str, token: str, name: str):
    page = ctx.new_page()
    page.goto(f"{base}/lab/workspaces/check-{name}/tree/{name}.ipynb?token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    end, ready = time.time() + 90, 0
    while time.time() < end:                     # the kernel started and idle, no dialog left open
        if page.locator(".jp-Dialog .jp-mod-accept").count():                  # "Select Kernel"
            page.locator(".jp-Dialog .jp-mod-accept").first.click(); ready = 0
        ready = ready + 1 if kernel_idle(base, token, name) else 0
        if ready >= 3: return page
        time.sleep(0.5)
    raise TimeoutError(f"{name}: the kernel was not idle within 90 s of opening the notebook")

def run_all(page, name: str, n_code: int, timeout: float) -> dict:
    "Run all cells from the Run menu; wait until all ran (or the run stopped at an error)."
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li[data-command='runmenu:run-all']")
    start, end, still = time.time(), time.time() + timeout, 0
    while time.time() < end:
        st = page.evaluate(CELL_STATE)
        ran = sum(bool(re.fullmatch(r"\[\d+\]:", p)) for p in st["prompts"])
        busy = any(p == "[*]:" for p in st["prompts"])
        if ran == n_code and not busy: break
        still = still + 1 if not busy and time.time() - start > 5 else 0
        if still >= 6: break                          # nothing queued: the run stopped (an error)
        time.sleep(0.5)
    st["seconds"], st["ran"] = time.time() - start, ran
    return st

def check_cells(name: str, st: dict, n_code: int):
    error = lambda e: "Traceback" in e or re.search(r"^\w*(Error|Exception)\b", e, re.M)
    tracebacks = [e for e in st["stderr"] if error(e)]
    check(st["ran"] == n_code, f"{name}: all {n_code} code cells ran ({st['seconds']:.0f} s)",
          f"{name}: {st['ran']} of {n_code} code cells ran in {st['seconds']:.0f} s")
    check(not tracebacks, f"{name}: no cell shows an error",
          f"{name}: a cell shows an error: {tracebacks[0][-600:] if tracebacks else ''}")
    return [e for e in st["stderr"] if e not in tracebacks]

def check_figures(page, name: str, expected: int):
    sizes = page.eval_on_selector_all(".jp-OutputArea-output img",
                                      "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    loaded = [s for s in sizes if s[0] > 0 and s[1] > 0]
    check(len(loaded) >= max(1, expected) and len(loaded) == len(sizes),
          f"{name}: {len(loaded)} figures rendered as images",
          f"{name}: {len(loaded)} of {len(sizes)} images loaded in the page; expected at least "
          f"{max(1, expected)} figures (as many as the notebook's stored outputs)")

def stored_figures(name: str) -> int:
    nb = json.loads((root / "nbs" / f"{name}.ipynb").read_text())
    return sum(any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
               for c in nb["cells"] if c["cell_type"] == "code" and not skipped(c))

# ---- the demo widget, pressed as a person would
IMG_BYTES = "async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"

def wait_text(loc, pattern: str, timeout: float) -> str:
    end, text = time.time() + timeout, ""
    while time.time() < end:
        text = loc.inner_text() if loc.count() else ""
        if re.search(pattern, text): break
        time.sleep(0.3)
    return text

def ask_demo(page, where: str, image: str, task: str, ref: dict, timeout: float = 60) -> bool:
    "Pick `image` and `task`, type the question, click Ask; check the answer, status and picture."
    demo = page.locator(".tinygptv-demo").last
    status = demo.locator(".tinygptv-status")
    demo.locator(".tinygptv-image select").select_option(label=image)
    demo.locator(".tinygptv-task select").select_option(label=task)
    said = wait_text(status, f"^new chat about {re.escape(image)}$", 15)
    new = f"new chat about {image}"
    check(said == new, f"{where}: the status line says {new!r}",
          f"{where}: after picking {image} and {task}, the status line says {said!r}, not {new!r}")
    demo.locator(".tinygptv-question input").fill(ref["question"])
    demo.locator("button.tinygptv-ask").click()
    said = wait_text(status, f"turn 1 of the chat about {re.escape(image)}", timeout)
    shown = demo.locator(".tinygptv-answer textarea").input_value().strip()
    q = f"{task} {ref['question']}"
    if not check("turn 1 of the chat" in said and shown,
                 f"{where}: an answer appeared after clicking Ask ({q!r} about {image})",
                 f"{where}: after clicking Ask ({q!r} about {image}), no answer appeared in the "
                 f"demo's answer box within {timeout:.0f} s (answer box {shown!r}, "
                 f"status line {said!r})"):
        return False
    check(shown == ref["answer"], f"{where}: the shown answer {shown!r} is Chat.ask's",
          f"{where}: the demo shows {shown!r} for {q!r} about {image}; "
          f"Chat.ask gives {ref['answer']!r}")
    check(right(task, shown, ref["truth"]), f"{where}: {shown!r} is right (truth {ref['truth']!r})",
          f"{where}: the answer {shown!r} to {q!r} is wrong (truth {ref['truth']!r})")
    img, end, got = demo.locator("img.tinygptv-view"), time.time() + 15, b""
    while time.time() < end and got != ref["png"]:
        got = bytes(img.evaluate(IMG_BYTES)); time.sleep(0.3)
    what = "the image with the answer's box drawn" if task == "[refer]" else "the image"
    check(got == ref["png"], f"{where}: {what} is shown",
          f"{where}: the picture shown after the answer is not {what} (Chat.ask's answer)")
    width = img.evaluate("e => e.getBoundingClientRect().width")
    check(abs(width - 320) <= 1, f"{where}: the picture is shown {width:.0f} px wide",
          f"{where}: the picture is shown {width:.0f} px wide, not 320 px (stretched or squeezed)")
    return True

# ---- the run
def lab_env(tmp: Path) -> dict:
    "The servers' environment: figures inline (no MPLBACKEND), offline, Jupyter's files in tmp."
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", IPYTHONDIR=str(tmp / "ipython"))
    for name in ("config", "data", "runtime"):
        env[f"JUPYTER_{name.upper()}_DIR"] = str(tmp / f"jupyter-{name}")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp / "workspaces")
    cfg = tmp / "jupyter-config" / "labconfig"
    cfg.mkdir(parents=True, exist_ok=True)           # no "official Jupyter news?" toast on the page
    (cfg / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    return env

def check_lab(ctx, base: str, token: str, out: Path):
    for name in S.notebooks:
        nb = json.loads((S.nbs / f"{name}.ipynb").read_text())
        n_code = sum(c["cell_type"] == "code" for c in nb["cells"])
        page = open_notebook(ctx, base, token, name)
        st = run_all(page, name, n_code, timeout=240)
        noise = check_cells(name, st, n_code)
        check_figures(page, name, stored_figures(name))
        if name == "32_demo":
            check(not noise, "32_demo: no stderr output (library noise) in any cell",
                  f"32_demo: stderr output in the page: {noise[:1]}")
            if page.locator(".tinygptv-demo").count() == 0:
                fail("32_demo: the demo widget (.tinygptv-demo) did not appear after Run All")
            else:
                page.locator(".tinygptv-demo").last.scroll_into_view_if_needed()
                for task in ("[vqa]", "[refer]"):
                    if not ask_demo(page, "JupyterLab", "scene 1", task, S.refs["scene 1", task]):
                        break
                page.locator(".tinygptv-demo").last.scroll_into_view_if_needed()
        else:
            if noise: say(f"{name}: stderr output (not an error): {noise[0][:200]!r}")
            figs = page.locator(".jp-OutputArea-output img")
            if figs.count(): figs.last.scroll_into_view_if_needed()    # the screenshot: a figure
        shot(page, out / f"jupyterlab-{name}.png")
        page.close()

def check_page(ctx, out: Path, tmp: Path):
    port = free_port()
    cmd = [str(root / ".venv" / "bin" / "tinygptv"), "demo", "--model", "tiny", "--port", str(port)]
    say("demo page: " + " ".join(["tinygptv", *cmd[1:]]))
    srv = start(cmd, out / "demo-page.log", lab_env(tmp))
    try:
        if not wait_http(f"http://127.0.0.1:{port}/", srv, 60):
            fail(f"the demo page did not answer on port {port} (see {out / 'demo-page.log'})")
            return
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
        try: page.wait_for_selector(".tinygptv-demo", timeout=120_000)
        except Exception:
            fail("the demo page: the demo widget (.tinygptv-demo) did not appear within 120 s")
            shot(page, out / "demo-page.png"); return
        say("the demo page shows the widget")
        ask_demo(page, "demo page", "scene 2", "[refer]", S.refs["scene 2", "[refer]"])
        shot(page, out / "demo-page.png", crop=".tinygptv-demo")
    finally: stop(srv, "the demo page server")

def run(args, out: Path):
    from playwright.sync_api import sync_playwright
    with tempfile.TemporaryDirectory(prefix="tinygptv-browser-") as d:
        tmp, token, port = Path(d), secrets.token_hex(16), free_port()
        S.nbs = workspace(tmp, args.break_widget)
        lab = start([str(root / ".venv/bin/jupyter"), "lab", "--no-browser", "--allow-root",
                     "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                     f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={S.nbs}",
                     "--LabApp.news_url=",
                     "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                    out / "jupyterlab.log", lab_env(tmp))
        try:
            S.refs = references() if "32_demo" in S.notebooks or not args.no_page else {}
            say("references: " + "; ".join(f"{k[0]} {k[1]} {v['question']!r} -> {v['answer']!r}"
                                           for k, v in S.refs.items()))
            base = f"http://127.0.0.1:{port}"
            if not wait_http(f"{base}/api/status?token={token}", lab, 90):
                return fail(f"JupyterLab did not start on {base} (see {out / 'jupyterlab.log'})")
            say(f"JupyterLab is up on {base}")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                ctx = browser.new_context(viewport={"width": 1280, "height": 800})
                try: check_lab(ctx, base, token, out)
                except Exception as e: fail(f"JupyterLab: {type(e).__name__}: {first_line(e)}")
                stop(lab, "JupyterLab"); lab = None
                try: args.no_page or check_page(ctx, out, tmp)
                except Exception as e: fail(f"the demo page: {type(e).__name__}: {first_line(e)}")
                try: args.no_site or site_check.check_site(browser, out, check, fail, say)
                except Exception as e: fail(f"the site: {type(e).__name__}: {first_line(e)}")
                browser.close()
        finally: stop(lab, "JupyterLab")

def run_site(out: Path):
    "Part 5 alone (--site-only): the site in its own Chromium."
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try: site_check.check_site(browser, out, check, fail, say)
        finally: browser.close()

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--break-widget", action="store_true",
                    help="make the ask button's handler raise (the check must fail)")
    ap.add_argument("--update-images", action="store_true",
                    help="copy the README's screenshots to nbs/images/")
    ap.add_argument("--out", default=str(root / ".ci" / "out"))
    ap.add_argument("--notebooks", nargs="*", default=list(NOTEBOOKS),
                    help="the notebooks to open (debugging)")
    ap.add_argument("--no-page", action="store_true", help="skip the demo page (debugging)")
    ap.add_argument("--no-site", action="store_true", help="skip the site (debugging)")
    ap.add_argument("--site-only", action="store_true", help="check the site (_site/) only")
    args = ap.parse_args()
    S.notebooks = args.notebooks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"browser check: stopped by SIGTERM after "
                                                      f"{time.time() - t0:.0f} s"))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    say(f"browser check: load average {load:.1f}")
    try: run_site(out) if args.site_only else run(args, out)
    except Exception as e: fail(f"{type(e).__name__}: {e}")
    return finish(args, out, load)

def finish(args, out: Path, load: float) -> int:
    left = [c for c in psutil.Process().children(recursive=True) if alive(c.pid)]
    check(not left, "no process left behind",
          f"processes left behind: {[(c.pid, c.name()) for c in left]}")
    if args.update_images and not failures:
        shots = [] if args.site_only else [("jupyterlab-32_demo.png", "jupyterlab.png"),
                                           ("demo-page.png", "demo_page.png")]
        shots += [] if args.no_site else [("site.png", "site.png")]
        for src, dst in shots:
            shutil.copyfile(out / src, root / "nbs" / "images" / dst)
            say(f"copied {src} to nbs/images/{dst}")
    print(f"browser check: {time.time() - t0:.0f} s (load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end)")
    if failures:
        print(f"browser check FAILED: {len(failures)} problem(s):")
        for f in failures: print(f"  - {f}")
        return 1
    print("browser check passed"); return 0

def first_line(e) -> str: return (str(e).splitlines() or [""])[0]

if __name__ == "__main__":
    sys.exit(main())
