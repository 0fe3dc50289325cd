// Cutting a batch of files into the files: which byte ranges to ask a bundle for, and how to
// split a stream of files back to back as it arrives. Pure functions of their arguments (a
// stream is any object with getReader()), so Node's test runner checks them (tests/js/).

// A series bundle (phr/vault/bundles.py) is fetched in ranges of at most this many files: a
// batch of 100 is then six ranges, so that even the last batch of a series, alone in flight,
// keeps the six connections busy.
export const FILES_PER_RANGE = 17;

/** The Range header asking for `spans` ([offset, size] pairs of files that lie back to back)
 * in one request: "bytes=first-last", both ends inclusive (RFC 9110, 14.1.2). */
export function rangeOf(spans) {
  const [first] = spans[0];
  const [lastOffset, lastSize] = spans[spans.length - 1];
  return `bytes=${first}-${lastOffset + lastSize - 1}`;
}

/** What to ask for: each whole file on its own; files of a bundle that lie back to back in it,
 * FILES_PER_RANGE at most, together. */
export function pieces(urls, ranges) {
  const found = [];
  let run = null;
  urls.forEach((url, index) => {
    const span = ranges?.[index];
    if (!span) {
      found.push({ url, indexes: [index] });
      run = null;
      return;
    }
    const previous = run && ranges[run.indexes[run.indexes.length - 1]];
    const follows = previous && run.url === url && previous[0] + previous[1] === span[0];
    if (!follows || run.indexes.length === FILES_PER_RANGE) {
      run = { url, indexes: [] };
      found.push(run);
    }
    run.indexes.push(index);
  });
  return found;
}

/** Cut a stream of files back to back into one ArrayBuffer per file, as the bytes arrive. */
export async function splitStream(body, sizes, arrived) {
  const reader = body.getReader();
  let index = 0;
  let part = new Uint8Array(sizes[0]);
  let filled = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    let offset = 0;
    while (offset < value.length) {
      if (!part) throw new Error('the batch is longer than announced');
      const count = Math.min(part.length - filled, value.length - offset);
      part.set(value.subarray(offset, offset + count), filled);
      filled += count;
      offset += count;
      if (filled === part.length) {
        arrived(index, part.buffer);
        index += 1;
        filled = 0;
        part = index < sizes.length ? new Uint8Array(sizes[index]) : null;
      }
    }
  }
  if (index < sizes.length) throw new Error('the batch ended early');
}
