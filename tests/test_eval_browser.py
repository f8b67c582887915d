"""report.html in a real headless browser: the rendered DOM and a screenshot.

Uses Debian's ``chromium`` (``scripts/setup --dev`` installs it where it runs as
root); browsers that download their own build are not used. Skips, saying why,
where no browser is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from eval_scripted import judge, replies, split_examples

from attunement.evaluation.evaluate import EvalInputs, EvalSettings, run_evaluation

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
MATPLOTLIB_BLUE = (31, 119, 180)  # the first colour of matplotlib's default cycle


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "no headless browser: install Debian's chromium (apt-get install chromium; "
        "scripts/setup --dev does it when run as root)"
    )


def run_browser(exe: str, profile, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            "the browser did not finish within 240 s (a dialog opened by a script "
            "in the page would block it)"
        )


class Census(HTMLParser):
    """Counts what the rendered DOM holds."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[str] = []
        self.classes: dict[str, int] = {}
        self.sections: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for cls in (a.get("class") or "").split():
            self.classes[cls] = self.classes.get(cls, 0) + 1
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "section" and a.get("id"):
            self.sections.append(a["id"])


@pytest.mark.slow  # starts a browser twice and draws the plots
async def test_report_renders_in_a_headless_browser(tmp_path):
    exe = browser()
    # one split keeps the plots (the slow part) to five
    inputs = EvalInputs(
        splits={"random": split_examples()["random"]},
        replies={"base": replies("base"), "mism": replies("mism")},
    )
    run = await run_evaluation(
        inputs, {"A": judge()}, tmp_path / "eval", EvalSettings(k_scaling=2), show_progress=False
    )
    url = run.report.resolve().as_uri()
    # the page as written holds no script (an injected one would also block the browser)
    written = Census()
    written.feed(run.report.read_text())
    assert written.tags.get("script", 0) == 0

    dom = run_browser(exe, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    census = Census()
    census.feed(dom.stdout)
    # the tables, every plot and every example panel made it into the rendered page
    assert set(census.sections) >= {
        "table1",
        "paired",
        "category",
        "bigfive",
        "memory",
        "scaling",
        "plots",
        "examples",
        "run",
    }
    assert census.tags.get("table", 0) >= 12
    plots = sorted((tmp_path / "eval" / "plots").iterdir())
    assert len(census.images) == len(plots) == 5
    assert all(src.startswith("data:image/png;base64,") for src in census.images)
    assert census.classes.get("example") == 3  # one <details> per example shown
    assert census.classes.get("panel") == 6  # two systems' replies per example
    # replies are text, never markup: no script element in the rendered DOM
    assert census.tags.get("script", 0) == 0
    assert "<script>alert(1)</script>" not in dom.stdout

    shot = tmp_path / "report.png"
    done = run_browser(
        exe, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,7000", url
    )
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image as mpimg
    import numpy as np

    pixels = (mpimg.imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (7000, 1280)
    # not blank, and the plots were drawn: matplotlib's blue bars appear on the page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    blue = np.all(np.abs(pixels - MATPLOTLIB_BLUE) <= 3, axis=-1)
    assert blue.sum() > 1000
