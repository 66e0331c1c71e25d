// A FAPI 2.0 client built on openid-client (npm), which implements private_key_jwt, pushed
// authorization requests (RFC 9126) and DPoP (RFC 9449) on its own, run against the real server
// under [oauth] profile = "fapi2" by tests/test_interop_fapi2.py.
//
// Standard input, one JSON object per line:
//   1. {"flow": "client_credentials" | "authorization_code", "issuer", "client_id",
//       "client_key_pem" (PKCS#8, EC P-256: openid-client signs the assertion ES256), "kid",
//       "scope", "redirect_uri" (code flow only), "token_dpop": "other" (code flow only: redeem
//       the code with a fresh DPoP key instead of the one the request was pushed with, then with
//       that one; the refusals are reported)}
//   2. code flow only, after this script printed {"authorization_url": …}: {"callback_url": …}
// Standard output: for the code flow first {"authorization_url": …}, then one JSON object with
// everything observed: what openid-client returned and every HTTP exchange as it went over the
// wire (decoded DPoP proofs and client assertions, statuses, headers of note, bodies).
// Nothing is checked here beyond what openid-client itself checks: the Python test asserts.

import { createPrivateKey, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import * as client from 'openid-client';

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function readJsonLine() {
  const { value, done } = await lines.next();
  if (done) throw new Error('standard input ended before the expected line');
  return JSON.parse(value);
}

function print(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function decodeJwt(jwt) {
  const [header, payload] = jwt.split('.').slice(0, 2)
    .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')));
  return { header, payload };
}

// --- every exchange on the wire (openid-client's customFetch hook) ---------------------------

const exchanges = [];

async function recordingFetch(url, options) {
  const headers = new Headers(options.headers);
  const request = {
    method: options.method,
    url: String(url),
    content_type: headers.get('content-type'),
    header_names: [...headers.keys()].sort(),
  };
  if (headers.has('dpop')) request.dpop = decodeJwt(headers.get('dpop'));
  if (headers.has('authorization')) request.authorization_scheme = headers.get('authorization').split(' ')[0];
  if (options.body) {
    const form = Object.fromEntries(new URLSearchParams(options.body));
    request.form_keys = [...new URLSearchParams(options.body).keys()];
    if (form.client_assertion) form.client_assertion = decodeJwt(form.client_assertion);
    request.form = form;
  }
  const response = await fetch(url, options);
  const exchange = {
    request,
    status: response.status,
    dpop_nonce: response.headers.get('dpop-nonce'),
    www_authenticate: response.headers.get('www-authenticate'),
    content_type: response.headers.get('content-type'),
    cache_control: response.headers.get('cache-control'),
  };
  try {
    exchange.body = await response.clone().json();
  } catch {
    exchange.body = null;
  }
  exchanges.push(exchange);
  return response;
}

// --- the flows -------------------------------------------------------------------------------

async function clientKey(pem) {
  const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
}

// A call whose refusal is the result to report: null when it succeeded.
async function refusal(call) {
  try {
    await call();
    return null;
  } catch (err) {
    return { name: err.name, code: err.code, error: err.error, error_description: err.error_description,
      status: err.status };
  }
}

async function main() {
  const input = await readJsonLine();
  const config = await client.discovery(
    new URL(input.issuer),
    input.client_id,
    // A FAPI 2.0 client expects PS256 ID tokens: openid-client refuses any other alg.
    { id_token_signed_response_alg: 'PS256' },
    client.PrivateKeyJwt({ key: await clientKey(input.client_key_pem), kid: input.kid }),
    { [client.customFetch]: recordingFetch },
  );
  // openid-client verifies the ID token's signature with the discovered jwks_uri only with
  // these checks on (without them it relies on TLS, OpenID Connect Core §3.1.3.7 item 6).
  client.enableNonRepudiationChecks(config);
  const metadata = config.serverMetadata();

  const dpopKeys = await client.randomDPoPKeyPair('ES256');
  const DPoP = client.getDPoPHandle(config, dpopKeys);
  const publicJwk = await webcrypto.subtle.exportKey('jwk', dpopKeys.publicKey);
  const report = {
    openid_client_version: JSON.parse(readFileSync(new URL('./node_modules/openid-client/package.json',
      import.meta.url))).version,
    node_version: process.version,
    issuer: metadata.issuer,
    metadata,
    dpop_public_jwk: { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x, y: publicJwk.y },
    dpop_thumbprint: await DPoP.calculateThumbprint(),
  };

  if (input.flow === 'client_credentials') {
    const tokens = await client.clientCredentialsGrant(config, { scope: input.scope }, { DPoP });
    report.tokens = { ...tokens };
  } else if (input.flow === 'authorization_code') {
    const codeVerifier = client.randomPKCECodeVerifier();
    const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
    const state = client.randomState();
    const nonce = client.randomNonce();
    const authorizationUrl = await client.buildAuthorizationUrlWithPAR(config, {
      redirect_uri: input.redirect_uri,
      scope: input.scope,
      code_challenge: codeChallenge,
      code_challenge_method: 'S256',
      state,
      nonce,
    }, { DPoP });
    Object.assign(report, { code_verifier: codeVerifier, code_challenge: codeChallenge, state, nonce });
    print({ authorization_url: authorizationUrl.href });
    const { callback_url: callbackUrl } = await readJsonLine();
    report.callback_url = callbackUrl;
    const checks = {
      pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
    };
    if (input.token_dpop === 'other') {
      // A code redeemed with another DPoP key than the one it was pushed with (a stolen code):
      // the refusal is the result to report.
      const other = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
      report.other_dpop_thumbprint = await other.calculateThumbprint();
      report.token_error = await refusal(() => client.authorizationCodeGrant(
        config, new URL(callbackUrl), checks, undefined, { DPoP: other }));
      // Then the rightful key, with the same code.
      report.retry_error = await refusal(() => client.authorizationCodeGrant(
        config, new URL(callbackUrl), checks, undefined, { DPoP }));
      report.exchanges = exchanges;
      print(report);
      return;
    }
    const tokens = await client.authorizationCodeGrant(config, new URL(callbackUrl), checks, undefined, { DPoP });
    report.tokens = { ...tokens };
    report.id_token = decodeJwt(tokens.id_token);
    report.id_token_claims = tokens.claims(); // after openid-client validated it, signature included
    report.userinfo = await client.fetchUserInfo(config, tokens.access_token, report.id_token_claims.sub, { DPoP });
  } else {
    throw new Error(`unknown flow ${input.flow}`);
  }
  report.exchanges = exchanges;
  print(report);
}

main().then(() => process.exit(0), (err) => {
  print({
    failure: {
      name: err.name,
      message: err.message,
      code: err.code,
      error: err.error,
      error_description: err.error_description,
      status: err.status,
      cause: err.cause instanceof Error ? String(err.cause) : err.cause,
    },
    exchanges,
  });
  process.exit(1);
});
