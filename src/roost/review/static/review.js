/* roost review: one page of a report at a time, decisions kept in the browser, exported as decisions.csv.
   Plain JavaScript, no dependencies, no network: it runs from file://. Data comes from data.js
   (window.ROOST_REVIEW: report facts and one array per column). Nothing from the data is ever parsed as
   HTML: every element is built with createElement and textContent. */
(function () {
  "use strict";
  const D = window.ROOST_REVIEW;
  const $ = (id) => document.getElementById(id);
  if (!D || !D.columns) {
    $("items").textContent = "data.js is missing or unreadable: run roost review again.";
    return;
  }
  const C = D.columns, N = C.path.length, KIND = D.kind, PAGE_ROWS = 120;
  const ROTATIONS = [0, 90, 180, 270];
  const STORE = "roost-review:" + D.id;
  const S = {
    decision: C.decision.slice(),
    rotation: C.rotation ? C.rotation.slice() : null,
    keeper: C.keeper ? C.keeper.slice() : null,
    shown: [], pages: [], page: 0, cursor: -1,
  };
  const groupOf = C.group ? groupIndex() : null;
  const labelCounts = new Map();
  if (C.label) for (const v of C.label) labelCounts.set(v, (labelCounts.get(v) || 0) + 1);

  // ------------------------------------------------------------ elements
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function button(text, attrs, onClick) {
    const b = el("button", "", text);
    b.type = "button";
    for (const k in attrs) b.setAttribute(k, attrs[k]);
    b.addEventListener("click", (ev) => { ev.stopPropagation(); onClick(); });
    return b;
  }
  function baseName(path) { return path.slice(path.lastIndexOf("/") + 1); }
  function fileUrl(path) { return "file://" + path.split("/").map(encodeURIComponent).join("/"); }
  function thumbSrc(i) { return C.sha256[i] ? "thumbs/" + C.sha256[i] + "-" + D.thumbPx + ".webp" : "placeholder.svg"; }
  function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }

  function picture(i, caption, rotate) {
    const fig = el("figure"), box = el("div", "box"), img = el("img", "thumb");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = baseName(C.path[i]);
    img.src = thumbSrc(i);
    if (rotate) img.style.transform = "rotate(" + rotate + "deg)";
    img.addEventListener("click", () => window.open(fileUrl(C.path[i]), "_blank"));
    box.appendChild(img);
    fig.appendChild(box);
    if (caption) fig.appendChild(el("figcaption", "", caption));
    return fig;
  }
  function confidence(v) {
    const bar = el("div", "conf"), fill = el("i");
    if (v !== null && v < D.uncertain) bar.classList.add("low");
    fill.style.width = v === null ? "0" : (100 * v).toFixed(1) + "%";
    bar.appendChild(fill);
    return bar;
  }
  function meta(parts) {
    const m = el("div", "meta");
    parts.forEach(([k, v], n) => {
      if (n) m.appendChild(document.createTextNode(" · "));
      m.appendChild(document.createTextNode(k + " "));
      m.appendChild(el("b", "", v));
    });
    return m;
  }
  function shell(i) {
    const item = el("div", "item");
    item.dataset.path = C.path[i];
    item.dataset.index = String(i);
    item.tabIndex = 0;
    item.addEventListener("click", () => setCursor(S.shown.indexOf(i)));
    return item;
  }
  function decisionButton(i, disabled) {
    const b = button("", { "data-decision": S.decision[i] }, () => { if (!disabled) toggle(i); });
    b.textContent = S.decision[i] === "accept" ? "✓ accept" : "✗ reject";
    b.disabled = !!disabled;
    return b;
  }

  // ------------------------------------------------------------ one item per kind
  function orientItem(i) {
    const item = shell(i), r = S.rotation[i], broken = r === null || r === undefined;
    const pics = el("div", "pics");
    pics.appendChild(picture(i, "now"));
    pics.appendChild(picture(i, broken ? "—" : (S.decision[i] === "accept" && r ? "after " + r + "° fix" : "after: unchanged"),
      S.decision[i] === "accept" ? r : 0));
    item.appendChild(pics);
    item.appendChild(el("div", "name", baseName(C.path[i]))).title = C.path[i];
    if (!broken) {
      item.appendChild(confidence(C.confidence[i]));
      item.appendChild(meta([["predicted", C.rotation[i] + "°"], ["confidence", pct(C.confidence[i])]]));
      item.appendChild(meta(ROTATIONS.map((a) => [a + "°", pct(C["p" + a][i])])));
      if (C.fix[i]) item.appendChild(meta([["already fixed", C.fix[i]]]));
    }
    if (C.error[i]) item.appendChild(el("div", "err", C.error[i]));
    const controls = el("div", "controls");
    controls.appendChild(decisionButton(i, broken || C.fixed[i]));
    if (!broken && !C.fixed[i]) {
      for (const a of ROTATIONS) {
        const b = button(a + "°", { "data-rotation": String(a), title: "turn back " + a + "° and accept" }, () => pick(i, a));
        if (a === r) b.classList.add("on");
        controls.appendChild(b);
      }
    }
    item.appendChild(controls);
    if (S.decision[i] === "reject") item.classList.add("rejected");
    return item;
  }
  function predictItem(i) {
    const item = shell(i);
    item.appendChild(picture(i));
    item.appendChild(el("div", "name", baseName(C.path[i]))).title = C.path[i];
    if (C.label[i] !== null) {
      item.appendChild(confidence(C.confidence[i]));
      const list = el("ul", "top");
      for (const [label, p] of C.top[i]) list.appendChild(el("li", "", label + "  " + pct(p)));
      item.appendChild(list);
    }
    if (C.error[i]) item.appendChild(el("div", "err", C.error[i]));
    const controls = el("div", "controls");
    controls.appendChild(decisionButton(i, C.label[i] === null));
    item.appendChild(controls);
    if (S.decision[i] === "reject") item.classList.add("rejected");
    return item;
  }
  function dedupItem(i) {
    const item = shell(i), keeper = S.keeper[i];
    item.dataset.group = String(C.group[i]);
    if (keeper) item.classList.add("keeper");
    item.appendChild(picture(i));
    const name = item.appendChild(el("div", "name", baseName(C.path[i])));
    name.title = C.path[i];
    if (keeper) name.prepend(el("span", "badge", "keeper"), " ");
    if (C.group[i] !== null) item.appendChild(meta([["match", C.match[i] || "–"], ["similarity", pct(C.similarity[i])]]));
    if (C.error[i]) item.appendChild(el("div", "err", C.error[i]));
    const controls = el("div", "controls");
    const b = decisionButton(i, keeper || C.group[i] === null);
    b.textContent = keeper ? "kept" : S.decision[i] === "accept" ? "✓ duplicate" : "✗ split out";
    b.title = "accept: treat as a duplicate of the keeper; reject: split it out of the group";
    controls.appendChild(b);
    if (!keeper && C.group[i] !== null) controls.appendChild(button("make keeper", { "data-keeper": "" }, () => makeKeeper(i)));
    item.appendChild(controls);
    if (S.decision[i] === "reject") item.classList.add("rejected");
    return item;
  }
  function embedItem(i) {
    const item = shell(i);
    item.appendChild(picture(i));
    item.appendChild(el("div", "name", baseName(C.path[i]))).title = C.path[i];
    if (C.error[i]) item.appendChild(el("div", "err", C.error[i]));
    const controls = el("div", "controls");
    const b = decisionButton(i, !!C.error[i]);
    b.textContent = S.decision[i] === "accept" ? "✓ keep" : "✗ flagged";
    controls.appendChild(b);
    item.appendChild(controls);
    if (S.decision[i] === "reject") item.classList.add("rejected");
    return item;
  }
  const ITEM = { orient: orientItem, predict: predictItem, dedup: dedupItem, embed: embedItem }[KIND];

  // ------------------------------------------------------------ decisions
  function toggle(i) {
    S.decision[i] = S.decision[i] === "accept" ? "reject" : "accept";
    changed(i);
  }
  function decide(i, value) {
    if (ITEM_DISABLED(i)) return;
    S.decision[i] = value;
    changed(i);
  }
  function ITEM_DISABLED(i) {
    if (KIND === "orient") return S.rotation[i] === null || C.fixed[i];
    if (KIND === "dedup") return S.keeper[i] || C.group[i] === null;
    if (KIND === "predict") return C.label[i] === null;
    return !!C.error[i];
  }
  function pick(i, rotation) {
    S.rotation[i] = rotation;
    S.decision[i] = "accept";
    changed(i);
  }
  function makeKeeper(i) {
    for (const j of groupOf.get(C.group[i])) {
      if (S.keeper[j]) { S.keeper[j] = false; S.decision[j] = "accept"; }
    }
    S.keeper[i] = true;
    S.decision[i] = "accept";
    save();
    render();
  }
  function changed(i) {
    save();
    const old = document.querySelector('.item[data-index="' + i + '"]');
    if (old) {
      const fresh = ITEM(i);
      if (old.classList.contains("cursor")) fresh.classList.add("cursor");
      old.replaceWith(fresh);
      if (document.activeElement === document.body || !document.activeElement) fresh.focus({ preventScroll: true });
    }
    counts();
  }
  function groupIndex() {
    const m = new Map();
    for (let i = 0; i < N; i++) {
      if (!m.has(C.group[i])) m.set(C.group[i], []);
      m.get(C.group[i]).push(i);
    }
    return m;
  }

  // ------------------------------------------------------------ saved in the browser (changes only)
  function save() {
    const changes = {};
    for (let i = 0; i < N; i++) {
      const d = S.decision[i] !== C.decision[i], r = S.rotation && S.rotation[i] !== C.rotation[i];
      const k = S.keeper && S.keeper[i] !== C.keeper[i];
      if (d || r || k) changes[C.path[i]] = [S.decision[i], S.rotation ? S.rotation[i] : null, S.keeper ? S.keeper[i] : null];
    }
    try { localStorage.setItem(STORE, JSON.stringify(changes)); } catch (e) { /* storage full or off: kept in the page only */ }
  }
  function restore() {
    let changes = null;
    try { changes = JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { changes = null; }
    if (!changes) return;
    for (let i = 0; i < N; i++) {
      const c = changes[C.path[i]];
      if (!c) continue;
      S.decision[i] = c[0] === "reject" ? "reject" : "accept";
      if (S.rotation && ROTATIONS.includes(c[1])) S.rotation[i] = c[1];
      if (S.keeper) S.keeper[i] = !!c[2];
    }
  }

  // ------------------------------------------------------------ filters and pages
  function filterLabels() {
    const select = $("f-label");
    const column = { orient: "rotation", predict: "label", dedup: "match" }[KIND];
    if (!column) { select.hidden = true; return; }
    const values = Array.from(new Set(C[column].filter((v) => v !== null))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const all = el("option", "", { orient: "all rotations", predict: "all labels", dedup: "all match kinds" }[KIND]);
    all.value = "";
    select.appendChild(all);
    for (const v of values) {
      const o = el("option", "", KIND === "orient" ? v + "°" : v);
      o.value = String(v);
      select.appendChild(o);
    }
    select.dataset.column = column;
  }
  function filtered() {
    const text = $("f-path").value.toLowerCase(), label = $("f-label").value, column = $("f-label").dataset.column;
    const low = parseFloat($("f-min").value), high = parseFloat($("f-max").value), dec = $("f-decision").value;
    const score = C.confidence || C.similarity || null;
    const out = [];
    for (let i = 0; i < N; i++) {
      if (text && C.path[i].toLowerCase().indexOf(text) < 0) continue;
      if (label && String(C[column][i]) !== label) continue;
      if (dec && S.decision[i] !== dec) continue;
      if (score && score[i] !== null && ((low > 0 && score[i] < low) || (high < 1 && score[i] > high))) continue;
      out.push(i);
    }
    return out;
  }
  function paginate(shown) {
    const pages = [];
    let page = [];
    for (let n = 0; n < shown.length; n++) {
      page.push(shown[n]);
      const groupEnds = !groupOf || n + 1 === shown.length || C.group[shown[n + 1]] !== C.group[shown[n]];
      if (page.length >= PAGE_ROWS && groupEnds) { pages.push(page); page = []; }
    }
    if (page.length || !pages.length) pages.push(page);
    return pages;
  }
  function refilter() {
    S.shown = filtered();
    S.pages = paginate(S.shown);
    S.page = 0;
    S.cursor = -1;
    render();
  }
  function render() {
    const main = $("items"), rows = S.pages[S.page] || [];
    main.replaceChildren();
    if (!rows.length) main.appendChild(el("div", "empty", N ? "No rows match the filters." : "The report has no rows."));
    let group = null, members = null, label;
    for (const i of rows) {
      if (KIND === "dedup") {
        if (!members || C.group[i] !== group) {
          group = C.group[i];
          const box = el("section", "group");
          box.dataset.group = String(group);
          const size = groupOf.get(group).length;
          box.appendChild(el("h3", "", group === null ? "not in a group" : "group " + group + " · " + size + " images"));
          members = box.appendChild(el("div", "members"));
          main.appendChild(box);
        }
        members.appendChild(ITEM(i));
        continue;
      }
      if (KIND === "predict" && C.label[i] !== label) {
        label = C.label[i];
        const n = labelCounts.get(label);
        main.appendChild(el("h2", "label-head", (label === null ? "errors" : label) + " · " + n + (n === 1 ? " image" : " images")));
      }
      main.appendChild(ITEM(i));
    }
    $("pageinfo").textContent = "page " + (S.page + 1) + " / " + S.pages.length;
    $("prev").disabled = S.page === 0;
    $("next").disabled = S.page + 1 >= S.pages.length;
    counts();
    if (window.ROOST_MAP) window.ROOST_MAP.draw();
  }
  function counts() {
    let accepted = 0, rejected = 0, rotated = 0, errors = 0;
    for (let i = 0; i < N; i++) {
      if (C.error[i]) errors++;
      if (S.decision[i] === "accept") accepted++; else rejected++;
      if (S.rotation && S.decision[i] === "accept" && S.rotation[i]) rotated++;
    }
    const parts = [["rows", N], ["shown", S.shown.length], ["accepted", accepted], ["rejected", rejected]];
    if (KIND === "orient") parts.push(["fixes to apply", rotated]);
    if (KIND === "dedup") parts.push(["groups", groupOf.size - (groupOf.has(null) ? 1 : 0)]);
    parts.push(["errors", errors]);
    const box = $("counts");
    box.replaceChildren();
    parts.forEach(([k, v], n) => {
      if (n) box.appendChild(document.createTextNode(" · "));
      box.appendChild(el("b", "", v));
      box.appendChild(document.createTextNode(" " + k));
    });
  }
  function goPage(delta) {
    const next = Math.min(Math.max(S.page + delta, 0), S.pages.length - 1);
    if (next === S.page) return;
    S.page = next;
    S.cursor = -1;
    render();
    window.scrollTo(0, 0);
  }

  // ------------------------------------------------------------ keyboard
  function setCursor(n) {
    const rows = S.pages[S.page] || [];
    if (!rows.length) return;
    S.cursor = Math.min(Math.max(n, 0), rows.length - 1);
    document.querySelectorAll(".item.cursor").forEach((e) => e.classList.remove("cursor"));
    const item = document.querySelector('.item[data-index="' + rows[S.cursor] + '"]');
    if (item) { item.classList.add("cursor"); item.focus({ preventScroll: true }); item.scrollIntoView({ block: "nearest" }); }
  }
  function current() {
    const rows = S.pages[S.page] || [];
    return S.cursor >= 0 && S.cursor < rows.length ? rows[S.cursor] : null;
  }
  function onKey(ev) {
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const i = current(), rows = S.pages[S.page] || [];
    const act = {
      j: () => setCursor(S.cursor + 1), ArrowDown: () => setCursor(S.cursor + 1), ArrowRight: () => setCursor(S.cursor + 1),
      k: () => setCursor(S.cursor - 1), ArrowUp: () => setCursor(S.cursor - 1), ArrowLeft: () => setCursor(S.cursor - 1),
      n: () => goPage(1), p: () => goPage(-1), "?": () => { $("help").hidden = !$("help").hidden; },
    }[ev.key];
    if (act) { act(); ev.preventDefault(); return; }
    if (i === null) return;
    if (ev.key === "a") decide(i, "accept");
    else if (ev.key === "r" || ev.key === "x") decide(i, "reject");
    else if (ev.key === " ") { if (!ITEM_DISABLED(i)) toggle(i); }
    else if (ev.key === "o") window.open(fileUrl(C.path[i]), "_blank");
    else if (KIND === "orient" && "1234".includes(ev.key) && !ITEM_DISABLED(i)) pick(i, ROTATIONS[Number(ev.key) - 1]);
    else if (KIND === "dedup" && ev.key === "K" && !ITEM_DISABLED(i)) makeKeeper(i);
    else return;
    ev.preventDefault();
    if (ev.key === "a" || ev.key === "r" || ev.key === "x") setCursor(Math.min(S.cursor + 1, rows.length - 1));
  }

  // ------------------------------------------------------------ export
  function cell(v) {
    const s = v === null || v === undefined ? "" : String(v);
    return /[",\r\n]|^\s|\s$/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function decisionsCsv() {
    const lines = [];
    const header = { orient: ["path", "decision", "rotation"], dedup: ["path", "group", "keeper", "decision"],
      predict: ["path", "label", "decision"], embed: ["path", "decision"] }[KIND].concat(["sha256"]);
    lines.push(header.join(","));
    for (let i = 0; i < N; i++) {
      const loose = KIND === "dedup" && C.group[i] === null && !C.error[i];  // kept: in no group
      if (ITEM_DISABLED(i) && !(KIND === "dedup" && S.keeper[i]) && !loose) continue;  // nothing to decide
      const row = { orient: () => [C.path[i], S.decision[i], S.rotation[i]],
        dedup: () => [C.path[i], C.group[i], S.keeper[i] || loose ? "true" : "false", S.decision[i]],
        predict: () => [C.path[i], C.label[i], S.decision[i]], embed: () => [C.path[i], S.decision[i]] }[KIND]();
      lines.push(row.concat([C.sha256[i]]).map(cell).join(","));
    }
    return lines.join("\n") + "\n";
  }
  function exportCsv() {
    const blob = new Blob([decisionsCsv()], { type: "text/csv;charset=utf-8" });
    const a = el("a");
    a.href = URL.createObjectURL(blob);
    a.download = "decisions.csv";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  // ------------------------------------------------------------ embedding map
  function setupMap() {
    const M = D.map;
    if (!M) return;
    $("map-box").hidden = false;
    $("map-note").textContent = "2-D " + M.projection.toUpperCase() + " projection of the embeddings: hover to see an image, click to open it. " +
      "Points outside the filters are dimmed; thumbnails show one image per region.";
    const canvas = $("map"), tip = $("map-tip"), ctx = canvas.getContext("2d"), CELLS = 48, images = new Map();
    const pad = 24;
    let grid = null, scale = null;
    function layout() {
      const ratio = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight || 420;
      canvas.width = w * ratio; canvas.height = h * ratio;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      scale = { w: w, h: h, x: (v) => pad + v * (w - 2 * pad), y: (v) => pad + v * (h - 2 * pad) };
      grid = new Map();
      for (let i = 0; i < N; i++) {
        if (M.x[i] === null) continue;
        const key = Math.floor(M.x[i] * (CELLS - 1)) * CELLS + Math.floor(M.y[i] * (CELLS - 1));
        if (!grid.has(key)) grid.set(key, []);
        grid.get(key).push(i);
      }
    }
    function sample() {  // one image per region of a coarse grid: the point nearest its centre
      const coarse = 8, best = new Map();
      for (let i = 0; i < N; i++) {
        if (M.x[i] === null || !C.sha256[i]) continue;
        const cx = Math.min(Math.floor(M.x[i] * coarse), coarse - 1), cy = Math.min(Math.floor(M.y[i] * coarse), coarse - 1);
        const d = Math.hypot(M.x[i] * coarse - cx - 0.5, M.y[i] * coarse - cy - 0.5), key = cx * coarse + cy;
        if (!best.has(key) || d < best.get(key)[1]) best.set(key, [i, d]);
      }
      return Array.from(best.values(), (v) => v[0]);
    }
    const sampled = sample();
    function draw() {
      if (!scale) layout();
      ctx.clearRect(0, 0, scale.w, scale.h);
      const inside = new Set(S.shown);
      for (let i = 0; i < N; i++) {
        if (M.x[i] === null) continue;
        ctx.fillStyle = inside.has(i) ? "rgba(110,170,240,0.8)" : "rgba(120,120,120,0.25)";
        ctx.fillRect(scale.x(M.x[i]) - 2, scale.y(M.y[i]) - 2, 4, 4);
      }
      for (const i of sampled) {
        let img = images.get(i);
        if (!img) { img = new Image(); img.onload = draw; img.src = thumbSrc(i); images.set(i, img); }
        if (!img.complete || !img.naturalWidth) continue;
        const s = 48 / Math.max(img.naturalWidth, img.naturalHeight);
        const w = img.naturalWidth * s, h = img.naturalHeight * s;
        ctx.drawImage(img, scale.x(M.x[i]) - w / 2, scale.y(M.y[i]) - h / 2, w, h);
      }
    }
    function nearest(ev) {
      const r = canvas.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
      const gx = Math.floor(((mx - pad) / (scale.w - 2 * pad)) * (CELLS - 1)), gy = Math.floor(((my - pad) / (scale.h - 2 * pad)) * (CELLS - 1));
      let best = null, bestD = 12;
      for (let dx = -1; dx <= 1; dx++) for (let dy = -1; dy <= 1; dy++) {
        for (const i of grid.get((gx + dx) * CELLS + gy + dy) || []) {
          const d = Math.hypot(scale.x(M.x[i]) - mx, scale.y(M.y[i]) - my);
          if (d < bestD) { bestD = d; best = i; }
        }
      }
      return [best, mx, my];
    }
    canvas.addEventListener("mousemove", (ev) => {
      const [i, mx, my] = nearest(ev);
      if (i === null) { tip.hidden = true; canvas.style.cursor = "default"; return; }
      tip.hidden = false;
      canvas.style.cursor = "pointer";
      tip.querySelector("img").src = thumbSrc(i);
      tip.querySelector("span").textContent = C.path[i];
      tip.style.left = Math.min(mx + 14, scale.w - 220) + "px";
      tip.style.top = my + 14 + "px";
    });
    canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
    canvas.addEventListener("click", (ev) => {
      const [i] = nearest(ev);
      if (i !== null) window.open(fileUrl(C.path[i]), "_blank");
    });
    window.addEventListener("resize", () => { scale = null; draw(); });
    const pending = () => sampled.filter((i) => !(images.get(i) || {}).complete).length;
    window.ROOST_MAP = { draw: draw, pending: pending };  // pending: thumbnails of the map still loading
  }

  // ------------------------------------------------------------ start
  $("report").textContent = D.report + " (" + KIND + ")";
  $("f-range-name").textContent = KIND === "dedup" ? "similarity" : "confidence";
  $("f-range").hidden = KIND === "embed";
  document.title = "roost review: " + D.report;
  filterLabels();
  restore();
  for (const id of ["f-path", "f-label", "f-min", "f-max", "f-decision"]) $(id).addEventListener("input", refilter);
  $("prev").addEventListener("click", () => goPage(-1));
  $("next").addEventListener("click", () => goPage(1));
  $("export").addEventListener("click", exportCsv);
  $("help-toggle").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
  document.addEventListener("keydown", onKey);
  setupMap();
  refilter();
  window.ROOST_READY = performance.now();  // ms from navigation start to the first rows on screen
  document.body.dataset.ready = "1";
})();
