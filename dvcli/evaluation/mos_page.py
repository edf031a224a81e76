"""The static HTML page of the listening test (one self-contained file; no server, no network).

The page reads the kit (item ids, audio paths, the precomputed orders) from a JSON block, asks for
a rater id, picks the rater's order (``?list=K`` or a hash of the id), plays each clip, asks
naturalness (and, when the clip has a reference, speaker similarity) on 1-5 scales, keeps progress
in ``localStorage`` so a reload resumes, and ends with a button that downloads the ratings as CSV
(the same CSV is shown in a text box, for raters whose browser blocks downloads).

``?autotest=1&rater=NAME`` drives the page's own controls through the whole list (each answer
derived from the item and rater ids, or given per item with ``&answers=c01:2,c02:4``) so that a headless browser
can test the page end to end.
"""

from __future__ import annotations

import html
import json
from typing import Any

NATURALNESS_LABELS = ["1 Bad", "2 Poor", "3 Fair", "4 Good", "5 Excellent"]
SIMILARITY_LABELS = [
    "1 Definitely a different speaker",
    "2 Probably different",
    "3 Cannot tell",
    "4 Probably the same",
    "5 Definitely the same speaker",
]


def render_page(kit: dict[str, Any], title: str) -> str:
    """The page's HTML for ``kit`` = ``{"id", "items": {id: {"audio", "ref"}}, "lists": [[id...]]}``."""
    data = json.dumps(
        {**kit, "naturalness": NATURALNESS_LABELS, "similarity": SIMILARITY_LABELS}, ensure_ascii=True
    ).replace("</", "<\\/")  # a "</script>" inside a string must not end the block
    return _TEMPLATE.replace("@TITLE@", html.escape(title)).replace("@KIT@", data)


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
  fieldset { border: 1px solid #ccc; border-radius: 6px; margin: 1rem 0; }
  label.choice { display: block; padding: .15rem 0; }
  audio { width: 100%; margin: .4rem 0; }
  button { font-size: 1rem; padding: .45rem 1.2rem; }
  .hidden { display: none; }
  #progress { color: #555; }
  textarea { width: 100%; height: 8rem; font-family: monospace; }
</style>
</head>
<body>
<h1>@TITLE@</h1>

<section id="intro">
  <p>You will hear short clips of synthesized and real speech. For each clip:</p>
  <ul>
    <li><b>Naturalness</b>: how natural (human-like) does the speech sound? 1 = bad, 5 = excellent.</li>
    <li><b>Similarity</b> (when a reference clip is shown): does the clip sound like the same
      <i>speaker</i> as the reference? Judge the voice, not the words or the recording quality.</li>
  </ul>
  <p>Some clips contain <b>beeps</b> instead of speech. For those, answer <b>both</b> questions with
    the number of beeps you heard.</p>
  <p>Please use headphones in a quiet room. Play each clip to the end; you may replay it.</p>
  <p><label>Your rater id: <input id="rater" autocomplete="off"></label>
    <button id="start">Start</button></p>
</section>

<section id="trial" class="hidden">
  <p id="progress"></p>
  <p><b>Clip</b></p>
  <audio id="clip" controls preload="auto"></audio>
  <fieldset id="nat-box"><legend>Naturalness of the clip</legend><div id="nat"></div></fieldset>
  <div id="sim-part">
    <p><b>Reference</b> (the target speaker)</p>
    <audio id="ref" controls preload="auto"></audio>
    <fieldset id="sim-box"><legend>Is the clip the same speaker as the reference?</legend><div id="sim"></div></fieldset>
  </div>
  <button id="next" disabled>Next</button>
</section>

<section id="done" class="hidden">
  <p>Thank you! Please download your ratings and send the file to the experimenter.</p>
  <p><a id="download" href="#" download="ratings.csv"><button>Download ratings (CSV)</button></a></p>
  <p>If the download does not work, copy this text instead:</p>
  <textarea id="csv" readonly></textarea>
</section>

<script id="kit" type="application/json">@KIT@</script>
<script>
"use strict";
const KIT = JSON.parse(document.getElementById("kit").textContent);
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
let state = null;  // {rater, list, pos, ratings: [...], shown}

function hash(text) {  // FNV-1a, 32 bit: a rater id always maps to the same list
  let h = 0x811c9dc5;
  for (const c of text) { h ^= c.charCodeAt(0); h = Math.imul(h, 0x01000193) >>> 0; }
  return h;
}
function storageKey(rater) { return "dv-mos/" + KIT.id + "/" + rater; }
function save() { try { localStorage.setItem(storageKey(state.rater), JSON.stringify(state)); } catch (e) {} }

function scale(container, name, labels) {
  container.innerHTML = "";
  labels.forEach((label, i) => {
    const row = document.createElement("label");
    row.className = "choice";
    const input = document.createElement("input");
    input.type = "radio"; input.name = name; input.value = String(i + 1);
    input.addEventListener("change", update);
    row.appendChild(input); row.appendChild(document.createTextNode(" " + label));
    container.appendChild(row);
  });
}
function chosen(name) {
  const el = document.querySelector('input[name="' + name + '"]:checked');
  return el ? el.value : "";
}
function currentItem() { return KIT.items[KIT.lists[state.list][state.pos]]; }
let played = false;
function update() {
  const item = currentItem();
  const needSim = Boolean(item.ref);
  $("next").disabled = !(played && chosen("nat") && (!needSim || chosen("sim")));
}

function start(rater) {
  rater = rater.trim();
  if (!rater) { alert("Please enter your rater id."); return; }
  const saved = localStorage.getItem(storageKey(rater));
  if (saved && !params.has("autotest")) {
    state = JSON.parse(saved);
  } else {
    const list = params.has("list") ? Number(params.get("list")) % KIT.lists.length : hash(rater) % KIT.lists.length;
    state = {rater: rater, list: list, pos: 0, ratings: []};
  }
  $("intro").classList.add("hidden");
  show();
}

function show() {
  const order = KIT.lists[state.list];
  if (state.pos >= order.length) { finish(); return; }
  const item = currentItem();
  $("trial").classList.remove("hidden");
  $("progress").textContent = "Clip " + (state.pos + 1) + " of " + order.length;
  $("clip").src = item.audio;
  scale($("nat"), "nat", KIT.naturalness);
  $("sim-part").classList.toggle("hidden", !item.ref);
  if (item.ref) { $("ref").src = item.ref; scale($("sim"), "sim", KIT.similarity); }
  played = false;
  state.shown = Date.now();
  window.scrollTo(0, 0);
  update();
}

function next() {
  const order = KIT.lists[state.list];
  const item = currentItem();
  state.ratings.push({
    rater: state.rater, list: state.list, position: state.pos + 1, item: order[state.pos],
    naturalness: chosen("nat"), similarity: item.ref ? chosen("sim") : "",
    seconds: ((Date.now() - state.shown) / 1000).toFixed(1),
  });
  state.pos += 1;
  save();
  show();
}

function csvText() {
  const cols = ["rater", "list", "position", "item", "naturalness", "similarity", "seconds"];
  const quote = (v) => { v = String(v); return /[",\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; };
  return [cols.join(",")].concat(state.ratings.map((r) => cols.map((c) => quote(r[c])).join(","))).join("\n") + "\n";
}

function finish() {
  $("trial").classList.add("hidden");
  $("done").classList.remove("hidden");
  const text = csvText();
  $("csv").value = text;
  $("csv").textContent = text;  // also in the DOM, so a dumped page carries it
  const link = $("download");
  link.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  link.download = "ratings-" + state.rater.replace(/[^A-Za-z0-9_-]/g, "_") + ".csv";
}

$("clip").addEventListener("play", () => { played = true; update(); });
$("next").addEventListener("click", next);
$("start").addEventListener("click", () => start($("rater").value));

// Drives the real controls through the list: for testing the page in a headless browser.
function autotest() {
  const known = {};  // "&answers=c01:2,c02:4": answers for chosen items (the attention checks)
  for (const pair of (params.get("answers") || "").split(",")) {
    const [id, value] = pair.split(":");
    if (id && value) known[id] = value;
  }
  $("rater").value = params.get("rater") || "autotest";
  $("start").click();
  let guard = 0;
  while ($("done").classList.contains("hidden") && guard++ < 100000) {
    const id = KIT.lists[state.list][state.pos];
    const answer = known[id] || String(hash(id + state.rater) % 5 + 1);
    $("clip").dispatchEvent(new Event("play"));
    document.querySelector('input[name="nat"][value="' + answer + '"]').click();
    if (KIT.items[id].ref) document.querySelector('input[name="sim"][value="' + answer + '"]').click();
    $("next").click();
  }
}
if (params.has("autotest")) autotest();
</script>
</body>
</html>
"""
