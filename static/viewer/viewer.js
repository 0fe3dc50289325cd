// The vault's diagnostic viewer. One JSON request lists every image of the study (built from
// the database, no file opened); each image's ID is its file's authorised URL. The image on
// screen is fetched on its own, the rest of each series in batches (loader.js).
//
// Performance marks, read by bench/viewer.py:
//   viewer-scripts-loaded  Cornerstone imported and initialised, the image list in hand
//   first-image            the first image drawn on screen
//   series-loaded          every image of the first series loaded (fetched and decoded)

import { $, ENGINE_ID, app, fetchJson } from './app.js';
import { fillCompareMenu, followSlice } from './compare.js';
import { wireControls } from './controls.js';
import { Prefetcher, describe } from './loader.js';
import { onImageFailed, refresh, showMessage } from './stack.js';
import { addStudy, seriesOf, showProgress } from './strip.js';
import { createToolGroup } from './tools.js';
import { drewAnEarlierSeries, enableSlot, showSeries } from './viewports.js';

// The modules import one way, from app.js (the shared state) up to this one, which nothing
// imports: with hashed static names (production) an import of './viewer.js' would load and
// run a second copy of it.
const root = $('viewer-app');

// Ask for the image list at once, while the 4 MB library is still being fetched, and for the
// first image's file (which the page has the browser preload already): the first image is then
// drawn as soon as the library has started.
const listPromise = fetchJson(root.dataset.imagesUrl);
const firstFile = listPromise.then(fetchFirstFile, () => null);
// The browser tests' instruments (testhook.js), fetched beside the rest when the page asks.
const testHook = root.hasAttribute('data-test-hook') ? import('./testhook.js') : null;

let cs;

app.slots = [...document.querySelectorAll('.vw-cell')].map((cell, index) => ({
    index,
    cell,
    id: `vp${index}`,
    element: cell.querySelector('.vw-viewport'),
    message: cell.querySelector('.vw-message'),
    overlay: {
      tl: cell.querySelector('.vw-ov-tl'), tr: cell.querySelector('.vw-ov-tr'),
      bl: cell.querySelector('.vw-ov-bl'), br: cell.querySelector('.vw-ov-br'),
    },
    enabled: false,
    series: null,
    wanted: null,
    drawn: null,
    savedIndex: 0,
    playing: false,
}));

// The series strip needs no library: it is built as soon as the list is here.
const studyListed = listPromise.then((data) => {
  addStudy(data, { main: true });
  return data;
});

main().catch((error) => {
  console.error(error);
  $('strip-status').textContent = "Sorry, the viewer couldn't start. Please reload the page; if it keeps happening, try another browser.";
  showMessage(app.slots[0], `The viewer couldn't start (${describe(error)}).`);
});

async function main() {
  cs = await import(root.dataset.cornerstone);
  const workers = Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency || 2) / 2)));
  const cpuRendering = { gpu: false, cpu: true }[root.dataset.renderer] ?? 'auto';
  await cs.initCornerstone({ wasmBasePath: root.dataset.wasmBase, maxWebWorkers: workers, cpuRendering });
  const engine = new cs.RenderingEngine(ENGINE_ID);
  const prefetcher = new Prefetcher(cs, {
    fetcherUrl: root.dataset.fetcher,
    onProgress: showProgress,
    onFailure: onImageFailed,
  });
  Object.assign(app, { cs, engine, prefetcher, group: createToolGroup(cs) });
  listenToCornerstone();
  const data = await studyListed;
  const early = await firstFile;
  if (early) cs.provideFile(early.url, early.bytes);
  performance.mark('viewer-scripts-loaded');
  fillCompareMenu(data.comparisons);
  wireControls();
  if (testHook) (await testHook).install();
  enableSlot(app.slots[0]);
  const first = data.series.find((s) => s.images.length);
  if (!first) {
    showMessage(app.slots[0], 'This study has no images to show. Its reports, if any, are under Reports.');
    return;
  }
  // Background loading starts once the image on screen has loaded (it gets the bandwidth
  // first), not once it is drawn: a doctor who scrolls on before it arrives leaves its draw
  // pending for good (Cornerstone's CPU renderer drops a superseded draw without settling it).
  await Promise.race([
    showSeries(app.slots[0], app.slots[0].picked || app.seriesById.get(first.id)),
    anImageSettled(),
  ]);
  prefetcher.start();
  app.allSeries().forEach((s) => prefetcher.add(s));
}

/** Resolves once any image has loaded, or failed to. */
function anImageSettled() {
  const E = cs.Enums.Events;
  const names = [E.IMAGE_LOADED, E.IMAGE_LOAD_FAILED, E.IMAGE_LOAD_ERROR];
  return new Promise((resolve) => {
    const settled = () => {
      names.forEach((name) => cs.eventTarget.removeEventListener(name, settled));
      resolve();
    };
    names.forEach((name) => cs.eventTarget.addEventListener(name, settled));
  });
}

/** Start fetching the file of the image shown first (that of the first series with images). */
function fetchFirstFile(data) {
  const image = data.series.find((s) => s.images.length)?.images[0];
  if (!image) return null;
  const url = new URL(image.url, window.location.href).href;
  const bytes = fetch(url, { credentials: 'same-origin' }).then((response) => {
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    return response.arrayBuffer();
  });
  bytes.catch(() => {}); // reported by the image's own load, which takes this promise
  return { url, bytes };
}

function listenToCornerstone() {
  const E = cs.Enums.Events;
  cs.eventTarget.addEventListener(E.IMAGE_LOADED, (event) => {
    const { image } = event.detail;
    const series = seriesOf(image?.imageId);
    if (series) app.prefetcher.markLoaded(series, image.imageId, image);
  });
  const failed = (event) => {
    const series = seriesOf(event.detail.imageId);
    if (series) app.prefetcher.markFailed(series, event.detail.imageId, event.detail.error);
  };
  cs.eventTarget.addEventListener(E.IMAGE_LOAD_FAILED, failed);
  cs.eventTarget.addEventListener(E.IMAGE_LOAD_ERROR, failed);
  for (const slot of app.slots) {
    const update = () => refresh(slot);
    const moved = (event) => {
      slot.wanted = event.detail.imageIdIndex;
      update();
      if (app.linked) followSlice(slot);
    };
    // Before the image loads (so the overlay follows a fast scroll) and once it is drawn.
    slot.element.addEventListener(E.PRE_STACK_NEW_IMAGE, moved);
    slot.element.addEventListener(E.STACK_NEW_IMAGE, (event) => {
      if (drewAnEarlierSeries(slot, event.detail)) return;
      moved(event);
    });
    slot.element.addEventListener(E.VOI_MODIFIED, update);
    slot.element.addEventListener(E.CAMERA_MODIFIED, update);
    slot.element.addEventListener(E.IMAGE_RENDERED, () => {
      // Which image this viewport's canvas holds now: a test reads the canvas only once the
      // image it waits for is the one drawn, never after a guessed delay.
      slot.drawn = app.viewport(slot.index)?.getCurrentImageId() ?? null;
      if (slot.series && !performance.getEntriesByName('first-image').length) {
        performance.mark('first-image');
      }
    });
  }
}

