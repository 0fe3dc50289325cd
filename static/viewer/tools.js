// Mouse, touch and keyboard tools, bound the way a PACS workstation binds them: the chosen
// tool on the left button (one finger on touch), pan on the middle button, zoom on the right
// button and on a pinch, stack scroll on the wheel.

export const TOOL_GROUP_ID = 'vault-tools';

export const PRESETS = {
  // [window width, window center]
  '400,40': [400, 40],
  '1500,-600': [1500, -600],
  '2000,300': [2000, 300],
  '80,40': [80, 40],
};

export function createToolGroup(cs) {
  const { ToolGroupManager, ToolsEnums } = cs;
  const group = ToolGroupManager.createToolGroup(TOOL_GROUP_ID);
  const names = toolNames(cs);
  Object.values(names).forEach((name) => group.addTool(name));
  const B = ToolsEnums.MouseBindings;
  group.setToolActive(names.Pan, { bindings: [{ mouseButton: B.Auxiliary }, { numTouchPoints: 3 }] });
  group.setToolActive(names.Zoom, { bindings: [{ mouseButton: B.Secondary }, { numTouchPoints: 2 }] });
  group.setToolActive(names.StackScroll, { bindings: [{ mouseButton: B.Wheel }] });
  // Measurements stay visible (and editable) whichever tool is on the left button.
  group.setToolPassive(names.Length);
  group.setToolPassive(names.Angle);
  setPrimaryTool(cs, group, onATouchScreen() ? 'StackScroll' : 'WindowLevel');
  return group;
}

/** A phone or tablet: a finger, no mouse. There one finger scrolls through the images, as in
 * a phone's own picture viewers; window/level is a toolbar choice away. */
function onATouchScreen() {
  return window.matchMedia('(hover: none) and (pointer: coarse)').matches;
}

/** The tool on the left button (and one finger). */
export function primaryTool() {
  return primary;
}

function toolNames(cs) {
  return {
    WindowLevel: cs.WindowLevelTool.toolName,
    Pan: cs.PanTool.toolName,
    Zoom: cs.ZoomTool.toolName,
    StackScroll: cs.StackScrollTool.toolName,
    Length: cs.LengthTool.toolName,
    Angle: cs.AngleTool.toolName,
  };
}

let primary = null;

/** Put `tool` on the left button and one finger, restoring the previous one's own bindings. */
export function setPrimaryTool(cs, group, tool) {
  const names = toolNames(cs);
  const B = cs.ToolsEnums.MouseBindings;
  if (primary && primary !== tool) restoreBindings(cs, group, primary);
  const keep = {
    Pan: [{ mouseButton: B.Auxiliary }, { numTouchPoints: 3 }],
    Zoom: [{ mouseButton: B.Secondary }, { numTouchPoints: 2 }],
    StackScroll: [{ mouseButton: B.Wheel }],
  }[tool] || [];
  group.setToolActive(names[tool], { bindings: [{ mouseButton: B.Primary }, ...keep] });
  primary = tool;
}

function restoreBindings(cs, group, tool) {
  const names = toolNames(cs);
  const B = cs.ToolsEnums.MouseBindings;
  // setToolActive adds bindings to those a tool has, so the left button must be taken away
  // first (setToolPassive removes it and leaves the tool's other bindings active).
  group.setToolPassive(names[tool]);
  if (tool === 'Pan') {
    group.setToolActive(names.Pan, { bindings: [{ mouseButton: B.Auxiliary }, { numTouchPoints: 3 }] });
  } else if (tool === 'Zoom') {
    group.setToolActive(names.Zoom, { bindings: [{ mouseButton: B.Secondary }, { numTouchPoints: 2 }] });
  } else if (tool === 'StackScroll') {
    group.setToolActive(names.StackScroll, { bindings: [{ mouseButton: B.Wheel }] });
  }
}

/** Window width/center of a viewport, as a radiologist reads them. */
export function windowOf(cs, viewport) {
  const range = viewport.getProperties()?.voiRange;
  if (!range) return null;
  const { windowWidth, windowCenter } = cs.utilities.windowLevel.toWindowLevel(range.lower, range.upper);
  return { width: windowWidth, center: windowCenter };
}

export function applyPreset(cs, viewport, value) {
  if (value === 'auto') {
    // Back to the image's own window (or, for an MR without one, its full range).
    viewport.resetProperties();
    viewport.render();
    return;
  }
  const preset = PRESETS[value];
  if (!preset) return;
  const [width, center] = preset;
  viewport.setProperties({ voiRange: cs.utilities.windowLevel.toLowHighRange(width, center) });
  viewport.render();
}

/** Every length and angle drawn so far, with its value and unit (mm when calibrated). */
export function measurements(cs) {
  const all = cs.annotation.state.getAllAnnotations() || [];
  return all.map((item) => {
    const stats = Object.values(item.data?.cachedStats || {})[0] || {};
    const tool = item.metadata?.toolName;
    const value = tool === cs.AngleTool.toolName ? stats.angle : stats.length;
    return {
      tool,
      value,
      unit: stats.unit ?? (tool === cs.AngleTool.toolName ? '°' : undefined),
      // Cornerstone recomputes a measurement's value at most every 100 ms while it is drawn,
      // and once more after: until then the value is that of an earlier point of the drag.
      settled: !item.invalidated,
    };
  });
}

/** Remove the selected measurements (a click on one selects it). Returns how many went. */
export function deleteSelectedMeasurements(cs) {
  const selected = cs.annotation.selection.getAnnotationsSelected() || [];
  selected.forEach((uid) => cs.annotation.state.removeAnnotation(uid));
  return selected.length;
}

export function clearMeasurements(cs) {
  cs.annotation.state.removeAllAnnotations();
}
