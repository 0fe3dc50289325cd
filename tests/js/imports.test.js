// The viewer's modules import one way (issue 16): from app.js, the shared state, up to
// viewer.js, the page's entry, with no cycle. A cycle is how functions end up passed around
// through a shared object, and how a module runs twice under production's hashed names.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';

const FOLDER = new URL('../../static/viewer/', import.meta.url);
const STATIC_IMPORT = /^\s*import\s[^;]*?from\s+'\.\/([\w-]+\.js)'/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*'\.\/([\w-]+\.js)'\s*\)/g;

function graph() {
  const modules = readdirSync(FOLDER).filter((name) => name.endsWith('.js'));
  const edges = new Map();
  const dynamic = new Map();
  for (const name of modules) {
    const text = readFileSync(new URL(name, FOLDER), 'utf8');
    edges.set(name, [...text.matchAll(STATIC_IMPORT)].map((m) => m[1]));
    dynamic.set(name, [...text.matchAll(DYNAMIC_IMPORT)].map((m) => m[1]));
  }
  return { modules, edges, dynamic };
}

/** The first cycle found, as a list of modules, or null. */
function findCycle(edges) {
  const state = new Map(); // name -> 'open' while on the path, 'done' after
  const path = [];
  function visit(name) {
    if (state.get(name) === 'done') return null;
    if (state.get(name) === 'open') return [...path.slice(path.indexOf(name)), name];
    state.set(name, 'open');
    path.push(name);
    for (const next of edges.get(name) || []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(name, 'done');
    return null;
  }
  for (const name of edges.keys()) {
    const cycle = visit(name);
    if (cycle) return cycle;
  }
  return null;
}

test('the finder finds a cycle where there is one', () => {
  const edges = new Map([['a.js', ['b.js']], ['b.js', ['c.js']], ['c.js', ['a.js']]]);
  assert.deepEqual(findCycle(edges), ['a.js', 'b.js', 'c.js', 'a.js']);
  assert.equal(findCycle(new Map([['a.js', ['b.js']], ['b.js', []]])), null);
});

test("the viewer's modules import one way", () => {
  const { edges, dynamic } = graph();
  const all = new Map([...edges].map(([name, to]) => [name, [...to, ...dynamic.get(name)]]));
  assert.equal(findCycle(all), null);
});

test('every import names a module that exists', () => {
  const { modules, edges, dynamic } = graph();
  for (const [name, to] of edges) {
    for (const target of [...to, ...dynamic.get(name)]) {
      assert.ok(modules.includes(target), `${name} imports ${target}`);
    }
  }
});

test('nothing imports the entry, and only the entry loads the test hook, on demand', () => {
  const { edges, dynamic } = graph();
  for (const [name, to] of edges) {
    assert.ok(!to.includes('viewer.js'), `${name} imports viewer.js`);
    assert.ok(!to.includes('testhook.js'), `${name} imports testhook.js at load`);
  }
  const loaders = [...dynamic].filter(([, to]) => to.includes('testhook.js')).map(([name]) => name);
  assert.deepEqual(loaders, ['viewer.js']);
});

test('the shared state imports nothing, so it holds data, not other modules\' functions', () => {
  assert.deepEqual(graph().edges.get('app.js'), []);
});
