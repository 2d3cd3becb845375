"""The server's page at `/`: paste text, get its translation; for one sentence, its attention maps (the
attention page of t2t_jax.visualize, served by /v1/attention, in a frame). Plain HTML and script, no CDN."""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>t2t-jax translate</title>
<link rel="icon" href="data:,">
<style>
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #222; }
textarea { width: 100%; min-height: 120px; font-size: 16px; padding: 8px; box-sizing: border-box; }
#controls { margin: 10px 0; display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }
button { font-size: 16px; padding: 6px 18px; cursor: pointer; }
#translations { font-size: 16px; line-height: 1.5; padding-left: 24px; }
#status { color: #555; min-height: 1.4em; }
#status.error { color: #b00020; }
#model { color: #777; font-size: 13px; }
iframe { width: 100%; height: 720px; border: 1px solid #ddd; margin-top: 12px; }
.hidden { display: none; }
</style>
</head>
<body>
<h1>Translate</h1>
<p id="model"></p>
<textarea id="source" placeholder="One sentence per line"></textarea>
<div id="controls">
  <button id="translate">Translate</button>
  <label>Beam <input id="beam" type="number" min="1" max="16" style="width: 4em"></label>
  <label><input id="show-attention" type="checkbox" checked> attention maps for one sentence</label>
</div>
<p id="status"></p>
<ol id="translations"></ol>
<iframe id="attention" class="hidden" title="attention maps"></iframe>
<script>
(function () {
  "use strict";
  const source = document.getElementById("source");
  const button = document.getElementById("translate");
  const beam = document.getElementById("beam");
  const status = document.getElementById("status");
  const list = document.getElementById("translations");
  const frame = document.getElementById("attention");
  const showAttention = document.getElementById("show-attention");
  let attentionAvailable = false;

  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  fetch("/v1/model").then((response) => response.json()).then((model) => {
    attentionAvailable = model.attention;
    beam.value = model.decode.beam_size;
    document.getElementById("model").textContent = model.vocabulary.source_lang + " \\u2192 " +
      model.vocabulary.target_lang + ", step " + model.step + ", backend " + model.backend;
  }).catch((error) => say("could not read /v1/model: " + error, true));

  async function translate() {
    const lines = source.value.split("\\n").map((line) => line.trim());
    while (lines.length && !lines[lines.length - 1]) lines.pop();
    if (!lines.length) { say("Type a sentence first.", true); return; }
    button.disabled = true;
    say("Translating " + lines.length + " sentence(s)...");
    list.textContent = "";
    frame.classList.add("hidden");
    const started = performance.now();
    try {
      const request = { text: lines };
      if (beam.value) request.beam_size = Number(beam.value);
      const response = await fetch("/v1/translate", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
      });
      const body = await response.json();
      if (!response.ok) { say(body.error || ("HTTP " + response.status), true); return; }
      body.translations.forEach((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        list.appendChild(item);
      });
      say("Done in " + Math.round(performance.now() - started) + " ms." +
          (body.warnings ? " " + body.warnings.join("; ") : ""));
      const sentences = lines.filter((line) => line);
      if (sentences.length === 1 && attentionAvailable && showAttention.checked) {
        frame.src = "/v1/attention?text=" + encodeURIComponent(sentences[0]);
        frame.classList.remove("hidden");
      }
    } catch (error) {
      say("The request failed: " + error, true);
    } finally {
      button.disabled = false;
    }
  }

  button.addEventListener("click", translate);
  source.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) translate();
  });
})();
</script>
</body>
</html>
"""
