"""The plot pages rendered in a real browser: headless Chromium (Debian's ``chromium``), driven
through the DevTools protocol over a pipe (no driver, no extra package).

Each page is loaded from disk as a user opens it, and the assertions read what Plotly drew: the
SVG ``g.trace`` groups of the 2-D plots (one ``path.point`` per marker, the member labels), the
legend and titles, the parallel-coordinates axes, and for the WebGL 3-D scene its canvas and
the traces Plotly drew into it. Skipped without Chromium, failed under ``CI=true`` (``.ci/run``
installs it).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time

import pytest

from results import load_trials, pareto_front, write_plots
from results._plots import _PAGES, _importance_data, _tradeoff_data

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1400,900", "--remote-debugging-pipe",
]  # fmt: skip

# Runs in the page once Plotly has drawn: what the user sees, read back from the DOM.
PROBE = """
new Promise(resolve => {
  const start = Date.now();
  const read = gd => ({
    title: (document.querySelector('.gtitle') || {}).textContent || null,
    legend: [...document.querySelectorAll('.legendtext')].map(e => e.textContent),
    annotations: [...document.querySelectorAll('.annotation-text')].map(e => e.textContent),
    axisTitles: [...document.querySelectorAll('.xtitle, .ytitle')].map(e => e.textContent),
    svg: Object.fromEntries([...document.querySelectorAll('g.trace')].map(g => [
      ([...g.classList].find(c => c.startsWith('trace') && c !== 'trace') || 'trace' + g.classList[1]).slice(5),
      {points: g.querySelectorAll('.point').length,
       labels: [...g.querySelectorAll('.textpoint text')].map(e => e.textContent)}])),
    drawn: gd._fullData.map(t => ({uid: t.uid, type: t.type, length: t._length, customdata: t.customdata || null})),
    shapes: (gd._fullLayout.shapes || []).length,
    canvases: [...document.querySelectorAll('canvas')].filter(c => c.width > 0 && c.height > 0).length,
    parcoords: [...document.querySelectorAll('.y-axis')].map(a => ({
      title: (a.querySelector('.axis-title') || {}).textContent,
      ticks: [...a.querySelectorAll('.tick text')].map(e => e.textContent)})),
  });
  (function poll() {
    const gd = document.querySelector('.js-plotly-plot');
    if (gd && gd._fullLayout && gd.calcdata) {
      setTimeout(() => { try { resolve(JSON.stringify(read(gd))); } catch (e) { resolve(JSON.stringify({error: String(e)})); } }, 300);  // let WebGL scenes finish their frame
    } else if (document.readyState === 'complete' && !document.querySelector('script[src="plotly.min.js"]')) {
      resolve(JSON.stringify({text: document.body.innerText, links: [...document.links].map(a => a.getAttribute('href'))}));
    } else if (Date.now() - start > 30000) {
      resolve(JSON.stringify({error: 'the plot was not drawn within 30 s'}));
    } else {
      setTimeout(poll, 50);
    }
  })();
})
"""


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "headless Chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI=true, so the browser tests must run (.ci/run installs it)")
    pytest.skip(reason)


class Browser:
    """One headless Chromium; DevTools messages are JSON ending in NUL on its fds 3 (in) and 4 (out)."""

    def __init__(self, binary: str, profile) -> None:
        command = f'exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null 2>"{profile}.log"'
        self.proc = subprocess.Popen(
            ["sh", "-c", command, binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        self.buffer, self.ids = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, *, session: str | None = None, timeout: float = 60.0, **params):
        self.ids += 1
        message = {"id": self.ids, "method": method, "params": params, **({"sessionId": session} if session else {})}
        self.proc.stdin.write(json.dumps(message).encode() + b"\0")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self.buffer:
                ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20) if ready else b""
                if not chunk:
                    raise AssertionError(f"Chromium gave no answer to {method} (exited: {self.proc.poll()})")
                self.buffer += chunk
            raw, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self.ids:  # anything else is an event
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]

    def open(self, path, *, screenshot=None) -> dict:
        """Load ``path`` as a user would and return what ``PROBE`` read from the drawn page."""
        url = path.as_uri()
        self.call("Page.navigate", session=self.session, url=url)
        deadline = time.monotonic() + 30
        while self.evaluate("location.href + ' ' + document.readyState") != f"{url} complete":
            assert time.monotonic() < deadline, f"{path.name} did not load within 30 s"
            time.sleep(0.05)
        result = self.call(
            "Runtime.evaluate", session=self.session, expression=PROBE, awaitPromise=True, returnByValue=True
        )["result"]["value"]  # fmt: skip
        if screenshot is not None:
            shot = self.call("Page.captureScreenshot", session=self.session, format="png")
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        page = json.loads(result)
        assert "error" not in page, f"{path.name}: {page['error']}"
        return page

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", session=self.session, expression=expression, returnByValue=True)["result"].get("value")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = chromium_binary()
    browser = Browser(binary, tmp_path_factory.mktemp("chromium") / "profile")
    yield browser
    browser.close()


def drawn(page, uid):
    return next(t for t in page["drawn"] if t["uid"] == uid)


def render_all(browser, study, out):
    write_plots(study, out)
    frame = load_trials(study)
    pages = {name: browser.open(out / name, screenshot=out / name.replace(".html", ".png")) for name in ["index.html", *(p[0] for p in _PAGES)]}
    return frame, pages


def check_tradeoff(page, frame, x):
    """Every marker drawn once per point it stands for, the exported members ringed and labelled."""
    data = _tradeoff_data(frame, x=x)
    members = pareto_front(frame)["number"].tolist()
    svg = page["svg"]
    assert svg["trials"]["points"] == len(data["trials"]) and svg["baselines"]["points"] == len(data["baselines"])
    assert svg.get("rejected", {}).get("points", 0) == len(data["rejected"])  # drawn only when there are some
    assert svg["staircase"]["points"] == 0  # a line only
    assert svg["exported"]["points"] == len(members)
    assert sorted(svg["exported"]["labels"]) == sorted(f"#{n}" for n in members)
    assert sorted(drawn(page, "exported")["customdata"]) == sorted(members)
    assert "exported front (all objectives)" in page["legend"] and "2-D front of this plot" in page["legend"]
    return svg


def test_pages_of_a_three_objective_study_in_chromium(browser, search_study, tmp_path):
    frame, pages = render_all(browser, search_study, tmp_path)
    members = pareto_front(frame)["number"].tolist()
    index = pages["index.html"]
    assert index["links"] == [p[0] for p in _PAGES]
    assert "e+" not in index["text"] and "Exported front (" in index["text"]
    assert all(f"trial {n}" in index["text"] for n in members)
    for x in ("latency_ms", "flops"):
        svg = check_tradeoff(pages[f"accuracy_{x.split('_')[0]}.html"], frame, x)
        assert svg["trials"]["points"] + svg["baselines"]["points"] + len(members) - frame.loc[frame["number"].isin(members), "baseline"].notna().sum() == 12
        assert sorted(svg["baselines"]["labels"]) == ["0.5x", "1.0x"]

    three = pages["objectives_3d.html"]
    assert three["canvases"] >= 1  # WebGL drew the scene
    assert {t["uid"]: t["length"] for t in three["drawn"]} == {
        "trials": int((~frame["number"].isin(members) & frame["baseline"].isna()).sum()),
        "baselines": 2,
        "exported": len(members),
    }
    assert sorted(drawn(three, "exported")["customdata"]) == sorted(members)
    assert three["legend"] == ["trials", "baselines", "exported front (all objectives)"]

    hypervolume = pages["hypervolume.html"]
    assert hypervolume["svg"]["hypervolume"]["points"] == 12
    assert "reference point 1.1" in hypervolume["title"] and "hypervolume (share of the reference box)" in hypervolume["axisTitles"]

    axes = {a["title"]: a["ticks"] for a in pages["parallel_coordinates.html"]["parcoords"]}
    assert {"width", "ratio", "s6.depth", "accuracy (%)"} <= set(axes) and not any(".b" in t for t in axes)
    # Integer dimensions tick at the values they take, never at 1.1 blocks.
    assert axes["ratio"] == [str(v) for v in sorted(frame["ratio"].unique())]
    assert axes["s6.depth"] == [str(v) for v in sorted(frame["s6.depth"].unique())]
    assert pages["parallel_coordinates.html"]["canvases"] >= 1

    bars = pages["param_importances.html"]["svg"]["bars"]
    assert bars["points"] == len(_importance_data(frame)[0])


def test_limits_draw_rejected_trials_and_the_limit_line(browser, hand_study, tmp_path):
    frame, pages = render_all(browser, hand_study, tmp_path)
    latency = check_tradeoff(pages["accuracy_latency.html"], frame, "latency_ms")
    assert latency["rejected"]["points"] == 1  # trial 8 was timed (37.5 ms); trial 5 was rejected on FLOPs first
    assert drawn(pages["accuracy_latency.html"], "rejected")["customdata"] == [8]
    assert "limit 25 ms" in pages["accuracy_latency.html"]["annotations"] and pages["accuracy_latency.html"]["shapes"] == 1
    flops = check_tradeoff(pages["accuracy_flops.html"], frame, "flops")
    assert flops["rejected"]["points"] == 2 and "limit 250 M" in pages["accuracy_flops.html"]["annotations"]
    assert sorted(flops["exported"]["labels"]) == ["#0", "#1", "#3", "#4"]  # the front of accuracy and latency
    assert "limits: flops 250 M, latency_ms 25 ms" in pages["index.html"]["text"]
