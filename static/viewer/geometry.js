// Which series lie in the same plane, and which image of a series lies nearest a position: the
// arithmetic of linked scrolling (compare.js), with no page or library, so Node tests it.

/** The normal of a series' image plane (the cross product of its row and column directions). */
export function normalOf(series) {
  const o = series.orientation;
  if (!o || o.length !== 6) return null;
  return [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
}

/** Two series are in the same plane when their normals are within about 25° of each other
 * (either way round); without an orientation, series of the same modality are taken to be. */
export function samePlane(a, b) {
  const na = normalOf(a);
  const nb = normalOf(b);
  if (!na || !nb) return a.modality === b.modality;
  return Math.abs(na[0] * nb[0] + na[1] * nb[1] + na[2] * nb[2]) > 0.9;
}

/** The index of the image whose position is nearest `position` (an image with no position,
 * a frame of a multi-frame file, stands at its own index); the first of equals wins. */
export function nearestIndex(positions, position) {
  let best = 0;
  let bestDistance = Infinity;
  positions.forEach((p, index) => {
    const distance = Math.abs((p ?? index) - position);
    if (distance < bestDistance) {
      best = index;
      bestDistance = distance;
    }
  });
  return best;
}
