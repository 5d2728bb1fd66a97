"""The dashboard under load: the latency of one simple interaction with its session alone and with
several sessions working other pages at once, the errors the pages show, and the server's memory.

It starts the dashboard (`streamlit run dashboard/app.py -- --data SPEC`) on a free port with an
empty FER_CACHE_DIR, so every cache starts cold, and a copy of the run in a checkpoints folder of
its own, then drives headless Chromium (one browser, a context per session) with playwright:

1. alone: one session on the Confusions page changes the matrix's colour mode (counts, row %,
   column %) --repeats times: the simple interaction;
2. under load: --sessions sessions each work one page for --minutes minutes, in this order (past
   five, round again): Confusions (split to train and back, the colour mode), Saliency (the trust
   checks once, then the method: Grad-CAM, SmoothGrad, Integrated Gradients, vanilla), Filters
   (runs of 16 and of 3 filters), Embeddings (t-SNE and PCA, two colourings), Home (a fresh load,
   then Model and back); meanwhile the first session keeps doing the simple interaction;
3. the sessions close; once the server is quiet (the computations they started have finished:
   under 0.1 cores for 10 s) and --idle-s seconds more have passed, its memory is read again.

An interaction is timed in the browser's clock from the click until the page shows its result,
at least one script run ended after the click, and the app is idle again (script state
notRunning, nothing stale; on a page polling a background job, its result alone). One that takes
longer than --timeout-s is recorded as a timeout, one that ends on an exception or error alert
as an error, and the session reloads its page. The first computation of something cached (a
split's predictions or features, a t-SNE, the filter statistics) is labelled as such. The
server's RSS, with any child processes, is sampled every 0.5 s from /proc. Streamlit exceptions,
error alerts and browser page errors are collected with their page.

Prints a table and the targets (no exception; no interaction over 60 s other than a first
computation; p95 of the simple interaction under load within 10x of alone; memory after the idle
wait within 500 MB of the start), writes benchmarks/results/sessions.json and the server's log
beside it (sessions.server.log), and exits 0 whether or not the targets are met. Needs Chromium
(/usr/bin/chromium) and Linux's /proc.

    python benchmarks/bench_sessions.py [--sessions 5] [--minutes 3] [--idle-s 120]
        [--data SPEC] [--run RUN] [--repeats 20] [--timeout-s 300] [--think-s 1] [--out FILE]

--data defaults to $FER2013_CSV, else the built-in faces ("builtin"); --run to
checkpoints/fer2013-cnn3 on FER2013 data, else checkpoints/builtin-cnn3.
"""

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from browser_helpers import BROWSER_ARGS, CHROMIUM, free_port, wait_healthy
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

from benchmarks.report import load_average, machine
from fer_core.data.readers import is_builtin_spec

OUT = ROOT / "benchmarks" / "results" / "sessions.json"
WORKER_PAGES = ("Confusions", "Saliency", "Filters", "Embeddings", "Home")
SLUGS = {"Home": "", "Confusions": "confusions", "Saliency": "saliency", "Filters": "filters",
         "Embeddings": "embeddings"}
SIMPLE = "colour mode"  # the simple interaction's kind
QUIET_S, QUIET_CORES, QUIET_MAX_S = 10.0, 0.1, 600.0
TARGETS = {"slow_s": 60.0, "p95_ratio": 10.0, "memory_mb": 500.0}
ACTION_TIMEOUT_MS = 60_000  # a click or a page load; the result may take up to --timeout-s
SAMPLE_EVERY_S = 0.5
VIEWPORT = {"width": 1400, "height": 1500}

# The colour modes of the Confusions matrix: (the control's label, the colour bar's title).
NORMS = {"counts": ("Counts", "faces"), "row": ("Row % (recall)", "of true class"),
         "column": ("Column % (precision)", "of predicted")}
METHODS = {"vanilla": "Vanilla gradient", "gradcam": "Grad-CAM", "smoothgrad": "SmoothGrad",
           "ig": "Integrated Gradients"}
PROJECTIONS = {"pca": "PCA", "tsne": "t-SNE"}
COLOURINGS = {"true": "True class", "correct": "Correct / wrong"}

# Runs in every page before its scripts: counts the script runs that ended (window.__runs).
# Streamlit sets stApp's data-test-script-state to "running" while a script or fragment runs.
RUNS_INIT = """(() => {
  window.__runs = 0;
  new MutationObserver(records => {
    for (const r of records) if (r.oldValue === 'running') window.__runs += 1;
  }).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                        attributeFilter: ['data-test-script-state']});
})();"""

ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'  # no ", " inside

# Polled in the page (every 100 ms) after an action: false, or {at: epoch ms, error}. `ok` when
# CONTENT(arg.value) holds and the app is idle (POLLING(): a background job's poll keeps it
# busy, so only the content counts); done once ok has held 200 ms with a script run ended since
# the action (or 3 s without one: a run too quick to be seen). An error or exception in the main
# area that stays 5 s on an idle page without the content ends the wait too (a chart may take a
# few seconds to draw after the run; an error in the sidebar leaves the page working).
SETTLE_JS = """(arg) => {
  const fresh = sel => [...document.querySelectorAll(sel)]
      .filter(e => !e.closest('[data-stale="true"]'));
  const content = CONTENT, polling = POLLING;
  const s = window.__settle = window.__settle || {};
  const now = performance.timeOrigin + performance.now();
  const app = document.querySelector('[data-testid="stApp"]');
  const idle = !!app && app.getAttribute('data-test-script-state') === 'notRunning'
      && !document.querySelector('[data-stale="true"], [data-testid="stStatusWidget"]');
  const ran = (window.__runs || 0) > arg.runs;
  const ok = (idle || polling()) && content(arg.value);
  const failed = idle && ran && !ok && fresh(MAIN_ERRORS).length > 0;
  s.ok = ok ? (s.ok || now) : null;
  s.ran = ok && ran ? (s.ran || now) : null;
  s.failed = failed ? (s.failed || now) : null;
  if (s.ran && now - s.ran >= 200) return {at: s.ran, error: false};
  if (s.ok && now - s.ok >= 3000) return {at: s.ok, error: false};
  if (s.failed && now - s.failed >= 5000) return {at: s.failed, error: true};
  return false;
}""".replace("MAIN_ERRORS", repr(", ".join(
    f'[data-testid="stMain"] {e}' for e in ERRORS.split(", "))))

NEVER = "() => false"
CAPTIONS = "fresh('[data-testid=\"stCaptionContainer\"]')"
MATRIX_TITLE = """(title) => fresh('.st-key-cm_matrix .js-plotly-plot').some(gd => gd._fullData
    && gd._fullData[0] && gd._fullData[0].colorbar.title.text === title)"""
SPLIT_SHOWN = f"""(split) => {CAPTIONS}.some(e => e.innerText.includes(', ' + split + ' split.'))
    && fresh('.st-key-cm_matrix .js-plotly-plot').length > 0"""
MAP_SHOWN = f"""(title) => {CAPTIONS}.some(e => e.innerText.startsWith(title)
    && e.innerText.includes('Computed in')) && fresh('.st-key-sa_deletion .main-svg').length > 0"""
TRUST_POLLING = """() => [...document.querySelectorAll('[data-testid="stProgress"]')]
    .some(e => (e.parentElement || e).innerText.includes('Trust checks'))"""
TRUST_STARTED = f"""() => ({TRUST_POLLING})()
    || fresh('.st-key-sa_randomization .main-svg').length > 0"""
TRUST_READY = "() => !!document.querySelector('.st-key-sa_randomization .main-svg')"
FILTERS_TEXT = "(text) => fresh('.st-key-fi_filters input').some(e => e.value === text)"
FILTERS_DONE = rf"""(n) => {CAPTIONS}.some(e => {{
    const m = e.innerText.match(/, (\d+) filters: step (\d+) of (\d+) \(done\)$/);
    return m && m[1] === String(n) && m[2] === m[3];
  }}) && fresh('[data-testid="stDataFrame"]').length > 0"""
FILTERS_POLLING = """() => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
    .some(e => e.innerText.endsWith('(running)') || e.innerText === 'Starting...')"""
FILTERS_READY = "() => fresh('.st-key-fi_run button').length > 0"
SCATTER_SHOWN = """(v) => fresh('.st-key-em_scatter .js-plotly-plot').some(gd => gd._fullLayout
    && gd._fullLayout.xaxis.title.text === v.x && gd._fullLayout.legend.title.text === v.legend)"""
HEADING = """(text) => fresh('[data-testid="stHeading"]').some(e => e.innerText.startsWith(text))"""
HOME_SHOWN = f"""() => ({HEADING})('Sample faces')
    && fresh('[data-testid="stImageContainer"] img').some(i => i.complete && i.naturalWidth > 0)"""
MODEL_SHOWN = f"() => ({HEADING})('Layers') && fresh('[data-testid=\"stDataFrame\"]').length > 0"

# Every exception and error alert on the page, as [kind, first line] (an exception's box holds
# an error alert of its own; an alert's icon is text, outside its markdown).
SCAN_JS = """() => [
  ...[...document.querySelectorAll('[data-testid="stException"]')].map(e => ['exception',
      (e.querySelector('[data-testid="stExceptionMessage"]') || e).innerText]),
  ...[...document.querySelectorAll('[data-testid="stAlertContentError"]')]
      .filter(e => !e.closest('[data-testid="stException"]')).map(e => ['error alert',
      (e.querySelector('[data-testid="stMarkdownContainer"]') || e).innerText]),
].map(([k, t]) => [k, (t || '').trim().split('\\n')[0].slice(0, 200)])"""

# What a page that has not finished shows: its progress bars, spinners and running captions.
STATUS_JS = """() => [
  ...[...document.querySelectorAll('[data-testid="stProgress"], [data-testid="stSpinner"]')]
      .map(e => (e.parentElement || e).innerText),
  ...[...document.querySelectorAll('[data-testid="stCaptionContainer"]')].map(e => e.innerText)
      .filter(t => t.endsWith('(running)') || t === 'Starting...'),
].map(t => (t || '').trim().split('\\n')[0]).filter(t => t).slice(0, 4).join('; ')"""


def now() -> float:
    return time.time()


# ---------------------------------------------------------------- recording


@dataclass
class Recorder:
    """Everything measured: interactions, what the pages showed wrong, marks on the timeline
    (seconds since the start), and which caches were first filled when."""

    t0: float = field(default_factory=now)
    interactions: list = field(default_factory=list)
    problems: dict = field(default_factory=dict)
    marks: dict = field(default_factory=dict)
    firsts: set = field(default_factory=set)

    def since(self) -> float:
        return round(now() - self.t0, 2)

    def mark(self, name: str) -> None:
        self.marks[name] = self.since()

    def first(self, what: str) -> bool:
        """True the first time `what` is asked for in this benchmark (a cold cache)."""
        new = what not in self.firsts
        self.firsts.add(what)
        return new

    def interaction(self, phase: str, session: "Session", kind: str, seconds: float,
                    outcome: str, cold: str | None, note: str = "") -> None:
        self.interactions.append({
            "phase": phase, "session": session.name, "page": session.page_name, "kind": kind,
            "t": self.since(), "seconds": round(seconds, 3), "outcome": outcome, "cold": cold,
            "note": note})
        if outcome != "ok":
            print(f"  [{self.since():7.1f} s] {session.name}: {kind}: {outcome} after "
                  f"{seconds:.1f} s {note}".rstrip(), flush=True)

    def problem(self, page: str, kind: str, text: str) -> None:
        entry = self.problems.setdefault((page, kind, text), {"sightings": 0,
                                                              "first_t": self.since()})
        entry["sightings"] += 1
        if entry["sightings"] == 1:
            print(f"  [{self.since():7.1f} s] {page}: {kind}: {text}", flush=True)


# ---------------------------------------------------------------- one browser session


@dataclass
class Session:
    """One browser context on one page of the dashboard, doing timed interactions."""

    name: str
    page_name: str
    start_url: str
    rec: Recorder
    timeout_s: float
    think_s: float
    page: object = None
    context: object = None
    phase: str = "alone"
    in_flight: tuple | None = None  # (kind, started, cold) while an interaction runs
    background: tuple | None = None  # the same for a job the session started (trust checks)
    view: dict = field(default_factory=dict)  # what the page shows now (mode, method, ...)

    async def start(self, browser) -> None:
        self.context = await browser.new_context(viewport=VIEWPORT)
        await self.context.add_init_script(RUNS_INIT)
        self.context.set_default_timeout(ACTION_TIMEOUT_MS)
        self.page = await self.context.new_page()
        self.page.on("pageerror", lambda e: self.rec.problem(
            self.page_name, "page error", str(e).strip().split("\n")[0][:200]))

    async def close(self) -> None:
        if self.context is not None:
            try:
                await self.context.close()
            except PlaywrightError:
                pass

    async def act(self, kind: str, action, content: str, value=None, *, cold: str | None = None,
                  polling: str = NEVER, navigates: bool = False) -> bool:
        """Do `action` (a coroutine function) and time it until `content(value)` shows on an idle
        page; record it, look for errors, and reload the page when it did not end well."""
        outcome, note, seconds = "ok", "", 0.0
        started = now()
        self.in_flight = (kind, started, cold)
        try:
            seconds, error = await asyncio.wait_for(
                self._timed(action, content, value, polling, navigates), self.timeout_s)
            outcome = "error" if error else "ok"
        except TimeoutError:
            outcome, seconds = "timeout", now() - started
            note = await self.status()
        except PlaywrightError as e:
            outcome, seconds = "failed", now() - started
            note = str(e).strip().split("\n")[0][:160]
            if "Timeout" in note and seconds >= self.timeout_s - 1:
                outcome = "timeout"
        self.in_flight = None  # not on cancellation: `cancelled` records it
        self.rec.interaction(self.phase, self, kind, seconds, outcome, cold, note)
        await self.scan()
        if outcome != "ok":
            await self.recover()
        await asyncio.sleep(self.think_s)
        return outcome == "ok"

    async def _timed(self, action, content: str, value, polling: str, navigates: bool):
        page = self.page
        runs = 0 if navigates else await page.evaluate(
            "() => { window.__settle = {}; return window.__runs || 0; }")
        started = now()
        await action()
        js = SETTLE_JS.replace("CONTENT", content).replace("POLLING", polling)
        remaining_ms = max(1.0, self.timeout_s - (now() - started)) * 1000
        handle = await page.wait_for_function(js, arg={"runs": runs, "value": value},
                                              polling=100, timeout=remaining_ms)
        result = await handle.json_value()
        return max(0.0, result["at"] / 1000 - started), result["error"]

    async def cancelled(self) -> None:
        """At the end of the load phase: record the interaction still running, if any, and a
        background job the session started that has not ended."""
        shows = await self.status()
        for kind, started, cold in filter(None, (self.in_flight, self.background)):
            self.rec.interaction(self.phase, self, kind, now() - started, "unfinished", cold,
                                 "still running when the load phase ended"
                                 + (f"; the page shows: {shows}" if shows else ""))
        self.in_flight = self.background = None

    async def status(self) -> str:
        try:
            return await asyncio.wait_for(self.page.evaluate(STATUS_JS), 10)
        except (PlaywrightError, TimeoutError):
            return ""

    async def scan(self) -> None:
        try:
            for kind, text in await self.page.evaluate(SCAN_JS):
                self.rec.problem(self.page_name, kind, text)
        except PlaywrightError:
            pass

    async def recover(self) -> None:
        """After a timeout or an error: a fresh load of the session's page (a new Streamlit
        session, so the page's choices are back at their defaults)."""
        self.view.clear()
        try:
            await self.page.goto(self.start_url)
            await self.page.wait_for_function(
                SETTLE_JS.replace("CONTENT", "() => true").replace("POLLING", NEVER),
                arg={"runs": 0, "value": None}, polling=250, timeout=self.timeout_s * 1000)
        except PlaywrightError as e:
            print(f"  {self.name}: reloading {self.start_url} failed: "
                  f"{str(e).strip().splitlines()[0][:160]}", flush=True)

    # -- the widgets

    async def radio(self, key: str, label: str) -> None:
        """Click the option `label` of a segmented control (a radio group)."""
        await self.page.locator(f".st-key-{key}").get_by_role(
            "radio", name=label, exact=True).click()

    async def button(self, key: str) -> None:
        await self.page.locator(f".st-key-{key}").get_by_role("button").first.click()

    async def select(self, key: str, label: str) -> None:
        """Choose `label` in a select box (a flag such as ' ⚠' may follow it). A page that polls
        a job redraws often and may close the list: open it again, up to three times."""
        option = self.page.get_by_role("option", name=re.compile(rf"^{re.escape(label)}( ⚠)?$"))
        for attempt in range(3):
            await self.page.locator(f".st-key-{key} input").click()
            try:
                await option.click(timeout=5_000)
                return
            except PlaywrightError:
                if attempt == 2:
                    raise

    async def goto(self) -> None:
        await self.page.goto(self.start_url)


# ---------------------------------------------------------------- what each session does


async def open_page(s: Session, content: str, value=None, cold: str | None = None) -> bool:
    return await s.act("open page", s.goto, content, value, cold=cold, navigates=True)


async def colour_mode(s: Session) -> bool:
    """The simple interaction: the Confusions matrix's next colour mode."""
    modes = list(NORMS)
    mode = modes[(modes.index(s.view.get("norm", "counts")) + 1) % len(modes)]
    label, title = NORMS[mode]
    ok = await s.act(SIMPLE, partial(s.radio, "cm_norm", label), MATRIX_TITLE, title)
    s.view["norm"] = mode if ok else "counts"
    return ok


async def open_confusions(s: Session) -> bool:
    """The Confusions page on its default split (val); the first visit predicts the split."""
    cold = "first computation of the val split" if s.rec.first("split val") else None
    s.view["norm"] = "counts"
    return await open_page(s, MATRIX_TITLE, NORMS["counts"][1], cold)


async def confusions_worker(s: Session) -> None:
    await open_confusions(s)
    for split in itertools.cycle(("train", "val")):
        cold = f"first computation of the {split} split" if s.rec.first(f"split {split}") \
            else None
        await s.act(f"split to {split}", partial(s.radio, "cm_split", split), SPLIT_SHOWN, split,
                    cold=cold)
        await colour_mode(s)


async def saliency_worker(s: Session) -> None:
    await open_page(s, MAP_SHOWN, METHODS["vanilla"])
    if await s.page.locator(".st-key-sa_trust_run").count():
        s.background = ("trust checks, start to report (background)", now(),
                        "the trust report, computed once")
        await s.act("start the trust checks", partial(s.button, "sa_trust_run"), TRUST_STARTED,
                    polling=TRUST_POLLING)
    for method in itertools.cycle(("gradcam", "smoothgrad", "ig", "vanilla")):
        await s.act(f"method {METHODS[method]}", partial(s.select, "sa_method", METHODS[method]),
                    MAP_SHOWN, METHODS[method], polling=TRUST_POLLING)
        if s.background is not None and await s.page.evaluate(TRUST_READY):
            kind, started, cold = s.background
            s.rec.interaction(s.phase, s, kind, now() - started, "ok", cold)
            s.background = None


async def filters_worker(s: Session) -> None:
    await open_page(s, FILTERS_READY)
    for n, key, text in itertools.cycle(((16, "fi_first16", "0-15"), (3, "fi_seed", "0-2"))):
        await s.act(f"button {text}", partial(s.button, key), FILTERS_TEXT, text)
        cold = "first run: the val split's filter statistics" if s.rec.first("filter stats") \
            else None
        await s.act(f"run {n} filters", partial(s.button, "fi_run"), FILTERS_DONE, n, cold=cold,
                    polling=FILTERS_POLLING)


async def embeddings_worker(s: Session) -> None:
    def expected() -> dict:
        return {"x": f"{PROJECTIONS[s.view['method']]} 1",
                "legend": COLOURINGS[s.view["colour"]]}

    s.view.update(method="pca", colour="true")
    cold = "first features and PCA of the val split" if s.rec.first("features val") else None
    await open_page(s, SCATTER_SHOWN, expected(), cold)
    steps = (("method", "tsne"), ("colour", "correct"), ("method", "pca"), ("colour", "true"))
    for what, choice in itertools.cycle(steps):
        s.view.setdefault("method", "pca")
        s.view.setdefault("colour", "true")
        s.view[what] = choice
        label = (PROJECTIONS if what == "method" else COLOURINGS)[choice]
        cold = "first t-SNE of the val split" if choice == "tsne" and s.rec.first("tsne") \
            else None
        await s.act(f"{what} {label}", partial(s.radio, f"em_{what}", label), SCATTER_SHOWN,
                    expected(), cold=cold)


async def home_worker(s: Session) -> None:
    while True:
        await s.act("load Home (new session)", s.goto, HOME_SHOWN, navigates=True)
        await s.act("open Model", lambda: s.page.get_by_role(
            "link", name="Model", exact=True).click(), MODEL_SHOWN)
        await s.act("open Home", lambda: s.page.get_by_role(
            "link", name="Home", exact=True).click(), HOME_SHOWN)


WORKERS = {"Confusions": confusions_worker, "Saliency": saliency_worker,
           "Filters": filters_worker, "Embeddings": embeddings_worker, "Home": home_worker}


async def simple_loop(s: Session) -> None:
    while True:
        await colour_mode(s)


async def guarded(s: Session, work) -> None:
    """Run a session's work; when it breaks outside a timed interaction (a page gone, a
    locator that fails), say so, reload its page and start its work again."""
    while True:
        try:
            await work(s)
        except (PlaywrightError, KeyError, TypeError, ValueError) as e:
            print(f"  {s.name}: {type(e).__name__}: {str(e).strip()[:160]}; reloading",
                  flush=True)
            await s.recover()


# ---------------------------------------------------------------- the phases


async def alone_phase(probe: Session, repeats: int) -> None:
    probe.phase = "alone"
    await open_confusions(probe)
    for _ in range(repeats):
        await colour_mode(probe)


async def load_phase(browser, probe: Session, workers: list[Session], minutes: float) -> None:
    """Every worker on its page, and the probe on the simple interaction, for `minutes`; what
    still runs at the end is recorded as unfinished."""
    for s in workers:
        await s.start(browser)
    probe.phase = "load"
    tasks = [asyncio.create_task(guarded(probe, simple_loop))]
    tasks += [asyncio.create_task(guarded(s, WORKERS[s.page_name])) for s in workers]
    try:
        await asyncio.wait(tasks, timeout=minutes * 60)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in (probe, *workers):
            await s.cancelled()


async def while_serving(server: subprocess.Popen, work) -> None:
    """Await `work` (a coroutine); when the server exits meanwhile, stop it and say so."""
    task = asyncio.ensure_future(work)
    while not task.done():
        if server.poll() is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise SystemExit(f"the dashboard server exited with code {server.returncode} during "
                             f"the benchmark: see its log")
        await asyncio.wait([task], timeout=1)
    task.result()


async def drive(server: subprocess.Popen, url: str, run: str, args, rec: Recorder) -> None:
    def session(name: str, page: str) -> Session:
        return Session(name, page, f"{url}/{SLUGS[page]}?run={run}", rec, args.timeout_s,
                       args.think_s)

    probe = session("simple", "Confusions")
    workers = []
    for i in range(args.sessions):  # confusions, saliency, ..., home, confusions2, ...
        page, lap = WORKER_PAGES[i % len(WORKER_PAGES)], i // len(WORKER_PAGES)
        workers.append(session(page.lower() + (str(lap + 1) if lap else ""), page))
        workers[-1].phase = "load"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            await probe.start(browser)
            rec.mark("alone_start")
            print(f"alone: {args.repeats} colour-mode changes on Confusions", flush=True)
            await while_serving(server, alone_phase(probe, args.repeats))
            rec.mark("load_start")
            print(f"under load: {len(workers)} sessions ({', '.join(s.name for s in workers)}) "
                  f"and the simple interaction, {args.minutes:g} min", flush=True)
            await while_serving(server, load_phase(browser, probe, workers, args.minutes))
            rec.mark("load_end")
        finally:
            for s in (probe, *workers):
                await s.close()
            await browser.close()
    rec.mark("closed")


# ---------------------------------------------------------------- the server and its memory


def rss_kb(pid: int) -> tuple[int, int]:
    """(resident, of which anonymous) kB of `pid`: the anonymous part is the heap, what the
    server's caches and computations hold; the rest is mostly shared libraries' pages."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "RssAnon:")):
                found[line.split(":")[0]] = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return found.get("VmRSS", 0), found.get("RssAnon", 0)


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids += [int(k) for k in task.read_text().split()]
        except OSError:
            pass
    return kids


def cpu_ticks(pid: int) -> int:
    """User and system time of `pid` (all its threads), in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


def tree_usage(pid: int) -> tuple[float, float, float]:
    """RSS and its anonymous part in MB (10^6 bytes), and CPU seconds, of `pid` and all its
    descendants."""
    kb, anon, ticks, stack = 0, 0, 0, [pid]
    while stack:
        p = stack.pop()
        rss, heap = rss_kb(p)
        kb, anon, ticks = kb + rss, anon + heap, ticks + cpu_ticks(p)
        stack += children(p)
    return kb * 1024 / 1e6, anon * 1024 / 1e6, ticks / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """The server's RSS and CPU time every SAMPLE_EVERY_S seconds, as (seconds since the
    start, MB, CPU seconds)."""

    def __init__(self, pid: int, rec: Recorder):
        super().__init__(daemon=True)
        self.pid, self.rec, self.samples, self.halt = pid, rec, [], threading.Event()

    def run(self) -> None:
        while True:
            mb, anon, cpu = tree_usage(self.pid)
            self.samples.append((self.rec.since(), round(mb, 1), round(cpu, 2), round(anon, 1)))
            if self.halt.wait(SAMPLE_EVERY_S):
                return

    def at(self, t: float, column: int = 1) -> float:
        """The sample nearest before time `t` (or the first): MB, (column 2) CPU seconds, or
        (column 3) anonymous MB."""
        before = [sample[column] for sample in self.samples if sample[0] <= t]
        return before[-1] if before else self.samples[0][column]

    def peak(self, t1: float, t2: float) -> float:
        return max([mb for s, mb, *_ in self.samples if t1 <= s <= t2] or [0.0])

    def busy(self, t1: float, t2: float) -> float:
        """The server's mean CPU use from `t1` to `t2`, in cores."""
        return round((self.at(t2, 2) - self.at(t1, 2)) / max(t2 - t1, 1e-9), 2)


def wait_until_quiet(sampler: Sampler, rec: Recorder) -> None:
    """Wait (at most QUIET_MAX_S) until the server has used under QUIET_CORES of CPU for
    QUIET_S: computations that sessions started go on after they close, and their results are
    only then kept, to be let go once idle."""
    deadline = time.monotonic() + QUIET_MAX_S
    while time.monotonic() < deadline:
        time.sleep(QUIET_S)
        if sampler.busy(rec.since() - QUIET_S, rec.since()) < QUIET_CORES:
            return


def start_server(data: str, checkpoints: Path, cache: Path, log: Path) -> tuple:
    port = free_port()
    env = {**os.environ, "FER_CHECKPOINTS_DIR": str(checkpoints), "FER_CACHE_DIR": str(cache),
           "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    env.pop("FER_DATA", None)
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port",
               str(port), "--server.headless", "true", "--", "--data", data]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    return server, f"http://localhost:{port}"


def stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


# ---------------------------------------------------------------- summaries


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def stats(records: list[dict]) -> dict:
    """Counts by outcome, and median, p95 and max of the interactions that ended well."""
    times = [r["seconds"] for r in records if r["outcome"] == "ok"]
    out = {"n": len(records), "ok": len(times),
           **{k: sum(r["outcome"] == k for r in records)
              for k in ("timeout", "error", "failed", "unfinished")}}
    if times:
        out |= {"median_s": round(statistics.median(times), 3), "p95_s": round(p95(times), 3),
                "max_s": round(max(times), 3)}
    return out


def summarize(rec: Recorder, sampler: Sampler) -> dict:
    warm = [r for r in rec.interactions if not r["cold"]]
    simple = {phase: stats([r for r in warm if r["session"] == "simple" and r["kind"] == SIMPLE
                            and r["phase"] == phase]) for phase in ("alone", "load")}
    if simple["alone"].get("p95_s") and simple["load"].get("p95_s"):
        simple["p95_ratio"] = round(simple["load"]["p95_s"] / simple["alone"]["p95_s"], 2)
    sessions = {}
    for r in warm:
        if r["phase"] == "load":
            sessions.setdefault(r["session"], {"page": r["page"], "records": []})["records"] \
                .append(r)
    pages = {name: {"page": v["page"], **stats(v["records"]),
                    "kinds": {k: stats([r for r in v["records"] if r["kind"] == k])
                              for k in dict.fromkeys(r["kind"] for r in v["records"])}}
             for name, v in sessions.items()}
    m = rec.marks
    memory = {"start": sampler.at(m["server_up"]), "after_alone": sampler.at(m["load_start"]),
              "peak_load": sampler.peak(m["load_start"], m["closed"]),
              "at_close": sampler.at(m["closed"]), "end": sampler.at(m["idle_end"])}
    memory["end_minus_start"] = round(memory["end"] - memory["start"], 1)
    memory["anon"] = {"start": sampler.at(m["server_up"], 3),
                      "after_alone": sampler.at(m["load_start"], 3),
                      "at_close": sampler.at(m["closed"], 3), "end": sampler.at(m["idle_end"], 3)}
    memory["quiet_after_s"] = round(m["quiet"] - m["closed"], 1)
    memory["quiet"] = sampler.at(m["quiet"])
    memory["idle_cpu_cores"] = sampler.busy(m["quiet"], m["idle_end"])
    problems = [{"page": p, "kind": k, "text": t, **v} for (p, k, t), v in rec.problems.items()]
    cold = [r for r in rec.interactions if r["cold"]]
    return {"simple": simple, "sessions": pages, "first_computations": cold,
            "problems": problems, "memory_mb": memory, "targets": targets(rec, simple, memory)}


def targets(rec: Recorder, simple: dict, memory: dict) -> list[dict]:
    slow = [r for r in rec.interactions if not r["cold"] and (
        r["outcome"] == "timeout" or r["seconds"] > TARGETS["slow_s"])]
    sightings = sum(v["sightings"] for v in rec.problems.values())
    ratio = simple.get("p95_ratio")
    return [
        {"target": "no exception, error alert or page error", "met": not rec.problems,
         "value": f"{len(rec.problems)} distinct, seen {sightings}x"},
        {"target": f"no interaction over {TARGETS['slow_s']:.0f} s but a first computation",
         "met": not slow, "value": f"{len(slow)} over" + "".join(
             f"; {r['session']} {r['kind']} {r['seconds']:.0f} s ({r['outcome']})"
             for r in slow[:5])},
        {"target": f"simple interaction p95 under load <= {TARGETS['p95_ratio']:.0f}x alone",
         "met": ratio is not None and ratio <= TARGETS["p95_ratio"],
         "value": "n/a" if ratio is None else f"{ratio:.1f}x"},
        {"target": f"memory at the end within {TARGETS['memory_mb']:.0f} MB of the start",
         "met": memory["end_minus_start"] <= TARGETS["memory_mb"],
         "value": f"{memory['end_minus_start']:+.0f} MB"},
    ]


def fmt(s: dict, key: str) -> str:
    return f"{s[key]:.2f}" if key in s else "-"


def print_report(result: dict) -> None:
    simple = result["simple"]
    print("\nSimple interaction (Confusions colour mode), warm, seconds")
    print(f"{'':<28}{'n':>5}{'median':>9}{'p95':>9}{'max':>9}{'timeouts':>10}")
    for phase, title in (("alone", "alone"), ("load", f"under load ({result['sessions_n']})")):
        s = simple[phase]
        print(f"{title:<28}{s['ok']:>5}{fmt(s, 'median_s'):>9}{fmt(s, 'p95_s'):>9}"
              f"{fmt(s, 'max_s'):>9}{s['timeout']:>10}")
    print(f"p95 under load / p95 alone: {simple.get('p95_ratio', 'n/a')}")
    print("\nUnder load, per session and interaction (first computations apart), seconds")
    print(f"{'session / interaction':<40}{'done':>5}{'median':>9}{'p95':>9}{'max':>9}"
          f"{'timeouts':>9}{'errors':>7}{'unfin.':>7}")
    for name, s in result["sessions"].items():
        rows = [(f"{name} ({s['page']})", s)] + [(f"  {k}", v) for k, v in s["kinds"].items()]
        for title, v in rows:
            print(f"{title[:39]:<40}{v['ok']:>5}{fmt(v, 'median_s'):>9}{fmt(v, 'p95_s'):>9}"
                  f"{fmt(v, 'max_s'):>9}{v['timeout']:>9}{v['error'] + v['failed']:>7}"
                  f"{v['unfinished']:>7}")
    print("\nFirst computations (cold caches)")
    for r in result["first_computations"]:
        print(f"  {r['cold']}: {r['session']} {r['kind']}, {r['seconds']:.1f} s "
              f"({r['outcome']}, {r['phase']})")
    if not result["first_computations"]:
        print("  none")
    print(f"\nExceptions, error alerts and page errors: {len(result['problems'])}")
    for p in result["problems"]:
        print(f"  {p['page']}: {p['kind']}: {p['text']} (seen {p['sightings']}x, first at "
              f"{p['first_t']:.0f} s)")
    m = result["memory_mb"]
    print(f"\nServer RSS, MB: start {m['start']:.0f}, after alone {m['after_alone']:.0f}, peak "
          f"under load {m['peak_load']:.0f}, at close {m['at_close']:.0f}, once quiet "
          f"{m['quiet']:.0f} ({m['quiet_after_s']:.0f} s after the close), after "
          f"{result['idle_s']:g} s idle {m['end']:.0f} (end - start "
          f"{m['end_minus_start']:+.0f}); server CPU while idle: {m['idle_cpu_cores']:.2f} cores")
    a = m["anon"]
    print(f"  of which anonymous (the heap; the rest is mostly shared libraries): start "
          f"{a['start']:.0f}, after alone {a['after_alone']:.0f}, at close {a['at_close']:.0f}, "
          f"end {a['end']:.0f}")
    load = result["load_average"]
    print(f"1-minute load average: {load['start']} at the start, {load['end']} at the end "
          f"(other work on the machine counts too)")
    print("\nTargets")
    for t in result["targets"]:
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']}")


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5, help="sessions working pages")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the load phase")
    parser.add_argument("--idle-s", type=float, default=120.0,
                        help="wait after closing the sessions before the last memory reading")
    parser.add_argument("--data", default=os.environ.get("FER2013_CSV") or "builtin")
    parser.add_argument("--run", help="run folder (default: the shipped one for the data)")
    parser.add_argument("--repeats", type=int, default=20, help="simple interactions alone")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per interaction")
    parser.add_argument("--think-s", type=float, default=1.0, help="pause after each interaction")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.run = Path(args.run or ROOT / "checkpoints" / (
        "builtin-cnn3" if is_builtin_spec(args.data) else "fer2013-cnn3")).resolve()
    return args


def on_sigterm(*_) -> None:
    raise KeyboardInterrupt


def main() -> None:
    try:
        benchmark(parse_args())
    except KeyboardInterrupt:
        print("\ninterrupted: the browser and the server are stopped; nothing saved", flush=True)
        sys.exit(130)


def benchmark(args: argparse.Namespace) -> None:
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is not installed (apt-get install chromium)")
    signal.signal(signal.SIGTERM, on_sigterm)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".server.log")
    rec = Recorder()
    started, load_start = datetime.now().isoformat(timespec="seconds"), load_average()
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        checkpoints = Path(tmp) / "checkpoints"
        shutil.copytree(args.run, checkpoints / args.run.name,
                        ignore=shutil.ignore_patterns("last.pt", "run.lock"))
        server, url = start_server(args.data, checkpoints, Path(tmp) / "cache", log)
        sampler = None
        try:
            wait_healthy(url, server)
            rec.mark("server_up")
            sampler = Sampler(server.pid, rec)
            sampler.start()
            print(f"server {url} (pid {server.pid}), data {args.data}, run {args.run.name}, "
                  f"log {log}", flush=True)
            asyncio.run(drive(server, url, args.run.name, args, rec))
            print("sessions closed; waiting for the server's work in progress to finish",
                  flush=True)
            wait_until_quiet(sampler, rec)
            rec.mark("quiet")
            print(f"server quiet after {rec.marks['quiet'] - rec.marks['closed']:.0f} s; idle "
                  f"for {args.idle_s:g} s", flush=True)
            time.sleep(args.idle_s)
            rec.mark("idle_end")
        finally:
            if sampler is not None:
                sampler.halt.set()
            stop_server(server)
    command = shlex.join(["python", "benchmarks/bench_sessions.py", *sys.argv[1:]])
    if os.environ.get("FER2013_CSV"):
        command = f"FER2013_CSV={shlex.quote(os.environ['FER2013_CSV'])} {command}"
    result = {"command": command, "started": started, "machine": machine(), "data": args.data,
              "run": str(args.run), "device": os.environ.get("FER_DEVICE", "auto"),
              "sessions_n": args.sessions, "minutes": args.minutes, "idle_s": args.idle_s,
              "repeats": args.repeats, "timeout_s": args.timeout_s, "think_s": args.think_s,
              "load_average": {"start": load_start, "end": load_average()},
              "marks": rec.marks, **summarize(rec, sampler),
              "interactions": rec.interactions, "rss_mb_cpu_s": sampler.samples,
              "server_log": str(log)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_report(result)
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
