// The console's pure helpers (no browser): CSV parsing for the plot, argument splitting.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseCsv } from '../src/results.js';
import { splitArgs } from '../src/compute.js';

test('a CSV with a header: first column x, the numeric columns as series, rows sorted by x', () => {
  const t = parseCsv('x,y,label,z\n2,4,b,8\n1,2,a,1\n');
  assert.deepEqual(t.labels, ['x', 'y', 'z']);
  assert.deepEqual(t.columns, [[1, 2], [2, 4], [1, 8]]);
});

test('a CSV without a header gets generated labels; semicolons are separators too', () => {
  const t = parseCsv('0;1.5\n1;2.5\n');
  assert.deepEqual(t.labels, ['x', 'y1']);
  assert.deepEqual(t.columns, [[0, 1], [1.5, 2.5]]);
});

test('nothing to plot: no numeric x column, or no series', () => {
  assert.equal(parseCsv('name,value\na,1\n'), null);
  assert.equal(parseCsv('x\n1\n2\n'), null);
  assert.equal(parseCsv(''), null);
});

test('arguments split on spaces, quotes group words', () => {
  assert.deepEqual(splitArgs(`--n 5 "two words" 'x y'`), ['--n', '5', 'two words', 'x y']);
});
