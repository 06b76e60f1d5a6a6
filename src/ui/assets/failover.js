'use strict';
// /ui/failovers/{id}: one failover as a picture (a time axis with every
// mark, the phases as bars, the two-masters and canary windows) and the
// numbers beside it. In progress, it is read again every second.
(() => {
  const { esc, api, clock, when, secs, bytes, chip } = UI;

  // The mark that ends each phase, per kind, in the order shown
  // (src/model/timeline.rs): the API gives each phase's length, so its bar
  // ends at this mark.
  const PHASE_END = {
    sentinel: { detection: 'odown', election: 'elected', promotion: 'promoted', switch: 'switched',
      reconfiguration: 'ended', total: 'ended', outage: 'switched' },
    cluster: { detection: 'fail', promotion: 'promoted', convergence: 'converged', total: 'converged',
      outage: 'promoted' },
  };

  const LABEL_W = 230;
  const PLOT_W = 760;
  /** Room right of the plot for the length of a bar that ends there. */
  const RIGHT_W = 80;
  const ROW_H = 22;
  const AXIS_H = 30;

  /** A step for about 8 ticks over `span` seconds. */
  function tickStep(span) {
    for (const step of [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]) {
      if (span / step <= 8) return step;
    }
    return 7200;
  }

  /** Phases as [name, start, end, seconds], from the API's lengths and the marks that end them. */
  function phaseBars(t, markAt) {
    const ends = PHASE_END[t.kind] || {};
    const order = Object.keys(ends);
    const rank = (name) => (order.includes(name) ? order.indexOf(name) : order.length);
    return Object.entries(t.phases || {})
      .sort((a, b) => rank(a[0]) - rank(b[0]))
      .map(([name, seconds]) => {
        const end = markAt[ends[name]];
        return [name, typeof end === 'number' ? end - seconds : null, end, seconds];
      });
  }

  /** The windows drawn beside the phases: [label, css class, start, end]. */
  function windows(t, now) {
    const out = [];
    if (t.two_masters) out.push(['two masters', 'two-masters', t.two_masters.start, t.two_masters.end ?? now]);
    const c = t.canary;
    if (c && c.last_ack_before && c.first_ack_after) {
      out.push(['canary: writes fail', 'canary', c.last_ack_before.at, c.first_ack_after.at]);
    }
    return out;
  }

  function picture(t, marks, bars, wins, now) {
    const times = marks.map((m) => m.at)
      .concat(bars.flatMap((b) => [b[1], b[2]]), wins.flatMap((w) => [w[2], w[3]]))
      .filter((x) => typeof x === 'number');
    if (t.outcome === null) times.push(now);
    if (!times.length) return '<p>No marks yet.</p>';
    const t0 = Math.min(...times);
    const t1 = Math.max(...times);
    const span = Math.max(t1 - t0, 0.5);
    const x = (at) => LABEL_W + ((at - t0) / span) * PLOT_W;
    const base = typeof t.started === 'number' ? t.started : t0;
    const rows = marks.length + bars.length + wins.length;
    const height = AXIS_H + rows * ROW_H + 10;
    const width = LABEL_W + PLOT_W + RIGHT_W;
    const parts = [];
    const step = tickStep(span);
    for (let s = Math.ceil((t0 - base) / step) * step; base + s <= t1 + 1e-9; s += step) {
      const tx = x(base + s);
      parts.push(`<line class="grid" x1="${tx}" x2="${tx}" y1="${AXIS_H - 6}" y2="${height}"/>`,
        `<text class="tick" x="${tx}" y="${AXIS_H - 10}" text-anchor="middle">${s >= 0 ? '+' : ''}${+s.toFixed(2)} s</text>`);
    }
    let y = AXIS_H;
    for (const m of marks) {
      const mx = x(m.at);
      parts.push(`<g class="mark m-${esc(m.name)}"><text class="label" x="4" y="${y + 15}">${esc(m.name)}`
        + ` <tspan class="reporter">${esc(m.reporter)}</tspan></text>`
        + `<line x1="${mx}" x2="${mx}" y1="${y + 3}" y2="${y + ROW_H - 3}"/><circle cx="${mx}" cy="${y + ROW_H / 2}" r="5">`
        + `<title>${esc(m.name)} at ${clock(m.at)} by ${esc(m.reporter)}</title></circle></g>`);
      y += ROW_H;
    }
    for (const [name, start, end, seconds] of bars) {
      const bar = typeof start === 'number'
        ? `<rect x="${x(start)}" y="${y + 4}" width="${Math.max(x(end) - x(start), 2)}" height="${ROW_H - 8}" rx="3"><title>${esc(name)}: ${secs(seconds)}</title></rect>`
        + `<text class="value" x="${x(end) + 6}" y="${y + 15}">${secs(seconds)}</text>`
        : '';
      parts.push(`<g class="phase p-${esc(name)}"><text class="label" x="4" y="${y + 15}">phase: ${esc(name)}</text>${bar}</g>`);
      y += ROW_H;
    }
    for (const [label, cls, start, end] of wins) {
      parts.push(`<g class="window ${cls}"><text class="label" x="4" y="${y + 15}">${esc(label)}</text>`
        + `<rect x="${x(start)}" y="${y + 4}" width="${Math.max(x(end) - x(start), 2)}" height="${ROW_H - 8}"/>`
        + `<text class="value" x="${x(end) + 6}" y="${y + 15}">${secs(end - start)}</text></g>`);
      y += ROW_H;
    }
    return `<svg class="timeline" role="img" aria-label="failover timeline" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">${parts.join('')}</svg>`;
  }

  function numbers(t) {
    const row = (name, value) => `<tr><th>${esc(name)}</th><td>${value}</td></tr>`;
    const rows = [
      row('Outcome', t.outcome ? esc(t.outcome) : 'in progress'),
      row('Started', when(t.started)),
      row('Ended', when(t.ended)),
      row('Duration', secs(t.duration_seconds)),
      row('Old master', `<code>${esc(t.old_master ?? '—')}</code>`),
      row('New master', `<code>${esc(t.new_master ?? '—')}</code>`),
      row('Epochs', esc((t.epochs || []).join(', ') || '—')),
      row('Unreplicated bytes', bytes(t.unreplicated_bytes)),
    ];
    if (t.abort_reason) rows.push(row('Abort reason', esc(t.abort_reason)));
    if (t.state) rows.push(row('Leader state', esc(t.state)));
    if (typeof t.poll_resolution_seconds === 'number') rows.push(row('Poll resolution', secs(t.poll_resolution_seconds)));
    const tm = t.two_masters;
    if (tm) {
      rows.push(row('Two masters', `${when(tm.start)} to ${tm.end == null ? 'now' : when(tm.end)}: ${esc((tm.nodes || []).join(', '))}`));
      // Writes counted on the node that is not the master: lost at its conversion.
      if (typeof tm.writes === 'number') rows.push(row('Two masters: writes taken by the other', String(tm.writes)));
      if (typeof tm.written_bytes === 'number') rows.push(row('Two masters: its stream moved (hellos included)', bytes(tm.written_bytes)));
    }
    const c = t.canary;
    if (c) {
      rows.push(row('Canary: writes failed for', secs(c.write_unavailable_seconds)),
        row('Canary: lost writes', `<span class="${c.lost_writes ? 'bad' : ''}">${esc(c.lost_writes ?? 0)}</span>`
          + ((c.lost_seqs || []).length ? ` (seq ${(c.lost_seqs).map((r) => esc(r.join('–'))).join(', ')})` : '')),
        row('Canary: stale reads', esc(c.stale_reads ?? 0)));
      if (c.last_ack_before) rows.push(row('Canary: last write before', `${when(c.last_ack_before.at)} on <code>${esc(c.last_ack_before.node)}</code>`));
      if (c.first_ack_after) rows.push(row('Canary: first write after', `${when(c.first_ack_after.at)} on <code>${esc(c.first_ack_after.node)}</code>`));
    }
    return `<table class="numbers">${rows.join('')}</table>`;
  }

  function markTable(marks, base) {
    const rows = marks.map((m) => `<tr data-mark="${esc(m.name)}" data-reporter="${esc(m.reporter)}" data-at="${esc(m.at)}">`
      + `<td>${esc(m.name)}</td><td>${clock(m.at)}</td><td class="num">${typeof base === 'number' ? `${(m.at - base >= 0 ? '+' : '')}${(m.at - base).toFixed(3)} s` : ''}</td>`
      + `<td><code>${esc(m.reporter)}</code></td></tr>`);
    return `<table class="list marks"><thead><tr><th>Mark</th><th>Clock</th><th>From start</th><th>Reported by</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
  }

  function phaseTable(bars) {
    const rows = bars.map(([name, start, end, seconds]) => `<tr data-phase="${esc(name)}" data-seconds="${esc(seconds)}">`
      + `<td>${esc(name)}</td><td>${clock(start)}</td><td>${clock(end)}</td><td class="num">${secs(seconds)}</td></tr>`);
    return `<table class="list phases"><thead><tr><th>Phase</th><th>From</th><th>To</th><th>Length</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
  }

  // The applications still on the old master after it became a replica:
  // they bypass Sentinel or never reconnect (docs/findings.md).
  function leftBehind(left) {
    if (!left) return '<p class="sub">Not read yet: read once the old master is a replica again.</p>';
    if (left.error) return `<p class="bad">Could not read <code>${esc(left.node)}</code>: ${esc(left.error)}</p>`;
    const head = `<p>${esc(left.count)} on <code>${esc(left.node)}</code> at ${clock(left.read_at)}`
      + `${left.count > (left.clients || []).length ? ` (the first ${esc(left.clients.length)} listed)` : ''}</p>`;
    if (!left.count) return head;
    const rows = (left.clients || []).map((c) => `<tr data-client="${esc(c.addr)}">`
      + `<td><code>${esc(c.addr)}</code></td><td>${esc(c.name ?? '')}</td><td>${esc(c.lib_name ?? '')}</td>`
      + `<td>${esc(c.cmd)}</td><td class="num">${esc(c.age)} s</td><td class="num">${esc(c.idle)} s</td></tr>`);
    return `${head}<table class="list clients"><thead><tr><th>Address</th><th>Name</th><th>Library</th><th>Last command</th><th>Age</th><th>Idle</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
  }

  UI.page(/^\/ui\/failovers\/([^/]+)$/, async (id) => {
    const t = await api(`/api/v1/failovers/${encodeURIComponent(id)}`);
    const now = Date.now() / 1000;
    const marks = Array.isArray(t.marks) ? t.marks : [];
    const markAt = {};
    for (const m of marks) markAt[m.name] = m.at;
    const bars = phaseBars(t, markAt);
    const wins = windows(t, now);
    const open = t.outcome === null;
    const status = open ? chip('warn', `in progress${t.state ? ` (${t.state})` : ''}`)
      : chip(t.outcome === 'completed' ? 'ok' : 'bad', t.outcome);
    const html = `<h1>Failover of ${esc(t.shard)} <span class="sub">in ${esc(t.deployment)} (${esc(t.kind)})</span> ${status}</h1>
<div class="hero">
<div><div class="caption">New master</div><div id="new-master" class="new-master${t.new_master ? '' : ' pending'}" data-node="${esc(t.new_master ?? '')}">${esc(t.new_master ?? 'not yet')}</div></div>
<div><div class="caption">Old master</div><div class="old-master">${esc(t.old_master ?? '—')}</div></div>
<div><div class="caption">Duration</div><div class="big">${open && typeof t.started === 'number' ? `${secs(now - t.started)} so far` : secs(t.duration_seconds)}</div></div>
</div>
${open ? '<p class="live">In progress: updated every second.</p>' : ''}
<div class="split"><section><h2>Timeline</h2>${picture(t, marks, bars, wins, now)}</section>
<section><h2>Numbers</h2>${numbers(t)}</section></div>
<div class="split"><section><h2>Marks</h2>${markTable(marks, t.started)}</section>
<section><h2>Phases</h2>${phaseTable(bars)}</section></div>
${t.new_master ? `<section id="clients-left-behind"><h2>Clients left behind</h2>${leftBehind(t.clients_left_behind)}</section>` : ''}
<p><a href="/api/v1/failovers/${esc(encodeURIComponent(t.id))}">This failover as JSON</a> · <a href="/">Overview</a></p>`;
    return { html, after: open ? 1000 : 0 };
  });
})();
