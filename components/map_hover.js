// The Map page's hover card: follows the pointer over the plotly chart and shows the hovered point's
// thumbnail or text, which Python sends back after each (debounced) hover. Mounted by ui.map_hover.
// It also tells Python which column the chart's own "Colour by" menu shows (the switch itself happens in
// plotly, in the browser), so a figure redrawn later opens with it.
const DEBOUNCE_MS = 120;
const attached = new WeakMap();  // plotly div -> the `on` it had when we attached (plotly replaces it on purge)
// `latest` is the card data of the row last sent to Python. Every rerun recomputes it from the current frame,
// so unlike a cache of older rows it is never stale when the map changes.
let setRow = null, chartKey = "", hovered = null, latest = null, timer = 0, card = null, observer = null, generation = 0;
let options = [];
const mouse = { x: 0, y: 0 };

function element(tag, className, text) {
  const el = document.createElement(tag);
  el.className = className;
  if (text) el.textContent = text;  // item data is text, never markup
  return el;
}

function place() {
  if (!card || card.hidden) return;
  const gap = 16, w = card.offsetWidth, h = card.offsetHeight;
  let x = mouse.x + gap, y = mouse.y + gap;
  if (x + w > innerWidth - 8) x = mouse.x - gap - w;
  if (y + h > innerHeight - 8) y = mouse.y - gap - h;
  card.style.left = `${Math.max(8, x)}px`;
  card.style.top = `${Math.max(8, y)}px`;
}

function show(data) {
  card.replaceChildren();
  if (data.image) {
    const img = element("img", "mm-hover-image");
    img.alt = data.title;
    img.onload = place;
    img.src = data.image;
    card.append(img);
  } else if (data.text) {
    card.append(element("div", "mm-hover-text", data.text));
  }
  card.append(element("div", "mm-hover-title", data.title), element("div", "mm-hover-caption", data.caption));
  card.dataset.row = data.row;
  card.hidden = false;
  place();
}

function hide() {
  if (card) card.hidden = true;
}

function hover(row) {
  if (row === hovered) return;
  hovered = row;
  clearTimeout(timer);
  if (latest?.row === row) return show(latest);
  hide();
  timer = setTimeout(() => setRow?.("row", row), DEBOUNCE_MS);
}

function unhover() {
  hovered = null;
  clearTimeout(timer);
  hide();
}

function attach() {
  for (const gd of document.querySelectorAll(`.st-key-${chartKey} .js-plotly-plot`)) {
    if (typeof gd.on !== "function" || attached.get(gd) === gd.on) continue;
    attached.set(gd, gd.on);
    unhover();  // a new or redrawn chart (the 3D toggle): whatever was hovered is gone, and plotly won't say so
    gd.on("plotly_hover", (e) => {
      const row = e.points?.[0]?.customdata;
      if (typeof row === "number") hover(row);
    });
    gd.on("plotly_unhover", unhover);
    gd.on("plotly_buttonclicked", (e) => {
      const column = options[e.active];
      if (column !== undefined) setRow?.("color", column);
    });
    gd.addEventListener("mouseleave", unhover);
  }
}

function track(e) {
  mouse.x = e.clientX;
  mouse.y = e.clientY;
  place();
}

export default function ({ data, setStateValue }) {
  setRow = setStateValue;
  chartKey = data.chart;
  options = data.options || [];
  if (!card) {
    card = element("div", "mm-hover-card");
    card.hidden = true;
    card.dataset.testid = "mmHoverCard";
    document.body.append(card);
    let pending = false;  // Streamlit redraws the chart on reruns: re-attach, at most once a frame
    observer = new MutationObserver(() => {
      if (!pending) pending = requestAnimationFrame(() => { pending = false; attach(); });
    });
    observer.observe(document.body, { childList: true, subtree: true });
    document.addEventListener("mousemove", track, { passive: true });
  }
  attach();
  latest = data.preview;
  if (latest && latest.row === hovered) show(latest);
  const mine = ++generation;
  return () => {
    if (mine !== generation) return;  // a later render owns the card now
    observer?.disconnect();
    document.removeEventListener("mousemove", track);
    card?.remove();
    card = observer = null;
    hovered = latest = null;
  };
}
