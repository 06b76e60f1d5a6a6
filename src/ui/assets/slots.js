'use strict';
// /ui/clusters/{deployment}: the 16384 slots as one strip on a canvas, by
// owner and state, and the same ranges as a table with the shard and nodes
// of each. Read again every 5 seconds.
(() => {
  const { esc, api, secs, chip, topologyHref } = UI;
  const SLOTS = 16384;
  const STRIP_H = 48;
  /** States where no master serves the range: what must stand out. */
  const UNSERVED = new Set(['fail', 'uncovered']);

  /** A colour per shard, golden-angle apart, leaving out the reds kept for trouble. */
  const shardColour = (i) => `hsl(${40 + ((i * 137.508) % 280)}, 45%, ${50 + (i % 3) * 8}%)`;

  function draw(canvas, slots, colours) {
    const width = canvas.clientWidth || 1000;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(STRIP_H * ratio);
    const g = canvas.getContext('2d');
    if (!g) return;
    g.scale(ratio, ratio);
    g.fillStyle = '#222';
    g.fillRect(0, 0, width, STRIP_H);
    const x = (slot) => (slot / SLOTS) * width;
    for (const r of slots.ranges) {
      const left = x(r.start);
      const w = Math.max(x(r.end + 1) - left, 1);
      g.fillStyle = r.state === 'ok' ? colours.get(r.shard) || '#888'
        : r.state === 'pfail' ? '#e8a33d' : '#d32f2f';
      g.fillRect(left, 10, w, STRIP_H - 10);
      if (UNSERVED.has(r.state)) {
        // Diagonal stripes, so an unserved range shows however thin or printed grey.
        g.strokeStyle = '#fff';
        g.lineWidth = 2;
        g.save();
        g.beginPath();
        g.rect(left, 10, w, STRIP_H - 10);
        g.clip();
        for (let sx = left - STRIP_H; sx < left + w; sx += 10) {
          g.moveTo(sx, STRIP_H);
          g.lineTo(sx + STRIP_H, 10);
        }
        g.stroke();
        g.restore();
      }
    }
    g.fillStyle = '#ffd54f';
    for (const o of slots.open_slots || []) g.fillRect(Math.max(x(o.slot) - 1, 0), 0, 3, 9);
  }

  function rangeRows(slots, colours, nodesOf) {
    return slots.ranges.map((r) => {
      const bad = UNSERVED.has(r.state);
      const nodes = (nodesOf.get(r.shard) || []).map((n) => `<code class="${n.up === false ? 'bad' : ''}">${esc(n.node)}</code>`
        + `<span class="role">${esc(n.role ?? '?')}${n.up === false ? ', down' : ''}</span>`).join(' ');
      return `<tr class="${bad ? 'bad' : r.state === 'pfail' ? 'warn' : ''}" data-start="${esc(r.start)}" data-end="${esc(r.end)}" data-state="${esc(r.state)}" data-shard="${esc(r.shard ?? '')}">`
        + `<td><span class="swatch" data-colour="${esc(colours.get(r.shard) || '')}"></span>${esc(r.start)}–${esc(r.end)}</td><td class="num">${esc(r.slots)}</td>`
        + `<td>${bad ? `<strong>${esc(r.state)}</strong>` : esc(r.state)}</td><td>${esc(r.shard ?? '—')}</td><td><code>${esc(r.master ?? '—')}</code></td><td>${nodes}</td></tr>`;
    }).join('');
  }

  function openRows(slots) {
    return (slots.open_slots || []).map((o) => `<tr data-slot="${esc(o.slot)}" data-state="${esc(o.state)}"><td class="num">${esc(o.slot)}</td><td>${esc(o.state)}</td>`
      + `<td><code>${esc(o.node)}</code></td><td><code>${esc(o.source)}</code> → <code>${esc(o.target)}</code></td><td class="num">${secs(o.open_seconds)}</td></tr>`).join('');
  }

  function divergenceRows(slots) {
    return (slots.divergences || []).map((v) => `<tr><td><code>${esc(v.node)}</code></td><td>${esc(v.start)}–${esc(v.end)}</td>`
      + `<td><code>${esc(v.says ?? 'none')}</code></td><td><code>${esc(v.majority ?? 'none')}</code></td></tr>`).join('');
  }

  UI.page(/^\/ui\/clusters\/([^/]+)$/, async (deployment) => {
    const [slots, topology] = await Promise.all([
      api(`/api/v1/clusters/${encodeURIComponent(deployment)}/slots`),
      api('/api/v1/topology'),
    ]);
    const ranges = Array.isArray(slots.ranges) ? slots.ranges : [];
    slots.ranges = ranges;
    const colours = new Map();
    (slots.shards || []).forEach((s, i) => colours.set(s.shard, shardColour(i)));
    const nodesOf = new Map();
    const d = (topology.deployments || []).find((x) => x.deployment === deployment);
    for (const s of (d && d.shards) || []) nodesOf.set(s.shard, s.nodes || []);
    const unserved = ranges.filter((r) => UNSERVED.has(r.state));
    const level = unserved.length ? 'bad' : ranges.some((r) => r.state !== 'ok') ? 'warn' : 'ok';
    const open = openRows(slots);
    const divergences = divergenceRows(slots);
    const html = `<h1>Slot map of ${esc(deployment)} ${chip(level, `${(slots.coverage_ratio * 100).toFixed(2)} % covered`)}</h1>
<p>${esc(slots.uncovered)} uncovered slot(s) in ${esc(slots.uncovered_ranges)} range(s) ·
${slots.config_consistent ? 'every node has the same map' : `<strong class="bad">${esc(slots.config_views)} different maps</strong>`} ·
${esc(slots.shards_without_replica)} shard(s) without a replica · ${esc(slots.shards_same_host)} shard(s) on one host ·
<a href="${esc(topologyHref(deployment))}">topology</a></p>
${unserved.length ? `<div class="banner bad" role="alert">Not served: ${unserved.map((r) => `slots ${esc(r.start)}–${esc(r.end)} (${esc(r.state)}, shard ${esc(r.shard ?? 'none')})`).join('; ')}</div>` : ''}
<canvas id="slot-strip" class="strip" height="${STRIP_H}" aria-label="slots 0 to 16383 by owner"></canvas>
<div class="scale"><span>0</span><span>4096</span><span>8192</span><span>12288</span><span>16383</span></div>
<p class="legend"><span class="key ok"></span>served (one colour per shard) <span class="key pfail"></span>pfail <span class="key fail"></span>fail or uncovered <span class="key open"></span>open slot (migrating / importing)</p>
<h2>Ranges</h2>
<table class="list ranges"><thead><tr><th>Slots</th><th>Count</th><th>State</th><th>Shard</th><th>Master</th><th>Nodes</th></tr></thead><tbody>${rangeRows(slots, colours, nodesOf)}</tbody></table>
<h2>Open slots</h2>${open ? `<table class="list open"><thead><tr><th>Slot</th><th>State</th><th>Node</th><th>Moving</th><th>Open for</th></tr></thead><tbody>${open}</tbody></table>` : '<p>None.</p>'}
<h2>Nodes whose map differs</h2>${divergences ? `<table class="list"><thead><tr><th>Node</th><th>Slots</th><th>It says</th><th>Most say</th></tr></thead><tbody>${divergences}</tbody></table>` : '<p>None.</p>'}`;
    const drawn = () => {
      const canvas = document.getElementById('slot-strip');
      if (canvas) draw(canvas, slots, colours);
      for (const el of document.querySelectorAll('.swatch[data-colour]')) el.style.background = el.dataset.colour;
    };
    return { html, after: 5000, drawn };
  });
})();
