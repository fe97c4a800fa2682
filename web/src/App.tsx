import { type FormEvent, useEffect, useMemo, useState } from 'react';
import { GraphiQL } from 'graphiql';
import { type Client, createClient } from 'graphql-ws';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { CATALOG_TITLE, CatalogIcon, makeCatalog } from './Catalog';
import { SESSIONS_TITLE, SessionsIcon, makeSessions } from './Sessions';
import {
  ALERTS_TITLE,
  AlertsIcon,
  CONTAINERS_TITLE,
  ContainersIcon,
  HEALTH_TITLE,
  HealthIcon,
  makeAlerts,
  makeContainers,
  makeHealth,
  makeRules,
  makeSeccomp,
  RULES_TITLE,
  RulesIcon,
  SECCOMP_TITLE,
  SeccompIcon,
} from './Overview';
import type { Load, Variables } from './polled';

export const TOKEN_KEY = 'eunomia.token';

// Several short lines: the editor is narrow beside the panels.
export const DEFAULT_QUERY = `# The sidebar's "Trackers and fields" lists every tracker; its "example"
# opens an operation that starts one and asks what it saw.
{
  health { version kernel uptimeSecs activeSessions }
  trackers { name description }
}
`;

// A shared link's operation: /graphql?query=...&variables=... opens in the editor.
function linked(name: string): string | undefined {
  try {
    return new URLSearchParams(window.location.search).get(name) ?? undefined;
  } catch {
    return undefined;
  }
}
const LINKED = { query: linked('query'), variables: linked('variables') };

function readToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

function writeToken(token: string) {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage may be disabled: the token then lasts for this page only.
  }
}

// Same origin as the page: http -> ws, https -> wss.
function endpoints() {
  const { origin, protocol, host } = window.location;
  const wsScheme = protocol === 'https:' ? 'wss:' : 'ws:';
  return {
    url: `${origin}/graphql`,
    subscriptionUrl: `${wsScheme}//${host}/graphql/ws`,
  };
}

// GraphiQL parses every answer as JSON. The server answers some failures (body
// too large, request timed out) with plain text or nothing: show those as a
// GraphQL error naming the HTTP status instead of a JSON parse error.
async function fetchJson(url: RequestInfo | URL, init?: RequestInit): Promise<Response> {
  const response = await window.fetch(url, init);
  const type = response.headers.get('content-type') || '';
  if (type.includes('json')) return response;
  const text = (await response.text()).trim();
  const message = `HTTP ${response.status} ${response.statusText}${text ? `: ${text}` : ''}`;
  return new Response(JSON.stringify({ errors: [{ message }] }), {
    status: response.status,
    headers: { 'content-type': 'application/json' },
  });
}

function authHeaders(token: string): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// One operation over HTTP with the token, for the console's own panels; `load.get(path)`
// fetches another of the server's paths with the token (the flame graph).
function makeLoader(token: string): Load {
  const request = async (query: string, variables?: Variables) => {
    const response = await fetchJson(endpoints().url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authHeaders(token) },
      body: JSON.stringify({ query, variables }),
    });
    return response.json();
  };
  // One graphql-transport-ws connection for the panels, made on first use.
  let client: Client | null = null;
  const subscribe: Load['subscribe'] = (query, variables, onNext, onError) => {
    client ??= createClient({ url: endpoints().subscriptionUrl, connectionParams: authHeaders(token) });
    return client.subscribe(
      { query, variables },
      {
        next: (message) =>
          message.errors ? onError(message.errors[0].message) : onNext(message.data as never),
        error: (err: unknown) => {
          const e = err as { message?: string; reason?: string } | null;
          onError(e?.message ?? e?.reason ?? String(err));
        },
        complete: () => {},
      },
    );
  };
  return Object.assign(request, {
    get: (path: string) => window.fetch(path, { headers: authHeaders(token) }),
    subscribe,
  }) as Load;
}

function makeFetcher(token: string) {
  const auth = authHeaders(token);
  return createGraphiQLFetcher({
    ...endpoints(),
    fetch: fetchJson,
    // The server answers plain JSON (no @defer/@stream multipart responses).
    enableIncrementalDelivery: false,
    // Sent on every HTTP request (queries, mutations, introspection).
    headers: auth,
    // The graphql-transport-ws connection_init payload.
    wsConnectionParams: auth,
  });
}

// What the server makes of the token: who it names, or why it refused it.
type Identity = { name: string; role: string } | { refused: string } | null;

// Asks the server who the token names, whenever it changes, so that a wrong or expired
// token says so in the bar instead of leaving empty panels.
function useIdentity(load: Load, token: string): Identity {
  const [identity, setIdentity] = useState<Identity>(null);
  useEffect(() => {
    let live = true;
    setIdentity(null);
    load<{ me: { name: string; role: string } }>('{ me { name role } }')
      .then((body) => {
        if (!live) return;
        if (body.errors || !body.data) {
          const error = body.errors?.[0];
          const code = error?.extensions?.code;
          setIdentity({ refused: `${code ? `${code}: ` : ''}${error?.message ?? 'no answer'}` });
        } else setIdentity(body.data.me);
      })
      .catch((err) => live && setIdentity({ refused: String(err) }));
    return () => {
      live = false;
    };
  }, [load, token]);
  return identity;
}

function TokenBar({
  token,
  identity,
  onApply,
}: {
  token: string;
  identity: Identity;
  onApply: (token: string) => void;
}) {
  const [draft, setDraft] = useState(token);
  const [shown, setShown] = useState(false);
  const dirty = draft.trim() !== token;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    onApply(draft.trim());
  };
  const clear = () => {
    setDraft('');
    onApply('');
  };

  return (
    <header className="eunomia-bar">
      <span className="eunomia-title">Eunomia console</span>
      {identity && (
        <span
          id="eunomia-token-check"
          className={'refused' in identity ? 'refused' : 'accepted'}
          title={'refused' in identity ? identity.refused : undefined}
        >
          {'refused' in identity
            ? `the server refused ${token ? 'this token' : 'to answer without a token'}: ${identity.refused}`
            : `${identity.name} (${identity.role.toLowerCase()})`}
        </span>
      )}
      <form className="eunomia-token" onSubmit={submit}>
        <label htmlFor="eunomia-token-input">Token</label>
        <input
          id="eunomia-token-input"
          name="token"
          type={shown ? 'text' : 'password'}
          autoComplete="off"
          spellCheck={false}
          placeholder="bearer token (empty: none)"
          value={draft}
          onChange={(event) => setDraft(event.target.value)}
        />
        <button
          type="button"
          className="eunomia-secondary"
          onClick={() => setShown(!shown)}
          title={shown ? 'Hide the token' : 'Show the token'}
        >
          {shown ? 'Hide' : 'Show'}
        </button>
        <button id="eunomia-token-apply" type="submit" disabled={!dirty}>
          Set
        </button>
        <button
          id="eunomia-token-clear"
          type="button"
          className="eunomia-secondary"
          onClick={clear}
          disabled={!token && !draft}
        >
          Clear
        </button>
        <span id="eunomia-token-status" className={token ? 'on' : 'off'}>
          {token ? 'token set' : 'no token'}
        </span>

      </form>
    </header>
  );
}

export function App() {
  const [token, setToken] = useState(readToken);
  const fetcher = useMemo(() => makeFetcher(token), [token]);
  const load = useMemo(() => makeLoader(token), [token]);
  const identity = useIdentity(load, token);
  const plugins = useMemo(() => {
    return [
      { title: CATALOG_TITLE, icon: CatalogIcon, content: makeCatalog(load) },
      { title: SESSIONS_TITLE, icon: SessionsIcon, content: makeSessions(load) },
      { title: CONTAINERS_TITLE, icon: ContainersIcon, content: makeContainers(load) },
      { title: ALERTS_TITLE, icon: AlertsIcon, content: makeAlerts(load) },
      { title: RULES_TITLE, icon: RulesIcon, content: makeRules(load) },
      { title: SECCOMP_TITLE, icon: SeccompIcon, content: makeSeccomp(load) },
      { title: HEALTH_TITLE, icon: HealthIcon, content: makeHealth(load) },
    ];
  }, [load]);

  const apply = (next: string) => {
    writeToken(next);
    setToken(next);
  };

  return (
    <div className="eunomia-root">
      <TokenBar token={token} identity={identity} onApply={apply} />
      <main className="eunomia-graphiql">
        <GraphiQL
          fetcher={fetcher}
          plugins={plugins}
          defaultQuery={DEFAULT_QUERY}
          query={LINKED.query}
          variables={LINKED.variables}
          shouldPersistHeaders={false}
        >
          <GraphiQL.Logo>Eunomia</GraphiQL.Logo>
        </GraphiQL>
      </main>
    </div>
  );
}
