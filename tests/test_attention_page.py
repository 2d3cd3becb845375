"""The attention pictures from hand-made maps: the PNG grid, the self-contained HTML page (opened in a real
headless Chromium when one is installed), and the errors a user can cause when writing them."""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib import image

from t2t_jax.errors import UserError
from t2t_jax.visualize import AttentionMaps, write_attention
from t2t_jax.visualize.page import render_html

# tokens that would break a careless page: markup, a script end tag, quotes, ampersands, non-ASCII
SOURCE = ["\u2581Die", "\u2581</script><b>", "\u2581\"K\u00e4se\"", "\u2581&amp;", "</s>"]
TARGET = ["\u2581The", "\u2581'cheese'", "\u2581<!--", "</s>"]


def softmax(rng, shape, causal=False):
    logits = rng.normal(scale=2.0, size=shape)
    if causal:
        logits = np.where(np.tril(np.ones(shape[-2:], bool)), logits, -np.inf)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    s, t = len(SOURCE), len(TARGET)
    return AttentionMaps(SOURCE, TARGET, encoder=softmax(rng, (2, 3, s, s)),
                         decoder=softmax(rng, (3, 3, t, t), causal=True), cross=softmax(rng, (3, 3, t, s)))


def distinct_colors(path):
    pixels = image.imread(path)
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


@pytest.mark.parametrize("kind, layer, head", [("cross", None, None), ("encoder", 1, None), ("decoder", 2, 1)])
def test_png_is_a_grid_of_heatmaps(maps, tmp_path, kind, layer, head):
    path = str(tmp_path / "attention.png")
    write_attention(maps, path, kind, layer, head)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert distinct_colors(path) > 20


def test_page_is_self_contained_and_carries_the_weights(maps):
    page = render_html(maps, kind="decoder", layer=1, head=2)
    assert not re.search(r"\b(src|href)\s*=|<link|@import|url\(", page, re.IGNORECASE)
    assert page.count("</script>") == 2  # the tokens' '</script>' is escaped inside the data block
    block = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', page, re.DOTALL)
    data = json.loads(block.group(1))
    assert data["source_tokens"] == SOURCE and data["target_tokens"] == TARGET
    assert data["initial"] == {"kind": "decoder", "layer": 1, "head": 2}
    cross = data["kinds"]["cross"]
    assert cross["query_tokens"] == TARGET and cross["key_tokens"] == SOURCE
    np.testing.assert_allclose(np.array(cross["weights"]), maps.cross, atol=1e-4)
    assert data["kinds"]["decoder"]["key_tokens"] == TARGET


@pytest.mark.parametrize("path, words", [
    ("attention.jpg", [".png or .html", "'.jpg'"]),
    ("attention", ["nothing"]),
    ("no/such/dir/attention.png", ["does not exist"]),
])
def test_bad_output_paths(maps, tmp_path, path, words):
    with pytest.raises(UserError) as error:
        write_attention(maps, str(tmp_path / path))
    for word in words:
        assert word in str(error.value)


@pytest.mark.parametrize("kind, layer, head, words", [
    ("self", None, None, ["encoder, decoder, cross", "'self'"]),
    ("encoder", 2, None, ["--layer 2", "0 to 1"]),
    ("cross", None, 3, ["--head 3", "0 to 2"]),
])
def test_bad_selection(maps, tmp_path, kind, layer, head, words):
    with pytest.raises(UserError) as error:
        write_attention(maps, str(tmp_path / "a.html"), kind, layer, head)
    for word in words:
        assert word in str(error.value)


# --- in a real browser ---------------------------------------------------------------------------------------
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
COLLECT_ERRORS = """<script>
window.__errors = [];
window.addEventListener("error", (event) => window.__errors.push("error: " + event.message));
window.addEventListener("unhandledrejection", (event) => window.__errors.push("rejection: " + event.reason));
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push("console: " + args.join(" ")); __consoleError(...args); };
</script>"""
# after the page's own script: work every control, hover a token and a cell, record what the page shows
PROBE = """<script>
(function () {
  const report = { kinds: {}, errors: window.__errors };
  try {
    const select = (id, value) => {
      const node = document.getElementById(id);
      node.value = String(value);
      node.dispatchEvent(new Event("change"));
    };
    const hover = (node, type) => node.dispatchEvent(new MouseEvent(type || "mouseenter"));
    for (const kind of ["encoder", "decoder", "cross"]) {
      select("kind", kind);
      const layers = document.getElementById("layer").options.length;
      const heads = document.getElementById("head").options.length;
      for (let layer = 0; layer < layers; layer++) {
        select("layer", layer);
        for (let head = 0; head < heads; head++) select("head", document.getElementById("head").options[head].value);
      }
      select("layer", 0);
      select("head", 0);
      const lines = document.querySelectorAll("#lines .link");
      hover(document.querySelector("#lines .token.query"));
      const shown = [...lines].filter((line) => Number(line.getAttribute("stroke-opacity")) > 0).length;
      const shaded = [...document.querySelectorAll("#lines .token.key .token-box")]
        .filter((box) => box.style.fill && box.style.fill !== "transparent").length;
      const readout = document.getElementById("readout").textContent;
      hover(document.querySelector("#lines .token.query"), "mouseleave");
      hover(document.querySelector("#heatmap .cell"));
      report.kinds[kind] = {
        layers: layers, heads: heads, lines: lines.length, shown_on_hover: shown, shaded_on_hover: shaded,
        cells: document.querySelectorAll("#heatmap .cell").length, hover_readout: readout,
        cell_readout: document.getElementById("readout").textContent,
      };
    }
    select("view", "heatmap");
    report.lines_hidden = document.getElementById("lines-view").classList.contains("hidden");
  } catch (error) {
    report.errors.push("probe: " + error);
  }
  document.body.setAttribute("data-probe", JSON.stringify(report));
})();
</script>"""


def browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless browser installed (e.g. apt-get install chromium): the page was not opened")


def run_browser(path, tmp_path, *args):
    command = [
        browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args,
        f"file://{path}",
    ]
    return subprocess.run(command, capture_output=True, timeout=120, cwd=tmp_path)


def test_page_works_in_a_headless_browser(maps, tmp_path):
    page = render_html(maps, kind="cross", layer=1, head="mean")
    probed = page.replace("<head>", "<head>\n" + COLLECT_ERRORS, 1)
    at = probed.rindex("</body>")
    probed = probed[:at] + PROBE + probed[at:]
    path = tmp_path / "probe.html"
    path.write_text(probed, encoding="utf-8")
    result = run_browser(path, tmp_path, "--dump-dom")
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr[-3000:]
    console = [line for line in stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert not console, console
    found = re.search(r'data-probe="([^"]*)"', result.stdout.decode())
    assert found, result.stdout.decode()[-3000:]
    report = json.loads(html.unescape(found.group(1)))
    assert report["errors"] == [], report["errors"]
    s, t = len(SOURCE), len(TARGET)
    expected = {"encoder": (2, s, s), "decoder": (3, t, t), "cross": (3, t, s)}
    for kind, (layers, queries, keys) in expected.items():
        shown = report["kinds"][kind]
        assert shown["layers"] == layers and shown["heads"] == 4, (kind, shown)  # 3 heads + their mean
        assert shown["cells"] == queries * keys, (kind, shown)
        first_row = np.round(maps.weights(kind)[0, 0, 0].astype(np.float64), 4)  # as in the page's data
        assert shown["shown_on_hover"] == int((first_row >= 0.005).sum()), (kind, shown)  # the page's threshold
        assert shown["shaded_on_hover"] == keys, (kind, shown)
        assert "looks most at" in shown["hover_readout"] and "\u2192" in shown["cell_readout"], (kind, shown)
    assert report["lines_hidden"]


def test_page_screenshot_is_not_blank(maps, tmp_path):
    path = tmp_path / "page.html"
    write_attention(maps, str(path), "cross")
    shot = tmp_path / "shot.png"
    result = run_browser(path, tmp_path, f"--screenshot={shot}", "--window-size=1000,700")
    assert result.returncode == 0 and os.path.isfile(shot), result.stderr.decode(errors="replace")[-3000:]
    assert distinct_colors(str(shot)) > 20
