// Comparing with another study: load its series, put the best match beside the current one,
// and scroll the two together (a PACS "link").

import { $, app, fetchJson } from './app.js';
import { go } from './controls.js';

const viewer = app;

function normalOf(series) {
  const o = series.orientation;
  if (!o || o.length !== 6) return null;
  return [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
}

export function samePlane(a, b) {
  const na = normalOf(a);
  const nb = normalOf(b);
  if (!na || !nb) return a.modality === b.modality;
  return Math.abs(na[0] * nb[0] + na[1] * nb[1] + na[2] * nb[2]) > 0.9;
}

function positionOf(slot) {
  const index = app.wantedIndex(slot);
  return slot.series.positions[index] ?? index;
}

/** Turn linking on: remember how far apart the viewports are now, and keep them that far. */
export function link(on) {
  viewer.linked = on;
  $('sync').setAttribute('aria-pressed', String(on));
  const anchor = viewer.slots[viewer.active];
  if (!on || !anchor.series) return;
  for (const slot of shownSlots()) {
    // Same study: same patient coordinates, so the same position. A prior: keep today's offset.
    const sameFrame = slot.series.study === anchor.series.study && slot.series.positions[0] != null;
    slot.offset = sameFrame ? 0 : positionOf(slot) - positionOf(anchor);
  }
  anchor.offset = 0;
}

let following = false;

export function followSlice(source) {
  if (following || !source.series) return;
  following = true;
  try {
    const target = positionOf(source) - (source.offset || 0);
    for (const slot of shownSlots()) {
      if (slot === source || !samePlane(slot.series, source.series)) continue;
      const want = target + (slot.offset || 0);
      const index = nearestIndex(slot.series, want);
      if (index !== app.wantedIndex(slot)) go(slot, index);
    }
  } finally {
    following = false;
  }
}

function nearestIndex(series, position) {
  let best = 0;
  let bestDistance = Infinity;
  series.positions.forEach((p, index) => {
    const distance = Math.abs((p ?? index) - position);
    if (distance < bestDistance) {
      best = index;
      bestDistance = distance;
    }
  });
  return best;
}

function shownSlots() {
  return viewer.slots.filter((slot) => slot.enabled && slot.series);
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
  } catch (error) {
    app.showMessage(viewer.slots[1], "The other study couldn't be opened. Please try again.");
    return;
  }
  if (!app.studies.some((s) => s.id === data.study.id)) app.addStudy(data);
  const current = viewer.slots[viewer.active].series;
  const candidates = data.series.map((s) => app.seriesById.get(s.id)).filter((s) => s?.imageIds.length);
  // The prior series most like the one on screen: same modality and plane, then the same name.
  const score = (s) => (current && s.modality === current.modality ? 2 : 0)
    + (current && samePlane(s, current) ? 2 : 0)
    + (current && s.description === current.description ? 1 : 0);
  candidates.sort((a, b) => score(b) - score(a));
  if (viewer.layout === '1x1') app.setLayout('1x2');
  const slot = viewer.slots[viewer.active === 0 ? 1 : 0];
  if (candidates[0]) await app.showSeries(slot, candidates[0]);
  candidates.forEach((s) => app.prefetcher.add(s));
  link(true);
}

