"""The report page in a real browser (headless Chromium): it loads from a file with no console
message, its tables and images are there and decode, headers sort, a hostile method name stays
text, and a screenshot is not blank. Chromium is installed with apt-get where it is missing; the
tests skip, saying why, only where that is impossible."""
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, run_cli

pytestmark = pytest.mark.browser

EVIL = "<script>alert(1)</script>"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")
BROWSER_TIMEOUT = 120
CONSOLE = re.compile(r":CONSOLE[:(]")


def _find() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = _find()
    if exe is None and shutil.which("apt-get") and os.geteuid() == 0:
        try:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired):
            pass
        exe = _find()
    if exe is None:
        pytest.skip("chromium is not installed and cannot be installed here (needs apt-get as root)")
    return exe


def _browse(exe: str, page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on a local file, bounded in time; stderr carries the console log."""
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=BROWSER_TIMEOUT)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def _suite_page(tmp: Path) -> Path:
    """A tiny suite run through the CLI (the run writes the page), one row named like an attack."""
    suite = tmp / "tiny.yaml"
    suite.write_text("name: tiny\ndatasets: [digits]\nmethods: [centroid, logreg, "
                     f"{{method: centroid_b, name: '{EVIL}'}}]\ntrials: 2\nseeds: 2\nepochs: 1\npruner: none\n")
    done = run_cli("--plugin", "fixture_plugins.centroid", "run", "--suite", str(suite), "--out", str(tmp / "tiny"),
                   "--no-progress", cwd=tmp)
    assert done.returncode == 0, done.stderr
    return tmp / "tiny" / "index.html"


def _default_page(tmp: Path) -> Path | None:
    """The default suite's page, rebuilt from its committed storage (into a copy, leaving results/ alone)."""
    journal = REPO / "results" / "default" / "optuna.journal"
    if not journal.is_file():
        return None
    out = tmp / "default"
    out.mkdir()
    shutil.copy(journal, out / "optuna.journal")
    done = run_cli("report", "--out", str(out), cwd=tmp)
    assert done.returncode == 0, done.stderr
    return out / "index.html"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    found = {"tiny": _suite_page(tmp)}
    default = _default_page(tmp)
    if default is not None:
        found["default"] = default
    return found


def test_console_check_catches_a_console_error(chromium, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'></head>"
                    "<body><p>x</p><script>console.error('probe')</script></body></html>")
    assert any("probe" in line for line in _console(_browse(chromium, page, tmp_path / "p", "--dump-dom").stderr))


@pytest.mark.parametrize("which", ["tiny", "default"])
def test_page_loads_without_console_messages(chromium, pages, which, tmp_path):
    if which not in pages:
        pytest.skip("results/default/optuna.journal is not there yet")
    page = pages[which]
    done = _browse(chromium, page, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _console(done.stderr) == []
    dom = done.stdout
    assert dom.count("<table") >= 4 and dom.count("<img") >= 4
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", dom)) == dom.count("<img")
    assert dom.count("<script") == 1
    for section in ("summary", "statistics", "plots", "tuning", "provenance"):
        assert f'id="{section}"' in dom
    shot = tmp_path / "shot.png"
    done = _browse(chromium, page, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1400,2000",
                   "--hide-scrollbars")
    assert shot.is_file(), done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1400, 2000)
        colours = im.convert("RGB").resize((140, 200)).getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50   # tables and figures, not a blank page


def test_hostile_name_is_text_images_decode_and_headers_sort(chromium, pages, tmp_path):
    page = pages["tiny"]
    html = page.read_text()
    assert EVIL not in html
    # A probe (the page's own policy would refuse it, so it goes into a copy without the policy)
    # records what loaded and clicks the summary's method and accuracy headers twice each.
    probe = """<script>
    window.addEventListener("load", function () {
      var imgs = Array.prototype.slice.call(document.images);
      document.body.setAttribute("data-images", imgs.length);
      var decoded = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
      document.body.setAttribute("data-decoded", decoded.length);
      var t = document.querySelector("#summary table"), heads = t.querySelectorAll("th");
      function col(i, attr) {
        return Array.prototype.map.call(t.tBodies[0].rows, function (r) {
          return attr ? r.cells[i].getAttribute(attr) : r.cells[i].textContent; }).join("|");
      }
      heads[1].click(); document.body.setAttribute("data-asc", col(1));
      heads[1].click(); document.body.setAttribute("data-desc", col(1));
      heads[2].click(); document.body.setAttribute("data-accasc", col(2, "data-v"));
      heads[2].click(); document.body.setAttribute("data-accdesc", col(2, "data-v"));
      document.body.setAttribute("data-alerted", String(window.alerted === true));
    });
    window.alert = function () { window.alerted = true; };
    </script>"""
    copy = tmp_path / "probe.html"
    copy.write_text(re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", html)
                    .replace("<head>", "<head>" + probe, 1))
    done = _browse(chromium, copy, tmp_path / "profile", "--dump-dom", "--virtual-time-budget=5000")
    dom = done.stdout
    attrs = dict(re.findall(r'data-(images|decoded|asc|desc|accasc|accdesc|alerted)="([^"]*)"', dom))
    assert int(attrs["images"]) >= 4 and attrs["decoded"] == attrs["images"]
    assert attrs["alerted"] == "false"
    asc, desc = unescape(attrs["asc"]).split("|"), unescape(attrs["desc"]).split("|")
    assert asc == desc[::-1] and len(asc) == 3 and EVIL in asc   # the name, as text, in the sorted column
    assert asc == sorted(asc)                                   # text columns sort as text
    acc_up, acc_down = ([float(v) for v in attrs[k].split("|")] for k in ("accasc", "accdesc"))
    assert acc_up == sorted(acc_up) and acc_down == sorted(acc_up, reverse=True)  # numbers as numbers
    assert sorted(acc_up) == sorted(pd.read_csv(page.parent / "summary.csv")["accuracy_mean"])
    summary = dom.split('id="summary"')[1].split("</section>")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in summary and "<script" not in summary
