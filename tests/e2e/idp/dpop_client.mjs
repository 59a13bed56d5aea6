// A DPoP client for the e2e tests: proofs made by panva's npm `dpop` (RFC 9449), with a key pair
// kept in a file so one client can make many proofs across calls.
//
//   node dpop_client.mjs proof --key FILE --htm GET --htu URL [--token AT] [--nonce N]
//
// Prints one proof JWT (and nothing else) on stdout. FILE holds the key pair as JWKs
// ({"private": ..., "public": ...}, mode 0600); it is made (ES256, P-256) when absent.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';

import * as DPoP from 'dpop';

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    key: { type: 'string' },
    htm: { type: 'string', default: 'GET' },
    htu: { type: 'string' },
    token: { type: 'string' },
    nonce: { type: 'string' },
  },
});

const ALG = { name: 'ECDSA', namedCurve: 'P-256' };

async function keyPair(file) {
  if (!fs.existsSync(file)) {
    const kp = await crypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
    const jwks = {
      private: await crypto.subtle.exportKey('jwk', kp.privateKey),
      public: await crypto.subtle.exportKey('jwk', kp.publicKey),
    };
    fs.writeFileSync(file, JSON.stringify(jwks), { mode: 0o600 });
  }
  const { private: priv, public: pub } = JSON.parse(fs.readFileSync(file, 'utf8'));
  return {
    privateKey: await crypto.subtle.importKey('jwk', priv, ALG, false, ['sign']),
    // The library exports the public key into the proof header: it must be extractable.
    publicKey: await crypto.subtle.importKey('jwk', pub, ALG, true, ['verify']),
  };
}

if (positionals[0] !== 'proof' || !args.key || !args.htu) {
  console.error('usage: node dpop_client.mjs proof --key FILE --htm GET --htu URL [--token AT] [--nonce N]');
  process.exit(2);
}
const kp = await keyPair(args.key);
// generateProof(keypair, htu, htm, nonce?, accessToken?): iat now, a random jti, ath of the token.
process.stdout.write(await DPoP.generateProof(kp, args.htu, args.htm, args.nonce, args.token));
