// payload returns size pseudo-random bytes for seed (xorshift32), the same
// bytes as payload() in ../payload_test.go, so that the Go tests know what a
// client must have received without the bytes crossing back.
export function payload(size, seed) {
  const b = new Uint8Array(size);
  let x = (seed ^ 0x9e3779b9) | 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
