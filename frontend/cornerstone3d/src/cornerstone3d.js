// Entry module for the vendored Cornerstone3D bundle served from
// /static/vendor/cornerstone3d/cornerstone3d.js. Rebuild with:
//   bash frontend/cornerstone3d/build.sh
//
// Re-exports what the vault's viewer needs, plus initCornerstone() and, from
// fastLoading.js, provideFile() / withdrawFile().
import {
  init as coreInit,
  utilities as coreUtilities,
  isCornerstoneInitialized,
  getRenderingCapabilities,
  setUseCPURendering,
  version as coreVersion,
} from '@cornerstonejs/core';
import {
  init as toolsInit,
  addTool,
  WindowLevelTool,
  PanTool,
  ZoomTool,
  StackScrollTool,
  LengthTool,
  AngleTool,
  utilities as toolsUtilities,
  version as toolsVersion,
} from '@cornerstonejs/tools';
import {
  init as dicomImageLoaderInit,
  wadouri,
} from '@cornerstonejs/dicom-image-loader';
import { deferDecodeWorkers, installFastLoading } from './fastLoading.js';

// ---- @cornerstonejs/core -------------------------------------------------
export {
  RenderingEngine,
  Enums,
  EVENTS,
  metaData,
  cache,
  imageLoader,
  volumeLoader,
  utilities,
  eventTarget,
  getRenderingEngine,
  getEnabledElement,
  isCornerstoneInitialized,
} from '@cornerstonejs/core';
export { coreInit };

// ---- @cornerstonejs/tools ------------------------------------------------
export {
  ToolGroupManager,
  addTool,
  WindowLevelTool,
  PanTool,
  ZoomTool,
  StackScrollTool,
  LengthTool,
  AngleTool,
  Enums as ToolsEnums,
  utilities as toolsUtilities,
  synchronizers,
  SynchronizerManager,
  annotation,
} from '@cornerstonejs/tools';
export { toolsInit };
export const cine = toolsUtilities.cine;

// ---- @cornerstonejs/dicom-image-loader -----------------------------------
export { dicomImageLoaderInit, wadouri };
export { provideFile, withdrawFile } from './fastLoading.js';
// The loader's legacy (dicom-parser based) metadata provider. It is what makes
// Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99) files load: the
// default dcmjs-based path in 5.x does not inflate the dataset.
export const legacyMetadataProvider = wadouri.metaData.metaDataProvider;

export const versions = Object.freeze({
  core: coreVersion,
  tools: toolsVersion,
  // dicom-image-loader is pinned to the same version in package.json.
});

const VIEWER_TOOLS = [
  WindowLevelTool,
  PanTool,
  ZoomTool,
  StackScrollTool,
  LengthTool,
  AngleTool,
];

let initPromise = null;

/**
 * Initialise core, tools and the DICOM image loader once per page.
 *
 * @param {object} opts
 * @param {string} opts.wasmBasePath  URL of the folder holding the codec .wasm
 *   files, e.g. '/static/vendor/cornerstone3d/'. Resolved against the page
 *   (and inside the decode worker against the worker's URL, so use an
 *   absolute path).
 * @param {number} [opts.maxWebWorkers]  decode workers (default:
 *   hardwareConcurrency / 2, at least 1).
 * @param {boolean} [opts.useLegacyMetadataProvider=true]  register the
 *   loader's legacy wadouri/dicomfile loader + metadata provider (needed for
 *   deflated transfer syntax). Pass false to use the 5.x dcmjs-based default.
 * @param {boolean} [opts.addViewerTools=true]  call addTool() for the six
 *   viewer tools re-exported here.
 * @param {'auto'|boolean} [opts.cpuRendering='auto']  draw stack viewports
 *   on the CPU (a 2D canvas) instead of WebGL. 'auto': only when the browser
 *   has no WebGL or only a software rasteriser (SwiftShader, llvmpipe): there
 *   WebGL took about 150 ms of the first image (setting up, drawing, reading
 *   the pixels back into the page's canvas), while a 2D canvas draws a
 *   512x512 slice in a few milliseconds. A real GPU keeps WebGL.
 * @returns {Promise<void>}
 *
 * Also installs the viewer's faster wadouri loading (fastLoading.js): files
 * fetched with fetch() or handed over with provideFile(), uncompressed frames
 * decoded on the page, the decode workers started only when needed.
 */
export function initCornerstone({
  wasmBasePath,
  maxWebWorkers,
  useLegacyMetadataProvider = true,
  addViewerTools = true,
  cpuRendering = 'auto',
} = {}) {
  if (initPromise) {
    return initPromise;
  }
  initPromise = (async () => {
    if (!wasmBasePath) {
      throw new Error('initCornerstone: wasmBasePath is required');
    }
    const base = wasmBasePath.endsWith('/') ? wasmBasePath : `${wasmBasePath}/`;
    if (!isCornerstoneInitialized()) {
      await coreInit();
    }
    if (cpuRendering === 'auto') {
      const { webgl, softwareRasterizer } = getRenderingCapabilities();
      setUseCPURendering(!webgl || softwareRasterizer, false);
    } else {
      setUseCPURendering(Boolean(cpuRendering), false);
    }
    // Core's copy is read by the loader when it builds each decode task.
    coreUtilities.setWasmBasePath(base);
    const loaderOptions = { wasmBasePath: base, useLegacyMetadataProvider };
    if (maxWebWorkers) {
      loaderOptions.maxWebWorkers = maxWebWorkers;
    }
    deferDecodeWorkers();
    // Note: never pass beforeSend: undefined (it would replace the default).
    dicomImageLoaderInit(loaderOptions);
    installFastLoading();
    toolsInit();
    if (addViewerTools) {
      for (const Tool of VIEWER_TOOLS) {
        addTool(Tool); // idempotent
      }
    }
  })();
  initPromise.catch(() => {
    initPromise = null;
  });
  return initPromise;
}
