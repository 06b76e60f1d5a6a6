'use strict';
// /ui/topology: every deployment's shards and nodes (role, reachability,
// the cluster's verdict, replica link and lag) and its sentinels with
// what they agree on. Read again every 5 seconds.
(() => {
  const { esc, api, bytes, chip, clusterHref } = UI;

  const yesNo = (v, good) => (v == null ? '—' : v === good ? esc(v ? 'yes' : 'no') : `<strong class="bad">${v ? 'yes' : 'no'}</strong>`);

  function nodeRows(s) {
    const nodes = (Array.isArray(s.nodes) ? s.nodes : []).slice()
      .sort((a, b) => (b.node === s.master) - (a.node === s.master));
    return nodes.map((n, i) => {
      const master = n.node === s.master;
      const down = n.up === false || n.cluster_health === 'fail' || n.link_up === false;
      return `<tr class="${down ? 'bad' : n.cluster_health === 'pfail' ? 'warn' : ''}" data-node="${esc(n.node)}" data-role="${esc(n.role ?? '')}" data-up="${esc(n.up)}">`
        + `${i === 0 ? `<td rowspan="${nodes.length}" class="shard">${esc(s.shard)}${s.failover_in_progress ? ` ${chip('warn', 'failover')}` : ''}</td>` : ''}`
        + `<td><code>${master ? `<strong>${esc(n.node)}</strong>` : esc(n.node)}</code></td><td>${esc(n.role ?? '?')}</td>`
        + `<td>${yesNo(n.up, true)}</td><td>${esc(n.cluster_health ?? '—')}</td><td>${yesNo(n.link_up, true)}</td>`
        + `<td class="num">${bytes(n.lag_bytes)}</td></tr>`;
    }).join('');
  }

  function sentinelShards(d) {
    const rows = (d.shards || []).filter((s) => s.sentinel).map((s) => {
      const v = s.sentinel;
      const level = !v.quorum_ok || !v.agreement ? 'bad' : v.sdown ? 'warn' : '';
      return `<tr class="${level}" data-shard="${esc(s.shard)}"><td>${esc(s.shard)}</td><td><code>${esc(v.master_addr ?? 'none')}</code></td>`
        + `<td>${yesNo(v.agreement, true)}</td><td class="num">${esc(v.reachable)}/${esc(v.quorum)}</td><td>${yesNo(v.quorum_ok, true)}</td>`
        + `<td class="num">${esc(v.sdown)}</td><td>${yesNo(v.odown, false)}</td><td class="num">${esc(v.config_epoch)}</td></tr>`;
    }).join('');
    return rows ? `<h3>What the sentinels say</h3><table class="list"><thead><tr><th>Shard</th><th>Master they name</th><th>Agree</th><th>Reachable / quorum</th><th>Quorum</th><th>See it down</th><th>Agreed down</th><th>Epoch</th></tr></thead><tbody>${rows}</tbody></table>` : '';
  }

  function sentinelList(d) {
    const rows = (d.sentinels || []).map((x) => `<tr class="${x.up ? '' : 'bad'}" data-sentinel="${esc(x.sentinel)}"><td><code>${esc(x.sentinel)}</code></td>`
      + `<td>${yesNo(x.up, true)}</td><td>${yesNo(x.tilt, false)}</td></tr>`).join('');
    return rows ? `<h3>Sentinels</h3><table class="list"><thead><tr><th>Sentinel</th><th>Reachable</th><th>TILT</th></tr></thead><tbody>${rows}</tbody></table>` : '';
  }

  function section(d) {
    const shards = Array.isArray(d.shards) ? d.shards : [];
    const nodes = shards.reduce((n, s) => n + (s.nodes || []).length, 0);
    return `<section class="deployment" id="${esc(encodeURIComponent(d.deployment))}" data-deployment="${esc(d.deployment)}">`
      + `<h2>${esc(d.deployment)} <span class="sub">${esc(d.kind)}, ${shards.length} shard(s), ${nodes} node(s)</span>`
      + `${d.kind === 'cluster' ? ` <a class="small" href="${esc(clusterHref(d.deployment))}">slot map</a>` : ''}</h2>`
      + `${sentinelList(d)}${sentinelShards(d)}<h3>Nodes</h3>`
      + `<table class="list nodes"><thead><tr><th>Shard</th><th>Node</th><th>Role</th><th>Reachable</th><th>Cluster says</th><th>Link to master</th><th>Lag</th></tr></thead>`
      + `<tbody>${shards.map(nodeRows).join('')}</tbody></table></section>`;
  }

  UI.page(/^\/ui\/topology$/, async () => {
    const topology = await api('/api/v1/topology');
    const deployments = Array.isArray(topology.deployments) ? topology.deployments : [];
    const html = `<h1>Topology</h1>${deployments.length ? deployments.map(section).join('') : '<p>No deployment discovered yet.</p>'}`;
    return { html, after: 5000 };
  });
})();
