"""Real browser: on the Filters page, choose filters 0-3, move the Steps slider with the keyboard,
Run, watch the run's caption update without reloading, see a progress bar while the val faces'
statistics compute, and see the finished grid (each filter's optimized image beside its top real
faces), the activation-by-step chart and the table, with "(done)" only then."""

import re

from browser_helpers import ARTIFACTS, IMAGES_JS, REPO, TALL, filters_done, streamlit_server

from fer_core.explain.contact_sheet import GAP, TILE_TEXT

SHIPPED = REPO / "checkpoints" / "builtin-cnn3"
LAYER_FILTERS = "0-3"
FILTERS = 4
TOP_FACES = 4  # dashboard/views/filters/page.py: each filter's top real faces beside its image
TILE = 48 * 2  # faces are 48 pixels, drawn at scale 2
STEPS_DEFAULT, STEPS_STEP, STEPS_MIN = 128, 8, 8
STEPS = STEPS_MIN + 2 * STEPS_STEP  # Home, then ArrowRight twice: 24
DATA, VAL_FACES = "builtin:2000", 200  # enough val faces for the statistics to take seconds
FINDING = "· finding the real faces that drive each filter..."
EXPLAINED = "Mean activation of each filter on its optimized image"

# Before Run is clicked: a capture-phase click listener notes the click's time, and a
# MutationObserver notes when each kind of run caption first appears (performance.now() ms),
# each progress bar text with its time and whether it is in the window, and what the page shows
# when "(done)" first appears: whether the table's explanation is there, and the pictures.
WATCH_JS = """([finding, explained]) => {
  window.__fi = {click: null, starting: null, running: null, step: null, finding: null,
                 done: null, seen: [], bars: [], doneExplained: null, doneImages: null};
  const run = document.querySelector('.st-key-fi_run button');
  run.addEventListener('click', () => { window.__fi.click = performance.now(); },
                       {capture: true, once: true});
  const check = () => {
    const t = performance.now(), fi = window.__fi;
    for (const el of document.querySelectorAll('[data-testid="stProgress"]')) {
      const box = el.getBoundingClientRect();
      const text = el.innerText.trim();
      if (!fi.bars.some(b => b.text === text)) fi.bars.push({t: t, text: text,
          shown: box.height > 0 && box.bottom > 0 && box.top < window.innerHeight});
    }
    for (const el of document.querySelectorAll('[data-testid="stCaptionContainer"]')) {
      const text = el.innerText.trim();
      if (text === 'Starting...' && fi.starting === null) fi.starting = t;
      if (!/filters: step \\d+ of \\d+ /.test(text)) continue;
      if (!fi.seen.includes(text)) fi.seen.push(text);
      if (fi.step === null) fi.step = t;
      if (text.endsWith('(running)') && fi.running === null) fi.running = t;
      if (text.endsWith(finding) && fi.finding === null) fi.finding = t;
      if (text.endsWith('(done)') && fi.done === null) {
        fi.done = t;
        fi.doneExplained = document.body.innerText.includes(explained);
        fi.doneImages = Array.from(document.querySelectorAll(
          '[role="tabpanel"]:not([hidden]) [data-testid="stImageContainer"] img')).map(i => i.src);
      }
    }
  };
  new MutationObserver(check).observe(document.body,
    {childList: true, subtree: true, characterData: true});
}"""

# The run's pictures are in the Activation maximization tab (the Feature maps tab has its own).
TAB = '[role="tabpanel"]:not([hidden])'

# The table's header and first column, from the accessible <table> Glide keeps beside its canvas.
TABLE_JS = """() => {
  const table = document.querySelector(
    '[role="tabpanel"]:not([hidden]) [data-testid="stDataFrame"] table[role="grid"]');
  if (!table) return null;
  return {rows: Number(table.getAttribute('aria-rowcount')),
          header: Array.from(table.querySelectorAll('th')).map(th => th.innerText.trim()),
          filters: Array.from(table.querySelectorAll('tbody tr')).map(
            tr => tr.querySelector('td').innerText.trim())};
}"""
COLUMNS = ["filter", "image", "best real", "ratio", "dead"]


def steps_shown(page) -> str:
    return page.locator('.st-key-fi_steps [data-testid="stSliderThumbValue"]').first.inner_text()


def wait_steps_shown(page, value: int) -> None:
    page.locator('.st-key-fi_steps [data-testid="stSliderThumbValue"]').filter(
        has_text=re.compile(rf"^{value}$")).first.wait_for()


def test_choose_filters_move_steps_run_and_see_the_grid(shipped_root, tmp_path, browser_page):
    page = browser_page
    page.set_viewport_size(TALL)
    (ARTIFACTS / "filters-failure.png").unlink(missing_ok=True)
    with streamlit_server(tmp_path / "streamlit.log", FER_CHECKPOINTS_DIR=str(shipped_root),
                          FER_CACHE_DIR=str(tmp_path / "cache")) as url:
        try:
            page.goto(f"{url}/filters?data={DATA}&run=builtin-cnn3")
            page.get_by_text("Choose a layer and filters, then Run").first.wait_for()

            filters = page.locator(".st-key-fi_filters").get_by_role("textbox", name="Filters")
            filters.fill(LAYER_FILTERS)
            filters.press("Enter")

            # The thumb is react-aria's hidden <input type=range> (implicit role slider).
            thumb = page.locator(".st-key-fi_steps").get_by_role("slider", name="Steps")
            thumb.wait_for(state="attached")
            assert steps_shown(page) == str(STEPS_DEFAULT)
            thumb.focus()
            thumb.press("ArrowLeft")
            wait_steps_shown(page, STEPS_DEFAULT - STEPS_STEP)
            thumb.press("Home")
            wait_steps_shown(page, STEPS_MIN)
            thumb.press("ArrowRight")
            thumb.press("ArrowRight")
            wait_steps_shown(page, STEPS)
            assert thumb.get_attribute("aria-valuetext") == str(STEPS)
            assert filters.input_value() == LAYER_FILTERS

            page.evaluate(WATCH_JS, [FINDING, EXPLAINED])
            page.locator(".st-key-fi_run").get_by_role("button", name="Run").click()

            done = filters_done(FILTERS, STEPS)
            page.get_by_text(done).first.wait_for(timeout=240_000)
            page.locator(".st-key-fi_curve .js-plotly-plot .main-svg").first.wait_for()
            page.locator('[data-testid="stDataFrame"]').first.wait_for()
            page.get_by_text(EXPLAINED).first.wait_for()
            width, height = (1 + TOP_FACES) * (TILE + GAP), FILTERS * (TILE + TILE_TEXT)
            page.wait_for_function(
                f"(scope) => ({IMAGES_JS})(scope).some(i => i.width === {width} && "
                f"i.height === {height})", arg=TAB)
            page.wait_for_function(f"() => {{ const t = ({TABLE_JS})(); "
                                   f"return t !== null && t.filters.length === {FILTERS}; }}")
            table = page.evaluate(TABLE_JS)
            timing = page.evaluate("() => window.__fi")
            grids = page.evaluate(IMAGES_JS, TAB)
            page.screenshot(path=str(ARTIFACTS / "filters_run.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "filters-failure.png"), full_page=True)
            raise

    # The grid: 4 rows (one per filter), each the optimized image and its 4 top faces.
    grid = next(i for i in grids if i["width"] == width and i["height"] == height)
    assert grid["colours"] > 50, grid  # real pictures, not a blank sheet

    # The table: one row per filter, 0 to 3.
    assert table == {"rows": 1 + FILTERS, "header": COLUMNS,
                     "filters": [str(f) for f in range(FILTERS)]}, table

    # The caption updated as the run went, ending at the slider's step count for filters 0-3.
    assert timing["click"] is not None and timing["step"] is not None, timing
    assert timing["done"] is not None, timing
    # The page showed the run before it ended (without a reload): "Starting..." or a running step.
    assert min(t for t in (timing["starting"], timing["running"], float("inf"))
               if t is not None) < timing["done"], timing
    assert all(re.fullmatch(rf".+, {FILTERS} filters: step \d+ of {STEPS} "
                            rf"(\((running|done)\)|{re.escape(FINDING)})", text)
               for text in timing["seen"]), timing["seen"]
    assert timing["seen"][-1].endswith(done), timing["seen"]
    # While the val faces' statistics computed, the caption said so and a bar in the window
    # followed the pass; "(done)" came only with the real faces' grid and the table.
    assert timing["finding"] is not None and timing["finding"] < timing["done"], timing
    passes = [bar for bar in timing["bars"] if re.search(
        rf"faces that drive each filter of block3\.relu hardest: [\d,]+ of {VAL_FACES} faces",
        bar["text"])]
    assert passes and all(bar["shown"] and timing["finding"] <= bar["t"] < timing["done"]
                          for bar in passes), timing["bars"]
    assert timing["doneExplained"] and grid["src"] in timing["doneImages"], timing
    first = timing["running"] if timing["running"] is not None else timing["step"]
    print(f"\nRun click to first caption update: {first - timing['click']:.0f} ms "
          f"({'running' if timing['running'] is not None else 'no running caption seen'}); "
          f"'Starting...' at "
          + (f"{timing['starting'] - timing['click']:.0f} ms" if timing["starting"] else "never")
          + f"; real faces looked for from {timing['finding'] - timing['click']:.0f} ms "
          f"({len(passes)} progress texts); done at {timing['done'] - timing['click']:.0f} ms; "
          f"captions: {timing['seen']}")
