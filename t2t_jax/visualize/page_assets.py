"""The stylesheet and script of the interactive attention page (inlined by page.py; plain CSS and JavaScript,
no library, no network).

The script reads the JSON data block `#attention-data`: {source_tokens, target_tokens, kinds: {kind: {title,
explanation, query_tokens, key_tokens, weights [layers][heads][queries][keys]}}, initial: {kind, layer, head}}
(head may be "mean") and draws
- lines: query tokens on the left, key tokens on the right, one line per pair with opacity = weight (the
  Tensor2Tensor / bertviz picture); hovering a token keeps only its lines and shades the tokens it looks at;
- a heatmap: one cell per (query, key); hovering a cell or a row label reads out the weights.
"""

STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px 24px; color: #222;
       background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; }
.pair { margin: 0 0 12px; color: #555; }
.pair b { color: #222; font-weight: 600; }
#controls { display: flex; flex-wrap: wrap; gap: 16px; align-items: center; margin-bottom: 8px; }
#controls label { display: flex; gap: 6px; align-items: center; }
#explain { color: #555; margin: 4px 0 12px; max-width: 900px; }
#views { display: flex; flex-wrap: wrap; gap: 40px; align-items: flex-start; }
#views figure { margin: 0; }
#views figcaption { color: #555; font-size: 12px; margin-bottom: 4px; }
svg text { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; fill: #222; cursor: default; }
svg .token-box { fill: transparent; }
svg .token.active .token-box { stroke: #222; stroke-width: 1; }
svg .link { stroke-linecap: round; }
svg .cell { stroke: #fff; stroke-width: 1; }
svg .cell.active { stroke: #222; stroke-width: 1.5; }
svg .label.active { font-weight: bold; }
#readout { min-height: 1.4em; font-family: ui-monospace, "DejaVu Sans Mono", monospace; margin-top: 10px; }
.hidden { display: none; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const ROW = 22;            // pixels per token
  const CHAR = 8;            // approximate width of one monospace character
  const COLORS = { encoder: [31, 119, 180], decoder: [214, 39, 40], cross: [44, 160, 44] };
  const data = JSON.parse(document.getElementById("attention-data").textContent);
  const kindSelect = document.getElementById("kind");
  const layerSelect = document.getElementById("layer");
  const headSelect = document.getElementById("head");
  const viewSelect = document.getElementById("view");
  const linesView = document.getElementById("lines-view");
  const heatmapView = document.getElementById("heatmap-view");
  const readout = document.getElementById("readout");
  const explain = document.getElementById("explain");

  function element(name, attributes, parent) {
    const node = document.createElementNS(SVG_NS, name);
    for (const key in attributes) node.setAttribute(key, attributes[key]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function option(select, value, text) {
    const node = document.createElement("option");
    node.value = String(value);
    node.textContent = text;
    select.appendChild(node);
  }

  function current() { return data.kinds[kindSelect.value]; }

  // weights [queries][keys] of the chosen layer and head (or the mean over heads)
  function matrix() {
    const layer = current().weights[Number(layerSelect.value)];
    if (headSelect.value !== "mean") return layer[Number(headSelect.value)];
    return layer[0].map((row, q) => row.map((_, k) => layer.reduce((sum, head) => sum + head[q][k], 0) / layer.length));
  }

  function color(weight) {
    const rgb = COLORS[kindSelect.value];
    const mix = (channel) => Math.round(255 - (255 - channel) * Math.min(Math.max(weight, 0), 1));
    return "rgb(" + mix(rgb[0]) + "," + mix(rgb[1]) + "," + mix(rgb[2]) + ")";
  }

  function labelWidth(tokens) { return Math.max(...tokens.map((t) => t.length), 3) * CHAR + 12; }

  function fillLayers() {
    const count = current().weights.length;
    const keep = Math.min(Number(layerSelect.value) || 0, count - 1);
    layerSelect.textContent = "";
    for (let i = 0; i < count; i++) option(layerSelect, i, String(i));
    layerSelect.value = String(keep);
  }

  function fillHeads() {
    const count = current().weights[0].length;
    for (let i = 0; i < count; i++) option(headSelect, i, String(i));
    option(headSelect, "mean", "mean of heads");
  }

  function describe(queryTokens, keyTokens, q, k, weight) {
    return "'" + queryTokens[q] + "' (" + q + ") \u2192 '" + keyTokens[k] + "' (" + k + "): " + weight.toFixed(3);
  }

  // --- lines: query tokens left, key tokens right ---------------------------------------------------------
  function drawLines(weights) {
    const kind = current();
    const left = labelWidth(kind.query_tokens), right = labelWidth(kind.key_tokens), gap = 140;
    const height = Math.max(kind.query_tokens.length, kind.key_tokens.length) * ROW + 8;
    const svg = element("svg", { width: left + gap + right, height: height, id: "lines" });
    const links = element("g", {}, svg);
    const lines = [];
    weights.forEach((row, q) => row.forEach((weight, k) => {
      if (weight < 0.005) return;
      const line = element("line", {
        class: "link", x1: left, y1: q * ROW + ROW / 2 + 4, x2: left + gap, y2: k * ROW + ROW / 2 + 4,
        stroke: "rgb(" + COLORS[kindSelect.value].join(",") + ")", "stroke-width": 2, "stroke-opacity": weight,
      }, links);
      lines.push({ line: line, q: q, k: k, weight: weight });
    }));
    const queries = tokenColumn(svg, kind.query_tokens, 0, left - 6, "end", "query");
    const keys = tokenColumn(svg, kind.key_tokens, left + gap, left + gap + 6, "start", "key");

    function focus(side, index) {
      lines.forEach((item) => {
        const own = side === null || (side === "query" ? item.q : item.k) === index;
        item.line.setAttribute("stroke-opacity", own ? item.weight : 0);
      });
      queries.forEach((token, q) => {
        token.box.style.fill = side === "key" ? color(weights[q][index]) : "transparent";
        token.group.classList.toggle("active", side === "query" && q === index);
      });
      keys.forEach((token, k) => {
        token.box.style.fill = side === "query" ? color(weights[index][k]) : "transparent";
        token.group.classList.toggle("active", side === "key" && k === index);
      });
      if (side === null) { readout.textContent = "Hover a token to see where it looks."; return; }
      const row = side === "query" ? weights[index] : weights.map((r) => r[index]);
      const best = row.indexOf(Math.max(...row));
      const share = " (" + row[best].toFixed(3) + ")";
      readout.textContent = side === "query"
        ? "'" + kind.query_tokens[index] + "' looks most at '" + kind.key_tokens[best] + "'" + share
        : "'" + kind.key_tokens[index] + "' is looked at most by '" + kind.query_tokens[best] + "'" + share;
    }
    queries.forEach((token, i) => hover(token.group, () => focus("query", i), () => focus(null, 0)));
    keys.forEach((token, i) => hover(token.group, () => focus("key", i), () => focus(null, 0)));
    return svg;
  }

  function tokenColumn(svg, tokens, boxX, textX, anchor, side) {
    const width = labelWidth(tokens) - 4;
    return tokens.map((text, i) => {
      const group = element("g", { class: "token " + side, "data-index": i }, svg);
      const box = element("rect", { class: "token-box", x: boxX + 2, y: i * ROW + 2,
                                    width: width, height: ROW - 4, rx: 3 }, group);
      const label = element("text", { x: textX, y: i * ROW + ROW / 2 + 8, "text-anchor": anchor }, group);
      label.textContent = text;
      return { group: group, box: box };
    });
  }

  function hover(node, enter, leave) {
    node.addEventListener("mouseenter", enter);
    node.addEventListener("mouseleave", leave);
  }

  // --- heatmap: rows = queries, columns = keys ------------------------------------------------------------
  function drawHeatmap(weights) {
    const kind = current();
    const left = labelWidth(kind.query_tokens), top = labelWidth(kind.key_tokens);
    const svg = element("svg", { width: left + kind.key_tokens.length * ROW + 8,
                                 height: top + kind.query_tokens.length * ROW + 8, id: "heatmap" });
    const rowLabels = kind.query_tokens.map((text, q) => {
      const label = element("text", { class: "label", x: left - 6, y: top + q * ROW + ROW / 2 + 5,
                                      "text-anchor": "end" }, svg);
      label.textContent = text;
      return label;
    });
    const columnLabels = kind.key_tokens.map((text, k) => {
      const x = left + k * ROW + ROW / 2 + 5, y = top - 6;
      const label = element("text", { class: "label", x: x, y: y, transform: "rotate(-90 " + x + " " + y + ")" }, svg);
      label.textContent = text;
      return label;
    });
    weights.forEach((row, q) => row.forEach((weight, k) => {
      const cell = element("rect", { class: "cell", x: left + k * ROW, y: top + q * ROW, width: ROW, height: ROW,
                                     fill: color(weight), "data-q": q, "data-k": k }, svg);
      element("title", {}, cell).textContent = describe(kind.query_tokens, kind.key_tokens, q, k, weight);
      hover(cell, () => {
        cell.classList.add("active");
        rowLabels[q].classList.add("active");
        columnLabels[k].classList.add("active");
        readout.textContent = describe(kind.query_tokens, kind.key_tokens, q, k, weight);
      }, () => {
        cell.classList.remove("active");
        rowLabels[q].classList.remove("active");
        columnLabels[k].classList.remove("active");
      });
    }));
    return svg;
  }

  function render() {
    const weights = matrix();
    const view = viewSelect.value;
    explain.textContent = current().explanation;
    linesView.querySelector("svg") && linesView.removeChild(linesView.querySelector("svg"));
    heatmapView.querySelector("svg") && heatmapView.removeChild(heatmapView.querySelector("svg"));
    linesView.appendChild(drawLines(weights));
    heatmapView.appendChild(drawHeatmap(weights));
    linesView.classList.toggle("hidden", view === "heatmap");
    heatmapView.classList.toggle("hidden", view === "lines");
    readout.textContent = "Hover a token to see where it looks.";
  }

  Object.keys(data.kinds).forEach((kind) => option(kindSelect, kind, data.kinds[kind].title));
  kindSelect.value = data.initial.kind;
  fillLayers();
  layerSelect.value = String(Math.min(data.initial.layer, current().weights.length - 1));
  fillHeads();
  headSelect.value = String(data.initial.head);
  kindSelect.addEventListener("change", () => { fillLayers(); render(); });
  [layerSelect, headSelect, viewSelect].forEach((select) => select.addEventListener("change", render));
  render();
})();
"""
