// A dedicated worker that fetches batches of image files (see loader.js) off the page's main
// thread. Reading hundreds of megabytes from the network is work of its own for a browser; done
// here, it runs beside the decoding on the main thread instead of before it. Each file goes to
// the page as its own ArrayBuffer, transferred, not copied.
//
//   page -> worker   { batch, filesUrl, ids, links }   links: the files' signed URLs, if known
//   worker -> page   { batch, index, buffer }   file number `index` of the batch has arrived
//                    { batch, done: true }       all of them have
//                    { batch, error }            the batch failed (files sent before it stand)

import { pieces, rangeOf, splitStream } from './streams.js';

self.addEventListener('message', async ({ data: { batch, filesUrl, ids, links } }) => {
  const arrived = (index, buffer) => self.postMessage({ batch, index, buffer }, [buffer]);
  try {
    // nginx secure links, listed with the study: they repeat for a few minutes, so the
    // browser may keep the files.
    if (links) await fetchLinks(links, true, arrived);
    else await fetchBatch(filesUrl, ids, arrived);
    self.postMessage({ batch, done: true });
  } catch (error) {
    self.postMessage({ batch, error: error?.message || String(error) });
  }
});

async function fetchBatch(filesUrl, ids, arrived) {
  // Without their dashes, 100 IDs still fit in the request line a server accepts.
  const query = ids.map((id) => id.replaceAll('-', '')).join(',');
  const response = await fetch(`${filesUrl}?ids=${query}`, { credentials: 'same-origin' });
  if (!response.ok) throw new Error(`the server answered ${response.status}`);
  if ((response.headers.get('Content-Type') || '').startsWith('application/json')) {
    const { urls, cacheable, ranges } = await response.json();
    if (urls?.length !== ids.length) throw new Error('the batch listed other files');
    await fetchLinks(urls, Boolean(cacheable), arrived, ranges);
    return;
  }
  const sizes = (response.headers.get('X-Instance-Sizes') || '').split(',').map(Number);
  if (sizes.length !== ids.length || !sizes.every((size) => size > 0)) {
    throw new Error('the batch announced other files');
  }
  await splitStream(response.body, sizes, arrived);
}

// Signed URLs (S3 presigned, or nginx secure links) are fetched through one pool for all the
// batches in flight: a browser's six connections to the object store or nginx. A share per batch
// would leave half of them idle once the last batch of a study runs alone, and at the end of a
// series that is the last hundred files.
const LINKS_AT_ONCE = 6;
const waitingLinks = []; // functions that start one fetch, in the order the batches asked
let linksInFlight = 0;

function startLinks() {
  while (linksInFlight < LINKS_AT_ONCE && waitingLinks.length) {
    linksInFlight += 1;
    waitingLinks.shift()().finally(() => {
      linksInFlight -= 1;
      startLinks();
    });
  }
}

/** Fetch signed URLs through the pool: whole files, or, where `ranges[index]` is
 * [offset, size], that file's bytes in a bundle, asked for with its neighbours in one range. */
async function fetchLinks(urls, cacheable, arrived, ranges = null) {
  let failed = false;
  async function fetchPiece({ url, indexes }) {
    if (failed) return; // the batch has failed: its files are being fetched one by one
    // A presigned S3 URL is never asked for twice, so keeping its file only costs the browser
    // time; an nginx secure link repeats for a few minutes (the server says `cacheable`), so a
    // study opened again soon comes from the cache. No cookies: the signature is the
    // authorisation, whether the URL is the object store's or our own origin's.
    const options = { cache: cacheable ? 'default' : 'no-store', credentials: 'omit' };
    // A piece is either one whole file, or files of a bundle (see pieces below).
    const spans = ranges?.[indexes[0]] ? indexes.map((index) => ranges[index]) : null;
    if (spans) {
      options.headers = { Range: rangeOf(spans) };
    }
    const response = await fetch(url, options);
    if (!response.ok || (spans && response.status !== 206)) {
      // Read to the end or cancelled, a body frees its connection: one of the six there are.
      response.body?.cancel();
      throw new Error(`the image store answered ${response.status}`);
    }
    if (!spans) {
      arrived(indexes[0], await response.arrayBuffer());
      return;
    }
    const sizes = spans.map(([, size]) => size);
    await splitStream(response.body, sizes, (nth, buffer) => arrived(indexes[nth], buffer));
  }
  const fetches = pieces(urls, ranges).map((piece) => new Promise((resolve, reject) => {
    waitingLinks.push(() => fetchPiece(piece).then(resolve, (error) => {
      failed = true;
      reject(error);
    }));
  }));
  startLinks();
  await Promise.all(fetches);
}
