// Linked scrolling's arithmetic (static/viewer/geometry.js), run by Node's own test runner.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { nearestIndex, normalOf, samePlane } from '../../static/viewer/geometry.js';

const AXIAL = [1, 0, 0, 0, 1, 0];
const SAGITTAL = [0, 1, 0, 0, 0, -1];
const CORONAL = [1, 0, 0, 0, 0, -1];

/** An axial plane tipped by `degrees` about the patient's left-right axis. */
function tilted(degrees) {
  const r = (degrees * Math.PI) / 180;
  return [1, 0, 0, 0, Math.cos(r), Math.sin(r)];
}

const series = (orientation, modality = 'CT') => ({ orientation, modality });

test('the normal is the cross product of the row and column directions', () => {
  assert.deepEqual(normalOf(series(AXIAL)), [0, 0, 1]);
  assert.deepEqual(normalOf(series(SAGITTAL)), [-1, 0, 0]);
  assert.equal(normalOf(series(null)), null);
  assert.equal(normalOf(series([1, 0, 0])), null);
});

test('axial, sagittal and coronal are three planes', () => {
  assert.ok(samePlane(series(AXIAL), series(AXIAL)));
  assert.ok(!samePlane(series(AXIAL), series(SAGITTAL)));
  assert.ok(!samePlane(series(AXIAL), series(CORONAL)));
  assert.ok(!samePlane(series(SAGITTAL), series(CORONAL)));
});

test('a plane seen from the other side (feet first) is the same plane', () => {
  assert.ok(samePlane(series(AXIAL), series([-1, 0, 0, 0, 1, 0])));
});

test('a gantry tilt up to about 25 degrees is still the same plane; more is not', () => {
  // cos(25.84°) = 0.9, the threshold.
  assert.ok(samePlane(series(AXIAL), series(tilted(20))));
  assert.ok(samePlane(series(AXIAL), series(tilted(25))));
  assert.ok(!samePlane(series(AXIAL), series(tilted(26))));
  assert.ok(!samePlane(series(AXIAL), series(tilted(45))));
});

test('without an orientation, series of one modality count as one plane', () => {
  assert.ok(samePlane(series(null, 'CT'), series(AXIAL, 'CT')));
  assert.ok(!samePlane(series(null, 'CT'), series(null, 'MR')));
});

test('the nearest position wins; between two equally near, the first', () => {
  const positions = [-10, -7.5, -5, -2.5, 0];
  assert.equal(nearestIndex(positions, -7.4), 1);
  assert.equal(nearestIndex(positions, -6.25), 1);
  assert.equal(nearestIndex(positions, 100), 4);
  assert.equal(nearestIndex(positions, -100), 0);
});

test('positions may run either way', () => {
  assert.equal(nearestIndex([30, 20, 10], 12), 2);
});

test('an image with no position (a frame of a multi-frame file) stands at its index', () => {
  assert.equal(nearestIndex([null, null, null, null], 2.2), 2);
});
