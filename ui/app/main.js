// Interim UI: plain JavaScript over the core's commands and events (the typed Vite UI replaces
// it). The webview never holds a token: every request is made by the Rust core.
const { invoke } = window.__TAURI__.core;
const { listen } = window.__TAURI__.event;
let active = null;
const components = new Map();

const $ = (id) => document.getElementById(id);
function toast(msg) { const t = $("toast"); t.textContent = msg; t.hidden = false; setTimeout(() => (t.hidden = true), 5000); }
function show(view) {
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== view));
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  if (view === "health") drawChart();
}
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));

function renderComponents() {
  const ul = $("components"); ul.replaceChildren();
  $("overview-empty").hidden = components.size > 0;
  const select = $("component"); select.replaceChildren();
  for (const [name, c] of components) {
    const li = document.createElement("li");
    li.className = c.status;
    li.textContent = `${name}: ${c.status}` + (c.observed_value != null ? ` (${c.observed_value} ${c.observed_unit || ""})` : "");
    ul.append(li);
    const o = document.createElement("option"); o.value = o.textContent = name; select.append(o);
  }
}

async function loadHealth() {
  try {
    const h = await invoke("health", { id: active });
    for (const [key, list] of Object.entries(h.checks || {})) {
      if (key === "uptime") continue;
      const c = list[0];
      components.set(key, { status: c.status, observed_value: c.observedValue, observed_unit: c.observedUnit });
    }
    renderComponents();
  } catch (e) { toast(e.message || String(e)); }
}

async function drawChart() {
  const component = $("component").value;
  if (!active || !component) return;
  try {
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const box = $("chart").getBoundingClientRect();
    $("chart").innerHTML = await invoke("history_chart", { id: active, component, hours: 1, width: Math.max(320, Math.floor(box.width)), height: 280, dark });
  } catch (e) { toast(e.message || String(e)); }
}
$("component").addEventListener("change", drawChart);

async function loadProfiles() {
  const v = await invoke("profiles");
  active = v.active;
  const ul = $("profiles"); ul.replaceChildren();
  for (const p of v.profiles) {
    const li = document.createElement("li");
    li.textContent = `${p.name} — ${p.url}${p.email ? " — " + p.email : ""}`;
    li.style.borderLeft = `6px solid ${p.colour}`;
    const use = document.createElement("button"); use.textContent = "Use";
    use.onclick = async () => { await invoke("select_profile", { id: p.id }); loadProfiles(); };
    li.append(" ", use); ul.append(li);
    if (p.id === active) {
      $("profile-name").textContent = p.name;
      document.documentElement.style.setProperty("--profile", p.colour);
      if (p.email) { await loadHealth(); invoke("connect", { id: p.id }).catch((e) => toast(e.message)); }
    }
  }
}

$("add-profile").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const p = await invoke("add_profile", { name: f.get("name"), url: f.get("url"), colour: null, production: f.get("production") === "on" });
    await invoke("select_profile", { id: p.id });
    loadProfiles();
  } catch (e) { toast(e.message); }
});
$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try { await invoke("login", { id: active, email: f.get("email"), password: f.get("password") }); ev.target.reset(); loadProfiles(); }
  catch (e) { toast(e.message); }
});

listen("conn-state", ({ payload }) => {
  const c = $("conn"); c.className = "conn " + payload.state;
  c.textContent = payload.state === "disconnected" ? `disconnected — data as of ${new Date(payload.since).toLocaleTimeString()}` : payload.state;
});
listen("ops-event", ({ payload }) => {
  if (payload.event === "health.changed") {
    const d = payload.data;
    components.set(d.component, { status: d.status, observed_value: d.observed_value, observed_unit: d.observed_unit });
    renderComponents();
  }
});
listen("notified", ({ payload }) => show(payload.view));
listen("profiles-changed", () => loadProfiles().catch((e) => toast(e.message || String(e))));
listen("console-error", ({ payload }) => toast(payload.message));
window.addEventListener("error", (e) => toast("Something went wrong: " + e.message));
loadProfiles().catch((e) => toast(e.message || String(e)));
