// The viewports: which are on (the layout), which is active, and which series each shows.

import { $, ENGINE_ID, app } from './app.js';
import { describe } from './loader.js';
import { hideMessage, onImageFailed, refresh, stopCine, updateSlider } from './stack.js';

const LAYOUT_SIZE = { '1x1': 1, '1x2': 2, '2x2': 4 };

export function enableSlot(slot) {
  if (slot.enabled) return;
  app.engine.enableElement({
    viewportId: slot.id,
    type: app.cs.Enums.ViewportType.STACK,
    element: slot.element,
    defaultOptions: { background: [0, 0, 0] },
  });
  app.group.addViewport(slot.id, ENGINE_ID);
  slot.enabled = true;
}

function disableSlot(slot) {
  if (!slot.enabled) return;
  stopCine(slot);
  slot.savedIndex = app.viewport(slot.index).getCurrentImageIdIndex();
  app.group.removeViewports(ENGINE_ID, slot.id);
  app.engine.disableElement(slot.id);
  slot.enabled = false;
}

export async function showSeries(slot, series, index = 0) {
  if (!series) return;
  if (!slot.enabled) {
    // Picked in the strip while the library is still loading (the first viewport isn't on
    // yet): shown first once it has.
    if (!app.slots[0].enabled) slot.picked = series;
    return;
  }
  stopCine(slot);
  slot.series = series;
  slot.wanted = Math.min(index, series.imageIds.length - 1);
  hideMessage(slot);
  markShownSeries();
  showDropHints();
  app.prefetcher.add(series, { first: true });
  await drawStack(slot, series, slot.wanted);
}

async function drawStack(slot, series, index) {
  const viewport = app.viewport(slot.index);
  try {
    await viewport.setStack(series.imageIds, index);
    viewport.render();
  } catch (error) {
    onImageFailed(series, viewport.getCurrentImageId(), describe(error));
  }
  refresh(slot);
}

/** An empty viewport of a 1x2 or 2x2 layout says how to fill it. */
function showDropHints() {
  app.slots.forEach((slot) => {
    slot.cell.querySelector('.vw-drop-hint').hidden = !(slot.enabled && !slot.series);
  });
}

function markShownSeries() {
  const shown = new Set(app.slots.filter((s) => s.enabled && s.series).map((s) => s.series.id));
  app.allSeries().forEach((s) => s.button?.classList.toggle('is-shown', shown.has(s.id)));
}

export function setActive(slot) {
  app.active = slot.index;
  app.slots.forEach((s) => s.cell.classList.toggle('is-active', s === slot));
  updateSlider();
}

export function setLayout(name) {
  app.layout = name;
  $('layout').value = name;
  $('grid').className = `vw-grid layout-${name}`;
  const size = LAYOUT_SIZE[name];
  app.slots.forEach((slot) => { if (slot.index >= size) disableSlot(slot); });
  const unshown = app.allSeries().filter((s) => !app.slots.some((slot) => slot.series === s));
  for (const slot of app.slots.slice(0, size)) {
    if (slot.enabled) continue;
    enableSlot(slot);
    // Like a workstation: a new viewport shows the next series not yet on screen.
    const series = slot.series || unshown.shift();
    if (series) showSeries(slot, series, slot.series ? slot.savedIndex : 0);
  }
  if (app.active >= size) setActive(app.slots[0]);
  showDropHints();
  // Viewports changed size: fit each image again, as a workstation does on a new layout.
  app.engine.resize(true, false);
}

/**
 * Whether the viewport just drew an image of the series it showed before `slot.series`, and if
 * so, draw the right one. It happens when a series is picked while the one before is still
 * loading its image: Cornerstone's CPU renderer (phones without WebGL, headless browsers)
 * checks only the index of an image that arrives, so the earlier series' image, arriving last,
 * is drawn under the picked series' overlay.
 */
export function drewAnEarlierSeries(slot, { imageId, imageIdIndex }) {
  if (!slot.series || slot.series.imageIds[imageIdIndex] === imageId) return false;
  // After Cornerstone has finished drawing the stray image (this event comes before that).
  setTimeout(() => {
    if (slot.enabled && slot.series) drawStack(slot, slot.series, app.wantedIndex(slot));
  });
  return true;
}
