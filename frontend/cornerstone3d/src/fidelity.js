// Corrections to what the DICOM image loader (5.14) decodes, so that the values a doctor sees
// are those the file holds. Each one is measured against pydicom's decode by
// tests/browser/test_viewer_pixels.py, which fails without it:
//
// * 8-bit (or 1-bit, packed) pixels in Explicit VR Big Endian stored as OW: OW is a run of
//   16-bit words, so their bytes come swapped in pairs (PS3.5 7.3); the loader took them as is.
// * A signed image (Pixel Representation 1) whose codestream says unsigned (some JPEG 2000
//   encoders): the loader sign-extends the values but writes them back into an unsigned array,
//   so -2000 shows as 63536. The DICOM header decides, as in pydicom and dcmtk.
// * Colour samples of more than 8 bits (16- and 32-bit RGB): a screen shows 8 bits a sample,
//   and the loader handed the wide values to a canvas, which clamps them to white. They keep
//   their top 8 bits.
// * Uncompressed YBR_FULL_422 (two bytes a pixel): left as it was, so the canvas stayed black.
// * A colour JPEG without a JFIF or Adobe marker whose header says RGB: taken as YCbCr.
// * A Modality LUT Sequence: the loader reads its LUT Data as signed when the pixels are (LUT
//   Data is always unsigned, PS3.3 C.11.1.1) and only the CPU renderer applies it. Its output
//   is put into the pixels here, so that every renderer, the window and the tools work in the
//   LUT's output units.
// * RT Dose drawn in stored units instead of Gy when floats can't be drawn (applyDoseGridScaling).
// * Segmented palette colour tables, which the loader can't read (segmentedPaletteProvider).
// * An enhanced multi-frame image's per-frame rescale and window (functionalGroupsProvider).

const BIG_ENDIAN = '1.2.840.10008.1.2.2';
const swapped = new WeakSet();

/** Before the loader reads a file's pixels: undo the word order of 8- or 1-bit OW big-endian data. */
export function fixByteOrder(dataSet) {
  if (swapped.has(dataSet)) return;
  swapped.add(dataSet);
  const element = dataSet.elements.x7fe00010;
  if (!element || element.encapsulatedPixelData || element.vr !== 'OW') return;
  const bits = dataSet.uint16('x00280100');
  if (dataSet.string('x00020010') !== BIG_ENDIAN || (bits !== 8 && bits !== 1)) return;
  const bytes = new Uint8Array(dataSet.byteArray.buffer, dataSet.byteArray.byteOffset + element.dataOffset, element.length);
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const first = bytes[i];
    bytes[i] = bytes[i + 1];
    bytes[i + 1] = first;
  }
}

// JPEG processes whose colour frames libjpeg-turbo (in the worker) hands back as RGB: it applies
// the stream's own colour transform, so the DICOM header's YBR_FULL(_422) no longer describes
// the pixels, and the loader would convert them a second time.
const JPEG_TO_RGB = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51']);

/**
 * Before a JPEG frame is decoded: a stream with no JFIF or Adobe marker says nothing of its
 * colour space, and libjpeg-turbo then takes three components as YCbCr. The DICOM header
 * decides (as in pydicom): RGB means untransformed, so such a stream gets the Adobe marker that
 * says so (APP14, transform 0).
 */
export function markUntransformedRgb(imageFrame, transferSyntax, pixelData) {
  if (!JPEG_TO_RGB.has(transferSyntax) || imageFrame.samplesPerPixel !== 3) return pixelData;
  if (imageFrame.photometricInterpretation !== 'RGB') return pixelData;
  for (let i = 2; i + 3 < pixelData.length && pixelData[i] === 0xff; ) {
    const marker = pixelData[i + 1];
    if (marker === 0xe0 || marker === 0xee) return pixelData; // JFIF or Adobe: the stream says
    if (marker === 0xda) break; // start of scan: no more markers to read
    i += 2 + ((pixelData[i + 2] << 8) | pixelData[i + 3]);
  }
  // FF EE, length 14, "Adobe", version 100, flags 0 and 0, transform 0 (none).
  const adobe = [0xff, 0xee, 0, 14, 0x41, 0x64, 0x6f, 0x62, 0x65, 0, 100, 0, 0, 0, 0, 0];
  const marked = new Uint8Array(pixelData.length + adobe.length);
  marked.set(pixelData.subarray(0, 2));
  marked.set(adobe, 2);
  marked.set(pixelData.subarray(2), 2 + adobe.length);
  return marked;
}

/** After a frame is decoded (on this thread or in the worker), before the image is built. */
export function fixDecodedFrame(frame, transferSyntax) {
  if (!frame?.pixelData) return frame;
  if (JPEG_TO_RGB.has(transferSyntax) && frame.samplesPerPixel === 3) {
    frame.photometricInterpretation = 'RGB';
    frame.planarConfiguration = 0;
    return frame;
  }
  const samples = frame.samplesPerPixel || 1;
  const pixels = frame.rows * frame.columns;
  if (frame.photometricInterpretation === 'YBR_FULL_422' && frame.pixelData.length === pixels * 2) {
    rgbFromYbr422(frame);
  } else if (samples === 1 && frame.pixelRepresentation === 1 && !frame.preScale?.scaled) {
    signedFromHeader(frame);
  } else if (samples > 1 && frame.photometricInterpretation !== 'PALETTE COLOR' && frame.bitsAllocated > 8) {
    topEightBits(frame);
  }
  return frame;
}

// YCbCr to RGB as PS3.3 C.7.6.3.1.2 gives it, computed in 32-bit floats and rounded half up as
// pydicom does (the loader left uncompressed YBR_FULL_422, two bytes a pixel, unconverted and
// the canvas black).
const f = Math.fround;
const G_FROM_CB = f((-0.114 * 1.772) / 0.587);
const G_FROM_CR = f((-0.299 * 1.402) / 0.587);
const R_FROM_CR = f(1.402);
const B_FROM_CB = f(1.772);

function clampByte(value) {
  return Math.min(255, Math.max(0, Math.floor(f(value + 0.5))));
}

/** Uncompressed YBR_FULL_422: Y1 Y2 Cb Cr for each two pixels of a row (PS3.3 C.7.6.3.1.2). */
function rgbFromYbr422(frame) {
  const data = frame.pixelData;
  const out = new Uint8Array(frame.rows * frame.columns * 3);
  for (let i = 0, o = 0; i + 3 < data.length; i += 4) {
    const cb = data[i + 2] - 128;
    const cr = data[i + 3] - 128;
    for (const y of [data[i], data[i + 1]]) {
      out[o++] = clampByte(f(y + f(cr * R_FROM_CR)));
      out[o++] = clampByte(f(f(y + f(cb * G_FROM_CB)) + f(cr * G_FROM_CR)));
      out[o++] = clampByte(f(y + f(cb * B_FROM_CB)));
    }
  }
  frame.pixelData = out;
  frame.pixelDataLength = out.length;
  frame.photometricInterpretation = 'RGB';
  frame.planarConfiguration = 0;
  frame.smallestPixelValue = 0;
  frame.largestPixelValue = 255;
}

function signedFromHeader(frame) {
  const data = frame.pixelData;
  const Signed = data instanceof Uint16Array ? Int16Array : data instanceof Uint8Array ? Int8Array : null;
  if (!Signed) return;
  const values = new Signed(data.buffer, data.byteOffset, data.length);
  const shift = 32 - (frame.bitsStored || values.BYTES_PER_ELEMENT * 8);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i += 1) {
    const value = (values[i] << shift) >> shift;
    values[i] = value;
    if (value < min) min = value;
    if (value > max) max = value;
  }
  frame.pixelData = values;
  frame.smallestPixelValue = min;
  frame.largestPixelValue = max;
}

function topEightBits(frame) {
  const data = frame.pixelData;
  const shift = Math.max(0, (frame.bitsStored || frame.bitsAllocated) - 8);
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i += 1) out[i] = Math.floor(data[i] / 2 ** shift) & 0xff;
  frame.pixelData = out;
  frame.pixelDataLength = out.length;
  frame.bitsAllocated = 8;
  frame.bitsStored = 8;
  frame.highBit = 7;
  frame.smallestPixelValue = 0;
  frame.largestPixelValue = 255;
}

/** The Modality LUT Sequence's first LUT, read as the standard says, or null. */
function modalityLut(dataSet) {
  const item = dataSet.elements.x00283000?.items?.[0]?.dataSet;
  if (!item || !item.elements.x00283006) return null;
  const signedInput = dataSet.uint16('x00280103') === 1;
  const entries = item.uint16('x00283002', 0) || 65536;
  const first = signedInput ? item.int16('x00283002', 1) : item.uint16('x00283002', 1);
  const table = new Uint16Array(entries);
  for (let i = 0; i < entries; i += 1) table[i] = item.uint16('x00283006', i);
  return { first, table };
}

/**
 * Put a Modality LUT Sequence's output into the image's pixels (greyscale images only; the
 * standard has none for colour). Returns whether it did.
 */
export function applyModalityLut(image, dataSet, voi, utilities) {
  const lut = image.color ? null : modalityLut(dataSet);
  if (!lut) return false;
  const stored = image.voxelManager?.getScalarData?.() ?? image.getPixelData();
  const out = new Uint16Array(stored.length);
  const last = lut.table.length - 1;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < stored.length; i += 1) {
    const index = Math.min(last, Math.max(0, stored[i] - lut.first));
    const value = lut.table[index];
    out[i] = value;
    if (value < min) min = value;
    if (value > max) max = value;
  }
  const frame = image.imageFrame;
  frame.pixelData = out;
  frame.smallestPixelValue = min;
  frame.largestPixelValue = max;
  Object.assign(image, {
    dataType: 'Uint16Array',
    modalityLUT: undefined,
    slope: 1,
    intercept: 0,
    minPixelValue: min,
    maxPixelValue: max,
    sizeInBytes: out.byteLength,
    getPixelData: () => frame.pixelData,
    voxelManager: utilities.VoxelManager.createImageVoxelManager({
      scalarData: out, width: image.columns, height: image.rows, numberOfComponents: 1,
    }),
  });
  if (voi?.windowCenter === undefined || voi?.windowWidth === undefined) {
    // No window in the file: the LUT output's full range, not the stored values'.
    const { windowWidth, windowCenter } = utilities.windowLevel.toWindowLevel(min, max);
    Object.assign(image, { windowWidth, windowCenter });
  }
  return true;
}

// --- enhanced multi-frame images --------------------------------------------------------------

/** The functional group `tag` that applies to a frame (1-based): its own, else the shared one. */
function functionalGroup(dataSet, frame, tag) {
  const own = dataSet.elements.x52009230?.items?.[frame - 1]?.dataSet;
  const shared = dataSet.elements.x52009229?.items?.[0]?.dataSet;
  for (const groups of [own, shared]) {
    const item = groups?.elements[tag]?.items?.[0]?.dataSet;
    if (item) return item;
  }
  return null;
}

function numbers(dataSet, tag) {
  const element = dataSet.elements[tag];
  if (!element) return undefined;
  const count = dataSet.numStringValues(tag) || 1;
  return Array.from({ length: count }, (_, i) => dataSet.floatString(tag, i));
}

/**
 * A metadata provider, ahead of the loader's: an enhanced multi-frame image's rescale (Pixel
 * Value Transformation) and window (Frame VOI LUT) come from each frame's functional groups,
 * per frame or shared, which the loader's provider does not look into (so an enhanced CT showed
 * stored values as HU, and its presets misfired). Anything else is left to the loader.
 */
export function functionalGroupsProvider(loaderProvider, { dataSetOf, parseImageId }) {
  return (type, imageId) => {
    if (type !== 'modalityLutModule' && type !== 'voiLutModule') return undefined;
    if (typeof imageId !== 'string' || !imageId.startsWith('wadouri:')) return undefined;
    const { url, frame } = parseImageId(imageId);
    const dataSet = frame ? dataSetOf(url) : null;
    if (!dataSet?.elements.x52009230 && !dataSet?.elements.x52009229) return undefined;
    const base = loaderProvider(type, imageId) || {};
    if (type === 'modalityLutModule') {
      const transform = functionalGroup(dataSet, frame, 'x00289145');
      if (!transform?.elements.x00281053) return undefined;
      return {
        ...base,
        rescaleSlope: transform.floatString('x00281053'),
        rescaleIntercept: transform.floatString('x00281052') ?? 0,
        rescaleType: transform.string('x00281054'),
      };
    }
    const voi = functionalGroup(dataSet, frame, 'x00289132');
    if (!voi?.elements.x00281050 || !voi.elements.x00281051) return undefined;
    return {
      ...base,
      windowCenter: numbers(voi, 'x00281050'),
      windowWidth: numbers(voi, 'x00281051'),
      voiLUTFunction: voi.string('x00281056') ?? base.voiLUTFunction,
    };
  };
}

/**
 * RT Dose values in Gy: stored value x Dose Grid Scaling (PS3.3 C.8.8.3). The loader applies
 * it only when the browser can draw floating-point textures, and otherwise drew stored units.
 * Here it becomes the image's slope, which every renderer applies. Returns whether it did.
 */
export function applyDoseGridScaling(image, dataSet, voi, utilities) {
  if (image.color || image.preScale?.scaled || dataSet.string('x00080060') !== 'RTDOSE') return false;
  const scaling = dataSet.floatString('x3004000e');
  if (!scaling || scaling === 1) return false;
  image.slope = (image.slope ?? 1) * scaling;
  image.intercept = (image.intercept ?? 0) * scaling;
  if (voi?.windowCenter === undefined || voi?.windowWidth === undefined) {
    const low = image.minPixelValue * image.slope + image.intercept;
    const high = image.maxPixelValue * image.slope + image.intercept;
    Object.assign(image, utilities.windowLevel.toWindowLevel(low, high));
  }
  return true;
}

// --- segmented palette colour lookup tables ------------------------------------------------------

/** numpy's around(): half to even, so that a table expands to pydicom's values exactly. */
function roundHalfEven(value) {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (fraction !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** numpy's linspace(start, stop, count), rounded as pydicom rounds a linear segment. */
function linearSegment(start, stop, count) {
  if (count === 1) return [roundHalfEven(start)];
  const step = (stop - start) / (count - 1);
  const values = Array.from({ length: count }, (_, i) => roundHalfEven(i * step + start));
  values[count - 1] = roundHalfEven(stop);
  return values;
}

/** A segmented LUT's 16-bit words expanded into the table (PS3.3 C.7.9.2). */
function expandSegments(words, segments = Infinity, previous = undefined) {
  const table = [];
  let offset = 0;
  for (let read = 0; read < segments && offset + 1 < words.length; read += 1) {
    const opcode = words[offset];
    const length = words[offset + 1];
    offset += 2;
    const last = table.length ? table[table.length - 1] : previous;
    if (opcode === 0) { // discrete: the values themselves
      for (let i = 0; i < length; i += 1) table.push(words[offset + i]);
      offset += length;
    } else if (opcode === 1) { // linear: from the last value to this one
      const target = words[offset];
      offset += 1;
      if (last === undefined) throw new Error('a palette table may not start with a linear segment');
      const values = last === target
        ? new Array(length).fill(target)
        : linearSegment(last + (target - last) / length, target, length);
      table.push(...values);
    } else if (opcode === 2) { // indirect: segments again, from a word offset in the data
      const at = (words[offset + 1] << 16) | words[offset];
      offset += 2;
      if (last === undefined) throw new Error('a palette table may not start with an indirect segment');
      table.push(...expandSegments(words.subarray(at), length, last));
    } else {
      throw new Error(`unknown palette table segment type ${opcode}`);
    }
  }
  return table;
}

function words(dataSet, tag) {
  const element = dataSet.elements[tag];
  const out = new Uint16Array(Math.floor(element.length / 2));
  for (let i = 0; i < out.length; i += 1) out[i] = dataSet.uint16(tag, i);
  return out;
}

/**
 * A metadata provider, ahead of the loader's: a palette colour image whose tables are segmented
 * (Segmented Red/Green/Blue Palette Color Lookup Table Data, as some ultrasound machines write
 * them) gets them expanded. The loader reads only unsegmented tables, and such an image failed.
 */
export function segmentedPaletteProvider({ dataSetOf, parseImageId }) {
  return (type, imageId) => {
    if (type !== 'imagePixelModule' || typeof imageId !== 'string' || !imageId.startsWith('wadouri:')) {
      return undefined;
    }
    const dataSet = dataSetOf(parseImageId(imageId).url);
    if (!dataSet?.elements.x00281221 || dataSet.string('x00280004') !== 'PALETTE COLOR') return undefined;
    const descriptor = (tag) => [0, 1, 2].map((i) => dataSet.uint16(tag, i)).map((v, i) => (i === 0 && v === 0 ? 65536 : v));
    const signed = dataSet.uint16('x00280103') === 1;
    return {
      samplesPerPixel: dataSet.uint16('x00280002'),
      photometricInterpretation: 'PALETTE COLOR',
      rows: dataSet.uint16('x00280010'),
      columns: dataSet.uint16('x00280011'),
      bitsAllocated: dataSet.uint16('x00280100'),
      bitsStored: dataSet.uint16('x00280101'),
      highBit: dataSet.uint16('x00280102'),
      pixelRepresentation: dataSet.uint16('x00280103'),
      planarConfiguration: dataSet.uint16('x00280006'),
      pixelAspectRatio: dataSet.string('x00280034'),
      smallestPixelValue: signed ? dataSet.int16('x00280106') : dataSet.uint16('x00280106'),
      largestPixelValue: signed ? dataSet.int16('x00280107') : dataSet.uint16('x00280107'),
      redPaletteColorLookupTableDescriptor: descriptor('x00281101'),
      greenPaletteColorLookupTableDescriptor: descriptor('x00281102'),
      bluePaletteColorLookupTableDescriptor: descriptor('x00281103'),
      redPaletteColorLookupTableData: expandSegments(words(dataSet, 'x00281221')),
      greenPaletteColorLookupTableData: expandSegments(words(dataSet, 'x00281222')),
      bluePaletteColorLookupTableData: expandSegments(words(dataSet, 'x00281223')),
    };
  };
}
