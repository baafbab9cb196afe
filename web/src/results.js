// Results of a run: which outputs are images or tables, and CSV parsing for the plot.
export const isPng = (name) => /\.png$/i.test(name);
export const isCsv = (name) => /\.csv$/i.test(name);

function splitLine(line, sep) {
  return line.split(sep).map((c) => c.trim().replace(/^"(.*)"$/, '$1'));
}

/**
 * CSV text → {labels, columns} for uPlot: the first column is x, every other column that is
 * numeric in all rows a series; the first row is a header when it is not numeric.
 */
export function parseCsv(text) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() && !l.startsWith('#'));
  if (!lines.length) return null;
  const sep = [',', ';', '\t'].find((s) => lines[0].includes(s)) || ',';
  let rows = lines.map((l) => splitLine(l, sep));
  const numeric = (v) => v !== '' && Number.isFinite(Number(v));
  let labels;
  if (!rows[0].every(numeric)) {
    labels = rows[0];
    rows = rows.slice(1);
  }
  const width = Math.max(...rows.map((r) => r.length));
  labels = labels || Array.from({ length: width }, (_, i) => (i === 0 ? 'x' : `y${i}`));
  const keep = [];
  for (let c = 0; c < width; c += 1) {
    if (rows.length && rows.every((r) => numeric(r[c]))) keep.push(c);
  }
  if (keep.length < 2 || keep[0] !== 0) return null;
  rows.sort((a, b) => Number(a[0]) - Number(b[0]));
  return {
    labels: keep.map((c) => labels[c] || `column ${c + 1}`),
    columns: keep.map((c) => rows.map((r) => Number(r[c]))),
  };
}
