// A real OpenID provider (panva's oidc-provider) for the SSO tests, on loopback only.
//
// Environment:
//   PORT          port to listen on at 127.0.0.1 (0 or unset: any free port); the issuer is
//                 http://127.0.0.1:<port>, printed as `READY <issuer>` on stdout once listening
//   CLIENTS       JSON list of {client_id, client_secret, redirect_uris}
//   ID_TOKEN_TTL  ID token lifetime in seconds (default 3600)
//
// No human ever sees a page: the interaction URL logs in the account named by the
// authorization request's `login_hint` and grants what was asked, then sends the browser
// back to the authorization endpoint, which redirects to redirect_uri?code=...&state=...
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { Provider, interactionPolicy } from 'oidc-provider';

const SCOPES = ['openid', 'email', 'profile'];
const clients = JSON.parse(process.env.CLIENTS || '[]').map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  redirect_uris: c.redirect_uris,
  grant_types: ['authorization_code'],
  response_types: ['code'],
  // client_secret_post is accepted as well: oidc-provider treats the two as interchangeable.
  token_endpoint_auth_method: 'client_secret_basic',
}));
const idTokenTtl = Number(process.env.ID_TOKEN_TTL || 3600);

// A fresh signing key per process, so two providers never share keys (without `jwks`,
// oidc-provider would fall back to one well-known development key).
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: randomBytes(8).toString('hex'),
  use: 'sig',
  alg: 'RS256',
};

// login_hint names the subject. A browser that still has a session for someone else must log
// in again, otherwise the session's account would silently win over the hint.
const policy = interactionPolicy.base();
policy.get('login').checks.add(new interactionPolicy.Check(
  'login_hint_mismatch',
  'the session belongs to another account than login_hint',
  (ctx) => {
    const { session, params } = ctx.oidc;
    return params.login_hint && session.accountId && session.accountId !== params.login_hint
      ? interactionPolicy.Check.REQUEST_PROMPT
      : interactionPolicy.Check.NO_NEED_TO_PROMPT;
  },
));

// The server listens first so that PORT=0 works: the issuer needs the real port.
const server = createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: SCOPES,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    // Put scope-granted claims (email, name) in the ID token too, as most IdPs do.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true }, // S256 is the only method oidc-provider supports
    features: { devInteractions: { enabled: false } },
    interactions: { policy, url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      IdToken: idTokenTtl,
      AccessToken: 3600,
      AuthorizationCode: 60,
      Grant: 3600,
      Interaction: 600,
      Session: 3600,
    },
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: true, name: id }),
    }),
    renderError: (ctx, out) => { ctx.type = 'json'; ctx.body = out; }, // errors as JSON, not HTML
  });
  const callback = provider.callback();

  server.on('request', async (req, res) => {
    if (!req.url.startsWith('/interaction/')) return callback(req, res);
    try {
      // Whatever prompt is pending (login and/or consent), finish both at once.
      const { params, grantId } = await provider.interactionDetails(req, res);
      const accountId = params.login_hint;
      if (!accountId) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('login_hint is required');
        return;
      }
      const existing = grantId && await provider.Grant.find(grantId);
      const grant = existing?.accountId === accountId
        ? existing
        : new provider.Grant({ accountId, clientId: params.client_id });
      const scopes = String(params.scope || '').split(' ').filter((s) => SCOPES.includes(s));
      grant.addOIDCScope(scopes.join(' '));
      if (params.claims) { // the `claims` request parameter: grant each claim it names
        const { id_token: idToken = {}, userinfo = {} } = JSON.parse(params.claims);
        grant.addOIDCClaims([...Object.keys(idToken), ...Object.keys(userinfo)]);
      }
      await provider.interactionFinished(req, res, {
        login: { accountId },
        consent: { grantId: await grant.save() },
      }, { mergeWithLastSubmission: false });
    } catch (err) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`interaction failed: ${err.message}`);
    }
  });
  console.log(`READY ${issuer}`);
});
