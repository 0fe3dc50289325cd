// The "Add studies" page: walk what the patient picked, upload one file per request, four at a
// time, show progress and a result per file, then a summary grouped by study.

const PARALLEL = 4;
const $ = (id) => document.getElementById(id);
const form = $('upload-form');
const uploadUrl = form.dataset.uploadUrl;
const maxFileBytes = Number(form.dataset.maxFileBytes);
const csrfToken = form.querySelector('input[name=csrfmiddlewaretoken]').value;
const attachSelect = $('attach-to');
const progressPanel = $('progress-panel');
const progressBar = $('progress-bar');
const progressText = $('progress-text');
const progressTitle = $('progress-title');
const retryButton = $('retry-button');
const resultList = $('file-results');

// Programs and autorun files from the disc: no need to send them at all.
const SKIP_LOCALLY = /\.(exe|dll|msi|jar|bat|cmd|ocx|sys|cab)$/i;
const OUTCOME_LABEL = {
  stored: 'Stored', duplicate: 'Already in your vault', conflict: 'Stored (check)',
  document: 'Kept as a document', skipped: 'Skipped', rejected: 'Not added', error: 'Failed',
};

const queue = [];
let failed = [];
let active = 0;
const totals = { files: 0, bytes: 0, doneFiles: 0, doneBytes: 0 };
const inFlightBytes = new Map();
const studies = new Map();
const counts = {};

function humanBytes(n) {
  if (n < 1024 * 1024) return Math.max(1, Math.round(n / 1024)) + ' KB';
  if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + ' MB';
  return (n / 1024 / 1024 / 1024).toFixed(2) + ' GB';
}

function addFiles(entries) {
  // entries: [{file, path}]
  for (const entry of entries) {
    if (SKIP_LOCALLY.test(entry.file.name)) {
      showResult({ file: entry.path, outcome: 'skipped', message: "A viewer program from the disc; you don't need it here." });
      continue;
    }
    if (entry.file.size > maxFileBytes) {
      showResult({ file: entry.path, outcome: 'rejected', message: 'This file is larger than we accept for one file.' });
      continue;
    }
    queue.push(entry);
    totals.files += 1;
    totals.bytes += entry.file.size;
  }
  progressPanel.hidden = false;
  $('file-details').hidden = false;
  progressTitle.textContent = 'Adding your files…';
  window.addEventListener('beforeunload', warnBeforeLeaving);
  pump();
  render();
}

function warnBeforeLeaving(event) {
  if (active > 0 || queue.length > 0) {
    event.preventDefault();
    event.returnValue = '';
  }
}

function pump() {
  while (active < PARALLEL && queue.length > 0) {
    const entry = queue.shift();
    active += 1;
    send(entry).finally(() => {
      active -= 1;
      inFlightBytes.delete(entry);
      pump();
      render();
      if (active === 0 && queue.length === 0) finish();
    });
  }
}

function send(entry) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', uploadUrl);
    xhr.setRequestHeader('X-CSRFToken', csrfToken);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    // The name goes in a header, never the URL: CD file names can carry the patient's name.
    xhr.setRequestHeader('X-Upload-Filename', encodeURIComponent(entry.path));
    if (attachSelect && attachSelect.value) xhr.setRequestHeader('X-Attach-To-Study', attachSelect.value);
    xhr.upload.onprogress = (event) => {
      inFlightBytes.set(entry, event.loaded);
      render();
    };
    xhr.onload = () => {
      let results;
      try {
        results = JSON.parse(xhr.responseText).results;
      } catch {
        results = null; // not our JSON: a proxy's error page, say
      }
      if (!results) {
        results = [{ file: entry.path, outcome: 'error', message: kindHttpMessage(xhr.status) }];
      }
      const retryable = xhr.status === 503 || xhr.status >= 500;
      completed(entry, results, retryable);
      resolve();
    };
    xhr.onerror = () => {
      completed(entry, [{ file: entry.path, outcome: 'error', message: 'The connection dropped. Nothing was lost: try again.' }], true);
      resolve();
    };
    xhr.send(entry.file);
  });
}

function kindHttpMessage(status) {
  if (status === 403) return 'Your session has ended. Please log in again, then add the files again.';
  if (status === 413) return 'This file is larger than we accept for one file.';
  return 'Something went wrong on our side. Nothing was lost: try again.';
}

function completed(entry, results, retryable) {
  totals.doneFiles += 1;
  totals.doneBytes += entry.file.size;
  for (const result of results) {
    if (!result.file || result.file === entry.file.name) result.file = entry.path;
    showResult(result);
    if (result.study) noteStudy(result.study, result.study_created);
  }
  if (retryable) failed.push(entry);
}

function showResult(result) {
  counts[result.outcome] = (counts[result.outcome] || 0) + 1;
  const item = document.createElement('li');
  item.className = 'result result-' + result.outcome;
  const label = document.createElement('strong');
  label.textContent = (OUTCOME_LABEL[result.outcome] || result.outcome) + ': ';
  const name = document.createElement('span');
  name.className = 'result-name';
  name.textContent = result.file;
  const message = document.createElement('span');
  message.className = 'result-message';
  message.textContent = ' — ' + result.message;
  item.append(label, name, message);
  resultList.append(item);
  $('file-count').textContent = resultList.children.length;
}

function noteStudy(study, created) {
  const known = studies.get(study.id);
  studies.set(study.id, { ...study, isNew: created || (known && known.isNew) });
}

function render() {
  let sent = totals.doneBytes;
  for (const loaded of inFlightBytes.values()) sent += loaded;
  progressBar.max = Math.max(totals.bytes, 1);
  progressBar.value = Math.min(sent, totals.bytes);
  progressText.textContent =
    `${totals.doneFiles} of ${totals.files} files · ${humanBytes(sent)} of ${humanBytes(totals.bytes)}`;
}

function finish() {
  window.removeEventListener('beforeunload', warnBeforeLeaving);
  const stored = (counts.stored || 0) + (counts.conflict || 0);
  const parts = [];
  if (stored) parts.push(`${stored} new image${stored === 1 ? '' : 's'}`);
  if (counts.duplicate) parts.push(`${counts.duplicate} already in your vault`);
  if (counts.document) parts.push(`${counts.document} document${counts.document === 1 ? '' : 's'}`);
  if (counts.skipped) parts.push(`${counts.skipped} skipped`);
  if (counts.rejected) parts.push(`${counts.rejected} not added`);
  progressTitle.textContent = failed.length
    ? `Finished, but ${failed.length} file${failed.length === 1 ? '' : 's'} could not be saved.`
    : 'Finished.';
  progressText.textContent = parts.join(' · ') || 'Nothing to add.';
  retryButton.hidden = failed.length === 0;
  renderSummary();
}

/** Several studies labelled for someone else: one click keeps them all. */
function addKeepAll(list) {
  list.parentElement.querySelector('.label-warning-all')?.remove(); // from a summary before
  const warnings = list.querySelectorAll('.label-warning');
  if (warnings.length < 2) return;
  const keepAll = document.createElement('button');
  keepAll.type = 'button';
  keepAll.className = 'button-small';
  keepAll.textContent = 'Keep all';
  const bar = document.createElement('p');
  bar.className = 'label-warning-all';
  bar.append(`${warnings.length} studies are labelled for someone else. `, keepAll);
  keepAll.addEventListener('click', () => {
    list.querySelectorAll('.label-warning').forEach((warning) => warning.remove());
    bar.remove();
  });
  list.before(bar);
}

function renderSummary() {
  if (studies.size === 0) return;
  const list = $('summary-list');
  list.replaceChildren();
  for (const study of studies.values()) {
    const item = document.createElement('li');
    const link = document.createElement('a');
    link.href = `${form.dataset.vaultUrl}studies/${study.id}/`;
    const date = study.date ? new Date(study.date + 'T00:00:00').toLocaleDateString(undefined, { day: 'numeric', month: 'short', year: 'numeric' }) : 'date unknown';
    link.textContent = `${study.title}, ${date}`;
    const facts = document.createElement('span');
    facts.textContent = ` — ${study.series} series, ${study.images} image${study.images === 1 ? '' : 's'} — ${study.isNew ? 'new' : 'added to what you had'}`;
    item.append(link, facts);
    if (study.label_warning) {
      const warning = document.createElement('p');
      warning.className = 'label-warning';
      warning.textContent = study.label_warning + ' ';
      const keep = document.createElement('button');
      keep.type = 'button';
      keep.className = 'button-small';
      keep.textContent = 'Keep them';
      keep.addEventListener('click', () => warning.remove());
      const remove = document.createElement('a');
      remove.className = 'button button-small button-secondary';
      remove.href = `${form.dataset.vaultUrl}studies/${study.id}/delete/`;
      remove.textContent = 'Remove them';
      warning.append(keep, ' ', remove);
      item.append(warning);
    }
    list.append(item);
  }
  addKeepAll(list);
  $('summary-panel').hidden = false;
}

retryButton.addEventListener('click', () => {
  if (!failed.length) return; // nothing to try again (the button is hidden then)
  const again = failed;
  failed = [];
  totals.doneFiles -= again.length;
  totals.doneBytes -= again.reduce((sum, entry) => sum + entry.file.size, 0);
  queue.push(...again);
  retryButton.hidden = true;
  progressTitle.textContent = 'Trying again…';
  pump();
});

// --- picking and dropping ---------------------------------------------------------------
function fromInput(input) {
  const entries = Array.from(input.files, (file) => ({ file, path: file.webkitRelativePath || file.name }));
  input.value = '';
  addFiles(entries);
}
$('pick-folder').addEventListener('change', (event) => fromInput(event.target));
$('pick-files').addEventListener('change', (event) => fromInput(event.target));

const dropZone = $('drop-zone');
['dragenter', 'dragover'].forEach((type) =>
  dropZone.addEventListener(type, (event) => { event.preventDefault(); dropZone.classList.add('dragging'); }));
['dragleave', 'drop'].forEach((type) =>
  dropZone.addEventListener(type, () => dropZone.classList.remove('dragging')));
dropZone.addEventListener('drop', async (event) => {
  event.preventDefault();
  const roots = Array.from(event.dataTransfer.items || [])
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (roots.length === 0) {
    addFiles(Array.from(event.dataTransfer.files, (file) => ({ file, path: file.name })));
    return;
  }
  const entries = [];
  for (const root of roots) await walk(root, entries);
  addFiles(entries);
});

async function walk(entry, out) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    out.push({ file, path: entry.fullPath.replace(/^\//, '') });
    return;
  }
  const reader = entry.createReader();
  // readEntries returns at most 100 entries per call: keep reading until it returns none.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    for (const child of batch) await walk(child, out);
  }
}
