// The viewer's shared state, filled in by viewer.js once Cornerstone is loaded, and read by
// the control and comparison modules.

export const ENGINE_ID = 'vault';

export const app = {
  cs: null,
  engine: null,
  group: null,
  prefetcher: null,
  seriesById: new Map(),
  studies: [],
  active: 0,
  layout: '1x1',
  linked: false,
  slots: [],
  shareEnded: false, // a doctor's share ended while the viewer was open (the server answered 410)
  viewport(index) {
    const slot = this.slots[index];
    return slot?.enabled ? this.engine.getViewport(slot.id) : null;
  },
  activeSlot() {
    return this.slots[this.active];
  },
  allSeries() {
    return [...this.seriesById.values()];
  },
  /** The image a viewport was asked to show (which may have failed to load). */
  wantedIndex(slot) {
    return slot.wanted ?? this.viewport(slot.index)?.getCurrentImageIdIndex() ?? 0;
  },
};

export const $ = (id) => document.getElementById(id);

export async function fetchJson(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  return response.json();
}
