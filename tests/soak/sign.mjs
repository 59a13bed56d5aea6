// Distinct, validly signed JWT access tokens for the soak's memory run, made fast with an
// Ed25519 key of the harness's own (the filter gets its public key as an inline `jwks`).
//
//   node tests/soak/sign.mjs COUNT CLAIMS_JSON
//
// Prints the public JWK (kid soak-ed25519) on the first line, then COUNT tokens, one per line,
// each CLAIMS_JSON plus a distinct jti and sub (soak-ed-<i>). The caller reads them from a pipe:
// they are credentials for the test Envoy and are never written anywhere else.
import * as crypto from 'node:crypto';

const [countArg, claimsArg] = process.argv.slice(2);
const count = Number(countArg);
const base = JSON.parse(claimsArg);
const b64url = (buf) => Buffer.from(buf).toString('base64url');

const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
const kid = 'soak-ed25519';
const out = [JSON.stringify({ ...publicKey.export({ format: 'jwk' }), kid, alg: 'EdDSA', use: 'sig' })];
const header = b64url(JSON.stringify({ alg: 'EdDSA', typ: 'at+jwt', kid }));
const run = crypto.randomBytes(6).toString('hex');
for (let i = 0; i < count; i++) {
  const payload = b64url(JSON.stringify({ ...base, sub: `soak-ed-${i}`, jti: `${run}-${i}` }));
  const input = `${header}.${payload}`;
  out.push(`${input}.${b64url(crypto.sign(null, Buffer.from(input), privateKey))}`);
  if (out.length >= 2000) {
    process.stdout.write(out.join('\n') + '\n');
    out.length = 0;
  }
}
if (out.length) process.stdout.write(out.join('\n') + '\n');
