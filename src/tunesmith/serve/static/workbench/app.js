// tunesmith workbench: every action below is one call to the /v1 API (docs/workbench.md lists them).
'use strict';
const $ = id => document.getElementById(id);
const keyBox = $('key');
keyBox.value = localStorage.getItem('tunesmith-key') || new URLSearchParams(location.search).get('key') || '';
keyBox.onchange = () => { localStorage.setItem('tunesmith-key', keyBox.value); refresh(); };
const BASES = ['tiny', 'smollm2-135m-instruct'];
const state = {page: 'data', job: null, evalId: null, files: [], jobs: [], evals: [], retrainJob: null, retrainEval: null};

function esc(s) { return String(s ?? '').replace(/[&<>"']/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c])); }
function say(text, bad) { const s = $('status'); s.textContent = text; s.style.color = bad ? '#b00' : '#145'; }
function when(t) { return t ? new Date(t * 1000).toLocaleString() : ''; }
function num(x) { return typeof x === 'number' ? (Number.isInteger(x) ? x.toLocaleString('en') : x.toFixed(3)) : esc(x); }
function badge(text, cls) { return `<span class="badge ${esc(cls || text)}">${esc(text)}</span>`; }

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (keyBox.value) headers.Authorization = 'Bearer ' + keyBox.value;
  if (opts.json !== undefined) { headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(opts.json); }
  const r = await fetch(path, {method: opts.method || (opts.body ? 'POST' : 'GET'), headers, body: opts.body});
  const text = await r.text();
  let body = null;
  try { body = opts.raw && r.ok ? text : JSON.parse(text); } catch (e) { body = text; }
  if (!r.ok) throw new Error(body && body.error ? body.error.message : `HTTP ${r.status}`);
  return body;
}
async function act(fn, done) {
  try { const out = await fn(); say(done || ''); return out; } catch (e) { say('error: ' + e.message, true); return null; }
}
function fill(sel, items, keep) {
  const old = keep ? sel.value : null;
  sel.innerHTML = items.map(([v, t]) => `<option value="${esc(v)}">${esc(t)}</option>`).join('');
  if (old && items.some(([v]) => v === old)) sel.value = old;
}

// ------------------------------------------------------------------ navigation
function show(page) {
  state.page = page;
  document.querySelectorAll('section.page').forEach(s => s.classList.toggle('active', s.id === 'page-' + page));
  document.querySelectorAll('nav button').forEach(b => b.setAttribute('aria-current', b.dataset.page === page ? 'page' : 'false'));
  if (location.hash !== '#' + page) history.replaceState(null, '', '#' + page);
  refresh();
}
document.querySelectorAll('nav button').forEach(b => b.addEventListener('click', () => show(b.dataset.page)));

// ------------------------------------------------------------------ shared lists
async function loadFiles() {
  const r = await api('/v1/files?purpose=fine-tune');
  state.files = r.data;
  const ok = r.data.filter(f => f.status === 'processed');
  const label = f => `${f.filename} (${f.id.slice(0, 13)}…)`;
  fill($('train-file'), ok.map(f => [f.id, label(f)]), true);
  fill($('eval-holdout'), ok.map(f => [f.id, label(f)]), true);
  fill($('retrain-file'), ok.map(f => [f.id, label(f)]), true);
  fill($('retrain-holdout'), ok.map(f => [f.id, label(f)]), true);
  $('files').tBodies[0].innerHTML = r.data.map(f => `<tr><td>${esc(f.id)}</td><td>${esc(f.filename)}</td>` +
    `<td>${badge(f.status, f.status === 'processed' ? 'ok' : 'bad')}${f.status_details ? '<div class="msg">' + esc(f.status_details) + '</div>' : ''}</td>` +
    `<td>${num(f.bytes)}</td><td><button type="button" class="secondary" data-check="${esc(f.id)}">Check</button></td></tr>`).join('');
  $('files').querySelectorAll('button[data-check]').forEach(b => b.onclick = () => check(b.dataset.check));
}
async function loadJobs() {
  const r = await api('/v1/fine_tuning/jobs?limit=50');
  state.jobs = r.data;
  $('jobs').tBodies[0].innerHTML = r.data.map(j => `<tr><td>${esc(j.id)}</td><td>${badge(j.status)}</td>` +
    `<td>${j.status === 'succeeded' ? 'done' : ''}</td><td class="msg">${esc(j.fine_tuned_model || j.model)}</td>` +
    `<td><button type="button" class="secondary" data-job="${esc(j.id)}">Open</button></td></tr>`).join('');
  $('jobs').querySelectorAll('button[data-job]').forEach(b => b.onclick = () => { state.job = b.dataset.job; loadJob(); });
  const done = r.data.filter(j => j.status === 'succeeded');
  fill($('eval-job'), done.map(j => [j.id, `${j.id} → ${j.fine_tuned_model}`]), true);
}
async function loadAliases() {
  const r = await api('/v1/tunesmith/aliases');
  fill($('eval-against'), [['', '(baselines)'], ...r.data.map(a => [a.name, `${a.name} (${a.model})`])], true);
  $('aliases').tBodies[0].innerHTML = r.data.map(a => `<tr><td><b>${esc(a.name)}</b></td><td class="msg">${esc(a.model)}</td>` +
    `<td>${esc(a.actor)}</td><td>${when(a.updated_at)}</td></tr>`).join('') || '<tr><td colspan="4" class="muted">no aliases yet</td></tr>';
  return r.data;
}

// ------------------------------------------------------------------ 1 data
$('upload-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const file = $('upload-file').files[0];
  if (!file) { say('error: choose a file first', true); return; }
  const form = new FormData(); form.append('purpose', 'fine-tune'); form.append('file', file);
  say('uploading ' + file.name + ' …');
  const f = await act(() => api('/v1/files', {method: 'POST', body: form}));
  if (!f) return;
  say(`uploaded ${f.filename} as ${f.id}: ${f.status}`);
  await loadFiles();
  await check(f.id);
});
async function check(fileId) {
  $('check-file').textContent = fileId;
  $('check-report').innerHTML = '<p class="muted">checking …</p>';
  const r = await act(() => api(`/v1/tunesmith/files/${fileId}/check?model=${encodeURIComponent($('check-model').value)}`));
  if (!r) { $('check-report').innerHTML = ''; return; }
  const rep = r.report;
  let h = `<p>${badge(rep.ok ? 'no errors' : rep.errors.length + ' error(s)', rep.ok ? 'ok' : 'bad')} format <b>${esc(rep.format)}</b>, ${rep.n_examples} examples, ${rep.warnings.length} warning(s)</p>`;
  if (rep.errors.length) h += '<h3>Errors</h3><div class="scroll"><table id="check-errors"><thead><tr><th>line</th><th>code</th><th>problem</th><th>fix</th></tr></thead><tbody>' +
    rep.errors.map(e => `<tr><td>${e.line}</td><td>${esc(e.code)}</td><td class="msg">${esc(e.message)}</td><td class="msg">${esc(e.hint)}</td></tr>`).join('') + '</tbody></table></div>';
  if (rep.warnings.length) h += '<h3>Warnings</h3><ul id="check-warnings">' + rep.warnings.map(w => `<li>${badge(w.code, 'warn')} ${esc(w.message)}</li>`).join('') + '</ul>';
  const stats = Object.entries(rep.stats || {}).filter(([, v]) => typeof v !== 'object');
  if (stats.length) h += '<h3>Stats</h3><div class="scroll"><table id="check-stats"><tbody>' + stats.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${num(v)}</td></tr>`).join('') + '</tbody></table></div>';
  if (r.examples.length) {
    h += `<h3>What the model is trained on (first ${r.examples.length} examples; <mark>highlighted</mark> tokens carry loss)</h3>`;
    h += r.examples.map(e => `<div class="muted">line ${e.line}: ${e.n_trained} of ${e.n_tokens} tokens trained</div><pre class="ex trained-view">${spans(e.text, e.trained_spans)}</pre>`).join('');
  }
  if (r.findings.length) h += '<ul>' + r.findings.map(f => `<li>${badge(f.code, 'warn')} ${esc(f.message)}</li>`).join('') + '</ul>';
  $('check-report').innerHTML = h;
}
function spans(text, sp) {
  let out = '', at = 0;
  for (const [a, b] of sp) { out += esc(text.slice(at, a)) + '<mark>' + esc(text.slice(a, b)) + '</mark>'; at = b; }
  return out + esc(text.slice(at));
}

// ------------------------------------------------------------------ 2 train
function hyper() {
  const h = {};
  if ($('n-epochs').value) h.n_epochs = parseInt($('n-epochs').value, 10);
  if ($('batch-size').value) h.batch_size = parseInt($('batch-size').value, 10);
  if ($('lr-mult').value) h.learning_rate_multiplier = parseFloat($('lr-mult').value);
  return h;
}
$('plan-btn').addEventListener('click', async () => {
  const q = new URLSearchParams({training_file: $('train-file').value, model: $('train-model').value});
  const h = hyper(); if (h.n_epochs) q.set('n_epochs', h.n_epochs); if (h.batch_size) q.set('batch_size', h.batch_size);
  $('plan-view').innerHTML = '<p class="muted">planning …</p>';
  const p = await act(() => api('/v1/tunesmith/plan?' + q));
  if (!p) { $('plan-view').innerHTML = ''; return; }
  $('plan-view').innerHTML = `<table id="plan-table"><tbody>
    <tr><th>fine-tune</th><td>${esc(p.finetune)} on ${p.n_examples} examples</td></tr>
    <tr><th>examples per step</th><td>${esc(p.examples_per_step ?? 'token-sized')} <span class="muted">${esc(p.rule.batch_size || '')}</span></td></tr>
    <tr><th>epochs</th><td>${num(p.epochs)} <span class="muted">${esc(p.rule.epochs || '')}</span></td></tr>
    <tr><th>steps</th><td>${p.total_steps} (warm-up ${p.warmup_steps})</td></tr>
    <tr><th>learning rate</th><td>${p.lr} <span class="muted">${esc(p.rule.lr || '')}</span></td></tr>
    <tr><th>memory</th><td>${num(p.memory.estimate_gb)} GB of a ${num(p.memory.budget_gb)} GB budget on ${esc(p.memory.device)}; micro-batch ${p.memory.micro_tokens} tokens${p.memory.gradient_checkpointing ? ', gradient checkpointing' : ''}</td></tr></tbody></table>`;
});
$('train-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const method = $('train-method').value;
  const body = {model: $('train-model').value, training_file: $('train-file').value,
    method: {type: method, [method]: {hyperparameters: hyper()}}};
  if ($('suffix').value) body.suffix = $('suffix').value;
  const job = await act(() => api('/v1/fine_tuning/jobs', {json: body}));
  if (!job) return;
  say('started ' + job.id);
  state.job = job.id;
  await loadJobs(); await loadJob();
});
$('cancel-job').addEventListener('click', async () => {
  if (!state.job) return;
  await act(() => api(`/v1/fine_tuning/jobs/${state.job}/cancel`, {method: 'POST'}), 'cancel requested');
  await loadJob();
});
async function loadJob() {
  if (!state.job) return;
  const [job, ev, m] = await Promise.all([api('/v1/fine_tuning/jobs/' + state.job),
    api(`/v1/fine_tuning/jobs/${state.job}/events?limit=200`), api(`/v1/tunesmith/jobs/${state.job}/metrics`)]);
  $('job-id').textContent = job.id;
  const last = m.data.filter(p => typeof p.train_loss === 'number').pop();
  const total = last && last.total_steps;
  const pct = last && total ? Math.round(100 * last.step / total) : (job.status === 'succeeded' ? 100 : 0);
  $('job-summary').innerHTML = `<p>${badge(job.status)} ${esc(job.model)} → <b>${esc(job.fine_tuned_model || '(not yet)')}</b></p>` +
    `<label for="job-progress">Progress ${last ? `step ${last.step}/${total}, loss ${last.train_loss.toFixed(4)}` : ''}</label> ` +
    `<progress id="job-progress" max="100" value="${pct}">${pct}%</progress>` +
    (job.error ? `<p class="msg bad">${esc(job.error.message)}</p>` : '');
  $('cancel-job').disabled = !['queued', 'running', 'validating_files', 'paused'].includes(job.status);
  $('job-events').innerHTML = ev.data.map(e => `<div class="${esc(e.level)}">${when(e.created_at)} ${esc(e.message)}</div>`).join('');
  curve($('job-curve'), m.data);
}
function curve(svg, points) {
  const pts = points.filter(p => typeof p.train_loss === 'number');
  if (!pts.length) { svg.innerHTML = '<text x="20" y="110" fill="#888">no metrics yet</text>'; return; }
  const W = 600, H = 220, pad = 34, valid = points.filter(p => typeof p.valid_loss === 'number');
  const xs = pts.map(p => p.step).concat(valid.map(p => p.step)), ys = pts.map(p => p.train_loss).concat(valid.map(p => p.valid_loss));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = s => pad + (x1 === x0 ? 0.5 : (s - x0) / (x1 - x0)) * (W - 2 * pad);
  const sy = v => H - pad - (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0)) * (H - 2 * pad);
  const line = ps => ps.map(p => sx(p.step).toFixed(1) + ',' + sy(p.train_loss ?? p.valid_loss).toFixed(1)).join(' ');
  svg.innerHTML = `<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#999"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="#999"/>` +
    `<text x="${pad}" y="${H - 8}" font-size="11">step ${x0}</text><text x="${W - pad - 60}" y="${H - 8}" font-size="11">step ${x1}</text>` +
    `<text x="2" y="${pad - 6}" font-size="11">${y1.toFixed(3)}</text><text x="2" y="${H - pad + 12}" font-size="11">${y0.toFixed(3)}</text>` +
    `<polyline id="train-line" fill="none" stroke="#2b6cff" stroke-width="2" points="${line(pts)}"/>` +
    (valid.length ? `<polyline fill="none" stroke="#e07000" stroke-width="2" points="${line(valid)}"/>` : '') +
    `<text x="${W - 170}" y="16" font-size="11" fill="#2b6cff">— training loss</text>` + (valid.length ? `<text x="${W - 170}" y="30" font-size="11" fill="#e07000">— validation loss</text>` : '');
}

// ------------------------------------------------------------------ 3 evaluate
$('eval-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const body = {job_id: $('eval-job').value, holdout_file: $('eval-holdout').value,
    baselines: [$('eval-zero').checked && 'zero-shot', $('eval-few').checked && 'few-shot'].filter(Boolean),
    require: $('eval-rules').value.split('\n').map(s => s.trim()).filter(Boolean), include_reviewed: $('eval-reviewed').checked};
  if ($('eval-against').value) body.against = $('eval-against').value;
  const t = await act(() => api('/v1/tunesmith/evaluations', {json: body}));
  if (!t) return;
  say('evaluation ' + t.id + ' queued');
  state.evalId = t.id;
  await loadEvals();
});
async function loadEvals() {
  const r = await api('/v1/tunesmith/evaluations');
  state.evals = r.data;
  $('evals').tBodies[0].innerHTML = r.data.map(t => `<tr><td>${esc(t.id)}</td><td class="msg">${esc(t.params.model)}</td>` +
    `<td>${esc(t.params.against ? t.params.against.alias : 'baselines')}</td><td>${badge(t.status)}</td>` +
    `<td>${t.result ? badge(t.result.report.gate.passed ? 'passed' : 'failed') : ''}</td>` +
    `<td><button type="button" class="secondary" data-eval="${esc(t.id)}">Open</button></td></tr>`).join('');
  $('evals').querySelectorAll('button[data-eval]').forEach(b => b.onclick = () => { state.evalId = b.dataset.eval; state.evalShown = null; loadEval(); });
  if (state.evalId) await loadEval();
}
function reportHtml(t) {
  if (t.status === 'failed') return `<p>${badge('failed')} <span class="msg">${esc(t.error)}</span></p>`;
  if (t.status !== 'succeeded') return `<p>${badge(t.status)} evaluating ${esc(t.params.model)} …</p>`;
  const rep = t.result.report, gate = rep.gate, head = (rep.headline || []).slice(0, 4);
  const names = Object.keys(rep.candidates);
  let h = `<p class="verdict ${gate.passed ? 'passed' : 'failed'}" id="gate-verdict">Gate ${gate.passed ? 'PASSED' : 'FAILED'}</p>` +
    '<ul class="gate-rules">' + gate.rules.map(r => `<li>${badge(r.passed ? 'holds' : 'fails', r.passed ? 'ok' : 'bad')} ${esc(r.words || r.rule)}<br><span class="muted">${esc(r.message)}</span></li>`).join('') + '</ul>' +
    `<p class="muted">${rep.n} hold-out examples${t.params.n_reviewed ? ` (incl. ${t.params.n_reviewed} reviewed rows)` : ''}, task ${esc(rep.task)}</p>` +
    '<div class="scroll"><table class="eval-table"><thead><tr><th>metric</th>' + names.map(n => `<th>${esc(n)}</th>`).join('') + '</tr></thead><tbody>' +
    head.map(k => `<tr><th>${esc(k)}</th>` + names.map(n => `<td>${num(metric(rep.candidates[n], k))}</td>`).join('') + '</tr>').join('') + '</tbody></table></div>';
  return h;
}
function metric(c, path) { let n = c.metrics; for (const p of path.split('.')) { if (!n || typeof n !== 'object') return ''; n = n[p]; } return n ?? ''; }
async function loadEval() {
  const t = await api('/v1/tunesmith/evaluations/' + state.evalId);
  $('eval-id').textContent = t.id;
  $('eval-view').innerHTML = reportHtml(t);
  if (t.status === 'succeeded' && state.evalShown !== t.id) {
    state.evalShown = t.id;
    const html = await api(`/v1/tunesmith/evaluations/${t.id}/report.html`);
    $('eval-html').srcdoc = html;
  }
  return t;
}

// ------------------------------------------------------------------ 4 promote
async function loadPromote() {
  const [models, aliases, evals] = await Promise.all([api('/v1/models'), loadAliases(), api('/v1/tunesmith/evaluations')]);
  const chat = models.data.filter(m => m.id !== 'minilm' && !m.id.includes(':ckpt-step-'));
  fill($('alias-model'), chat.map(m => [m.id, m.id]), true);
  fillEvals(evals.data);
  const name = $('alias-name').value.trim();
  $('audit-alias').textContent = name;
  if (!name) return;
  const hist = await api(`/v1/tunesmith/aliases/${encodeURIComponent(name)}/history`).catch(() => ({data: []}));
  $('audit').tBodies[0].innerHTML = hist.data.map(e => `<tr><td>${when(e.at)}</td><td>${esc(e.action)}</td><td class="msg">${esc(e.model)}</td>` +
    `<td class="msg">${esc(e.previous || '')}</td><td>${esc(e.actor)}</td><td>${e.gate_passed === null ? '' : badge(e.gate_passed ? 'passed' : 'failed')}</td>` +
    `<td class="msg">${esc(e.override_reason || '')}</td></tr>`).join('') || '<tr><td colspan="7" class="muted">no moves yet</td></tr>';
}
function fillEvals(evals) {
  const model = $('alias-model').value;
  const mine = evals.filter(t => t.params.model === model && t.status === 'succeeded');
  fill($('alias-eval'), [['', '(none: override)'], ...mine.map(t => [t.id, `${t.id} gate ${t.result.report.gate.passed ? 'passed' : 'FAILED'}`])], true);
}
$('alias-model').addEventListener('change', async () => fillEvals((await api('/v1/tunesmith/evaluations')).data));
$('alias-name').addEventListener('change', loadPromote);
async function moveAlias(name, model, evaluationId, reason) {
  const body = {model};
  if (evaluationId) body.evaluation_id = evaluationId;
  if (reason) body.override_reason = reason;
  return api(`/v1/tunesmith/aliases/${encodeURIComponent(name)}`, {json: body});
}
$('alias-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const name = $('alias-name').value.trim();
  const r = await act(() => moveAlias(name, $('alias-model').value, $('alias-eval').value, $('override-reason').value.trim()));
  $('promote-msg').innerHTML = r ? `<p>${badge('moved', 'ok')} ${esc(name)} → ${esc(r.model)}${r.event.override_reason ? ' (override recorded)' : ' (gate passed)'}</p>` : `<p class="msg bad">${esc($('status').textContent)}</p>`;
  await loadPromote();
});
$('alias-rollback').addEventListener('click', async () => {
  const name = $('alias-name').value.trim();
  const r = await act(() => api(`/v1/tunesmith/aliases/${encodeURIComponent(name)}/rollback`, {method: 'POST'}));
  $('promote-msg').innerHTML = r ? `<p>${badge('rolled back', 'ok')} ${esc(name)} → ${esc(r.model)}</p>` : `<p class="msg bad">${esc($('status').textContent)}</p>`;
  await loadPromote();
});
$('try-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  $('try-answer').textContent = '…';
  const r = await act(() => api('/v1/chat/completions', {json: {model: $('alias-name').value.trim(),
    messages: [{role: 'user', content: $('try-text').value}], max_tokens: 24, temperature: 0}}));
  $('try-answer').textContent = r ? `${r.model} answered: ${r.choices[0].message.content || '(an empty answer)'}` : '';
});

// ------------------------------------------------------------------ 5 review
function stamp(v) { return v ? String(new Date(v).getTime() / 1000) : null; }
async function loadReview() {
  const q = new URLSearchParams();
  const add = (k, v) => { if (v !== null && v !== '') q.set(k, v); };
  add('model', $('f-model').value.trim()); add('since', stamp($('f-since').value)); add('until', stamp($('f-until').value));
  add('max_confidence', $('f-maxconf').value); add('grader', $('f-grader').value.trim()); add('max_score', $('f-maxscore').value);
  add('reviewed', $('f-reviewed').value);
  const [logs, items, models] = await Promise.all([api('/v1/tunesmith/review/logs?' + q), api('/v1/tunesmith/review/items'), api('/v1/models')]);
  const others = models.data.filter(m => m.id !== 'minilm' && !m.id.includes(':ckpt-step-')).map(m => [m.id, m.id]);
  const open = document.activeElement && document.activeElement.closest('.log') ? document.activeElement.closest('.log').dataset.log : null;
  if (!open) $('review-list').innerHTML = logs.data.map(l => logCard(l, others)).join('') || '<p class="muted">No logged requests match (the server logs requests with --log-requests).</p>';
  wireLogs(logs.data);
  $('review-version').textContent = `version ${items.version}`;
  $('review-items').tBodies[0].innerHTML = items.data.map(i => `<tr><td>${i.seq}</td><td>#${i.log_id}</td><td>${esc(i.kind)}</td>` +
    `<td class="msg">${esc(JSON.stringify(i.row))}</td><td>${i.pii.map(k => badge(k, 'warn')).join(' ')}</td><td>${esc(i.actor)}</td></tr>`).join('') ||
    '<tr><td colspan="6" class="muted">nothing reviewed yet</td></tr>';
  fill($('retrain-model'), BASES.map(b => [b, b]), true);
  await loadRetrain();
}
function logCard(l, models) {
  const conv = l.messages.map(m => `<div class="msg"><b>${esc(m.role)}:</b> ${esc(m.content)}</div>`).join('');
  const scores = Object.entries(l.scores).map(([k, v]) => badge(`${k} ${v.toFixed(2)}`, k === 'confidence' && v < 0.5 ? 'warn' : '')).join(' ');
  return `<article class="log" data-log="${l.id}" aria-label="logged request ${l.id}">
    <div>#${l.id} ${when(l.created_at)} · <b>${esc(l.model)}</b>${l.served_by !== l.model ? ` (${esc(l.served_by)})` : ''} ${scores}
    ${l.pii.length ? badge('PII masked: ' + l.pii.join(', '), 'warn') : ''} ${l.reviewed.map(k => badge('reviewed ' + k, 'ok')).join(' ')}</div>
    ${conv}<div class="msg"><b>answer:</b> <span class="answer">${esc(l.response)}</span></div>
    <label class="f" for="fix-${l.id}">Corrected answer<textarea id="fix-${l.id}">${esc(l.response)}</textarea></label>
    <div class="row"><button type="button" data-correct="${l.id}">Save correction (SFT row)</button>
    <label class="f" for="alt-model-${l.id}">Second answer from<select id="alt-model-${l.id}">${models.map(([v, t]) => `<option value="${esc(v)}">${esc(t)}</option>`).join('')}</select></label>
    <button type="button" class="secondary" data-alt="${l.id}">Show two answers side by side</button></div>
    <div class="side" id="pair-${l.id}" hidden></div></article>`;
}
function wireLogs(logs) {
  for (const l of logs) {
    const c = document.querySelector(`button[data-correct="${l.id}"]`), a = document.querySelector(`button[data-alt="${l.id}"]`);
    if (c) c.onclick = async () => {
      const r = await act(() => api(`/v1/tunesmith/review/logs/${l.id}/correct`, {json: {answer: $('fix-' + l.id).value}}), `log #${l.id}: correction saved`);
      if (r) { document.activeElement.blur(); await loadReview(); }
    };
    if (a) a.onclick = async () => {
      const alt = await act(() => api(`/v1/tunesmith/review/logs/${l.id}/alternative`, {json: {model: $('alt-model-' + l.id).value, temperature: 1}}));
      if (!alt) return;
      const box = $('pair-' + l.id); box.hidden = false;
      box.innerHTML = `<div class="card"><b>A: logged answer</b><div class="msg">${esc(l.response)}</div><button type="button" data-pick="a">A is better</button></div>` +
        `<div class="card"><b>B: ${esc(alt.model)}</b><div class="msg">${esc(alt.masked)}</div><button type="button" data-pick="b">B is better</button></div>`;
      box.querySelectorAll('button[data-pick]').forEach(b => b.onclick = async () => {
        const [chosen, rejected] = b.dataset.pick === 'a' ? [l.response, alt.text] : [alt.text, l.response];
        const r = await act(() => api(`/v1/tunesmith/review/logs/${l.id}/prefer`, {json: {chosen, rejected}}), `log #${l.id}: preference pair saved`);
        if (r) { document.activeElement.blur(); await loadReview(); }
      });
    };
  }
}
$('review-filters').addEventListener('submit', ev => { ev.preventDefault(); loadReview(); });
$('review-score').addEventListener('click', async () => {
  const t = await act(() => api('/v1/tunesmith/review/score', {method: 'POST'}), 'scoring confidence in the background');
  if (!t) return;
  for (let i = 0; i < 600; i++) {  // the task's outcome, then the list again (with the scores)
    const s = await api('/v1/tunesmith/tasks/' + t.id);
    if (s.status === 'succeeded') { say(`confidence scored for ${s.result.scored} answer(s)`); await loadReview(); return; }
    if (s.status === 'failed') { say('error: scoring failed: ' + s.error, true); return; }
    await new Promise(r => setTimeout(r, 1000));
  }
});
for (const kind of ['sft', 'dpo']) {
  $('export-' + kind).addEventListener('click', async () => {
    const text = await act(() => api('/v1/tunesmith/review/export?kind=' + kind, {raw: true}));
    const box = $('export-view'); box.hidden = false;
    box.textContent = text ? `${text.trim().split('\n').filter(Boolean).length} ${kind} line(s):\n${text}` : '(none)';
  });
}
$('retrain-form').addEventListener('submit', async ev => {
  ev.preventDefault();
  const r = await act(() => api('/v1/tunesmith/review/retrain', {json: {training_file: $('retrain-file').value, model: $('retrain-model').value}}));
  if (!r) return;
  state.retrainJob = r.job.id; state.retrainEval = null; state.retrainEvalPending = false; state.retrainOutcome = null; state.retrainHoldout = $('retrain-holdout').value;
  say(`retrain job ${r.job.id} on ${r.n_reviewed} reviewed row(s) (version ${r.reviewed_upto})`);
  await loadRetrain();
});
async function loadRetrain() {
  if (!state.retrainJob) return;
  const job = await api('/v1/fine_tuning/jobs/' + state.retrainJob);
  let h = `<p>Retrain job ${esc(job.id)} ${badge(job.status)} ${esc(job.fine_tuned_model || '')}</p>`;
  if (job.status === 'succeeded' && !state.retrainEval && !state.retrainEvalPending) {
    state.retrainEvalPending = true;  // the poll and a click may both get here
    const aliases = (await api('/v1/tunesmith/aliases')).data;
    if (aliases.some(a => a.name === 'prod')) {
      const t = await act(() => api('/v1/tunesmith/evaluations', {json: {job_id: job.id, holdout_file: state.retrainHoldout || $('retrain-holdout').value, against: 'prod', include_reviewed: true}}), 'comparing with prod');
      if (t) state.retrainEval = t.id; else state.retrainEvalPending = false;
    } else { h += '<p>No prod alias yet: promote a model first.</p>'; state.retrainEvalPending = false; }
  }
  if (state.retrainEval) {
    const t = await api('/v1/tunesmith/evaluations/' + state.retrainEval);
    h += `<h3>Compared with prod (hold-out + reviewed rows)</h3><div id="retrain-report">${reportHtml(t)}</div>`;
    if (t.status === 'succeeded') {
      const passed = t.result.report.gate.passed;
      h += `<div class="row"><button type="button" id="retrain-promote" ${passed ? '' : 'disabled'}>Promote ${esc(job.fine_tuned_model)} to prod</button>` +
        `<button type="button" id="retrain-keep" class="secondary">Keep the current prod</button></div>`;
    }
  }
  $('retrain-view').innerHTML = h + (state.retrainOutcome ? `<p id="retrain-outcome">${state.retrainOutcome}</p>` : '');
  const p = $('retrain-promote'), k = $('retrain-keep');
  if (p) p.onclick = async () => {
    const r = await act(() => moveAlias('prod', job.fine_tuned_model, state.retrainEval, ''), 'prod moved');
    if (r) { state.retrainOutcome = `${badge('promoted', 'ok')} prod → ${esc(r.model)}`; await loadRetrain(); }
  };
  if (k) k.onclick = () => { state.retrainOutcome = `${badge('kept', 'ok')} prod unchanged`; loadRetrain(); };
}

// ------------------------------------------------------------------ polling
async function refresh() {
  try {
    if (state.page === 'data') await loadFiles();
    if (state.page === 'train') { await loadFiles(); await loadJobs(); await loadJob(); }
    if (state.page === 'evaluate') { await loadFiles(); await loadJobs(); await loadAliases(); await loadEvals(); }
    if (state.page === 'promote') await loadPromote();
    if (state.page === 'review') { await loadFiles(); await loadReview(); }
    if ($('status').textContent.startsWith('error: API key') || $('status').textContent.includes('401')) say('');
  } catch (e) { say('error: ' + e.message + (keyBox.value ? '' : ' (type the API key at the top)'), true); }
}
fill($('check-model'), BASES.map(b => [b, b]));
fill($('train-model'), BASES.map(b => [b, b]));
setInterval(() => { if (!document.hidden && !['review', 'data'].includes(state.page)) refresh(); else if (state.page === 'review' && state.retrainJob) loadRetrain().catch(() => {}); }, 1500);
show((location.hash || '#data').slice(1).split('?')[0] || 'data');
