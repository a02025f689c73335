// The page: asks the session for its state, shows it, and sends what the user does. Every view is a PNG
// rendered by the session's Slicer slice view; the panes are linked (the same slice offset for each).
"use strict";

const $ = (id) => document.getElementById(id);
let state = null;
let models = [];
let viewVersion = 0;
let pollTimer = null;

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options };
  if (init.method === "POST") {
    init.headers = { "X-MedGAN-Request": "1", ...(init.headers || {}) };
  }
  const response = await fetch(path, init);
  const isJson = (response.headers.get("Content-Type") || "").includes("json");
  const body = isJson ? await response.json() : null;
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
}

function showError(message, log) {
  const box = $("error");
  box.hidden = !message;
  box.textContent = message || "";
  if (log) {
    const details = document.createElement("details");
    details.innerHTML = "<summary>Engine log</summary>";
    const pre = document.createElement("pre");
    pre.textContent = log;
    details.appendChild(pre);
    box.appendChild(details);
  }
}

async function act(action) {
  showError("");
  try {
    const next = await action();
    if (next) applyState(next);
  } catch (error) {
    showError(error.message);
  }
}

function modelByKey(key) {
  return models.find((m) => m.key === key);
}

const REFERENCE_TIP = "A real scan of the target modality: difference map and metrics";

function roles(model) {
  // [role, label] for each input the model takes, in the card's order, then the reference
  const inputs = model ? model.inputs : ["input"];
  return inputs.map((label, i) => [i === 0 ? "input" : `input${i + 1}`, label]).concat([["reference", "reference"]]);
}

function roleLabel(role) {
  const found = roles(modelByKey($("model-select").value)).find(([r]) => r === role);
  return found ? found[1] : role;
}

function showRoles(model) {
  const open = $("open-buttons");
  open.replaceChildren(...roles(model).map(([role, label]) => {
    const button = document.createElement("button");
    button.id = `load-${role}`;
    button.textContent = `Open as ${label}`;
    if (role === "reference") button.title = REFERENCE_TIP;
    button.onclick = () => act(() => post("/api/load", { role, path: $("file-select").value }));
    return button;
  }));
  fillSelect($("upload-role"), roles(model).map(([role, label]) => [role, `as ${label}`]), $("upload-role").value || "input");
}

function showModel() {
  const model = modelByKey($("model-select").value);
  showRoles(model);
  const details = $("model-details");
  details.replaceChildren();
  if (!model) return;
  const lines = [
    [`${model.inputs.join(" + ")} → ${model.output}${model.site ? ", " + model.site : ""}`, ""],
    [`Expected time: ${model.expected_time}`, ""],
    [`⚠ ${model.intended_use}`, "use"],
  ];
  for (const [text, cls] of lines) {
    const div = document.createElement("div");
    div.textContent = text;
    if (cls) div.className = cls;
    details.appendChild(div);
  }
  $("uncertainty").disabled = !model.uncertainty;
  if (!model.uncertainty) $("uncertainty").checked = false;
  $("uncertainty-box").title = model.uncertainty_text;
  $("n4").disabled = !model.n4;
  if (!model.n4) $("n4").checked = false;
}

function fillSelect(select, items, selected) {
  select.replaceChildren(...items.map(([value, label]) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = label;
    option.selected = value === selected;
    return option;
  }));
}

function paneSize(count) {
  const panes = $("panes");
  const width = Math.max(160, Math.floor((panes.clientWidth - 6 * (count - 1)) / count));
  const height = Math.max(160, panes.clientHeight - 40);
  return [Math.min(width, 1600), Math.min(height, 1600)];
}

function refreshViews() {
  if (!state) return;
  const panes = state.view.panes;
  const [width, height] = paneSize(Math.max(1, panes.length));
  const offset = $("slice").disabled ? "" : $("slice").value;
  viewVersion += 1;
  for (const pane of panes) {
    const img = $(`view-${pane.pane}`);
    if (img) img.src = `/api/view/${pane.pane}.png?offset=${offset}&w=${width}&h=${height}&v=${viewVersion}`;
  }
}

async function drawColorBar(pane, holder) {
  try {
    const bar = await api(`/api/colorbar/${pane}`);
    if (!bar) return;
    const strip = document.createElement("div");
    strip.className = "colorbar";
    strip.style.background = `linear-gradient(to right, ${bar.colors.join(", ")})`;
    const range = document.createElement("div");
    range.className = "colorbar-range";
    const low = document.createElement("span");
    low.textContent = `${bar.min.toFixed(0)} ${bar.unit}`;
    const high = document.createElement("span");
    high.textContent = `${bar.max.toFixed(0)} ${bar.unit}`;
    range.append(low, high);
    holder.replaceChildren(strip, range);
  } catch (error) {
    holder.textContent = "";
  }
}

function buildPanes() {
  const holder = $("panes");
  const panes = state.view.panes;
  const signature = JSON.stringify(panes);
  if (holder.dataset.signature === signature) return false;
  holder.dataset.signature = signature;
  holder.replaceChildren(...panes.map((pane) => {
    const box = document.createElement("div");
    box.className = "pane";
    box.style.setProperty("--pane-color", pane.color);
    const title = document.createElement("div");
    title.className = "title";
    title.textContent = pane.title;
    title.title = pane.title;
    const img = document.createElement("img");
    img.id = `view-${pane.pane}`;
    img.alt = pane.title;
    const footer = document.createElement("div");  // every pane has one, so the linked views stay the same size
    footer.className = "pane-footer";
    box.append(title, img, footer);
    if (pane.color_bar) drawColorBar(pane.pane, footer);
    return box;
  }));
  return true;
}

function applySliceRange(range) {
  const slider = $("slice");
  if (!range) {
    slider.disabled = true;
    return;
  }
  const [low, high] = [Math.ceil(range[0]), Math.floor(range[1])];
  if (slider.disabled || Number(slider.min) !== low || Number(slider.max) !== high) {
    slider.min = low;
    slider.max = high;
    slider.value = Math.round((low + high) / 2);
    slider.disabled = false;
  }
  $("slice-value").textContent = `${slider.value} mm`;
}

function applyState(next) {
  const before = state;
  state = next;
  const running = state.running;
  $("translate").hidden = running;
  $("cancel").hidden = !running;
  for (const button of document.querySelectorAll("#open-buttons button")) button.disabled = running;
  for (const id of ["upload", "model-select"]) $(id).disabled = running;
  $("translate").disabled = running || !state.volumes.input;
  $("progress").hidden = !running;
  $("progress").value = state.percent;
  $("status").textContent = state.status + (state.eta ? ` (about ${state.eta} left)` : "");
  const volumes = $("volumes");
  volumes.replaceChildren();
  for (const [role, name] of Object.entries(state.volumes)) {
    const dt = document.createElement("dt");
    dt.textContent = roleLabel(role);
    const dd = document.createElement("dd");
    dd.textContent = name;
    dd.id = `volume-${role}`;
    volumes.append(dt, dd);
  }
  $("warnings").replaceChildren(...state.warnings.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  if (state.error && !(before && before.error && before.error.message === state.error.message)) {
    showError(`${state.error.title}: ${state.error.message}`, state.error.log);
  }
  const result = state.result;
  $("review").hidden = !result;
  if (result) {
    fillSelect($("third-select"), result.third.map((t) => [t, t]), state.view.third);
    $("third-select").hidden = $("third-label").hidden = result.third.length === 0;
    for (const radio of document.querySelectorAll("input[name=mode]")) radio.checked = radio.value === state.view.mode;
    $("opacity").value = state.view.opacity;
    $("opacity-value").textContent = `${Math.round(state.view.opacity * 100)} %`;
    const slider = state.view.uncertainty;
    $("uncertainty-controls").hidden = !slider;
    if (slider) {
      $("uncertainty-threshold").max = slider.max;
      $("uncertainty-threshold").value = slider.value;
      $("uncertainty-value").textContent = `${Number(slider.value).toFixed(1)} ${slider.unit}`;
    }
    const rows = state.metrics;
    $("metrics").hidden = rows.length === 0;
    $("metrics").tBodies[0].replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      for (const cell of row) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      }
      return tr;
    }));
    $("downloads").replaceChildren(...result.downloads.map((name) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `/api/download/${encodeURIComponent(name)}`;
      a.textContent = name;
      a.download = "";
      li.appendChild(a);
      return li;
    }));
  }
  applySliceRange(state.view.range);
  const rebuilt = buildPanes();
  const changed = !before || rebuilt || before.running !== running || (before.status !== state.status && !running);
  if (changed) refreshViews();
  schedulePoll(running ? 500 : 5000);
}

function schedulePoll(delay) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(() => act(() => api("/api/state")), delay);
}

async function loadFiles() {
  const listing = await api("/api/files");
  $("data-root-box").hidden = !listing.data_root;
  fillSelect($("file-select"), listing.files.map((f) => [f.path, f.kind === "dicom" ? `${f.path}/ (DICOM)` : f.path]), "");
}

async function loadModels() {
  models = await api("/api/models");
  const chosen = models.find((m) => m.default) || models[0];
  fillSelect($("model-select"), models.map((m) => [m.key, m.label]), chosen ? chosen.key : "");
  showModel();
}

function upload() {
  const file = $("upload-file").files[0];
  if (!file) throw new Error("Choose a file to upload first.");
  const form = new FormData();
  form.append("file", file, file.name);
  $("status").textContent = `Uploading ${file.name}...`;
  return api(`/api/upload?role=${$("upload-role").value}`, { method: "POST", body: form });
}

function setView(changes) {
  const mode = document.querySelector("input[name=mode]:checked").value;
  const threshold = $("uncertainty-controls").hidden ? null : Number($("uncertainty-threshold").value);
  return post("/api/view", { mode, third: $("third-select").value, opacity: Number($("opacity").value), threshold, ...changes });
}

function wire() {
  $("upload").onclick = () => act(upload);
  $("model-select").onchange = showModel;
  $("translate").onclick = () => act(() => post("/api/translate", { model: $("model-select").value, uncertainty: $("uncertainty").checked, n4: $("n4").checked }));
  $("cancel").onclick = () => act(() => post("/api/cancel"));
  for (const radio of document.querySelectorAll("input[name=mode]")) radio.onchange = () => act(() => setView({}));
  $("third-select").onchange = () => act(() => setView({}));
  $("opacity").onchange = () => act(async () => { const next = await setView({}); refreshViews(); return next; });
  $("uncertainty-threshold").onchange = () => act(async () => { const next = await setView({}); refreshViews(); return next; });
  $("slice").oninput = () => { $("slice-value").textContent = `${$("slice").value} mm`; refreshViews(); };
  $("close-session").onclick = () => act(async () => { await post("/api/close"); window.location.reload(); });
  window.addEventListener("resize", refreshViews);
}

wire();
act(async () => {
  await Promise.all([loadFiles(), loadModels()]);
  return api("/api/state");
});
