// What is drawn around the images: the corner text and the DICOM tag panel.

import { windowOf } from './tools.js';

function round(value, digits = 0) {
  return Number.isFinite(value) ? Number(value.toFixed(digits)).toString() : '–';
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "12 Mar 2024", as the page title shows it. Not toLocaleDateString: its first call loads
 * the browser's locale data, tens of milliseconds before the first image can be drawn. */
function formatDate(iso) {
  const [year, month, day] = (iso || '').split('-').map(Number);
  if (!year || !month || !day) return '';
  return `${day} ${MONTHS[month - 1]} ${year}`;
}

/** The four corners of one viewport: who, what, where in the stack, how it is windowed. */
export function renderOverlay(cs, slot, viewport, index) {
  const corners = slot.overlay;
  const series = slot.series;
  if (!series || !viewport) {
    Object.values(corners).forEach((node) => { node.textContent = ''; });
    return;
  }
  const total = series.imageIds.length;
  const image = series.imageInfo[index] || {};
  corners.tl.textContent = [series.study.patient, formatDate(series.study.date), series.study.title]
    .filter(Boolean).join('\n');
  const frame = image.frames > 1 ? `  Fr ${image.frame}/${image.frames}` : '';
  corners.tr.textContent = `${series.modality || ''} ${series.description}\nIm ${index + 1}/${total}${frame}`;
  const win = windowOf(cs, viewport);
  corners.bl.textContent = win ? `W ${round(win.width)} L ${round(win.center)}` : '';
  let zoom;
  try {
    zoom = `Zoom ${round(viewport.getZoom(), 2)}×`;
  } catch {
    zoom = '';
  }
  const size = image.rows ? `${image.columns}×${image.rows}` : '';
  corners.br.textContent = [zoom, size].filter(Boolean).join('\n');
}

/** The tag panel: fetched from the server (pydicom names every tag) for the shown image. */
export async function loadTags(url, table, filter) {
  table.textContent = 'Loading…';
  let rows;
  try {
    const response = await fetch(url, { headers: { Accept: 'application/json' } });
    if (!response.ok) throw new Error(String(response.status));
    rows = (await response.json()).tags;
  } catch (error) {
    table.textContent = "The tags of this image couldn't be read. Please try again.";
    return;
  }
  const tbody = document.createElement('tbody');
  for (const row of rows) {
    const tr = document.createElement('tr');
    const tag = document.createElement('td');
    tag.textContent = `${'› '.repeat(row.depth)}(${row.tag})`;
    const name = document.createElement('td');
    name.textContent = row.name;
    const vr = document.createElement('span');
    vr.className = 'vr';
    vr.textContent = ` ${row.vr}`;
    name.append(vr);
    const value = document.createElement('td');
    value.textContent = row.value;
    tr.append(tag, name, value);
    tr.dataset.search = `${row.tag} ${row.name} ${row.value}`.toLowerCase();
    tbody.append(tr);
  }
  const element = document.createElement('table');
  element.append(tbody);
  table.replaceChildren(element);
  applyTagFilter(table, filter.value);
}

export function applyTagFilter(table, text) {
  const needle = text.trim().toLowerCase();
  table.querySelectorAll('tr').forEach((tr) => {
    tr.hidden = needle !== '' && !tr.dataset.search.includes(needle);
  });
}
