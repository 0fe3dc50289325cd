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
import { stopCine, updateSlider, wireControls } from './controls.js';
import { Prefetcher, describe } from './loader.js';
import { installTestHook, renderOverlay } from './panels.js';
import { createToolGroup } from './tools.js';

const LAYOUT_SIZE = { '1x1': 1, '1x2': 2, '2x2': 4 };
const root = $('viewer-app');

// Ask for the image list at once, while the 4 MB library is still being fetched, and for the
// first image's file (which the page has the browser preload already): the first image is then
// drawn as soon as the library has started.
const listPromise = fetchJson(root.dataset.imagesUrl);
const firstFile = listPromise.then(fetchFirstFile, () => null);

let cs;
let engine;
let prefetcher;
const seriesOfImage = new Map();
const viewer = app;
const { seriesById, studies } = app;
// The other modules reach these through `app`, never by importing this file: with hashed
// static names (production) an import of './viewer.js' would load and run a second copy.
Object.assign(app, { addStudy, refresh, setActive, setLayout, showMessage, showSeries });

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
  showMessage(viewer.slots[0], `The viewer couldn't start (${describe(error)}).`);
});

async function main() {
  cs = await import(root.dataset.cornerstone);
  const workers = Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency || 2) / 2)));
  const cpuRendering = { gpu: false, cpu: true }[root.dataset.renderer] ?? 'auto';
  await cs.initCornerstone({ wasmBasePath: root.dataset.wasmBase, maxWebWorkers: workers, cpuRendering });
  engine = new cs.RenderingEngine(ENGINE_ID);
  prefetcher = new Prefetcher(cs, {
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
  if (root.hasAttribute('data-test-hook')) installTestHook(cs, viewer);
  enableSlot(viewer.slots[0]);
  const first = data.series.find((s) => s.images.length);
  if (!first) {
    showMessage(viewer.slots[0], 'This study has no images to show. Its reports, if any, are under Reports.');
    return;
  }
  // Background loading starts once the image on screen has loaded (it gets the bandwidth
  // first), not once it is drawn: a doctor who scrolls on before it arrives leaves its draw
  // pending for good (Cornerstone's CPU renderer drops a superseded draw without settling it).
  await Promise.race([
    showSeries(viewer.slots[0], viewer.slots[0].picked || seriesById.get(first.id)),
    anImageSettled(),
  ]);
  prefetcher.start();
  viewer.allSeries().forEach((s) => prefetcher.add(s));
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

// --- studies and series ------------------------------------------------------------------------

function addStudy(data, { main = false } = {}) {
  const study = { ...data.study, main };
  studies.push(study);
  const strip = $('series-strip');
  $('strip-status').hidden = true;
  const heading = document.createElement('h2');
  heading.textContent = main ? 'This study' : `Compared with: ${study.title}${study.date ? `, ${study.date}` : ''}`;
  strip.append(heading);
  if (!data.series.length) {
    const empty = document.createElement('p');
    empty.className = 'vw-empty';
    empty.textContent = 'No images in this study.';
    strip.append(empty);
  }
  for (const json of data.series) {
    const series = buildSeries(json, study);
    seriesById.set(series.id, series);
    strip.append(seriesButton(series));
  }
}

function buildSeries(json, study) {
  const series = { ...json, study, imageIds: [], imageInfo: [], positions: [], loaded: 0, failed: 0 };
  for (const image of json.images) {
    const url = new URL(image.url, window.location.href).href;
    for (let frame = 1; frame <= image.frames; frame += 1) {
      const imageId = image.frames > 1 ? `wadouri:${url}?frame=${frame}` : `wadouri:${url}`;
      series.imageIds.push(imageId);
      series.imageInfo.push({ ...image, frame });
      series.positions.push(image.frames > 1 ? null : image.position);
      seriesOfImage.set(imageId, series);
    }
  }
  return series;
}

function seriesButton(series) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'vw-series';
  button.draggable = true;
  button.dataset.seriesId = series.id;
  const img = document.createElement('img');
  img.src = series.thumbnail;
  img.alt = '';
  img.loading = 'lazy';
  const name = document.createElement('span');
  name.className = 'vw-s-name';
  name.textContent = `${series.modality || ''} ${series.description}`;
  const count = document.createElement('span');
  count.className = 'vw-s-count';
  const n = series.imageIds.length;
  count.textContent = `${n} image${n === 1 ? '' : 's'}`;
  const progress = document.createElement('span');
  progress.className = 'vw-progress';
  progress.setAttribute('role', 'progressbar');
  progress.setAttribute('aria-label', `Loaded images of ${series.description}`);
  progress.append(document.createElement('span'));
  button.append(img, name, count, progress);
  series.button = button;
  series.progress = progress;
  // A tap or a click shows the series in the active viewport; a drag picks the viewport.
  button.addEventListener('click', () => showSeries(viewer.slots[viewer.active], series));
  button.addEventListener('dragstart', (event) => {
    event.dataTransfer.setData('text/x-series', series.id);
    event.dataTransfer.effectAllowed = 'copy';
  });
  showProgress(series);
  return button;
}

// Series whose progress bar is out of date, drawn a few times a second: images arrive every
// few milliseconds, and the page needn't be touched for each.
const staleProgress = new Set();
const PROGRESS_EVERY_MS = 250;

function showProgress(series) {
  if (!series.progress) return;
  const done = series.loaded + series.failed;
  const complete = done >= series.imageIds.length;
  if (complete && series.study.main && !performance.getEntriesByName('series-loaded').length) {
    performance.mark('series-loaded');
  }
  if (!staleProgress.size) setTimeout(() => requestAnimationFrame(drawProgress), complete ? 0 : PROGRESS_EVERY_MS);
  staleProgress.add(series);
}

function drawProgress() {
  for (const series of staleProgress) {
    const total = series.imageIds.length || 1;
    const done = series.loaded + series.failed;
    series.progress.firstChild.style.transform = `scaleX(${done / total})`;
    series.progress.setAttribute('aria-valuenow', String(Math.round((100 * done) / total)));
    series.progress.classList.toggle('is-done', done >= total);
  }
  staleProgress.clear();
}

// --- viewports ---------------------------------------------------------------------------------

function enableSlot(slot) {
  if (slot.enabled) return;
  engine.enableElement({
    viewportId: slot.id,
    type: cs.Enums.ViewportType.STACK,
    element: slot.element,
    defaultOptions: { background: [0, 0, 0] },
  });
  app.group.addViewport(slot.id, ENGINE_ID);
  slot.enabled = true;
}

function disableSlot(slot) {
  if (!slot.enabled) return;
  stopCine(slot);
  slot.savedIndex = viewer.viewport(slot.index).getCurrentImageIdIndex();
  app.group.removeViewports(ENGINE_ID, slot.id);
  engine.disableElement(slot.id);
  slot.enabled = false;
}

async function showSeries(slot, series, index = 0) {
  if (!series) return;
  if (!slot.enabled) {
    // Picked in the strip while the library is still loading (the first viewport isn't on
    // yet): shown first once it has.
    if (!viewer.slots[0].enabled) slot.picked = series;
    return;
  }
  stopCine(slot);
  slot.series = series;
  slot.wanted = Math.min(index, series.imageIds.length - 1);
  hideMessage(slot);
  markShownSeries();
  showDropHints();
  prefetcher.add(series, { first: true });
  await drawStack(slot, series, slot.wanted);
}

async function drawStack(slot, series, index) {
  const viewport = viewer.viewport(slot.index);
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
  viewer.slots.forEach((slot) => {
    slot.cell.querySelector('.vw-drop-hint').hidden = !(slot.enabled && !slot.series);
  });
}

function markShownSeries() {
  const shown = new Set(viewer.slots.filter((s) => s.enabled && s.series).map((s) => s.series.id));
  viewer.allSeries().forEach((s) => s.button?.classList.toggle('is-shown', shown.has(s.id)));
}

function setActive(slot) {
  viewer.active = slot.index;
  viewer.slots.forEach((s) => s.cell.classList.toggle('is-active', s === slot));
  updateSlider();
}

function setLayout(name) {
  viewer.layout = name;
  $('layout').value = name;
  $('grid').className = `vw-grid layout-${name}`;
  const size = LAYOUT_SIZE[name];
  viewer.slots.forEach((slot) => { if (slot.index >= size) disableSlot(slot); });
  const unshown = viewer.allSeries().filter((s) => !viewer.slots.some((slot) => slot.series === s));
  for (const slot of viewer.slots.slice(0, size)) {
    if (slot.enabled) continue;
    enableSlot(slot);
    // Like a workstation: a new viewport shows the next series not yet on screen.
    const series = slot.series || unshown.shift();
    if (series) showSeries(slot, series, slot.series ? slot.savedIndex : 0);
  }
  if (viewer.active >= size) setActive(viewer.slots[0]);
  showDropHints();
  // Viewports changed size: fit each image again, as a workstation does on a new layout.
  engine.resize(true, false);
}

function showMessage(slot, text) {
  slot.message.textContent = text;
  slot.message.hidden = false;
}

function hideMessage(slot) {
  slot.message.hidden = true;
}

// 410 Gone is the server's answer to a doctor whose share has ended (revoked, expired, locked).
const SHARE_ENDED = /answered 410/;
const SHARE_ENDED_TEXT = 'This share has ended: no more images can be loaded. If you still need them, please ask the patient for a new code.';

function onImageFailed(series, imageId, reason) {
  if (SHARE_ENDED.test(reason)) app.shareEnded = true;
  viewer.slots.forEach((slot) => {
    if (slot.enabled && (slot.series === series || app.shareEnded)) refresh(slot);
  });
  console.warn(`Image ${imageId} could not be shown: ${reason}`);
}

/** Overlay, error message and slider of one viewport, after anything changed in it. */
function refresh(slot) {
  const viewport = viewer.viewport(slot.index);
  if (!viewport || !slot.series) return;
  const index = app.wantedIndex(slot);
  const reason = prefetcher.failed.get(slot.series.imageIds[index]);
  if (app.shareEnded && slot.index === viewer.active) {
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
  renderOverlay(cs, slot, viewport, index);
  if (slot.index === viewer.active) updateSlider();
}

/**
 * Whether the viewport just drew an image of the series it showed before `slot.series`, and if
 * so, draw the right one. It happens when a series is picked while the one before is still
 * loading its image: Cornerstone's CPU renderer (phones without WebGL, headless browsers)
 * checks only the index of an image that arrives, so the earlier series' image, arriving last,
 * is drawn under the picked series' overlay.
 */
function drewAnEarlierSeries(slot, { imageId, imageIdIndex }) {
  if (!slot.series || slot.series.imageIds[imageIdIndex] === imageId) return false;
  // After Cornerstone has finished drawing the stray image (this event comes before that).
  setTimeout(() => {
    if (slot.enabled && slot.series) drawStack(slot, slot.series, app.wantedIndex(slot));
  });
  return true;
}

function listenToCornerstone() {
  const E = cs.Enums.Events;
  cs.eventTarget.addEventListener(E.IMAGE_LOADED, (event) => {
    const { image } = event.detail;
    const series = seriesOfImage.get(image?.imageId);
    if (series) prefetcher.markLoaded(series, image.imageId, image);
  });
  const failed = (event) => {
    const series = seriesOfImage.get(event.detail.imageId);
    if (series) prefetcher.markFailed(series, event.detail.imageId, event.detail.error);
  };
  cs.eventTarget.addEventListener(E.IMAGE_LOAD_FAILED, failed);
  cs.eventTarget.addEventListener(E.IMAGE_LOAD_ERROR, failed);
  for (const slot of viewer.slots) {
    const update = () => refresh(slot);
    const moved = (event) => {
      slot.wanted = event.detail.imageIdIndex;
      update();
      if (viewer.linked) followSlice(slot);
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
      slot.drawn = viewer.viewport(slot.index)?.getCurrentImageId() ?? null;
      if (slot.series && !performance.getEntriesByName('first-image').length) {
        performance.mark('first-image');
      }
    });
  }
}

