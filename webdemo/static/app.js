// The page's logic: pick a video, build the question, queue it, poll its progress, draw the result.
// The address bar holds the current video and answer (?video=<id>&job=<id>), so a reload or a shared
// link shows them again while the server still holds them.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, video: null, job: null, busy: false };

// The JET colour map of avst/heatmap.py (the spatial heat maps' colours) as the stops of a linear scale.
const JET = [[0, [0, 0, 127.5]], [0.125, [0, 0, 255]], [0.375, [0, 255, 255]], [0.625, [255, 255, 0]],
             [0.875, [255, 0, 0]], [1, [127.5, 0, 0]]];
const JET_GRADIENT = `linear-gradient(to right, ${JET.map(([at, c]) => `rgb(${c}) ${100 * at}%`).join(", ")})`;

function jet(x) {
  const k = Math.max(1, JET.findIndex(([at]) => at >= x));
  const [[a, from], [b, to]] = [JET[k - 1], JET[k]];
  const f = (x - a) / (b - a);
  return `rgb(${from.map((c, i) => Math.round(c + f * (to[i] - c)))})`;
}

// MUSIC-AVQA's template text has a full-width "？", which some fonts draw as a box: shown as "?",
// sent as written (the original tokenizer's behaviour stays the server's business).
const shown = (text) => text.replace(/？/g, "?");
const fmt = (seconds) => (Number.isInteger(seconds) ? String(seconds) : seconds.toFixed(1));

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  Object.assign(node, attrs);
  if (text) node.textContent = text;
  return node;
}

// ---- errors: one line next to the control that caused it, the raw details folded -------------

class ApiError extends Error {
  constructor(body, field) {
    super(body.error || "no message");
    this.field = body.field || field;
    this.details = body.details || null;
  }
}

function showError(field, message = "", details = null) {
  const box = $(`${field}-error`);
  box.querySelector(".line").textContent = message;
  const more = box.querySelector("details");
  more.hidden = !details;
  more.open = false;
  more.querySelector("pre").textContent = details || "";
  box.hidden = !message;
}

function report(err, field) {
  showError(err.field || field, err.message, err.details || null);
}

function clearErrors() {
  showError("video");
  showError("question");
  showModelProblem();
}

async function call(path, options = {}, field = "question") {
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    throw new ApiError({ error: "the demo server does not answer (stopped?)", details: String(err) }, field);
  }
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status} without a message` }));
  if (!response.ok) throw new ApiError(body, field);
  return body;
}

// ---- the address bar ---------------------------------------------------------------------------

function setUrl() {
  const params = new URLSearchParams();
  if (state.video) params.set("video", state.video.id);
  if (state.job) params.set("job", state.job);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  $("permalink").href = location.href;
}

// ---- video -------------------------------------------------------------------------------------

function setVideo(video) {
  state.video = video;
  const audio = video.has_audio ? "audio track: yes" : "no audio track (MASN only; AVST needs sound)";
  $("video-status").textContent =
    `${video.name}: ${video.seconds.toFixed(1)} s, ${video.width}x${video.height}, ${audio}`;
  const gif = video.name.toLowerCase().endsWith(".gif");
  const src = `/api/videos/${video.id}/file`;
  $("preview").hidden = gif;
  $("preview-gif").hidden = !gif;
  $("preview-note").hidden = true;
  if (gif) {
    $("preview").removeAttribute("src");
    $("preview-gif").src = src;
  } else {
    $("preview").src = src;
  }
  setUrl();
  updateAsk();
}

// Show ``seconds`` of ``video`` in the preview (loading that video first if another one is shown).
function seek(video, seconds) {
  if (!state.video || state.video.id !== video.id) setVideo(video);
  const player = $("preview");
  if (player.hidden) return;
  player.pause();
  player.currentTime = seconds;
  const box = player.getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight) player.scrollIntoView({ block: "center" });
}

async function upload(file) {
  clearErrors();
  const limits = state.info.limits;
  if (file.size > limits.max_bytes) {
    showError("video", `${file.name}: ${(file.size / 2 ** 20).toFixed(1)} MB is over this demo's limit (${limits.text})`);
    return;
  }
  $("video-status").textContent = `uploading ${file.name} ...`;
  try {
    setVideo(await call("/api/upload", { method: "POST", body: file,
                                         headers: { "X-Filename": encodeURIComponent(file.name) } }, "video"));
  } catch (err) {
    $("video-status").textContent = state.video ? `still using ${state.video.name}` : "No video yet.";
    report(err, "video");
  }
}

async function pickDemo() {
  clearErrors();
  try {
    setVideo(await call("/api/pick", { method: "POST", body: JSON.stringify({ name: $("demo-video").value }) },
                        "video"));
  } catch (err) {
    report(err, "video");
  }
}

// ---- question ----------------------------------------------------------------------------------

function currentModel() {
  return state.info.models.find((m) => m.key === $("model").value);
}

function currentTemplate() {
  const model = currentModel();
  return model.kind === "avst" && $("template").value !== "" ? model.templates[+$("template").value] : null;
}

function showModelProblem() {
  const model = state.info && currentModel();
  showError("model", model && model.error ? `This checkpoint cannot answer: ${model.error}` : "");
}

function selectModel() {
  const model = currentModel();
  showModelProblem();
  $("template-box").hidden = model.kind !== "avst";
  $("candidates-box").hidden = !model.candidates;
  const template = $("template");
  template.replaceChildren(el("option", { value: "" }, "(type your own question in the vocabulary's words)"));
  for (const [i, t] of model.templates.entries()) template.append(el("option", { value: String(i) }, shown(t.template)));
  if (model.templates.length) template.value = "0";
  $("candidates").replaceChildren();
  for (let i = 0; i < model.candidates; i++) {
    $("candidates").append(el("input", { type: "text", className: "candidate", placeholder: `answer ${i + 1}`,
                                         ariaLabel: `candidate answer ${i + 1}` }));
  }
  $("question").value = "";
  selectTemplate();
}

function selectTemplate() {
  const chosen = currentTemplate();
  $("slots").replaceChildren();
  if (!chosen && $("question").readOnly) $("question").value = "";  // leaving a template: start afresh
  $("question").readOnly = Boolean(chosen);
  if (chosen) {
    $("question").value = shown(chosen.template);
    for (const [i, slot] of chosen.slots.entries()) {
      const select = el("select", { className: "slot", title: slot.kind });
      for (const v of slot.values) select.append(el("option", { value: v }, v));
      $("slots").append(el("label", {}, `<${slot.kind}> ${i + 1}`), select);
    }
  }
  updateAsk();
}

function updateAsk() {
  const model = state.info && currentModel();
  $("ask").disabled = state.busy || !(model && !model.error && state.video);
}

// Put a job's model and question back into the form (a permalink's reload).
function restoreQuestion(job) {
  if (![...$("model").options].some((o) => o.value === job.model)) return;
  $("model").value = job.model;
  selectModel();
  const request = job.request;
  const index = currentModel().templates.findIndex((t) => t.template === request.question);
  $("template").value = index >= 0 ? String(index) : "";
  selectTemplate();
  if (index >= 0) {
    [...document.querySelectorAll("#slots select")].forEach((s, i) => { s.value = (request.values || [])[i]; });
  } else {
    $("question").value = request.question || "";
  }
  [...document.querySelectorAll("#candidates input")].forEach((c, i) => { c.value = (request.candidates || [])[i] || ""; });
}

async function ask() {
  clearErrors();
  const model = currentModel();
  const chosen = currentTemplate();
  const request = {
    video: state.video.id, model: model.key, question: chosen ? chosen.template : $("question").value,
    values: [...document.querySelectorAll("#slots select")].map((s) => s.value),
    candidates: [...document.querySelectorAll("#candidates input")].map((c) => c.value.trim()),
  };
  state.busy = true;
  updateAsk();
  try {
    const job = await call("/api/ask", { method: "POST", body: JSON.stringify(request) });
    $("stages").replaceChildren();
    $("stage").textContent = "waiting for the worker";
    $("progress").hidden = false;
    poll(job.id);
  } catch (err) {
    report(err, "question");
    done();
  }
}

function done() {
  state.busy = false;
  updateAsk();
  $("question").focus();
}

async function poll(id) {
  try {
    follow(await call(`/api/jobs/${id}`));
  } catch (err) {
    $("progress").hidden = true;
    report(err, "question");
    done();
  }
}

function follow(job) {
  $("stage").textContent = job.stage || job.state;
  $("stages").replaceChildren(...job.stages.map((s) => el("li", {}, `${s.name}: ${s.seconds.toFixed(2)} s`)));
  if (job.state === "queued" || job.state === "running") {
    state.busy = true;
    updateAsk();
    $("progress").hidden = false;
    setTimeout(() => poll(job.id), 250);
    return;
  }
  $("progress").hidden = true;
  if (job.state === "error") showError(job.field || "question", job.error, job.details);
  else render(job);
  done();
}

// ---- result ------------------------------------------------------------------------------------

function bars(rows, value, label) {
  return rows.map((row) => {
    const track = el("div", { className: "bar-track" });
    track.append(el("div", { className: "bar", style: `width: ${(100 * value(row)).toFixed(1)}%` }));
    const line = el("div", { className: "bar-row" });
    line.append(el("span", { className: "bar-label", title: row.answer }, row.answer), track,
                el("span", { className: "bar-value" }, label(row)));
    return line;
  });
}

function filled(question, values) {
  let i = 0;
  return shown(question.replace(/<\w+>/g, (slot) => (values || [])[i++] || slot));
}

// Row r of AVST's recipe is second r of the video: the frame from its middle and the one-second
// audio example over it. A video shorter than 60 s repeats its last second there: the last (partial)
// second for frames, the last complete one for audio (feat_script/sampling.py, feat_script/vggish).
function stepTimes(row, duration) {
  const frame = Math.min(row, Math.max(Math.ceil(duration - 1e-6) - 1, 0));
  const audio = Math.min(row, Math.max(Math.floor(duration) - 1, 0));
  const end = Math.min(frame + 1, duration);
  return { frame, end, audio, at: (frame + end) / 2 };
}

function timeButton(text, video, step) {
  const button = el("button", { type: "button", className: "time", title: `show ${fmt(step.at)} s in the video` },
                    text);
  button.addEventListener("click", () => seek(video, step.at));
  return button;
}

function renderAvst(job) {
  const r = job.result, video = job.video;
  const steps = r.seconds.map((row) => stepTimes(row, video.seconds));
  $("heatmaps").replaceChildren(...steps.map((step, i) => {
    const fig = el("figure");
    const image = el("img", { className: "heat", src: `/api/jobs/${job.id}/${r.images[i]}`,
                              alt: `spatial attention at ${step.frame}-${fmt(step.end)} s` });
    image.addEventListener("click", () => seek(video, step.at));
    const caption = el("figcaption");
    caption.append(timeButton(`${step.frame}–${fmt(step.end)} s`, video, step));
    fig.append(image, caption);
    return fig;
  }));
  const weights = [...r.temporal_visual, ...r.temporal_audio];  // one colour scale for both rows
  const low = Math.min(...weights), high = Math.max(...weights), span = high - low || 1;
  const digits = Math.min(6, Math.max(4, Math.ceil(-Math.log10(span)) + 1));  // the ends told apart (JSON: 6)
  const head = el("tr");
  head.append(el("th", {}, "second"), ...steps.map((step) => {
    const cell = el("th");
    cell.append(timeButton(`${step.frame}`, video, step));
    return cell;
  }));
  const row = (name, values, second) => {
    const line = el("tr");
    line.append(el("th", {}, name), ...values.map((w, i) => {
      const x = (w - low) / span;
      return el("td", { className: x < 0.2 || x > 0.85 ? "dark" : "",
                        title: `${name} ${second(steps[i])}–${second(steps[i]) + 1} s: ${w.toFixed(4)}`,
                        style: `background: ${jet(x)}` }, w.toFixed(digits));
    }));
    return line;
  };
  $("temporal").replaceChildren(head, row("visual", r.temporal_visual, (s) => s.frame),
                                row("audio", r.temporal_audio, (s) => s.audio));
  $("legend-low").textContent = low.toFixed(digits);
  $("legend-high").textContent = high.toFixed(digits);
  document.querySelector(".legend .gradient").style.background = JET_GRADIENT;
  $("time-note").textContent = `Times are seconds of ${video.name} (${video.seconds.toFixed(1)} s). AVST looks ` +
    "at every sixth of 60 one-second rows" + (video.seconds < 55 ? "; a video shorter than that repeats its " +
    "last second in the later steps." : ".");
}

function render(job) {
  const r = job.result;
  state.job = job.id;
  setUrl();
  $("answer").textContent = r.answer;
  const model = state.info.models.find((m) => m.key === job.model);
  $("asked").textContent = `“${filled(job.request.question || "", job.request.values)}” about ${job.video.name}` +
    (model ? `, ${model.label}` : "");
  $("download").href = `/api/jobs/${job.id}`;
  $("download").download = `answer-${job.id}.json`;
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
  if (r.model === "avst") renderAvst(job);
  $("features-note").textContent = job.features === "cached"
    ? "Features reused from the cache (same file, same recipe): only the model ran."
    : "Features computed for this video; the next question about it reuses them.";
  $("timings").replaceChildren(...Object.entries(r.timings_s).map(([name, sec]) => {
    const line = el("tr");
    line.append(el("td", {}, name), el("td", {}, `${sec.toFixed(2)} s`));
    return line;
  }));
  $("placeholder").hidden = true;
  $("result").hidden = false;
}

// ---- start -------------------------------------------------------------------------------------

// A permalink: the answer (with its video, model and question), then the video chosen after it.
async function restore(params) {
  const jobId = params.get("job"), videoId = params.get("video");
  if (jobId) {
    try {
      const job = await call(`/api/jobs/${encodeURIComponent(jobId)}`);
      setVideo(job.video);
      restoreQuestion(job);
      state.job = job.id;
      follow(job);
    } catch (err) {
      showError("question", `The answer in this link is gone: ${err.message}; ask again`, err.details);
    }
  }
  if (videoId && (!state.video || state.video.id !== videoId)) {
    try {
      setVideo(await call(`/api/videos/${encodeURIComponent(videoId)}`, {}, "video"));
    } catch (err) {
      report(err, "video");
    }
  }
  setUrl();
}

async function start() {
  try {
    state.info = await call("/api/info");
  } catch (err) {
    report(err, "video");
    return;
  }
  const info = state.info;
  if (info.random_init) {
    $("notice").textContent = "Demo mode: the feature extractors have RANDOM weights (--random-init) and the " +
      "demo checkpoints were trained briefly on synthetic videos, so the answers mean nothing. Start the " +
      "server with real checkpoints and extractor weights for real answers.";
    $("notice").hidden = false;
  }
  $("limits").textContent = `${info.limits.text}; mp4, webm, mkv, GIF, ...; device ${info.device}`;
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
  $("preview").addEventListener("error", () => { $("preview-note").hidden = !$("preview").getAttribute("src"); });
  $("pick").addEventListener("click", pickDemo);
  $("ask").addEventListener("click", ask);
  $("question").addEventListener("keydown", (e) => e.key === "Enter" && !$("ask").disabled && ask());
  selectModel();
  await restore(new URLSearchParams(location.search));
}

start();
