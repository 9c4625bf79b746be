// The page's logic: pick a video, build the question, queue it, poll its progress, draw the result.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, video: null, polling: null };

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  Object.assign(node, attrs);
  if (text) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

async function call(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new Error("the demo server does not answer (stopped?): " + err.message);
  }
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status} without a message` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function currentModel() {
  return state.info.models.find((m) => m.key === $("model").value);
}

// ---- video -------------------------------------------------------------------------------------

function setVideo(video) {
  state.video = video;
  const audio = video.has_audio ? "audio track: yes" : "no audio track (MASN only; AVST needs sound)";
  $("video-status").textContent =
    `${video.name}: ${video.seconds.toFixed(1)} s, ${video.width}x${video.height}, ${audio}`;
  updateAsk();
}

async function upload(file) {
  showError("");
  const limits = state.info.limits;
  if (file.size > limits.max_bytes) {
    showError(`${file.name}: ${(file.size / 2 ** 20).toFixed(1)} MB is over this demo's limit (${limits.text})`);
    return;
  }
  $("video-status").textContent = `uploading ${file.name} ...`;
  try {
    setVideo(await call("/api/upload", { method: "POST", body: file,
                                         headers: { "X-Filename": encodeURIComponent(file.name) } }));
  } catch (err) {
    $("video-status").textContent = state.video ? `still using ${state.video.name}` : "No video yet.";
    showError(err.message);
  }
}

async function pickDemo() {
  showError("");
  try {
    setVideo(await call("/api/pick", { method: "POST", body: JSON.stringify({ name: $("demo-video").value }) }));
  } catch (err) {
    showError(err.message);
  }
}

// ---- question ----------------------------------------------------------------------------------

function selectModel() {
  const model = currentModel();
  $("model-error").textContent = model.error ? `This checkpoint cannot answer: ${model.error}` : "";
  $("model-error").hidden = !model.error;
  $("template-box").hidden = model.kind !== "avst";
  $("candidates-box").hidden = !model.candidates;
  const template = $("template");
  template.replaceChildren(el("option", { value: "" }, "(type your own question in the vocabulary's words)"));
  for (const [i, t] of model.templates.entries()) template.append(el("option", { value: String(i) }, t.template));
  if (model.templates.length) template.value = "0";
  $("candidates").replaceChildren();
  for (let i = 0; i < model.candidates; i++) {
    $("candidates").append(el("input", { type: "text", size: 12, className: "candidate", placeholder: `answer ${i + 1}` }));
  }
  $("question").value = "";
  selectTemplate();
}

function selectTemplate() {
  const model = currentModel();
  const chosen = model.kind === "avst" && $("template").value !== "" ? model.templates[+$("template").value] : null;
  $("slots").replaceChildren();
  if (!chosen && $("question").readOnly) $("question").value = "";  // leaving a template: start afresh
  $("question").readOnly = Boolean(chosen);
  if (chosen) {
    $("question").value = chosen.template;
    for (const [i, slot] of chosen.slots.entries()) {
      const select = el("select", { className: "slot", title: slot.kind });
      for (const v of slot.values) select.append(el("option", { value: v }, v));
      $("slots").append(el("label", {}, `<${slot.kind}> ${i + 1} `), select);
    }
  }
  updateAsk();
}

function updateAsk() {
  const model = state.info && currentModel();
  $("ask").disabled = !(model && !model.error && state.video);
}

async function ask() {
  showError("");
  const model = currentModel();
  const request = {
    video: state.video.id, model: model.key, question: $("question").value,
    values: [...document.querySelectorAll("#slots select")].map((s) => s.value),
    candidates: [...document.querySelectorAll("#candidates input")].map((c) => c.value.trim()),
  };
  $("ask").disabled = true;
  $("result").hidden = true;
  try {
    const job = await call("/api/ask", { method: "POST", body: JSON.stringify(request) });
    $("progress").hidden = false;
    $("stages").replaceChildren();
    $("stage").textContent = "waiting for the worker";
    poll(job.id);
  } catch (err) {
    showError(err.message);
    updateAsk();
  }
}

async function poll(id) {
  let job;
  try {
    job = await call(`/api/jobs/${id}`);
  } catch (err) {
    $("progress").hidden = true;
    showError(err.message);
    updateAsk();
    return;
  }
  $("stage").textContent = job.stage || job.state;
  $("stages").replaceChildren(...job.stages.map((s) => el("li", {}, `${s.name}: ${s.seconds.toFixed(2)} s`)));
  if (job.state === "queued" || job.state === "running") {
    setTimeout(() => poll(id), 250);
    return;
  }
  $("progress").hidden = true;
  updateAsk();
  if (job.state === "error") showError(job.error);
  else render(job);
}

// ---- result ------------------------------------------------------------------------------------

function bars(rows, value, label) {
  return rows.map((row) => {
    const track = el("div", { className: "bar-track" });
    track.append(el("div", { className: "bar", style: `width: ${(100 * value(row)).toFixed(1)}%` }));
    const line = el("div", { className: "bar-row" });
    line.append(el("span", { className: "bar-label" }, row.answer), track, el("span", { className: "bar-value" }, label(row)));
    return line;
  });
}

function render(job) {
  const r = job.result;
  $("answer").textContent = r.answer;
  $("answer-note").textContent = r.count_raw !== undefined
    ? `Count: the regression output ${r.count_raw.toFixed(4)}, rounded and clamped to 1..10` : "";
  if (r.scores) {
    const s = r.scores.map((row) => row.score);
    const lo = Math.min(...s), span = Math.max(...s) - lo || 1;
    $("bars-title").textContent = "Every candidate's score";
    $("bars").replaceChildren(...bars(r.scores, (row) => (row.score - lo) / span, (row) => row.score.toFixed(4)));
  } else {
    $("bars-title").textContent = "Top 5";
    $("bars").replaceChildren(...bars(r.top5, (row) => row.prob, (row) => row.prob.toFixed(4)));
  }
  $("bars-box").hidden = !(r.scores || r.top5.length);
  $("heat-box").hidden = r.model !== "avst";
  if (r.model === "avst") {
    const figures = r.seconds.map((sec, i) => {
      const fig = el("figure");
      fig.append(el("img", { className: "heat", src: `/api/jobs/${job.id}/${r.images[i]}`, alt: `second ${sec}` }),
                 el("figcaption", {}, `t = ${sec} s  (v ${r.temporal_visual[i].toFixed(3)}, a ${r.temporal_audio[i].toFixed(3)})`));
      return fig;
    });
    $("heatmaps").replaceChildren(...figures);
    $("temporal").src = `/api/jobs/${job.id}/${r.images[r.images.length - 1]}`;
  }
  $("features-note").textContent = job.features === "cached"
    ? "Features reused from the cache (same file, same recipe): only the model ran."
    : "Features computed for this video; the next question about it reuses them.";
  $("timings").replaceChildren(...Object.entries(r.timings_s).map(([name, sec]) => {
    const row = el("tr");
    row.append(el("td", {}, name), el("td", {}, `${sec.toFixed(2)} s`));
    return row;
  }));
  $("result").hidden = false;
}

// ---- start -------------------------------------------------------------------------------------

async function start() {
  try {
    state.info = await call("/api/info");
  } catch (err) {
    showError(err.message);
    return;
  }
  const info = state.info;
  if (info.random_init) {
    $("notice").textContent = "Demo mode: the feature extractors have RANDOM weights (--random-init) and the " +
      "demo checkpoints were trained briefly on synthetic videos, so the answers mean nothing. Start the " +
      "server with real checkpoints and extractor weights for real answers.";
    $("notice").hidden = false;
  }
  $("limits").textContent = `(${info.limits.text}; mp4, webm, mkv, GIF, ...; device ${info.device})`;
  for (const name of info.demo_videos) $("demo-video").append(el("option", { value: name }, name));
  $("demo-row").hidden = !info.demo_videos.length;
  for (const m of info.models) $("model").append(el("option", { value: m.key }, m.label + (m.error ? " (unusable)" : "")));
  $("model").addEventListener("change", selectModel);
  $("template").addEventListener("change", selectTemplate);
  $("upload").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";  // choosing the same file again (after fixing it, say) uploads it again
    if (file) upload(file);
  });
  $("pick").addEventListener("click", pickDemo);
  $("ask").addEventListener("click", ask);
  $("question").addEventListener("keydown", (e) => e.key === "Enter" && !$("ask").disabled && ask());
  selectModel();
}

start();
