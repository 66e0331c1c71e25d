// A client built on openid-client (npm), which implements private_key_jwt and DPoP (RFC 9449)
// on its own, run against the real server by tests/test_interop_openid_client.py.
//
// Standard input, one JSON object per line:
//   1. {"flow": "client_credentials" | "authorization_code", "issuer", "client_id",
//       "client_key_pem" (PKCS#8, RSA), "kid", "scope", "redirect_uri" (code flow only)}
//   2. code flow only, after this script printed {"authorization_url": …}: {"callback_url": …}
// Standard output: for the code flow first {"authorization_url": …}, then one JSON object with
// everything observed: the results openid-client returned and every HTTP exchange as it went
// over the wire (decoded DPoP proofs and client assertions, statuses, DPoP-Nonce headers).
// Nothing is checked here: the Python test asserts on the report.

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
  const request = { method: options.method, url: String(url) };
  if (headers.has('dpop')) request.dpop = decodeJwt(headers.get('dpop'));
  if (headers.has('authorization')) request.authorization_scheme = headers.get('authorization').split(' ')[0];
  if (options.body) {
    const form = Object.fromEntries(new URLSearchParams(options.body));
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
  return webcrypto.subtle.importKey('pkcs8', der, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
}

// A protected resource call whose refusal is a result to report, not a failure of the script.
async function attempt(call) {
  try {
    const response = await call();
    return { ok: true, status: response.status, body: await response.json() };
  } catch (err) {
    return {
      ok: false,
      name: err.name,
      code: err.code,
      status: err.response?.status ?? err.status,
      challenges: err.name === 'WWWAuthenticateChallengeError' ? err.cause : undefined,
      error: err.error,
    };
  }
}

async function main() {
  const input = await readJsonLine();
  const config = await client.discovery(
    new URL(input.issuer),
    input.client_id,
    {},
    client.PrivateKeyJwt({ key: await clientKey(input.client_key_pem), kid: input.kid }),
    { [client.customFetch]: recordingFetch },
  );
  const metadata = config.serverMetadata();

  const dpopKeys = await client.randomDPoPKeyPair('ES256');
  const DPoP = client.getDPoPHandle(config, dpopKeys);
  const publicJwk = await webcrypto.subtle.exportKey('jwk', dpopKeys.publicKey);
  const report = {
    openid_client_version: JSON.parse(readFileSync(new URL('./node_modules/openid-client/package.json',
      import.meta.url))).version,
    issuer: metadata.issuer,
    dpop_public_jwk: { kty: publicJwk.kty, crv: publicJwk.crv, x: publicJwk.x, y: publicJwk.y },
    dpop_thumbprint: await DPoP.calculateThumbprint(),
  };

  if (input.flow === 'client_credentials') {
    const tokens = await client.clientCredentialsGrant(config, { scope: input.scope }, { DPoP });
    report.tokens = { ...tokens };
    report.introspection = { ...(await client.tokenIntrospection(config, tokens.access_token)) };
    // A client's own token reaches the userinfo endpoint's token check, which wants a user.
    report.userinfo = await attempt(() => client.fetchProtectedResource(
      config, tokens.access_token, new URL(metadata.userinfo_endpoint), 'GET', null, undefined, { DPoP }));
  } else if (input.flow === 'authorization_code') {
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const authorizationUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: input.redirect_uri,
      scope: input.scope,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
      state,
      nonce,
      dpop_jkt: report.dpop_thumbprint, // RFC 9449 §10: the code is bound to the DPoP key
    });
    print({ authorization_url: authorizationUrl.href });
    const { callback_url: callbackUrl } = await readJsonLine();
    const tokens = await client.authorizationCodeGrant(config, new URL(callbackUrl), {
      pkceCodeVerifier: codeVerifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    }, undefined, { DPoP });
    report.nonce = nonce;
    report.tokens = { ...tokens };
    report.id_token_claims = tokens.claims();
    report.userinfo = await client.fetchUserInfo(config, tokens.access_token, report.id_token_claims.sub, { DPoP });
    report.introspection = { ...(await client.tokenIntrospection(config, tokens.access_token)) };
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
      cause: err.cause instanceof Error ? String(err.cause) : err.cause,
    },
    exchanges,
  });
  process.exit(1);
});
