// The viewer's batch splitting (static/viewer/streams.js), run by Node's own test runner.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FILES_PER_RANGE, pieces, rangeOf, splitStream } from '../../static/viewer/streams.js';

/** A stream that hands out `bytes` in chunks of the given sizes, as a network would. */
function streamOf(bytes, chunkSizes) {
  const chunks = [];
  let offset = 0;
  for (const size of chunkSizes) {
    chunks.push(bytes.slice(offset, offset + size));
    offset += size;
  }
  if (offset < bytes.length) chunks.push(bytes.slice(offset));
  return new ReadableStream({
    pull(controller) {
      if (chunks.length) controller.enqueue(chunks.shift());
      else controller.close();
    },
  });
}

function filesBackToBack(sizes) {
  const total = sizes.reduce((a, b) => a + b, 0);
  // Each byte names its file and place, so a byte in the wrong file or place shows.
  const bytes = new Uint8Array(total);
  let offset = 0;
  sizes.forEach((size, file) => {
    for (let i = 0; i < size; i += 1) bytes[offset + i] = (file * 64 + i) % 256;
    offset += size;
  });
  return bytes;
}

async function split(bytes, sizes, chunkSizes) {
  const got = [];
  await splitStream(streamOf(bytes, chunkSizes), sizes, (index, buffer) => got.push([index, buffer]));
  return got;
}

test('every way of chunking the stream gives back each file, whole and in order', async () => {
  const sizes = [5, 1, 7];
  const bytes = filesBackToBack(sizes);
  for (let chunk = 1; chunk <= bytes.length; chunk += 1) {
    const got = await split(bytes, sizes, Array(Math.ceil(bytes.length / chunk)).fill(chunk));
    assert.deepEqual(got.map(([index]) => index), [0, 1, 2], `chunks of ${chunk}`);
    let offset = 0;
    got.forEach(([, buffer], file) => {
      assert.ok(buffer instanceof ArrayBuffer);
      assert.deepEqual(new Uint8Array(buffer), bytes.slice(offset, offset + sizes[file]));
      offset += sizes[file];
    });
  }
});

test('a file is handed over as soon as its last byte arrives, before the rest of the batch', async () => {
  const sizes = [4, 4];
  const bytes = filesBackToBack(sizes);
  const handed = [];
  let reads = 0;
  const chunks = [bytes.slice(0, 4), bytes.slice(4)];
  const body = new ReadableStream({
    pull(controller) {
      reads += 1;
      if (chunks.length) controller.enqueue(chunks.shift());
      else controller.close();
    },
  });
  await splitStream(body, sizes, (index) => handed.push([index, reads]));
  assert.equal(handed[0][0], 0);
  assert.ok(handed[0][1] < handed[1][1], 'the first file came before the second chunk was read');
});

test('a stream longer than announced is refused', async () => {
  const bytes = filesBackToBack([3, 3]);
  await assert.rejects(split(bytes, [3, 2], [6]), /longer than announced/);
});

test('a stream that ends early is refused, after the files it did bring', async () => {
  const bytes = filesBackToBack([3, 3]).slice(0, 5);
  const got = [];
  await assert.rejects(
    splitStream(streamOf(bytes, [5]), [3, 3], (index) => got.push(index)),
    /ended early/,
  );
  assert.deepEqual(got, [0]);
});

test('the Range header covers the first byte of the first file to the last of the last', () => {
  assert.equal(rangeOf([[0, 10]]), 'bytes=0-9');
  assert.equal(rangeOf([[100, 10], [110, 5], [115, 1]]), 'bytes=100-115');
});

test('files lying back to back in one bundle are asked for together, up to the cap', () => {
  const n = FILES_PER_RANGE + 3;
  const urls = Array(n).fill('https://store/bundle');
  const ranges = Array.from({ length: n }, (_, i) => [i * 10, 10]);
  const got = pieces(urls, ranges);
  assert.deepEqual(got.map((p) => p.indexes.length), [FILES_PER_RANGE, 3]);
  assert.deepEqual(got.flatMap((p) => p.indexes), [...Array(n).keys()]);
});

test('a gap, another bundle or a whole file starts a new request', () => {
  const urls = ['b1', 'b1', 'b1', 'b2', 'file', 'b2'];
  const ranges = [[0, 10], [10, 10], [25, 5], [30, 5], null, [35, 5]];
  assert.deepEqual(pieces(urls, ranges), [
    { url: 'b1', indexes: [0, 1] },
    { url: 'b1', indexes: [2] }, // bytes 20-24 are not asked for
    { url: 'b2', indexes: [3] },
    { url: 'file', indexes: [4] },
    { url: 'b2', indexes: [5] }, // back to back with 3 in the bundle, but not in the list
  ]);
});

test('without ranges every file is its own request', () => {
  assert.deepEqual(pieces(['a', 'b'], null), [
    { url: 'a', indexes: [0] },
    { url: 'b', indexes: [1] },
  ]);
});
