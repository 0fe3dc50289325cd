// Background loading of whole series, after the image on screen.
//
// The image a doctor is looking at is loaded by the viewport itself, first. Everything else
// streams in here, a few files at a time (browsers open six connections per host), series by
// series in the order they were asked for, so scrolling soon works over the whole stack.

const CONCURRENCY = 6;

export class Prefetcher {
  constructor(imageLoader, { onProgress, onFailure }) {
    this.imageLoader = imageLoader;
    this.onProgress = onProgress;
    this.onFailure = onFailure;
    this.queue = []; // [series, imageId] pairs, in order
    this.queued = new Set();
    this.loaded = new Set();
    this.failed = new Map(); // imageId -> error message
    this.running = 0;
    this.paused = true;
  }

  /** Queue a series' images; `first` puts it ahead of the rest (the series just shown). */
  add(series, { first = false } = {}) {
    const items = series.imageIds
      .filter((id) => !this.queued.has(id) && !this.loaded.has(id))
      .map((id) => [series, id]);
    items.forEach(([, id]) => this.queued.add(id));
    if (first) {
      const others = this.queue.filter(([s]) => s !== series);
      const mine = this.queue.filter(([s]) => s === series);
      this.queue = [...items, ...mine, ...others];
    } else {
      this.queue.push(...items);
    }
    this.pump();
  }

  start() {
    this.paused = false;
    this.pump();
  }

  /** Call when an image has loaded, here or in a viewport. */
  markLoaded(series, imageId, image) {
    if (image && !looksDecoded(image)) {
      this.markFailed(series, imageId, 'it decoded to no picture');
      return;
    }
    if (!this.loaded.has(imageId) && !this.failed.has(imageId)) {
      this.loaded.add(imageId);
      series.loaded += 1;
      this.onProgress(series);
    }
  }

  markFailed(series, imageId, error) {
    if (this.failed.has(imageId)) return;
    this.failed.set(imageId, describe(error));
    series.failed += 1;
    this.onFailure(series, imageId, this.failed.get(imageId));
    this.onProgress(series);
  }

  pump() {
    while (!this.paused && this.running < CONCURRENCY && this.queue.length) {
      const [series, imageId] = this.queue.shift();
      if (this.loaded.has(imageId) || this.failed.has(imageId)) continue;
      this.running += 1;
      this.imageLoader
        // The options a stack viewport uses, so that the cached image is the one it would load.
        .loadAndCacheImage(imageId, { useRGBA: false })
        .then(
          (image) => this.markLoaded(series, imageId, image),
          (error) => this.markFailed(series, imageId, error),
        )
        .finally(() => {
          this.running -= 1;
          this.pump();
        });
    }
  }
}

/** A corrupt codestream can "decode" without an error into an image of no pixels. */
function looksDecoded(image) {
  const pixels = image.rows * image.columns;
  if (!(pixels > 0)) return false;
  const data = image.getPixelData?.();
  return Boolean(data && data.length >= pixels);
}

/** The loader rejects with Errors, events, XHRs or plain objects: make one readable line. */
export function describe(error) {
  if (!error) return 'unknown error';
  if (typeof error === 'string') return error;
  if (error.message) return error.message;
  if (error.error) return describe(error.error);
  if (error.status) return `the server answered ${error.status}`;
  return String(error);
}
