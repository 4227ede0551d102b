// Payloads of the compression tests: payload() (random, see payload.mjs)
// and text(), which compresses about four times: letters a to d drawn by
// the same xorshift32, as compressibleText() in ../compress_test.go draws
// them.
export { payload } from './payload.mjs';

export function text(size, seed) {
  const b = new Uint8Array(size);
  let x = (seed ^ 0x9e3779b9) | 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = 0x61 + (x & 3);
  }
  return b;
}
