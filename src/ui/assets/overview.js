'use strict';
// /: every deployment and shard at a glance, alerts firing, failovers in
// progress and recent ones. Read again every 5 seconds.
(() => {
  const { esc, api, when, secs, bytes, chip, failoverHref, clusterHref, topologyHref } = UI;

  /** Settles to [value, error]: one failing call must not blank the page. */
  const settle = (promise) => promise.then((v) => [v, null], (e) => [null, e]);

  const shardKey = (deployment, shard) => `${deployment}\u0000${shard}`;

  /** How a shard is, worst first: [level, words]. */
  function verdict(s, replicas, alerts) {
    const problems = [];
    const master = (s.nodes || []).find((n) => n.node === s.master);
    const masterDown = !!master && (master.up === false || master.cluster_health === 'fail');
    if (!s.master) problems.push('no master');
    else if (masterDown) problems.push('master down');
    else if (s.masters > 1) problems.push(`${s.masters} masters`);
    if (s.replicas_healthy < replicas) problems.push(`${replicas - s.replicas_healthy} replica(s) down`);
    const sv = s.sentinel;
    if (sv && !sv.quorum_ok) problems.push('no quorum');
    if (sv && !sv.agreement) problems.push('sentinels disagree');
    if (sv && sv.odown) problems.push('odown');
    if (s.failover_in_progress) problems.push('failover');
    if (alerts) problems.push(`${alerts} alert(s)`);
    if (!problems.length) return ['ok', 'ok'];
    const down = !s.master || masterDown || s.masters > 1 || (sv && !sv.quorum_ok);
    return [down ? 'bad' : 'warn', problems.join(', ')];
  }

  function shardRow(s, alertCount, openFailover) {
    const nodes = Array.isArray(s.nodes) ? s.nodes : [];
    const replicas = nodes.filter((n) => n.node !== s.master).length;
    let lag = null;
    for (const n of nodes) if (typeof n.lag_bytes === 'number') lag = Math.max(lag ?? 0, n.lag_bytes);
    const [level, words] = verdict(s, replicas, alertCount);
    const sv = s.sentinel;
    const sentinels = sv ? `${sv.agreement ? 'agree' : '<strong class="bad">disagree</strong>'}, ${esc(sv.reachable)}/${esc(sv.quorum)} for quorum` : '—';
    const failover = openFailover ? `<a class="bad" href="${esc(failoverHref(openFailover))}">in progress</a>` : (s.failover_in_progress ? 'in progress' : '—');
    return `<tr class="${level}" data-shard="${esc(s.shard)}" data-level="${level}"><td>${chip(level, level === 'ok' ? 'OK' : level === 'bad' ? 'DOWN' : 'DEGRADED')}</td>`
      + `<td>${esc(s.shard)}</td><td><code>${esc(s.master ?? 'none')}</code></td>`
      + `<td class="num">${esc(s.replicas_healthy)}/${replicas}</td><td class="num">${bytes(lag)}</td>`
      + `<td>${sentinels}</td><td>${failover}</td><td>${esc(words === 'ok' ? '' : words)}</td></tr>`;
  }

  function clusterSummary(d, slots, error) {
    if (error) return `<p class="bad">Slot map: ${esc(error.message)}</p>`;
    if (!slots) return '';
    const level = slots.uncovered ? 'bad' : slots.config_consistent ? 'ok' : 'warn';
    return `<p>${chip(level, `${(slots.coverage_ratio * 100).toFixed(2)} % of slots covered`)} `
      + `${esc(slots.uncovered)} uncovered slot(s) in ${esc(slots.uncovered_ranges)} range(s); `
      + `${slots.config_consistent ? 'every node has the same map' : `${esc(slots.config_views)} different maps`}; `
      + `${(slots.open_slots || []).length} open slot(s). <a href="${esc(clusterHref(d.deployment))}">Slot map</a></p>`;
  }

  function deploymentSection(d, slots, alertsByShard, openByShard) {
    const shards = Array.isArray(d.shards) ? d.shards : [];
    const rows = shards.map((s) => shardRow(s, alertsByShard.get(shardKey(d.deployment, s.shard)) || 0,
      openByShard.get(shardKey(d.deployment, s.shard)))).join('');
    const sentinels = Array.isArray(d.sentinels) ? d.sentinels : [];
    const sentinelLine = d.kind === 'sentinel'
      ? `<p>Sentinels: ${sentinels.filter((x) => x.up).length}/${sentinels.length} reachable`
        + `${sentinels.some((x) => x.tilt) ? `, <strong class="bad">${sentinels.filter((x) => x.tilt).length} in TILT</strong>` : ''}.</p>`
      : '';
    return `<section class="deployment" data-deployment="${esc(d.deployment)}"><h2>${esc(d.deployment)} <span class="sub">${esc(d.kind)}, ${shards.length} shard(s)</span>`
      + ` <a class="small" href="${esc(topologyHref(d.deployment))}">topology</a></h2>${sentinelLine}${d.kind === 'cluster' ? clusterSummary(d, slots[0], slots[1]) : ''}`
      + `<table class="list"><thead><tr><th></th><th>Shard</th><th>Master</th><th>Replicas up</th><th>Max lag</th><th>Sentinels</th><th>Failover</th><th>Problems</th></tr></thead>`
      + `<tbody>${rows}</tbody></table></section>`;
  }

  function alertList(alerts, error) {
    if (error) return `<section><h2>Alerts</h2><p class="bad">${esc(error.message)}</p></section>`;
    if (!alerts.length) return '<section><h2>Alerts</h2><p>None firing.</p></section>';
    const rows = alerts.map((a) => `<tr class="${a.severity === 'critical' ? 'bad' : 'warn'}"><td>${esc(a.severity)}</td><td>${esc(a.alertname)}</td>`
      + `<td>${esc([(a.labels || {}).deployment, (a.labels || {}).shard].filter(Boolean).join(' / '))}</td><td>${esc((a.annotations || {}).summary ?? '')}</td><td>${when(a.since)}</td></tr>`).join('');
    return `<section><h2>Alerts firing (${alerts.length})</h2><table class="list"><thead><tr><th>Severity</th><th>Alert</th><th>Where</th><th>Summary</th><th>Since</th></tr></thead><tbody>${rows}</tbody></table></section>`;
  }

  function failoverList(failovers) {
    if (!failovers.length) return '<section><h2>Recent failovers</h2><p>None recorded.</p></section>';
    const rows = failovers.map((t) => `<tr data-failover="${esc(t.id)}" class="${t.outcome === null ? 'warn' : t.outcome === 'completed' ? '' : 'bad'}">`
      + `<td>${when(t.started)}</td><td>${esc(t.deployment)} / ${esc(t.shard)}</td><td>${esc(t.outcome ?? 'in progress')}</td>`
      + `<td class="num">${secs(t.duration_seconds)}</td><td><code>${esc(t.old_master ?? '?')}</code> → <strong><code>${esc(t.new_master ?? '?')}</code></strong></td>`
      + `<td><a href="${esc(failoverHref(t.id))}">details</a></td></tr>`).join('');
    return `<section><h2>Recent failovers</h2><table class="list"><thead><tr><th>Started</th><th>Shard</th><th>Outcome</th><th>Duration</th><th>Masters</th><th></th></tr></thead><tbody>${rows}</tbody></table></section>`;
  }

  UI.page(/^\/$/, async () => {
    const [topology, failovers, alerts] = await Promise.all([
      api('/api/v1/topology'),
      api('/api/v1/failovers?limit=20'),
      settle(api('/api/v1/alerts')),
    ]);
    const deployments = Array.isArray(topology.deployments) ? topology.deployments : [];
    const slotMaps = await Promise.all(deployments.map((d) => (d.kind === 'cluster'
      ? settle(api(`/api/v1/clusters/${encodeURIComponent(d.deployment)}/slots`)) : [null, null])));
    const firing = alerts[0] && Array.isArray(alerts[0].alerts) ? alerts[0].alerts : [];
    const alertsByShard = new Map();
    for (const a of firing) {
      const key = shardKey((a.labels || {}).deployment, (a.labels || {}).shard);
      alertsByShard.set(key, (alertsByShard.get(key) || 0) + 1);
    }
    const timelines = Array.isArray(failovers.failovers) ? failovers.failovers : [];
    const openByShard = new Map();
    for (const t of timelines) if (t.outcome === null) openByShard.set(shardKey(t.deployment, t.shard), t.id);
    const open = timelines.filter((t) => t.outcome === null);
    const banner = open.length
      ? `<div class="banner bad" role="alert">Failover in progress: ${open.map((t) => `<a href="${esc(failoverHref(t.id))}">${esc(t.deployment)} / ${esc(t.shard)}</a>`).join(', ')}</div>`
      : '';
    const html = `<h1>Overview</h1>${banner}${alertList(firing, alerts[1])}
${deployments.length ? deployments.map((d, i) => deploymentSection(d, slotMaps[i], alertsByShard, openByShard)).join('') : '<p>No deployment discovered yet.</p>'}
${failoverList(timelines)}`;
    return { html, after: 5000 };
  });
})();
