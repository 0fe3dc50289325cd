// The series strip: one button per series of each study open, with its loading progress. A tap
// or a click shows the series in the active viewport; a drag picks the viewport.

import { $, app } from './app.js';
import { showSeries } from './viewports.js';

const seriesOfImage = new Map();

/** The series an image ID belongs to (of any study open in the viewer). */
export function seriesOf(imageId) {
  return seriesOfImage.get(imageId);
}

export function addStudy(data, { main = false } = {}) {
  const study = { ...data.study, main };
  app.studies.push(study);
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
    app.seriesById.set(series.id, series);
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
  button.addEventListener('click', () => showSeries(app.activeSlot(), series));
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

export function showProgress(series) {
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
