"""Drive JupyterLab in Debian's headless Chromium (Playwright, no browser download): start a private lab server,
open a notebook, run all cells, wait for the kernel, collect error output."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'

# JupyterLab user settings (in the private config dir): no news / update toasts; every cell in the DOM (no
# windowing), so outputs of cells out of view can be read.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode() or "null")


class Lab:
    """A running JupyterLab server: base url, token, log file."""

    def __init__(self, proc: subprocess.Popen, port: int, token: str, log: Path):
        self.proc, self.port, self.token, self.log = proc, port, token, log
        self.base = f"http://127.0.0.1:{port}"

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read().decode()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict]:
        return self.api("kernels")

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@contextlib.contextmanager
def jupyter_lab(root: Path, state: Path, token: str, start_timeout: float = 90.0):
    """JupyterLab serving `root` on a free localhost port; its config, runtime, settings and workspaces live in
    `state` (the data dir stays the default one, where the ipywidgets lab extension is). Stops the server and
    its kernels on exit."""
    cfg, runtime = state / "config", state / "runtime"
    settings = cfg / "lab" / "user-settings"
    for name, value in LAB_SETTINGS.items():
        p = settings / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value))
    runtime.mkdir(parents=True, exist_ok=True)
    # offline and quiet: no news feed, no update check, no telemetry-ish fetches
    (cfg / "jupyter_server_config.json").write_text(json.dumps({
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(cfg), JUPYTER_RUNTIME_DIR=str(runtime),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(cfg / "lab" / "workspaces"),
               JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    port = free_port()
    log = state / "jupyterlab.log"
    # --IdentityProvider.token: what --ServerApp.token is called since jupyter_server 2 (same effect, no warning);
    # news_url=None (no news feed) is set in the config file above: a command line cannot say None
    # the README's command (`python -m sdtp_lib lab`; the kernel registration is tested in test_cli), with the
    # test's root folder overriding the repository's notebooks/ (the later option wins)
    cmd = [sys.executable, "-m", "sdtp_lib", "lab", "--no-kernel", "--no-browser", "--port", str(port),
           "--IdentityProvider.token", token, "--ServerApp.root_dir", str(root), "--ServerApp.ip", "127.0.0.1",
           "--ServerApp.port_retries=0", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    cmd += ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, cwd=str(root), env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(proc, port, token, log)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode} before answering:\n{lab.log_tail()}")
            try:
                _get(lab.url("api/status"), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer on port {port} within {start_timeout:.0f}s:\n"
                                       f"{lab.log_tail()}") from None
                time.sleep(0.3)
        yield lab
    finally:
        _stop(lab)


def _stop(lab: Lab) -> None:
    if lab.proc.poll() is None:
        with contextlib.suppress(Exception):
            for k in lab.kernels():
                lab.api(f"kernels/{k['id']}", method="DELETE")
        lab.proc.terminate()  # jupyter_server stops on SIGTERM, shutting its kernels down
        try:
            lab.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.proc.kill()
            lab.proc.wait()
    # anything left in the server's own session (a kernel that outlived it): only that process group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(lab.proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def chromium_page(playwright, user_data_dir: Path, width: int = 1400, height: int = 1000):
    """A page of Debian's Chromium in a fresh profile (never Playwright's own browser download)."""
    ctx = playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": width, "height": height}, device_scale_factor=1)
    try:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        yield page
    finally:
        ctx.close()


# ------------------------------------------------------------------ JupyterLab UI
def accept_dialogs(page) -> None:
    """Accept any modal dialog (kernel selection: the default kernel is preselected)."""
    dlg = page.locator(".jp-Dialog")
    for _ in range(3):
        if not dlg.count() or not dlg.first.is_visible():
            return
        page.locator(".jp-Dialog .jp-mod-accept").first.click()
        page.wait_for_timeout(300)


def open_notebook(page, lab: Lab, name: str, timeout_ms: int = 120_000) -> None:
    """Open `name` in JupyterLab and wait until its kernel session is started, connected and idle (the toolbar
    indicator reads idle even before the kernel exists, so the server's sessions are asked too)."""
    page.goto(lab.url(f"lab/tree/{name}"), wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    ready = 0
    while time.monotonic() < deadline:
        accept_dialogs(page)
        states = [s["kernel"]["execution_state"] for s in lab.api("sessions")
                  if s.get("path", "").endswith(name) and s.get("kernel")]
        ready = ready + 1 if states == ["idle"] and kernel_status(page) == "idle" else 0
        if ready >= 3:  # idle for three polls in a row: the kernel has started and the page is connected
            return
        page.wait_for_timeout(300)
    raise AssertionError(f"the kernel of {name} did not start / become idle (indicator: {kernel_status(page)!r}, "
                         f"sessions: {lab.api('sessions')});\nserver log:\n{lab.log_tail()}")


def kernel_status(page) -> str | None:
    """The notebook toolbar's kernel execution indicator: idle / busy / starting / ... (None if not shown)."""
    ind = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator")
    return ind.first.get_attribute("data-status") if ind.count() else None


def run_all_cells(page, tries: int = 3) -> None:
    """Run -> Run All Cells, through the menu bar as a user would; checks that the run started."""
    for _ in range(tries):
        page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
        accept_dialogs(page)
        for _ in range(20):
            if pending_cells(page) or not unrun_code_cells(page):
                return
            page.wait_for_timeout(250)
        page.keyboard.press("Escape")
    raise AssertionError("Run -> Run All Cells did not start the notebook (no cell queued)")


def pending_cells(page) -> int:
    """Code cells queued or running ([*]:)."""
    return page.locator(".jp-Notebook .jp-InputPrompt", has_text="[*]").count()


def unrun_code_cells(page) -> int:
    """Code cells without an execution count ([ ]:)."""
    return page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt", has_text="[ ]").count()


def error_text(page) -> str:
    """All stderr / traceback output of the notebook (JupyterLab renders errors with the stderr MIME type)."""
    texts = page.locator(STDERR).all_inner_texts()
    return "\n---\n".join(t.strip() for t in texts if t.strip())


def has_traceback(page) -> bool:
    return bool(re.search(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b.*:", error_text(page),
                          re.M))


def wait_for_run(page, lab: Lab, done_selector: str, timeout_s: float = 300.0) -> None:
    """Wait until `done_selector` is visible, no cell is queued / running and the kernel is idle; fail early,
    with the notebook's error output, if a cell raised or the run stopped without it."""
    start = time.monotonic()
    idle_since = None
    while True:
        accept_dialogs(page)
        elapsed = time.monotonic() - start
        if has_traceback(page):
            raise AssertionError(f"a notebook cell failed after {elapsed:.0f}s:\n{error_text(page)[-6000:]}")
        idle = kernel_status(page) == "idle" and pending_cells(page) == 0
        shown = page.locator(done_selector).count() > 0 and page.locator(done_selector).first.is_visible()
        if idle and shown and unrun_code_cells(page) == 0:
            return
        idle_since = (idle_since or time.monotonic()) if idle else None
        if idle_since and time.monotonic() - idle_since > 15:
            raise AssertionError(
                f"the notebook stopped after {elapsed:.0f}s without showing {done_selector} (unrun code cells: "
                f"{unrun_code_cells(page)}); error output:\n{error_text(page)[-6000:] or '(none)'}\n"
                f"server log:\n{lab.log_tail()}")
        if elapsed > timeout_s:
            raise AssertionError(
                f"{done_selector} not shown / kernel not idle after {timeout_s:.0f}s (kernel: {kernel_status(page)}, "
                f"pending cells: {pending_cells(page)}); error output:\n{error_text(page)[-6000:] or '(none)'}")
        page.wait_for_timeout(500)


def wait_idle(page, lab: Lab | None = None, timeout_ms: int = 60_000) -> None:
    """Wait until no cell is queued / running and the kernel is idle, in the page and (with `lab`) on the
    server, for three polls in a row (e.g. after a widget change: its comm message makes the kernel busy)."""
    deadline = time.monotonic() + timeout_ms / 1000
    ready = 0
    while ready < 3:
        idle = kernel_status(page) == "idle" and pending_cells(page) == 0
        if idle and lab is not None:
            idle = all(k["execution_state"] == "idle" for k in lab.kernels())
        ready = ready + 1 if idle else 0
        if time.monotonic() > deadline:
            raise AssertionError(f"kernel not idle after {timeout_ms / 1000:.0f}s (status {kernel_status(page)!r})")
        page.wait_for_timeout(200)


def hide_left_sidebar(page) -> None:
    """Collapse the left sidebar (click its open tab, as a user would)."""
    tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if tab.count():
        tab.first.click()
        page.locator("#jp-left-stack.lm-mod-hidden").wait_for(state="attached", timeout=5000)


def shrink_png(path: Path, limit: int = 380_000) -> None:
    """Re-save a screenshot as a 256-colour PNG when it is over `limit` bytes."""
    if path.stat().st_size <= limit:
        return
    from PIL import Image
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
