// What is drawn around the images: the corner text, the DICOM tag panel, and the test hook.

import { app } from './app.js';
import { clearMeasurements, measurements, windowOf } from './tools.js';

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
  let zoom = '';
  try {
    zoom = `Zoom ${round(viewport.getZoom(), 2)}×`;
  } catch (error) {
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

// --- test hook: numbers a browser test can compare with pydicom's decode -----------------------

function pixelStats(image) {
  const data = image.getPixelData();
  const pixels = image.rows * image.columns;
  const components = Math.max(1, Math.round(data.length / pixels));
  // Scaled by the loader (rescale slope/intercept) unless it says otherwise.
  const scaled = Boolean(image.preScale?.scaled);
  const slope = scaled ? 1 : image.slope ?? 1;
  const intercept = scaled ? 0 : image.intercept ?? 0;
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let count = 0;
  const used = Math.min(components, 3); // RGB, never the alpha
  for (let p = 0; p < pixels; p += 1) {
    for (let c = 0; c < used; c += 1) {
      const value = data[p * components + c] * slope + intercept;
      if (value < min) min = value;
      if (value > max) max = value;
      sum += value;
      count += 1;
    }
  }
  return { min, max, sum, mean: sum / count, count, components, color: Boolean(image.color), scaled };
}

/** Every value of the image on screen, as the renderer gets them, for a test to compare with
 * pydicom's decode value by value: the typed array's bytes (base64), its type, and what the
 * renderer still applies to them (rescale, modality LUT) unless the loader already did. */
function pixelValues(image) {
  // The voxel manager's array is what the renderer draws (the CPU renderer swaps in a 16-bit
  // copy of floating-point pixels, with a slope and intercept of its own).
  const data = image.voxelManager?.getScalarData?.() ?? image.getPixelData();
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  const lut = image.modalityLUT;
  return {
    type: data.constructor.name,
    base64: btoa(binary),
    rows: image.rows,
    columns: image.columns,
    color: Boolean(image.color),
    scaled: Boolean(image.preScale?.scaled),
    slope: image.slope ?? 1,
    intercept: image.intercept ?? 0,
    modalityLUT: lut ? { firstValueMapped: lut.firstValueMapped, lut: Array.from(lut.lut) } : null,
    invert: Boolean(image.invert),
  };
}

function canvasStats(element) {
  const canvas = element.querySelector('canvas');
  if (!canvas) return null;
  const probe = document.createElement('canvas');
  probe.width = canvas.width;
  probe.height = canvas.height;
  const context = probe.getContext('2d');
  context.drawImage(canvas, 0, 0);
  const { data } = context.getImageData(0, 0, probe.width, probe.height);
  let lit = 0;
  const levels = new Set();
  for (let i = 0; i < data.length; i += 4) {
    const level = data[i] + data[i + 1] + data[i + 2];
    if (level > 15) lit += 1;
    if (levels.size < 300) levels.add(level);
  }
  return { width: probe.width, height: probe.height, lit, distinct: levels.size };
}

export function installTestHook(cs, viewer) {
  window.viewerTestHook = {
    state(which = viewer.active) {
      const slot = viewer.slots[which];
      const viewport = viewer.viewport(which);
      if (!slot || !viewport || !slot.series) return { ready: false };
      const image = viewport.getCornerstoneImage?.();
      const index = viewer.wantedIndex(slot);
      const wanted = slot.series.imageIds[index];
      const shown = Boolean(image && image.imageId === wanted);
      return {
        // Loaded and on the canvas: the viewport's last draw was of this very image.
        ready: shown && slot.drawn === wanted,
        index,
        count: slot.series.imageIds.length,
        seriesId: slot.series.id,
        voi: windowOf(cs, viewport),
        zoom: viewport.getZoom(),
        pan: viewport.getPan(),
        renderer: viewport.useCPURendering ? 'cpu' : 'gpu',
        error: slot.message.hidden ? null : slot.message.textContent,
        stats: shown ? pixelStats(image) : null,
      };
    },
    pixels(which = viewer.active) {
      const image = viewer.viewport(which)?.getCornerstoneImage?.();
      return image ? pixelValues(image) : null;
    },
    canvas(index = viewer.active) {
      return canvasStats(viewer.slots[index].element);
    },
    measurements: () => measurements(cs),
    selectedMeasurements: () => (cs.annotation.selection.getAnnotationsSelected() || []).length,
    // Whether a measurement is still being drawn (an angle waits for its third point).
    drawing: () => Object.values(viewer.group._toolInstances).some((tool) => tool.isDrawing),
    clearMeasurements() {
      clearMeasurements(cs);
      viewer.slots.forEach((slot) => viewer.viewport(slot.index)?.render());
    },
    progress: () => viewer.allSeries().map((s) => ({
      id: s.id, loaded: s.loaded, failed: s.failed, total: s.imageIds.length,
    })),
    // What a test that waited in vain for a series reports: each image of it not yet loaded,
    // whether the background loader still has it queued, and whether a load of it has begun.
    waiting(seriesId) {
      const series = viewer.allSeries().find((s) => s.id === seriesId);
      const { prefetcher } = app;
      return (series?.imageIds || [])
        .filter((id) => !prefetcher.loaded.has(id))
        .map((id) => ({
          image: id.slice(-60),
          failed: prefetcher.failed.get(id) || null,
          queued: prefetcher.queue.some(([s, i]) => s.imageIds[i] === id),
          loading: Boolean(cs.cache.getImageLoadObject(id)),
        }));
    },
  };
}
