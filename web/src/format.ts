// Numbers as people read them, by the catalog's `format` of their field.

export type Format = 'PLAIN' | 'ERRNO' | 'OPEN_FLAGS' | 'OCTAL' | 'HEX' | 'DURATION' | 'PATH';

const DURATION_UNITS: [number, string][] = [
  [1e9, 's'],
  [1e6, 'ms'],
  [1e3, 'µs'],
];

// Nanoseconds in the unit that suits them, three figures: 840 ns, 17.6 ms, 3.12 s.
export function duration(ns: number): string {
  for (const [size, unit] of DURATION_UNITS) {
    if (Math.abs(ns) >= size) return `${Number((ns / size).toPrecision(3))} ${unit}`;
  }
  return `${Math.round(ns)} ns`;
}

// One value of a field of this format; a count when the format is not known.
export function formatValue(value: number, format?: Format): string {
  if (format === 'DURATION') return duration(value);
  if (format === 'HEX') return `0x${Math.trunc(value).toString(16)}`;
  if (format === 'OCTAL') return `0${Math.trunc(value).toString(8)}`;
  return Number.isInteger(value) ? value.toLocaleString('en-US') : value.toFixed(1);
}
