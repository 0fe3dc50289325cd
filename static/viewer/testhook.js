// Numbers a browser test compares with pydicom's decode: the pixels of the image on screen,
// what the canvas shows, the measurements, the loading progress. viewer.js imports this module
// only when the page says so (settings.PHR_VIEWER_TEST_HOOK, which the browser tests turn on):
// the viewer in use never loads it.

import { app } from './app.js';
import { clearMeasurements, measurements, windowOf } from './tools.js';

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

/** Install `window.viewerTestHook`, once the viewer has started. */
export function install() {
  const { cs } = app;
  window.viewerTestHook = {
    state(which = app.active) {
      const slot = app.slots[which];
      const viewport = app.viewport(which);
      if (!slot || !viewport || !slot.series) return { ready: false };
      const image = viewport.getCornerstoneImage?.();
      const index = app.wantedIndex(slot);
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
    pixels(which = app.active) {
      const image = app.viewport(which)?.getCornerstoneImage?.();
      return image ? pixelValues(image) : null;
    },
    canvas(index = app.active) {
      return canvasStats(app.slots[index].element);
    },
    measurements: () => measurements(cs),
    selectedMeasurements: () => (cs.annotation.selection.getAnnotationsSelected() || []).length,
    // Whether a measurement is still being drawn (an angle waits for its third point).
    drawing: () => Object.values(app.group._toolInstances).some((tool) => tool.isDrawing),
    clearMeasurements() {
      clearMeasurements(cs);
      app.slots.forEach((slot) => app.viewport(slot.index)?.render());
    },
    progress: () => app.allSeries().map((s) => ({
      id: s.id, loaded: s.loaded, failed: s.failed, total: s.imageIds.length,
    })),
    // What a test that waited in vain for a series reports: each image of it not yet loaded,
    // whether the background loader still has it queued, and whether a load of it has begun.
    waiting(seriesId) {
      const series = app.allSeries().find((s) => s.id === seriesId);
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
