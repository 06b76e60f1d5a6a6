'use strict';
// What every page shares: reading the API, escaping, formatting, and
// choosing the page for the path. Each page script registers itself with
// UI.page(pattern, load); load resolves to { html, after, drawn }: the
// page's HTML, when to load it again (ms; none to stop) and what to draw
// once the HTML is in the document (e.g. a canvas).
const UI = (() => {
  const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

  /** Any value as HTML text or attribute value: API strings are user data. */
  const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ENTITIES[c]);

  /** A JSON document of the API; throws with the API's own error message. */
  async function api(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: 'application/json' } });
    } catch (e) {
      throw new Error(`cannot reach the agent (${e.message})`);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      // Not JSON: reported below.
    }
    if (!response.ok) {
      const why = body && typeof body.error === 'string' ? body.error : response.statusText;
      throw new Error(`${path}: ${response.status} ${why}`);
    }
    if (body === null || typeof body !== 'object') throw new Error(`${path}: the answer is not JSON`);
    return body;
  }

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  /** Unix seconds as local clock time, to the millisecond. */
  function clock(t) {
    if (typeof t !== 'number') return '—';
    const d = new Date(t * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  /** How long ago (or from now) unix time `t` is. */
  function ago(t) {
    if (typeof t !== 'number') return '';
    const s = Date.now() / 1000 - t;
    const a = Math.abs(s);
    const text = a < 120 ? `${a.toFixed(a < 10 ? 1 : 0)} s` : a < 7200 ? `${Math.round(a / 60)} min` : `${(a / 3600).toFixed(1)} h`;
    return s >= 0 ? `${text} ago` : `in ${text}`;
  }

  /** Local clock time with its distance from now, as HTML. */
  const when = (t) => (typeof t === 'number'
    ? `<time datetime="${esc(new Date(t * 1000).toISOString())}">${clock(t)}</time> <span class="ago">(${ago(t)})</span>`
    : '—');

  /** A duration in seconds. */
  function secs(s) {
    if (typeof s !== 'number') return '—';
    if (s < 10) return `${s.toFixed(3)} s`;
    if (s < 120) return `${s.toFixed(1)} s`;
    return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }

  /** A byte count. */
  function bytes(n) {
    if (typeof n !== 'number') return '—';
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }

  const failoverHref = (id) => `/ui/failovers/${encodeURIComponent(id)}`;
  const clusterHref = (deployment) => `/ui/clusters/${encodeURIComponent(deployment)}`;
  const topologyHref = (deployment) => `/ui/topology#${encodeURIComponent(deployment)}`;

  /** A coloured word saying how something is. */
  const chip = (level, text) => `<span class="chip ${esc(level)}">${esc(text)}</span>`;

  const pages = [];

  /** Registers the page for paths matching `pattern`; its captures, decoded, go to `load`. */
  function page(pattern, load) {
    pages.push({ pattern, load });
  }

  function show(main, html) {
    main.innerHTML = html;
    main.dataset.ready = '1';
    main.dataset.renders = String(Number(main.dataset.renders || 0) + 1);
  }

  function showError(main, error) {
    main.dataset.error = error.message;
    show(main, `<div class="error" role="alert"><h1>Cannot show this page</h1><p>${esc(error.message)}</p>`
      + '<p>The page tries again every few seconds.</p></div>');
  }

  /** Loads and shows the page, again whenever it asks. */
  async function run(main, load, args) {
    let after = 5000;
    try {
      const result = await load(...args);
      delete main.dataset.error;
      show(main, result.html);
      if (result.drawn) result.drawn();
      const first = main.dataset.renders === '1';
      const target = first && window.location.hash && document.getElementById(window.location.hash.slice(1));
      if (target) target.scrollIntoView();
      after = result.after;
    } catch (e) {
      showError(main, e);
    }
    if (after) setTimeout(() => run(main, load, args), after);
  }

  document.addEventListener('DOMContentLoaded', () => {
    const main = document.getElementById('main');
    const path = window.location.pathname;
    for (const { pattern, load } of pages) {
      const m = pattern.exec(path);
      if (!m) continue;
      let args;
      try {
        args = m.slice(1).map(decodeURIComponent);
      } catch (e) {
        showError(main, new Error(`the address is not valid (${e.message})`));
        return;
      }
      run(main, load, args);
      return;
    }
    showError(main, new Error(`no page at ${path}`));
  });

  return { esc, api, clock, ago, when, secs, bytes, chip, failoverHref, clusterHref, topologyHref, page };
})();
