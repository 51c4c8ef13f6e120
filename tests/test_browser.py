"""The exploration notebook in a real JupyterLab, driven by Debian's headless Chromium (Playwright, no browser
download): run all cells on the real SmolLM2 default, then use the explorer widget as a user would (stage
slider, view toggle) and check what it shows against the SDTP keep schedule.

SDTP_UPDATE_SCREENSHOT=1 also writes the screenshot to figures/explore_widget.png (CI never does)."""
import os
import secrets
import shutil
from pathlib import Path

import pytest

import sdtp_lib as S

from . import browser_util as B

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "00_explore.ipynb"
SCREENSHOT = REPO / "figures" / "explore_widget.png"
EXPLORER = ".sdtp-explorer"
SMOLLM2_LAYERS = 30  # SmolLM2-135M; the notebook's defaults: keep_ratio 0.9, 10 stages
KEEP_RATIO, STAGES = 0.9, 10
ARROW_STEPS = 3  # slider moves from stage 1 to stage 4

# Everything the explorer shows, read in one go: summary attributes, legend, each token's colour and kept flag,
# the heatmap image.
_READ = """ex => {
  const s = ex.querySelector('.sdtp-summary'), view = ex.querySelector('.sdtp-explore');
  const toks = [...ex.querySelectorAll('.sdtp-tok')];
  const img = ex.querySelector('img');
  return {stage: +s.dataset.stage, layer: +s.dataset.layer, kept_count: +s.dataset.keptCount,
          prompt_len: +s.dataset.promptLen, summary: s.innerText, view: view && view.dataset.view,
          legend: (ex.querySelector('.sdtp-legend') || {}).innerText || '',
          bg: toks.map(t => t.style.backgroundColor), kept: toks.map(t => t.dataset.kept),
          readout: (ex.querySelector('.widget-slider .widget-readout') || {}).innerText,
          heatmap: img ? [img.naturalWidth, img.naturalHeight, img.src.length] : null};
}"""


def _require_chromium():
    if not Path(B.CHROMIUM).exists():
        msg = f"{B.CHROMIUM} is missing (Debian package chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg + " and CI is set: the browser test must run in CI")
        pytest.skip(msg)


def _read(page) -> dict:
    return page.locator(EXPLORER).evaluate(_READ)


def _mark_heatmap(page) -> None:
    """Remember the heatmap image shown now (its data URL), so a change can be waited for."""
    page.evaluate(f"() => {{ const i = document.querySelector('{EXPLORER} img'); "
                  "window.__sdtpHeat = i ? i.src : ''; }")


def _wait_for(page, lab, js_condition: str, what: str, timeout_ms: int = 60_000) -> dict:
    """Wait until `js_condition` (a JS expression of `ex`, the explorer element) holds, the heatmap image differs
    from the one marked by _mark_heatmap (the kernel sends it after the token HTML) and is loaded, and the
    kernel is idle; return what the explorer shows then."""
    heat_ready = ("(() => { const i = ex.querySelector('img'); "
                  "return !!i && i.src !== window.__sdtpHeat && i.complete && i.naturalWidth > 0; })()")
    try:
        page.wait_for_function(
            f"() => {{ const ex = document.querySelector('{EXPLORER}'); return !!ex && ({js_condition}) && "
            f"{heat_ready}; }}", timeout=timeout_ms, polling=200)
        B.wait_idle(page, lab, timeout_ms)
    except Exception as e:  # playwright's TimeoutError: say what the widget shows instead
        state = {k: v for k, v in _read(page).items() if k not in ("bg", "kept")}
        raise AssertionError(f"the explorer did not show {what}: {e}\nit shows {state}\n"
                             f"errors:\n{B.error_text(page)[-4000:] or '(none)'}\nserver log:\n{lab.log_tail(2000)}")
    return _read(page)


def _check_stage(v: dict, schedule: list[int], conf: S.SDTPConfig, when: str) -> None:
    stage = v["stage"]
    assert 1 <= stage <= STAGES, f"{when}: data-stage {stage} is not a stage of {STAGES}"
    assert v["kept_count"] == schedule[stage - 1], (
        f"{when}: stage {stage} shows {v['kept_count']} kept, the schedule says {schedule[stage - 1]} "
        f"(schedule {schedule})")
    assert v["kept"].count("1") == v["kept_count"], (
        f"{when}: {v['kept'].count('1')} token spans are marked kept, the summary says {v['kept_count']}")
    assert v["layer"] == conf.stage_layers[stage - 1], f"{when}: data-layer {v['layer']} for stage {stage}"
    assert v["readout"] is None or v["readout"].strip() == str(stage), (
        f"{when}: the slider reads {v['readout']!r}, the summary says stage {stage}")


def test_explore_notebook_in_jupyterlab(tmp_path):
    _require_chromium()
    from playwright.sync_api import sync_playwright

    work = tmp_path / "lab"  # JupyterLab's root and the kernel's working directory (runs/explore/... go here)
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)  # never the repository's own notebook: autosave writes outputs
    token = secrets.token_hex(16)
    with B.jupyter_lab(work, tmp_path / "jupyter", token) as lab, sync_playwright() as pw, \
            B.chromium_page(pw, tmp_path / "chromium-profile", 1400, 1000) as page:
        B.open_notebook(page, lab, NOTEBOOK.name)
        B.run_all_cells(page)
        B.wait_for_run(page, lab, f"{EXPLORER} .sdtp-summary", timeout_s=300)
        ex = page.locator(EXPLORER)
        assert ex.count() == 1, f"{ex.count()} explorer widgets on the page"
        assert ex.locator(".widget-dropdown select, .widget-dropdown").count() >= 1, "no sample dropdown"

        page.wait_for_function(f"() => {{ const i = document.querySelector('{EXPLORER} img'); "
                               "return !!i && i.complete && i.naturalWidth > 0; }", timeout=30_000)

        # ---- stage 1, kept / dropped view: the summary and the spans agree with the keep schedule
        first = _read(page)
        T = first["prompt_len"]
        conf = S.SDTPConfig.for_model(SMOLLM2_LAYERS, keep_ratio=KEEP_RATIO, num_stages=STAGES)
        schedule = conf.keep_schedule(T)
        assert T > 500, f"prompt_len {T}: the notebook's default prompt is the long demo prompt"
        assert len(first["bg"]) == T, f"{len(first['bg'])} token spans for a {T}-token prompt"
        assert first["view"] == "kept" and first["stage"] == 1, first["summary"]
        _check_stage(first, schedule, conf, "initially")
        assert first["heatmap"] and first["heatmap"][0] > 100, f"no heatmap image in the explorer: {first['heatmap']}"

        # ---- the stage slider, with the keyboard as a user would
        handle = ex.locator(".widget-slider .noUi-handle")
        assert handle.count() == 1, "no stage slider handle (is the ipywidgets lab extension loaded?)"
        handle.click()  # focuses the handle (clicking it where it is does not change the value)
        for step in range(1, ARROW_STEPS + 1):  # one key at a time: each makes the kernel redraw once
            target = first["stage"] + step
            _mark_heatmap(page)
            page.keyboard.press("ArrowRight")
            moved = _wait_for(page, lab, f"+ex.querySelector('.sdtp-summary').dataset.stage === {target}",
                              f"stage {target} after pressing ArrowRight on the slider {step} time(s)")
        _check_stage(moved, schedule, conf, f"after moving the slider to stage {target}")
        assert moved["kept_count"] < first["kept_count"], (first["summary"], moved["summary"])
        assert len(moved["bg"]) == T
        assert moved["kept"] != first["kept"] and moved["bg"] != first["bg"], "the token colours did not change"

        # ---- the view toggle: stage-1 saliency
        _mark_heatmap(page)
        ex.locator("button", has_text="stage-1 saliency").click()
        sal = _wait_for(page, lab, "ex.querySelector('.sdtp-explore').dataset.view === 'saliency'",
                        "the stage-1 saliency view")
        assert sal["stage"] == target, sal["summary"]
        _check_stage(sal, schedule, conf, "in the saliency view")
        assert len(sal["bg"]) == T
        assert sal["bg"] != moved["bg"], "the token colours did not change with the view"
        assert len(set(sal["bg"])) > 20, f"saliency colours are not graded: {sorted(set(sal['bg']))[:10]}"
        assert sal["legend"] != moved["legend"] and "saliency" in sal["legend"], (moved["legend"], sal["legend"])

        # ---- screenshot: the whole explorer (controls, coloured tokens, heatmap) without the left sidebar; the
        # window is made as tall as the widget (the long prompt's tokens alone fill 1000 px)
        B.hide_left_sidebar(page)
        height = ex.evaluate("el => el.getBoundingClientRect().height")
        page.set_viewport_size({"width": 1400, "height": max(1000, min(2400, int(height) + 190))})
        page.wait_for_timeout(500)
        ex.evaluate("el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        shot = tmp_path / "explore_widget.png"
        page.screenshot(path=str(shot))
        B.shrink_png(shot)
        if os.environ.get("SDTP_UPDATE_SCREENSHOT") == "1":
            shutil.copy(shot, SCREENSHOT)
