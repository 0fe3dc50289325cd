// The tool bar, the slider, cine, the tag panel and the keyboard.

import { $, app } from './app.js';
import { compareWith, link } from './compare.js';
import { applyTagFilter, loadTags } from './panels.js';
import { go, stopCine, updateSlider } from './stack.js';
import {
  applyPreset,
  clearMeasurements,
  deleteSelectedMeasurements,
  primaryTool,
  setPrimaryTool,
} from './tools.js';
import { setActive, setLayout, showSeries } from './viewports.js';

function activeViewport() {
  return app.viewport(app.active);
}

function scrollBy(delta) {
  const slot = app.activeSlot();
  if (!slot.series) return;
  go(slot, app.wantedIndex(slot) + delta);
}

function toggleCine() {
  const slot = app.activeSlot();
  if (!slot.series) return;
  if (slot.playing) {
    stopCine(slot);
  } else {
    const fps = Math.max(1, Math.min(60, Number($('fps').value) || 15));
    app.cs.cine.playClip(slot.element, { framesPerSecond: fps, loop: true });
    slot.playing = true;
  }
  updateSlider();
}

async function openTags() {
  const panel = $('tag-panel');
  panel.hidden = false;
  $('tags-toggle').setAttribute('aria-pressed', 'true');
  const slot = app.activeSlot();
  const viewport = activeViewport();
  if (!viewport || !slot.series) return;
  const info = slot.series.imageInfo[app.wantedIndex(slot)];
  await loadTags(info.tags_url, $('tag-table'), $('tag-filter'));
  app.engine.resize(true, true);
}

function closeTags() {
  $('tag-panel').hidden = true;
  $('tags-toggle').setAttribute('aria-pressed', 'false');
  app.engine.resize(true, true);
}

function toggleOverlay() {
  const on = $('overlay-toggle').getAttribute('aria-pressed') !== 'true';
  $('overlay-toggle').setAttribute('aria-pressed', String(on));
  document.querySelectorAll('.vw-overlay').forEach((node) => node.classList.toggle('is-hidden', !on));
}

function resetViewport() {
  const viewport = activeViewport();
  if (!viewport) return;
  viewport.resetCamera();
  viewport.resetProperties();
  viewport.render();
  $('invert').setAttribute('aria-pressed', 'false');
}

function invert() {
  const viewport = activeViewport();
  if (!viewport) return;
  const inverted = !viewport.getProperties().invert;
  viewport.setProperties({ invert: inverted });
  viewport.render();
  $('invert').setAttribute('aria-pressed', String(inverted));
}

export function wireControls() {
  document.querySelectorAll('.vw-tool').forEach((button) => {
    button.setAttribute('aria-pressed', String(button.dataset.tool === primaryTool()));
    button.addEventListener('click', () => {
      setPrimaryTool(app.cs, app.group, button.dataset.tool);
      document.querySelectorAll('.vw-tool').forEach((b) => b.setAttribute('aria-pressed', String(b === button)));
    });
  });
  $('preset').addEventListener('change', (event) => {
    const viewport = activeViewport();
    if (viewport && event.target.value) applyPreset(app.cs, viewport, event.target.value);
    event.target.value = '';
  });
  wireMoreMenu();
  $('measure-delete').addEventListener('click', deleteMeasurement);
  $('measure-clear').addEventListener('click', () => {
    clearMeasurements(app.cs);
    renderAll();
  });
  $('invert').addEventListener('click', invert);
  $('reset').addEventListener('click', resetViewport);
  $('layout').addEventListener('change', (event) => setLayout(event.target.value));
  $('compare').addEventListener('change', (event) => {
    if (event.target.value) compareWith(event.target.value);
  });
  $('sync').addEventListener('click', () => link(!app.linked));
  $('overlay-toggle').addEventListener('click', toggleOverlay);
  $('tags-toggle').addEventListener('click', () => ($('tag-panel').hidden ? openTags() : closeTags()));
  $('tags-close').addEventListener('click', closeTags);
  $('tag-filter').addEventListener('input', (event) => applyTagFilter($('tag-table'), event.target.value));
  $('toggle-strip').addEventListener('click', () => {
    const strip = $('series-strip');
    const collapsed = strip.classList.toggle('is-collapsed');
    $('toggle-strip').setAttribute('aria-expanded', String(!collapsed));
    app.engine.resize(true, true);
  });
  if (window.matchMedia('(max-width: 700px)').matches) $('toggle-strip').click();
  $('slider').addEventListener('input', (event) => go(app.activeSlot(), Number(event.target.value)));
  $('cine').addEventListener('click', toggleCine);
  for (const slot of app.slots) {
    slot.cell.addEventListener('pointerdown', () => setActive(slot), true);
    slot.cell.addEventListener('dragover', (event) => {
      if (!event.dataTransfer.types.includes('text/x-series')) return;
      event.preventDefault();
      slot.cell.classList.add('is-drop-target');
    });
    slot.cell.addEventListener('dragleave', () => slot.cell.classList.remove('is-drop-target'));
    slot.cell.addEventListener('drop', (event) => {
      event.preventDefault();
      slot.cell.classList.remove('is-drop-target');
      setActive(slot);
      showSeries(slot, app.seriesById.get(event.dataTransfer.getData('text/x-series')));
    });
  }
  document.addEventListener('keydown', onKey);
  window.addEventListener('resize', () => app.engine.resize(true, true));
}

/** The "More" menu of narrower screens: a control used in it closes it, as does Escape. */
function wireMoreMenu() {
  const toggle = $('more-toggle');
  const menu = $('more-tools');
  const open = (opened) => {
    menu.classList.toggle('is-open', opened);
    toggle.setAttribute('aria-expanded', String(opened));
  };
  toggle.addEventListener('click', () => open(!menu.classList.contains('is-open')));
  menu.addEventListener('click', (event) => {
    if (event.target.closest('button, a')) open(false);
  });
  menu.addEventListener('change', () => open(false));
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') open(false);
  });
}

function renderAll() {
  app.slots.forEach((slot) => app.viewport(slot.index)?.render());
}

function deleteMeasurement() {
  if (deleteSelectedMeasurements(app.cs)) renderAll();
}

function onKey(event) {
  if (event.target.closest('input, select, textarea') || event.ctrlKey || event.metaKey || event.altKey) return;
  const slot = app.activeSlot();
  const actions = {
    ArrowUp: () => scrollBy(-1), ArrowLeft: () => scrollBy(-1),
    ArrowDown: () => scrollBy(1), ArrowRight: () => scrollBy(1),
    PageUp: () => scrollBy(-10), PageDown: () => scrollBy(10),
    Home: () => scrollBy(-Infinity), End: () => scrollBy(Infinity),
    ' ': toggleCine, i: invert, r: resetViewport, o: toggleOverlay,
    Delete: deleteMeasurement, Backspace: deleteMeasurement,
  };
  const action = actions[event.key];
  if (!action || (!slot.series && event.key !== 'o')) return;
  event.preventDefault();
  action();
}
