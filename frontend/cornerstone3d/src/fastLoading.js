// How whole DICOM files reach the stack viewports, tuned for a CT of hundreds of slices.
//
// The loader's own wadouri path, measured on a 300-slice 512x512 CT, spends most of its time on
// the page's main thread around the bytes rather than on them: an XMLHttpRequest per file, a
// round trip to the decode worker that copies every frame there and back, and five passes over
// each frame's pixels (copy out of the file, min/max, copy into the output type, rescale, copy
// again). What changes here, keeping the loader's own parsing and metadata:
//
// * files are fetched with fetch(), and a file the page fetched itself (early, before this
//   bundle had even loaded, or in a batch with others) is handed over instead of fetched again;
// * the commonest frames of all, 16-bit greyscale stored uncompressed little endian (most CT
//   and MR), are turned into an image here in two passes, read straight out of the file;
// * other uncompressed frames are "decoded" on this thread by the very function the worker
//   runs: for them decoding is a typed-array view and the rescale, far cheaper than two copies
//   between threads. Compressed frames still go to the worker;
// * that worker starts when the first compressed frame needs it, not at init.

import {
  Enums,
  getWebWorkerManager,
  metaData,
  registerImageLoader,
  utilities,
} from '@cornerstonejs/core';
import { decodeImageFrame, getImageFrame, wadouri } from '@cornerstonejs/dicom-image-loader';
import {
  applyDoseGridScaling,
  applyModalityLut,
  fixByteOrder,
  fixDecodedFrame,
  functionalGroupsProvider,
  markUntransformedRgb,
  segmentedPaletteProvider,
} from './fidelity.js';

const UNCOMPRESSED = new Set([
  '1.2.840.10008.1.2', // implicit VR little endian
  '1.2.840.10008.1.2.1', // explicit VR little endian
  '1.2.840.10008.1.2.1.99', // deflated: the whole dataset is inflated when it is parsed
  '1.2.840.10008.1.2.2', // explicit VR big endian: a byte swap
]);

const handedOver = new Map(); // url -> Promise<ArrayBuffer>

/**
 * Give the loader a file (the promise of its bytes) that the page fetched itself, early or in a
 * batch with others: the next load of an image in it takes these bytes instead of fetching.
 */
export function provideFile(url, arrayBufferPromise) {
  handedOver.set(url, arrayBufferPromise);
}

/** Forget a provided file that no load took (say, a viewport was already loading it). */
export function withdrawFile(url) {
  handedOver.delete(url);
}

// A file that didn't arrive because the network dropped, or because a server or proxy was
// briefly unable to answer, is asked for again, twice, after these pauses: on a phone's network
// that is common, and a doctor shouldn't have to reload the study for it. An answer that won't
// change (404, 403) fails at once.
const RETRY_AFTER_MS = [500, 2000];
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);

function fetchFile(url) {
  const early = handedOver.get(url);
  if (early) {
    handedOver.delete(url);
    // The page's own early fetch failed: ask again, as for any other file.
    return early.catch(() => fetchWithRetries(url));
  }
  return fetchWithRetries(url);
}

async function fetchWithRetries(url) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await fetchOnce(url);
    } catch (error) {
      if (attempt === RETRY_AFTER_MS.length || !isTransient(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, RETRY_AFTER_MS[attempt]));
    }
  }
}

async function fetchOnce(url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (!response.ok) {
    const error = new Error(`the server answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.arrayBuffer();
}

/** fetch() rejects with a TypeError when the network fails, before or during the body. */
function isTransient(error) {
  return error.status ? TRANSIENT_STATUS.has(error.status) : error instanceof TypeError;
}

/** The loader's wadouri loadImage, with fetchFile in place of its XMLHttpRequest, and a
 * shortcut for uncompressed 16-bit greyscale. */
function loadImage(imageId, options = {}) {
  const requested = Date.now();
  const { url, pixelDataFrame = 0 } = wadouri.parseImageId(imageId);
  const dataSetPromise = wadouri.dataSetCacheManager.load(url, fetchFile, imageId);
  const promise = dataSetPromise.then((dataSet) => {
    const loaded = Date.now();
    fixByteOrder(dataSet);
    const image = greyscaleImage(imageId, dataSet, pixelDataFrame);
    if (!image) {
      const viaLoader = wadouri.loadImageFromPromise(
        Promise.resolve(dataSet),
        imageId,
        pixelDataFrame,
        url,
        options,
      );
      return viaLoader.promise.then((built) => {
        const voi = metaData.get('voiLutModule', imageId);
        applyModalityLut(built, dataSet, voi, utilities) ||
          applyDoseGridScaling(built, dataSet, voi, utilities);
        return built;
      });
    }
    image.data = dataSet;
    image.loadTimeInMS = loaded - requested;
    image.totalTimeInMS = Date.now() - requested;
    image.imageQualityStatus = Enums.ImageQualityStatus.FULL_RESOLUTION;
    return image;
  });
  return {
    promise,
    cancelFn: undefined,
    decache: () => wadouri.dataSetCacheManager.unload(url),
  };
}

const LITTLE_ENDIAN = new Set([
  '1.2.840.10008.1.2',
  '1.2.840.10008.1.2.1',
  '1.2.840.10008.1.2.1.99',
]);

/**
 * The image of one frame of 16-bit greyscale pixels stored uncompressed little endian, built
 * like the loader's createImage builds it (same pixel type, rescale, window and fields), or
 * null for anything else, which then takes the loader's own path: colour, other bit depths,
 * big endian, compressed, a modality LUT sequence, PET or RT dose scaling, a rescale that isn't
 * in whole numbers (the loader may leave those unscaled), a frame outside the file.
 */
function greyscaleImage(imageId, dataSet, frameIndex) {
  const element = dataSet.elements.x7fe00010;
  if (!element || element.encapsulatedPixelData) return null;
  if (!LITTLE_ENDIAN.has(dataSet.string('x00020010'))) return null;
  const frame = getImageFrame(imageId);
  const { rows, columns, bitsAllocated, bitsStored, pixelRepresentation } = frame;
  const photometric = frame.photometricInterpretation;
  if (bitsAllocated !== 16 || frame.samplesPerPixel !== 1) return null;
  if (photometric !== 'MONOCHROME1' && photometric !== 'MONOCHROME2') return null;
  const modalityLut = metaData.get('modalityLutModule', imageId) || {};
  if (modalityLut.modalityLUTSequence?.length) return null;
  const { modality } = metaData.get('generalSeriesModule', imageId) || {};
  if (modality === 'PT' || modality === 'RTDOSE') return null;
  const slope = modalityLut.rescaleSlope ?? 1;
  const intercept = modalityLut.rescaleIntercept ?? 0;
  if (!Number.isInteger(slope) || !Number.isInteger(intercept)) return null;

  const length = rows * columns;
  const { byteArray } = dataSet;
  const start = byteArray.byteOffset + element.dataOffset + frameIndex * length * 2;
  if (!(length > 0) || start % 2 || start + length * 2 > byteArray.byteOffset + byteArray.length) {
    return null;
  }
  const signed = pixelRepresentation === 1;
  let stored = new (signed ? Int16Array : Uint16Array)(byteArray.buffer, start, length);
  if (signed && bitsStored < 16) stored = extendSign(stored, bitsStored); // as the loader does

  const [min, max] = rangeOf(stored);
  // The loader rescales into the pixels (and says so in preScale) unless the rescale is 1 and 0.
  const scaled = slope !== 1 || intercept !== 0;
  const low = scaled ? Math.min(slope * min + intercept, slope * max + intercept) : min;
  const high = scaled ? Math.max(slope * min + intercept, slope * max + intercept) : max;
  const pixels = new (arrayTypeFor(low, high))(length);
  if (slope !== 1) {
    rescaleInto(pixels, stored, slope, intercept);
  } else if (intercept !== 0) {
    shiftInto(pixels, stored, intercept);
  } else {
    pixels.set(stored);
  }

  frame.pixelData = pixels;
  frame.pixelDataLength = length;
  frame.smallestPixelValue = low;
  frame.largestPixelValue = high;
  if (scaled) {
    frame.preScale = {
      enabled: true,
      scaled: true,
      scalingParameters: { rescaleSlope: slope, rescaleIntercept: intercept, modality },
    };
  }
  const plane = metaData.get('imagePlaneModule', imageId) || {};
  const voi = metaData.get('voiLutModule', imageId) || {};
  const image = {
    imageId,
    dataType: pixels.constructor.name,
    color: false,
    calibration: metaData.get('calibrationModule', imageId) || {},
    columnPixelSpacing: plane.columnPixelSpacing,
    rowPixelSpacing: plane.rowPixelSpacing,
    rows,
    columns,
    height: rows,
    width: columns,
    preScale: frame.preScale,
    intercept: modalityLut.rescaleIntercept || 0,
    slope: modalityLut.rescaleSlope || 1,
    invert: photometric === 'MONOCHROME1',
    minPixelValue: low,
    maxPixelValue: high,
    sizeInBytes: pixels.byteLength,
    windowCenter: voi.windowCenter?.[0],
    windowWidth: voi.windowWidth?.[0],
    voiLUTFunction: voi.voiLUTFunction || voi.voiLutFunction || undefined, // 'LINEAR', 'SIGMOID'…
    floatPixelData: undefined,
    imageFrame: frame,
    voxelManager: utilities.VoxelManager.createImageVoxelManager({
      scalarData: pixels,
      width: columns,
      height: rows,
      numberOfComponents: 1,
    }),
    rgba: false,
    getPixelData: () => frame.pixelData,
    getCanvas: undefined,
    numberOfComponents: 1,
  };
  if (voi.voiLUTSequence?.length) image.voiLUT = voi.voiLUTSequence[0];
  if (image.windowCenter === undefined || image.windowWidth === undefined) {
    const { windowWidth, windowCenter } = utilities.windowLevel.toWindowLevel(low, high);
    Object.assign(image, { windowWidth, windowCenter });
  }
  return image;
}

// The pixel loops below are small functions of their own, so that each stays specialised to
// the few array types it meets: inlined in greyscaleImage they ran markedly slower.

function rangeOf(values) {
  let min = values[0];
  let max = values[0];
  for (let i = 1; i < values.length; i += 1) {
    const value = values[i];
    min = value < min ? value : min;
    max = value > max ? value : max;
  }
  return [min, max];
}

function shiftInto(out, values, offset) {
  for (let i = 0; i < values.length; i += 1) out[i] = values[i] + offset;
}

function rescaleInto(out, values, slope, intercept) {
  for (let i = 0; i < values.length; i += 1) out[i] = values[i] * slope + intercept;
}

function extendSign(values, bits) {
  const shift = 32 - bits;
  const out = new Int16Array(values.length);
  for (let i = 0; i < values.length; i += 1) out[i] = (values[i] << shift) >> shift;
  return out;
}

/** The typed array the loader picks for pixel values from `min` to `max`. */
function arrayTypeFor(min, max) {
  if (Number.isInteger(min) && Number.isInteger(max)) {
    if (min >= 0) {
      if (max <= 255) return Uint8Array;
      if (max <= 65535) return Uint16Array;
      if (max <= 4294967295) return Uint32Array;
    } else if (min >= -128 && max <= 127) {
      return Int8Array;
    } else if (min >= -32768 && max <= 32767) {
      return Int16Array;
    }
  }
  return Float32Array;
}

const DECODE_WORKER = 'dicomImageLoader';
let registerDecodeWorkers = null;

// The decode workers start when the first compressed frame needs them, not at init: compiling
// the worker's 200 kB of codecs would compete with the first image for the processor, and a
// study of uncompressed images never needs them.
function startDecodeWorkers() {
  if (registerDecodeWorkers) {
    registerDecodeWorkers();
    registerDecodeWorkers = null;
  }
}

/** Call before the DICOM image loader's init(), which registers its decode workers. */
export function deferDecodeWorkers() {
  const manager = getWebWorkerManager();
  const register = manager.registerWorker.bind(manager);
  manager.registerWorker = (name, workerFn, options) => {
    if (name !== DECODE_WORKER) return register(name, workerFn, options);
    registerDecodeWorkers = () => register(name, workerFn, options);
    return undefined;
  };
}

/** Decode uncompressed frames on this thread; hand everything else to the worker as before.
 * Either way the decoded frame gets fidelity.js's corrections. */
function decodeUncompressedHere() {
  const manager = getWebWorkerManager();
  const inWorker = manager.executeTask.bind(manager);
  manager.executeTask = (workerName, methodName, args, taskOptions) => {
    if (workerName === DECODE_WORKER) {
      if (methodName === 'decodeTask' && UNCOMPRESSED.has(args?.transferSyntax)) {
        const { imageFrame, transferSyntax, pixelData, decodeConfig, options } = args;
        return decodeImageFrame(imageFrame, transferSyntax, pixelData, decodeConfig, options)
          .then((frame) => fixDecodedFrame(frame, transferSyntax));
      }
      startDecodeWorkers();
      if (methodName === 'decodeTask') {
        const { imageFrame, transferSyntax, pixelData } = args;
        const marked = { ...args, pixelData: markUntransformedRgb(imageFrame, transferSyntax, pixelData) };
        return inWorker(workerName, methodName, marked, taskOptions)
          .then((frame) => fixDecodedFrame(frame, transferSyntax));
      }
    }
    return inWorker(workerName, methodName, args, taskOptions);
  };
}

/** Call once, after the DICOM image loader's init(). */
export function installFastLoading() {
  registerImageLoader('wadouri', loadImage);
  decodeUncompressedHere();
  const files = {
    dataSetOf: (url) => wadouri.dataSetCacheManager.get(url),
    parseImageId: wadouri.parseImageId,
  };
  // Asked before the loader's own provider.
  metaData.addProvider(functionalGroupsProvider(wadouri.metaData.metaDataProvider, files), 10000);
  metaData.addProvider(segmentedPaletteProvider(files), 10000);
}
