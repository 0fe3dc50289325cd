// One viewport's stack: moving through it, cine, its message, its overlay, and the slider that
// follows the active viewport.

import { $, app } from './app.js';
import { renderOverlay } from './panels.js';

// 410 Gone is the server's answer to a doctor whose share has ended (revoked, expired, locked).
const SHARE_ENDED = /answered 410/;
const SHARE_ENDED_TEXT = 'This share has ended: no more images can be loaded. If you still need them, please ask the patient for a new code.';

/** Show image `index` of a viewport's stack. */
export function go(slot, index) {
  const viewport = app.viewport(slot.index);
  if (!viewport || !slot.series) return;
  const next = Math.max(0, Math.min(slot.series.imageIds.length - 1, index));
  if (next === viewport.getCurrentImageIdIndex()) {
    // Already drawn (Cornerstone does nothing): only leave a failed image's message.
    slot.wanted = next;
    refresh(slot);
    return;
  }
  viewport.setImageIdIndex(next).catch(() => refresh(slot));
}

export function updateSlider() {
  const slot = app.activeSlot();
  const viewport = app.viewport(app.active);
  const slider = $('slider');
  if (!viewport || !slot.series) {
    slider.max = '0';
    $('image-count').textContent = '–';
    return;
  }
  const index = app.wantedIndex(slot);
  slider.max = String(slot.series.imageIds.length - 1);
  slider.value = String(index);
  $('image-count').textContent = `${index + 1} / ${slot.series.imageIds.length}`;
  $('cine').setAttribute('aria-pressed', String(slot.playing));
}

export function stopCine(slot) {
  if (slot.playing) app.cs.cine.stopClip(slot.element);
  slot.playing = false;
}

export function showMessage(slot, text) {
  slot.message.textContent = text;
  slot.message.hidden = false;
}

export function hideMessage(slot) {
  slot.message.hidden = true;
}

/** An image of `series` could not be shown: say so where it matters. */
export function onImageFailed(series, imageId, reason) {
  if (SHARE_ENDED.test(reason)) app.shareEnded = true;
  app.slots.forEach((slot) => {
    if (slot.enabled && (slot.series === series || app.shareEnded)) refresh(slot);
  });
  console.warn(`Image ${imageId} could not be shown: ${reason}`);
}

/** Overlay, error message and slider of one viewport, after anything changed in it. */
export function refresh(slot) {
  const viewport = app.viewport(slot.index);
  if (!viewport || !slot.series) return;
  const index = app.wantedIndex(slot);
  const reason = app.prefetcher.failed.get(slot.series.imageIds[index]);
  if (app.shareEnded && slot.index === app.active) {
    showMessage(slot, SHARE_ENDED_TEXT);
  } else if (reason) {
    const n = index + 1;
    // A file the server or the network didn't deliver is not one that was corrupt: say which.
    const fetching = /answered \d{3}|failed to fetch|network/i.test(reason);
    const what = fetching ? "couldn't be fetched" : "couldn't be decoded";
    showMessage(slot, `Image ${n} of this series can't be shown: its file ${what} (${reason}). The other images still work.`);
  } else {
    hideMessage(slot);
  }
  renderOverlay(app.cs, slot, viewport, index);
  if (slot.index === app.active) updateSlider();
}
