// Comparing with another study: load its series, put the best match beside the current one,
// and scroll the two together (a PACS "link").

import { $, app, fetchJson } from './app.js';
import { nearestIndex, samePlane } from './geometry.js';
import { go, showMessage } from './stack.js';
import { addStudy } from './strip.js';
import { setLayout, showSeries } from './viewports.js';

function positionOf(slot) {
  const index = app.wantedIndex(slot);
  return slot.series.positions[index] ?? index;
}

/** Turn linking on: remember how far apart the viewports are now, and keep them that far. */
export function link(on) {
  app.linked = on;
  $('sync').setAttribute('aria-pressed', String(on));
  const anchor = app.activeSlot();
  if (!on || !anchor.series) return;
  for (const slot of shownSlots()) {
    // Same study: same patient coordinates, so the same position. A prior: keep today's offset.
    const sameFrame = slot.series.study === anchor.series.study && slot.series.positions[0] != null;
    slot.offset = sameFrame ? 0 : positionOf(slot) - positionOf(anchor);
  }
  anchor.offset = 0;
}

let following = false;

/** The linked viewports follow `source` to the image nearest its position. */
export function followSlice(source) {
  if (following || !source.series) return;
  following = true;
  try {
    const target = positionOf(source) - (source.offset || 0);
    for (const slot of shownSlots()) {
      if (slot === source || !samePlane(slot.series, source.series)) continue;
      const want = target + (slot.offset || 0);
      const index = nearestIndex(slot.series.positions, want);
      if (index !== app.wantedIndex(slot)) go(slot, index);
    }
  } finally {
    following = false;
  }
}

function shownSlots() {
  return app.slots.filter((slot) => slot.enabled && slot.series);
}

export function fillCompareMenu(comparisons) {
  if (!comparisons.length) return;
  const select = $('compare');
  for (const other of comparisons) {
    const option = document.createElement('option');
    option.value = other.images_url;
    option.textContent = `${other.date || 'Undated'} · ${other.title}`;
    select.append(option);
  }
  $('compare-wrap').hidden = false;
}

export async function compareWith(url) {
  let data;
  try {
    data = await fetchJson(url);
  } catch {
    showMessage(app.slots[1], "The other study couldn't be opened. Please try again.");
    return;
  }
  if (!app.studies.some((s) => s.id === data.study.id)) addStudy(data);
  const current = app.activeSlot().series;
  const candidates = data.series.map((s) => app.seriesById.get(s.id)).filter((s) => s?.imageIds.length);
  // The prior series most like the one on screen: same modality and plane, then the same name.
  const score = (s) => (current && s.modality === current.modality ? 2 : 0)
    + (current && samePlane(s, current) ? 2 : 0)
    + (current && s.description === current.description ? 1 : 0);
  candidates.sort((a, b) => score(b) - score(a));
  if (app.layout === '1x1') setLayout('1x2');
  const slot = app.slots[app.active === 0 ? 1 : 0];
  if (candidates[0]) await showSeries(slot, candidates[0]);
  candidates.forEach((s) => app.prefetcher.add(s));
  link(true);
}
