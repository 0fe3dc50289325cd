// Background loading of whole series, after the image on screen.
//
// The image a doctor is looking at is loaded by the viewport itself, first. Everything else
// streams in here, series by series in the order they were asked for, so scrolling soon works
// over the whole stack.
//
// Files come in batches, one request for up to `files_per_batch` files (viewer/delivery.py
// files_response): at hundreds of slices, what each request costs in the server and in the
// browser adds up to more than the bytes themselves. A worker (fetcher.js) fetches them, off
// the main thread: from the file system a batch is the files back to back, split as they
// arrive, so the first files of a batch are decoded while the rest are still on their way; from
// S3 it is a list of presigned URLs, fetched from the store. Whatever a batch fails to bring is
// then asked for file by file, so that a failure belongs to one image and says why.

// How many files a batch asks for is the server's call (the study's `files_per_batch`, see
// viewer/catalogue.py): more when the answer is a list of signed links than when it is the files
// themselves. Batches in flight: two of a browser's six connections to the server, leaving the
// others for the image a doctor scrolls to before the background loading reaches it; measured
// on a 300-slice CT, two at a time loaded the stack faster and with less processor time than
// three.
const BATCHES_AT_ONCE = 2;
// How fetcher.js reports a signed link that has expired: S3 answers 403, nginx 410
// (deploy/nginx/phr.conf).
const LINK_EXPIRED = /image store answered (403|410)/;

export class Prefetcher {
  constructor(cs, { fetcherUrl, onProgress, onFailure }) {
    this.cs = cs;
    this.fetcher = new BatchFetcher(fetcherUrl);
    this.onProgress = onProgress;
    this.onFailure = onFailure;
    this.queue = []; // [series, index] pairs, in order
    this.queued = new Set();
    this.loaded = new Set();
    this.failed = new Map(); // imageId -> error message
    this.running = 0;
    this.paused = true;
  }

  /** Queue a series' images; `first` puts it ahead of the rest (the series just shown). */
  add(series, { first = false } = {}) {
    const items = [];
    series.imageIds.forEach((id, index) => {
      if (this.queued.has(id) || this.loaded.has(id)) return;
      this.queued.add(id);
      items.push([series, index]);
    });
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
    while (!this.paused && this.running < BATCHES_AT_ONCE) {
      const files = this.take();
      if (!files.length) return;
      this.running += 1;
      this.runBatch(files).finally(() => {
        this.running -= 1;
        this.pump();
      });
    }
  }

  /** The next files to fetch: up to a batch of files of one study, each with its frames' images. */
  take() {
    const files = new Map(); // file URL -> { url, id, series, imageIds }
    let study = null;
    while (this.queue.length) {
      const [series, index] = this.queue[0];
      const imageId = series.imageIds[index];
      // Done, or being loaded by a viewport (which then reports it like any other load).
      if (this.loaded.has(imageId) || this.failed.has(imageId) || this.cs.cache.getImageLoadObject(imageId)) {
        this.queue.shift();
        continue;
      }
      const url = fileUrl(imageId);
      if (!files.has(url)) {
        if (files.size === series.study.files_per_batch || (study && series.study !== study)) break;
        const { id, link } = series.imageInfo[index];
        files.set(url, { url, id, link, series, imageIds: [] });
      }
      this.queue.shift();
      study = series.study;
      files.get(url).imageIds.push(imageId);
    }
    return [...files.values()];
  }

  async runBatch(files, { fresh = false } = {}) {
    const settled = new Set();
    const arrived = (file, buffer) => {
      if (settled.has(file)) return;
      settled.add(file);
      this.loadFile(file, buffer);
    };
    try {
      // Behind nginx with secure links, the patient's study list brought each file's signed
      // link: no batch request to the server at all. `fresh`: ask the server for new ones.
      const listed = !fresh && files.every((file) => file.link);
      const links = listed ? files.map((file) => file.link) : null;
      const ids = files.map((file) => file.id);
      const request = { filesUrl: files[0].series.study.files_url, ids, links };
      await this.fetcher.fetch(request, (index, buffer) => arrived(files[index], buffer));
    } catch (error) {
      const rest = files.filter((file) => !settled.has(file));
      // Whatever this attempt still brings late is not used: the files are asked for again.
      rest.forEach((file) => settled.add(file));
      if (!fresh && LINK_EXPIRED.test(describe(error))) {
        // Signed links live minutes (a doctor's, one): a slow link, or a series opened long
        // after the list came, outlives them. Ask the server for new ones, once.
        await this.runBatch(rest, { fresh: true });
        return;
      }
      console.warn(`A batch of images couldn't be fetched (${describe(error)}); fetching them one by one.`);
      await Promise.all(rest.map((file) => this.loadFile(file, null)));
    }
  }

  /** Load a file's images, from `buffer` when the batch brought it, else from its own URL. */
  loadFile(file, buffer) {
    if (buffer) this.cs.provideFile(file.url, Promise.resolve(buffer));
    const loads = file.imageIds.map((imageId) => this.cs.imageLoader
      // The options a stack viewport uses, so that the cached image is the one it would load.
      .loadAndCacheImage(imageId, { useRGBA: false })
      .then(
        (image) => this.markLoaded(file.series, imageId, image),
        (error) => this.markFailed(file.series, imageId, error),
      ));
    // Not taken if a viewport started loading this file meanwhile: don't keep it twice.
    if (buffer) this.cs.withdrawFile(file.url);
    return Promise.all(loads);
  }
}

/** The URL of the file an image ID points into (a multi-frame file has one ID per frame). */
function fileUrl(imageId) {
  return imageId.slice(imageId.indexOf(':') + 1).replace(/[?&]frame=\d+$/, '');
}

/** The page's side of fetcher.js, started at the first batch. */
class BatchFetcher {
  constructor(url) {
    this.url = url;
    this.worker = null;
    this.batches = new Map(); // batch number -> { arrived, resolve, reject }
    this.count = 0;
    this.broken = null;
  }

  /** Fetch the files of `request` ({ filesUrl, ids, links }: by their signed links when it
   * has them, else in one batch request); `arrived(index, arrayBuffer)` is called as each one
   * completes. */
  fetch(request, arrived) {
    if (this.broken) return Promise.reject(this.broken);
    if (!this.worker) this.start();
    this.count += 1;
    const batch = this.count;
    return new Promise((resolve, reject) => {
      this.batches.set(batch, { arrived, resolve, reject });
      this.worker.postMessage({ batch, ...request });
    });
  }

  start() {
    this.worker = new Worker(this.url, { type: 'module' });
    this.worker.addEventListener('message', ({ data }) => {
      const batch = this.batches.get(data.batch);
      if (!batch) return;
      if (data.buffer) {
        batch.arrived(data.index, data.buffer);
        return;
      }
      this.batches.delete(data.batch);
      if (data.done) batch.resolve();
      else batch.reject(new Error(data.error));
    });
    // The worker couldn't start (or died): every batch, now and later, falls back to files.
    this.worker.addEventListener('error', (event) => {
      event.preventDefault();
      this.broken = new Error(`the image fetcher stopped (${event.message || 'it could not start'})`);
      this.batches.forEach(({ reject }) => reject(this.broken));
      this.batches.clear();
    });
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
